/* SPDX-License-Identifier: MIT */
#pragma once

/* The emulated fiscal register: the driver that behaves like a register for development and the tests.
 * Its fiscal memory is a small SQLite file of its own (counters, shifts and their totals, a journal of every
 * document it made, its fiscal drive's validity and OFD exchange), so numbering survives restarts and never
 * repeats; fiscal signs, the FNS QR string, print latency, and the faults and refusals a register gives. */

#include <stdint.h>

#include "device-thread.h"
#include "device-driver.h"

extern const DeviceDriver device_emulator_driver;
/* The same driver, blocking, as its worker thread runs it (for tests that drive it directly). */
extern const DeviceThreadDriver device_emulator_thread_driver;

/* A fiscal drive's validity from its first use, as the emulator models it: 15 months. */
#define DEVICE_EMULATOR_FN_VALIDITY (456 * USEC_PER_DAY)
/* The fiscal drive blocks when a document has waited this long for the OFD's receipt (54-FZ, art. 4.1). */
#define DEVICE_OFD_BLOCK_AFTER (30 * USEC_PER_DAY)

/* The fiscal sign: HMAC-SHA256, keyed with SHA-256 of "kkt-adapter emulator FN key:" and the FN number (so
 * each FN signs differently), over "fd|datetime|total|kind"
 * (datetime in usec, total in kopecks, kind the receipt type's name or "open_shift"/"close_shift"); the
 * first 8 bytes as a big-endian integer modulo 10^10, as 10 decimal digits. Deterministic; -EIO if libcrypto
 * fails. */
int device_emulator_fiscal_sign(const char *fn_number, uint32_t fd, usec_t datetime, int64_t total,
                                const char *kind, char ret[static DEVICE_FISCAL_SIGN_LEN + 1]);

/* The FNS QR string "t=YYYYMMDDTHHMM&s=1500.00&fn=FN&i=FD&fp=FS&n=1", n the settlement (tag 1054: 1 sale,
 * 2 its return, 3 purchase, 4 its return; a correction its settlement's). The time is UTC: the register's
 * clock is kept in UTC here, where a real one prints local time. -ENOBUFS when it does not fit in l. */
int device_emulator_format_qr(char *buf, size_t l, usec_t datetime, int64_t total, const char *fn_number,
                              uint32_t fd, const char *fiscal_sign, ReceiptType type);
