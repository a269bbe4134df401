/* SPDX-License-Identifier: MIT */
/* The driver registry and the driver interface's values: every registered name finds its driver and each
 * driver is complete, unknown names find none, the names of faults, states, payment forms, reports and
 * operations go both ways, and the options a driver is given are copied whole, owned, and bounded. */

#include "device-registry.h"
#include "tests.h"

static void test_every_registered_name_finds_a_complete_driver_of_that_name(void) {
        const char *const *names = device_driver_names();
        size_t n = 0;

        ASSERT_NOT_NULL(names);
        for (; names[n]; n++) {
                const DeviceDriver *drv = device_driver_find(names[n]);

                ASSERT_NOT_NULL(drv);
                ASSERT_STREQ(drv->name, names[n]);
                ASSERT_NOT_NULL(drv->create);
                ASSERT_NOT_NULL(drv->start);
                ASSERT_NOT_NULL(drv->free);
                for (size_t i = 0; i < n; i++)
                        ASSERT_FALSE(streq(names[i], names[n]));
        }
        ASSERT_EQ_U(n, 2U);
        /* Asked twice, the same list. */
        ASSERT_TRUE(device_driver_names() == names);
}

static void test_default_driver_is_registered_and_first(void) {
        ASSERT_NOT_NULL(device_driver_find(DEVICE_DRIVER_DEFAULT));
        ASSERT_STREQ(device_driver_names()[0], DEVICE_DRIVER_DEFAULT);
}

static void test_unknown_or_missing_name_finds_no_driver(void) {
        ASSERT_NULL(device_driver_find(NULL));
        ASSERT_NULL(device_driver_find(""));
        ASSERT_NULL(device_driver_find("Emulator"));
        ASSERT_NULL(device_driver_find("atol"));
}

static void test_every_enum_name_maps_back_to_its_value(void) {
        for (DeviceFault f = 0; f < _DEVICE_FAULT_MAX; f++) {
                ASSERT_EQ(device_fault_from_string(device_fault_to_string(f)), f);
                ASSERT_NOT_NULL(device_fault_to_text(f));
        }
        for (DeviceState s = 0; s < _DEVICE_STATE_MAX; s++)
                ASSERT_EQ(device_state_from_string(device_state_to_string(s)), s);
        for (DevicePaymentForm p = 0; p < _DEVICE_PAYMENT_MAX; p++)
                ASSERT_EQ(device_payment_form_from_string(device_payment_form_to_string(p)), p);
        for (DeviceReportType t = 0; t < _DEVICE_REPORT_MAX; t++)
                ASSERT_EQ(device_report_type_from_string(device_report_type_to_string(t)), t);
        for (DeviceOperation o = 0; o < _DEVICE_OP_MAX; o++)
                ASSERT_EQ(device_operation_from_string(device_operation_to_string(o)), o);
}

static void test_out_of_range_values_have_no_name(void) {
        ASSERT_NULL(device_fault_to_string(_DEVICE_FAULT_MAX));
        ASSERT_NULL(device_fault_to_string(_DEVICE_FAULT_INVALID));
        ASSERT_NULL(device_fault_to_text(_DEVICE_FAULT_MAX));
        ASSERT_NULL(device_state_to_string(_DEVICE_STATE_INVALID));
        ASSERT_NULL(device_payment_form_to_string(_DEVICE_PAYMENT_MAX));
        ASSERT_NULL(device_report_type_to_string(_DEVICE_REPORT_MAX));
        ASSERT_NULL(device_operation_to_string(_DEVICE_OP_INVALID));
        ASSERT_EQ(device_payment_form_from_string("electronic"), _DEVICE_PAYMENT_INVALID);
        ASSERT_EQ(device_report_type_from_string(NULL), _DEVICE_REPORT_INVALID);
        ASSERT_EQ(device_operation_from_string("print "), _DEVICE_OP_INVALID);
}

static void test_options_copy_owns_every_string_and_keeps_the_rest(void) {
        char token[] = "user:secret";
        DeviceOptions o = {
                .driver = "atol-web",
                .timeout = 7,
                .serial = "00106100001234",
                .fn_number = "9999078900000001",
                .registration_number = "0000000001012345",
                .inn = "7700000000",
                .cashier = "Иванова",
                .cashier_inn = "770000000001",
                .taxations = 3,
                .emulator_path = "/tmp/fn.db",
                .emulator_fn_capacity = 9,
                .fault = DEVICE_FAULT_PAPER_OUT,
                .fault_count = 2,
                .url = "http://127.0.0.1:1",
                .token = token,
        };
        _cleanup_(device_options_freep) DeviceOptions *c = NULL;

        ASSERT_OK(device_options_copy(&o, &c));
        ASSERT_NOT_NULL(c);
        ASSERT_STREQ(c->driver, "atol-web");
        ASSERT_TRUE(c->driver != o.driver);
        ASSERT_STREQ(c->serial, o.serial);
        ASSERT_STREQ(c->fn_number, o.fn_number);
        ASSERT_STREQ(c->registration_number, o.registration_number);
        ASSERT_STREQ(c->inn, o.inn);
        ASSERT_STREQ(c->cashier, o.cashier);
        ASSERT_STREQ(c->cashier_inn, o.cashier_inn);
        ASSERT_STREQ(c->emulator_path, o.emulator_path);
        ASSERT_STREQ(c->url, o.url);
        ASSERT_TRUE(c->token != token);
        /* The caller's buffer may go away (or be wiped) at once: the copy keeps its own. */
        memset(token, 'x', sizeof token - 1);
        ASSERT_STREQ(c->token, "user:secret");
        ASSERT_EQ_U(c->timeout, 7U);
        ASSERT_EQ_U(c->taxations, 3U);
        ASSERT_EQ_U(c->emulator_fn_capacity, 9U);
        ASSERT_EQ(c->fault, DEVICE_FAULT_PAPER_OUT);
        ASSERT_EQ_U(c->fault_count, 2U);
}

static void test_options_copy_keeps_missing_strings_missing(void) {
        _cleanup_(device_options_freep) DeviceOptions *c = NULL;

        ASSERT_OK(device_options_copy(&(DeviceOptions) {}, &c));
        ASSERT_NULL(c->driver);
        ASSERT_NULL(c->serial);
        ASSERT_NULL(c->token);
        ASSERT_NULL(c->emulator_path);
        ASSERT_NULL(device_options_free(NULL));
}

static void test_options_copy_refuses_identifiers_longer_than_the_ffd_allows(void) {
        DeviceOptions *c = NULL;

        ASSERT_ERROR(device_options_copy(&(DeviceOptions) { .serial = "123456789012345678901" }, &c),
                     EINVAL);
        ASSERT_ERROR(device_options_copy(&(DeviceOptions) { .inn = "1234567890123" }, &c), EINVAL);
        ASSERT_ERROR(device_options_copy(&(DeviceOptions) { .fn_number = "12345678901234567" }, &c), EINVAL);
        /* A failure after some strings were copied frees them (ASan's leak check). */
        ASSERT_ERROR(device_options_copy(&(DeviceOptions) { .serial = "1", .token = "t",
                                                            .cashier_inn = "1234567890123" },
                                         &c),
                     EINVAL);
        ASSERT_NULL(c);
        /* Exactly the limit is fine. */
        ASSERT_OK(device_options_copy(&(DeviceOptions) { .inn = "123456789012" }, &c));
        c = device_options_free(c);
}

int main(void) {
        TEST_RUN(test_every_registered_name_finds_a_complete_driver_of_that_name);
        TEST_RUN(test_default_driver_is_registered_and_first);
        TEST_RUN(test_unknown_or_missing_name_finds_no_driver);
        TEST_RUN(test_every_enum_name_maps_back_to_its_value);
        TEST_RUN(test_out_of_range_values_have_no_name);
        TEST_RUN(test_options_copy_owns_every_string_and_keeps_the_rest);
        TEST_RUN(test_options_copy_keeps_missing_strings_missing);
        TEST_RUN(test_options_copy_refuses_identifiers_longer_than_the_ffd_allows);
        return 0;
}
