/* SPDX-License-Identifier: MIT */
/* The WAL write-gathering VFS: a shim whose files wrap the default VFS's files and forward every method,
 * buffering contiguous writes to WAL files until the next sync. */

#include <pthread.h>
#include <sqlite3.h>
#include <string.h>

#include "macro.h"
#include "sqlite-util.h"
#include "store-vfs.h"

/* The unix VFS writes at most 0x1ffff bytes per call: it masks the length with that (seekAndWriteFd()), so
 * a larger write comes out short and reads as a full disk. 31 frames of 4 KiB + 24: a single-receipt
 * commit in one write, a group of 64 receipts in two or three. */
#define BUFFER_SIZE 0x1ffffU

typedef struct BatchFile {
        sqlite3_file base;
        sqlite3_file *real; /* the default VFS's file, in the same allocation after this struct */
        bool is_wal;

        /* WAL files only: bytes [offset, offset + size) not written yet */
        unsigned char *buffer;
        size_t size;
        sqlite3_int64 offset;
} BatchFile;

#define REAL_FILE_OFFSET ((sizeof(BatchFile) + 7U) & ~(size_t) 7U)

static sqlite3_vfs *real_vfs;

static int batch_flush(BatchFile *f) {
        int rc;

        if (f->size == 0)
                return SQLITE_OK;
        rc = f->real->pMethods->xWrite(f->real, f->buffer, (int) f->size, f->offset);
        /* Written or not, the buffer is done with: after an error SQLite rolls the transaction back and
         * writes its frames again, from the start of the transaction. */
        f->size = 0;
        return rc;
}

static int batch_close(sqlite3_file *file) {
        BatchFile *f = (BatchFile *) file;
        int rc, q;

        rc = batch_flush(f);
        q = f->real->pMethods->xClose(f->real);
        f->buffer = mfree(f->buffer);
        return rc != SQLITE_OK ? rc : q;
}

static int batch_read(sqlite3_file *file, void *data, int amount, sqlite3_int64 offset) {
        BatchFile *f = (BatchFile *) file;
        int rc;

        rc = batch_flush(f);
        if (rc != SQLITE_OK)
                return rc;
        return f->real->pMethods->xRead(f->real, data, amount, offset);
}

static int batch_write(sqlite3_file *file, const void *data, int amount, sqlite3_int64 offset) {
        BatchFile *f = (BatchFile *) file;
        int rc;

        if (!f->is_wal || amount <= 0)
                return f->real->pMethods->xWrite(f->real, data, amount, offset);

        /* Appending to what is buffered: the usual case, frame after frame. */
        if (f->size > 0 && offset == f->offset + (sqlite3_int64) f->size &&
            f->size + (size_t) amount <= BUFFER_SIZE) {
                memcpy(f->buffer + f->size, data, (size_t) amount);
                f->size += (size_t) amount;
                return SQLITE_OK;
        }

        /* Anything else (a frame rewritten in place, the WAL header, a full buffer): what is buffered goes
         * first, so writes reach the file in the order SQLite made them. */
        rc = batch_flush(f);
        if (rc != SQLITE_OK)
                return rc;
        if ((size_t) amount > BUFFER_SIZE)
                return f->real->pMethods->xWrite(f->real, data, amount, offset);
        if (!f->buffer) {
                f->buffer = malloc(BUFFER_SIZE);
                if (!f->buffer)
                        return f->real->pMethods->xWrite(f->real, data, amount, offset);
        }
        memcpy(f->buffer, data, (size_t) amount);
        f->size = (size_t) amount;
        f->offset = offset;
        return SQLITE_OK;
}

static int batch_truncate(sqlite3_file *file, sqlite3_int64 size) {
        BatchFile *f = (BatchFile *) file;
        int rc;

        rc = batch_flush(f);
        if (rc != SQLITE_OK)
                return rc;
        return f->real->pMethods->xTruncate(f->real, size);
}

static int batch_sync(sqlite3_file *file, int flags) {
        BatchFile *f = (BatchFile *) file;
        int rc;

        rc = batch_flush(f);
        if (rc != SQLITE_OK)
                return rc;
        return f->real->pMethods->xSync(f->real, flags);
}

static int batch_file_size(sqlite3_file *file, sqlite3_int64 *ret) {
        BatchFile *f = (BatchFile *) file;
        int rc;

        rc = batch_flush(f);
        if (rc != SQLITE_OK)
                return rc;
        return f->real->pMethods->xFileSize(f->real, ret);
}

/* The rest is forwarded as it is. */

static int batch_lock(sqlite3_file *file, int lock) {
        BatchFile *f = (BatchFile *) file;
        return f->real->pMethods->xLock(f->real, lock);
}

static int batch_unlock(sqlite3_file *file, int lock) {
        BatchFile *f = (BatchFile *) file;
        return f->real->pMethods->xUnlock(f->real, lock);
}

static int batch_check_reserved_lock(sqlite3_file *file, int *ret) {
        BatchFile *f = (BatchFile *) file;
        return f->real->pMethods->xCheckReservedLock(f->real, ret);
}

static int batch_file_control(sqlite3_file *file, int op, void *arg) {
        BatchFile *f = (BatchFile *) file;
        int rc;

        if (op == SQLITE_FCNTL_VFSNAME) {
                rc = f->real->pMethods->xFileControl(f->real, op, arg);
                if (rc == SQLITE_OK && arg && *(char **) arg) {
                        char *name = sqlite3_mprintf(STORE_VFS_NAME "/%z", *(char **) arg);
                        *(char **) arg = name;
                        return name ? SQLITE_OK : SQLITE_NOMEM;
                }
                return rc;
        }
        return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int batch_sector_size(sqlite3_file *file) {
        BatchFile *f = (BatchFile *) file;
        return f->real->pMethods->xSectorSize(f->real);
}

static int batch_device_characteristics(sqlite3_file *file) {
        BatchFile *f = (BatchFile *) file;
        return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int batch_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **ret) {
        BatchFile *f = (BatchFile *) file;
        return f->real->pMethods->xShmMap(f->real, region, size, extend, ret);
}

static int batch_shm_lock(sqlite3_file *file, int offset, int n, int flags) {
        BatchFile *f = (BatchFile *) file;
        return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void batch_shm_barrier(sqlite3_file *file) {
        BatchFile *f = (BatchFile *) file;
        f->real->pMethods->xShmBarrier(f->real);
}

static int batch_shm_unmap(sqlite3_file *file, int delete_flag) {
        BatchFile *f = (BatchFile *) file;
        return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

static int batch_fetch(sqlite3_file *file, sqlite3_int64 offset, int amount, void **ret) {
        BatchFile *f = (BatchFile *) file;
        int rc;

        rc = batch_flush(f);
        if (rc != SQLITE_OK)
                return rc;
        return f->real->pMethods->xFetch(f->real, offset, amount, ret);
}

static int batch_unfetch(sqlite3_file *file, sqlite3_int64 offset, void *p) {
        BatchFile *f = (BatchFile *) file;
        return f->real->pMethods->xUnfetch(f->real, offset, p);
}

static const sqlite3_io_methods batch_io_methods = {
        .iVersion = 3,
        .xClose = batch_close,
        .xRead = batch_read,
        .xWrite = batch_write,
        .xTruncate = batch_truncate,
        .xSync = batch_sync,
        .xFileSize = batch_file_size,
        .xLock = batch_lock,
        .xUnlock = batch_unlock,
        .xCheckReservedLock = batch_check_reserved_lock,
        .xFileControl = batch_file_control,
        .xSectorSize = batch_sector_size,
        .xDeviceCharacteristics = batch_device_characteristics,
        .xShmMap = batch_shm_map,
        .xShmLock = batch_shm_lock,
        .xShmBarrier = batch_shm_barrier,
        .xShmUnmap = batch_shm_unmap,
        .xFetch = batch_fetch,
        .xUnfetch = batch_unfetch,
};

static int batch_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                      int *out_flags) {
        BatchFile *f = (BatchFile *) file;
        int rc;

        *f = (BatchFile){
                .real = (sqlite3_file *) ((char *) file + REAL_FILE_OFFSET),
                .is_wal = flags & SQLITE_OPEN_WAL,
        };
        rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
        if (rc != SQLITE_OK)
                return rc; /* base.pMethods stays NULL: SQLite does not close it */
        /* The forwarders above assume the methods of version 3, which the unix VFS has had since 3.7.17. */
        if (!f->real->pMethods || f->real->pMethods->iVersion < 3) {
                if (f->real->pMethods)
                        (void) f->real->pMethods->xClose(f->real);
                return SQLITE_CANTOPEN;
        }
        f->base.pMethods = &batch_io_methods;
        return SQLITE_OK;
}

/* Everything but opening files is the default VFS's. */
static int batch_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
        return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int batch_access(sqlite3_vfs *vfs, const char *name, int flags, int *ret) {
        return real_vfs->xAccess(real_vfs, name, flags, ret);
}

static int batch_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *ret) {
        return real_vfs->xFullPathname(real_vfs, name, n, ret);
}

static void *batch_dl_open(sqlite3_vfs *vfs, const char *name) {
        return real_vfs->xDlOpen(real_vfs, name);
}

static void batch_dl_error(sqlite3_vfs *vfs, int n, char *ret) {
        real_vfs->xDlError(real_vfs, n, ret);
}

static void (*batch_dl_sym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void) {
        return real_vfs->xDlSym(real_vfs, handle, symbol);
}

static void batch_dl_close(sqlite3_vfs *vfs, void *handle) {
        real_vfs->xDlClose(real_vfs, handle);
}

static int batch_randomness(sqlite3_vfs *vfs, int n, char *ret) {
        return real_vfs->xRandomness(real_vfs, n, ret);
}

static int batch_sleep(sqlite3_vfs *vfs, int usec) {
        return real_vfs->xSleep(real_vfs, usec);
}

static int batch_current_time(sqlite3_vfs *vfs, double *ret) {
        return real_vfs->xCurrentTime(real_vfs, ret);
}

static int batch_get_last_error(sqlite3_vfs *vfs, int n, char *ret) {
        return real_vfs->xGetLastError(real_vfs, n, ret);
}

static int batch_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *ret) {
        return real_vfs->xCurrentTimeInt64(real_vfs, ret);
}

static sqlite3_vfs batch_vfs = {
        .iVersion = 2,
        .zName = STORE_VFS_NAME,
        .xOpen = batch_open,
        .xDelete = batch_delete,
        .xAccess = batch_access,
        .xFullPathname = batch_full_pathname,
        .xDlOpen = batch_dl_open,
        .xDlError = batch_dl_error,
        .xDlSym = batch_dl_sym,
        .xDlClose = batch_dl_close,
        .xRandomness = batch_randomness,
        .xSleep = batch_sleep,
        .xCurrentTime = batch_current_time,
        .xGetLastError = batch_get_last_error,
        .xCurrentTimeInt64 = batch_current_time_int64,
};

static int register_result;

static void register_once(void) {
        real_vfs = sqlite3_vfs_find(NULL);
        if (!real_vfs || real_vfs->iVersion < 2) {
                register_result = SQLITE_ERROR;
                return;
        }
        batch_vfs.szOsFile = (int) REAL_FILE_OFFSET + real_vfs->szOsFile;
        batch_vfs.mxPathname = real_vfs->mxPathname;
        register_result = sqlite3_vfs_register(&batch_vfs, 0);
}

int store_vfs_register(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        (void) pthread_once(&once, register_once);
        return sqlite_result_to_errno(register_result);
}
