/* SPDX-License-Identifier: MIT */
#pragma once

/* The emulated fiscal register: the driver that behaves like a register for development and the tests.
 * Its fiscal memory (counters, shift, last document) is a small SQLite file of its own, so numbering
 * survives restarts and never repeats; fiscal signs, the FNS QR string, print latency and faults. */

#include <stdint.h>

#include "device.h"

extern const DeviceDriver device_emulator_driver;

/* The fiscal sign: HMAC-SHA256, keyed with SHA-256 of the FN number, over "fd|datetime|total|type"
 * (datetime in usec, total in kopecks, type by name); the first 8 bytes as a big-endian integer modulo
 * 10^10, as 10 decimal digits. Deterministic; -EIO if libcrypto fails. */
int device_emulator_fiscal_sign(const char *fn_number, uint32_t fd, usec_t datetime, int64_t total,
                                ReceiptType type, char ret[static DEVICE_FISCAL_SIGN_LEN + 1]);

/* The FNS QR string "t=YYYYMMDDTHHMM&s=1500.00&fn=FN&i=FD&fp=FS&n=1" (n=1 sale and correction, n=2
 * refund). The time is UTC: the register's clock is kept in UTC here, where a real one prints local time.
 * -ENOBUFS when it does not fit in l. */
int device_emulator_format_qr(char *buf, size_t l, usec_t datetime, int64_t total, const char *fn_number,
                              uint32_t fd, const char *fiscal_sign, ReceiptType type);
