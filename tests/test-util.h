/* SPDX-License-Identifier: MIT */
#pragma once

/* What several unit tests need around the code under test: temporary directories made and removed whole. */

/* Removes a directory and everything below it; a failure fails the test. */
void test_rm_rf(const char *path);
