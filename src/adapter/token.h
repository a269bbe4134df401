/* SPDX-License-Identifier: MIT */
#pragma once

/* Bearer tokens for the upstreams (ERP heartbeat, OFD): read from a systemd credential or a file, never
 * from the command line or the environment, and never logged. */

#include "macro.h"

/* The most a token file may hold; a bigger file is not a token. */
#define TOKEN_SIZE_MAX ((size_t) 16 * 1024)

/* Reads a token: $CREDENTIALS_DIRECTORY/<credential_name> when credential_name is set and that credential
 * exists and is not empty (the unit's SetCredential= fallback is a lone newline), otherwise the file at
 * path. Trailing whitespace (the newline an editor or `echo` leaves) is stripped. *ret is NULL with
 * return 0 when neither is configured (path NULL and no such credential).
 * Errors: -ENOENT (path configured but missing), -EPERM (readable or writable by others: a leaked secret
 * is refused, not used; group-readable is fine, that is how root:kkt-adapter 0640 hands it to us),
 * -EBADF (not a regular file), -EFBIG (larger than TOKEN_SIZE_MAX), -ENODATA (empty), -EBADMSG (a control
 * character inside, which would end up in an HTTP header), or the errno of open/read.
 * The caller logs the error with the path; nothing here logs, so the token cannot leak into the journal. */
int read_token(const char *path, const char *credential_name, char **ret);

/* Overwrites and frees a token; accepts NULL; returns NULL. */
char *token_free(char *token);
DEFINE_TRIVIAL_CLEANUP_FUNC(char *, token_free);
