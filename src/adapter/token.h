/* SPDX-License-Identifier: MIT */
#pragma once

/* Secrets: bearer tokens for the upstreams (ERP heartbeat, OFD) and for our own HTTP API, and the HTTP
 * listener's TLS certificate and key. Read from a systemd credential or a file, never from the command line
 * or the environment, and never logged; tokens are compared in constant time. A secret is freed with
 * erase_and_free() (memory-util.h). */

#include <stdbool.h>

#include "macro.h"

/* The most a token file may hold; a bigger file is not a token. */
#define TOKEN_SIZE_MAX ((size_t) 16 * 1024)
/* The most a PEM file (a certificate chain, a private key) may hold. */
#define SECRET_PEM_SIZE_MAX ((size_t) 256 * 1024)

typedef enum SecretFlags {
        SECRET_PEM = 1 << 0,    /* PEM text: line breaks and tabs are fine; up to SECRET_PEM_SIZE_MAX */
        SECRET_PUBLIC = 1 << 1, /* not a secret (a certificate): others may read the file */
} SecretFlags;

/* Reads a secret: $CREDENTIALS_DIRECTORY/<credential_name> when credential_name is set and that credential
 * exists and is not empty (the unit's SetCredential= fallback is a lone newline), otherwise the file at
 * path. Trailing whitespace (the newline an editor or `echo` leaves) is stripped. *ret is NULL with
 * return 0 when neither is configured (path NULL and no such credential).
 * Errors: -ENOENT (path configured but missing), -EPERM (readable or writable by others, unless
 * SECRET_PUBLIC: a leaked secret is refused, not used; group-readable is fine, that is how root:kkt-adapter
 * 0640 hands it to us), -EBADF (not a regular file), -EFBIG (larger than TOKEN_SIZE_MAX, or
 * SECRET_PEM_SIZE_MAX), -ENODATA (empty), -EBADMSG (a control character inside, which would end up in an
 * HTTP header; with SECRET_PEM line breaks and tabs are allowed), -EINVAL (a credential name that is not a
 * plain file name), or the errno of open/read.
 * The caller logs the error with the path; nothing here logs, so the secret cannot leak into the journal. */
int read_secret(const char *path, const char *credential_name, SecretFlags flags, char **ret);

/* read_secret() of a one-line token. */
static inline int read_token(const char *path, const char *credential_name, char **ret) {
        return read_secret(path, credential_name, 0, ret);
}

/* Whether the presented token is the expected one. The time taken depends on the lengths only, never on
 * how much of the presented token is right, so a client cannot guess a token byte by byte. */
bool token_equal(const char *presented, const char *expected);
