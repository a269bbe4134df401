/* SPDX-License-Identifier: MIT */
#pragma once

/* A VFS over SQLite's default one that gathers the writes to a WAL file and hands them to the kernel as
 * one write when the WAL is synced.
 *
 * SQLite writes each WAL frame as two write() calls, a 24-byte header and the page: a single-receipt
 * commit of five frames made ten system calls before its fdatasync(), a group commit of forty frames
 * eighty. Buffered here, a commit costs one write and the sync. Everything else passes through.
 *
 * Only for a connection with synchronous=FULL (or EXTRA) in WAL mode: then SQLite syncs the WAL after the
 * frames of every commit and before it publishes them in the WAL index, so no other connection or process
 * can look for frames that are still in the buffer. Reads, size queries, truncation and close of the WAL
 * flush the buffer first, so the connection itself always sees what it wrote. A crash loses only what was
 * never synced, which SQLite never counted as committed. */

#define STORE_VFS_NAME "kkt-wal-batch"

/* Registers the VFS (not as the default) once per process; later calls do nothing. An SQLite error
 * code as negative errno. */
int store_vfs_register(void);
