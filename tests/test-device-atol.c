/* SPDX-License-Identifier: MIT */
/* The atol-web driver on a real sd-event loop, through curl-glue, against tests/fake-atol.py: every
 * operation, how every fault of the register is classified, the exact money in the JSON sent, and the
 * decision after a lost answer (the fake dies after committing, after accepting, drops the answer, blocks
 * its queue) that never makes a second document: each case counts the fake's fiscal journal. */

#include <curl/curl.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>

#include "curl-glue.h"
#include "device-atol.h"
#include "json-util.h"
#include "log.h"
#include "tests.h"

/* ---- the fake ---- */

static pid_t fake_pid = -1;
static unsigned fake_port;
static int fake_stdin = -1;
static char state_dir[] = "/tmp/test-device-atol-XXXXXX";
static const char *fake_auth;

static const char *fake_script(void) {
        static char path[PATH_MAX];
        const char *e = getenv("KKT_FAKE_ATOL"), *slash;

        if (e)
                return e;
        slash = strrchr(__FILE__, '/');
        ASSERT_NOT_NULL(slash);
        ASSERT_TRUE(snprintf(path, sizeof path, "%.*s/fake-atol.py", (int) (slash - __FILE__), __FILE__) <
                    (int) sizeof path);
        return path;
}

/* Starts the fake on fake_port (0 the first time: any) with the persistent state in state_dir. */
static void fake_start(void) {
        char port[16], state[PATH_MAX], buf[128];
        int in[2], out[2];
        size_t n = 0;

        ASSERT_TRUE(fake_pid < 0);
        snprintf(port, sizeof port, "%u", fake_port);
        snprintf(state, sizeof state, "%s/fake-atol.json", state_dir);
        ASSERT_OK(pipe2(in, O_CLOEXEC));
        ASSERT_OK(pipe2(out, O_CLOEXEC));
        fake_pid = fork();
        ASSERT_TRUE(fake_pid >= 0);
        if (fake_pid == 0) {
                if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0)
                        _exit(127);
                if (fake_auth)
                        execl("/usr/bin/python3", "python3", fake_script(), "--port", port, "--state", state,
                              "--exit-on-eof", "--auth", fake_auth, (char *) NULL);
                else
                        execl("/usr/bin/python3", "python3", fake_script(), "--port", port, "--state", state,
                              "--exit-on-eof", (char *) NULL);
                _exit(127);
        }
        close(in[0]);
        close(out[1]);
        fake_stdin = in[1];
        while (n < sizeof buf - 1 && !memchr(buf, '\n', n)) {
                ssize_t k = read(out[0], buf + n, sizeof buf - 1 - n);

                ASSERT_TRUE(k > 0);
                n += (size_t) k;
        }
        buf[n] = 0;
        close(out[0]);
        ASSERT_EQ(sscanf(buf, "PORT=%u", &fake_port), 1);
}

/* Reaps the fake after it exited on its own (a planned crash) or kills it (-9). */
static void fake_kill(void) {
        int status;

        if (fake_pid < 0)
                return;
        (void) kill(fake_pid, SIGKILL);
        (void) waitpid(fake_pid, &status, 0);
        fake_pid = -1;
        fake_stdin = safe_close(fake_stdin);
}

static bool fake_exited(void) {
        int status;

        if (fake_pid < 0)
                return true;
        if (waitpid(fake_pid, &status, WNOHANG) == fake_pid) {
                fake_pid = -1;
                fake_stdin = safe_close(fake_stdin);
                return true;
        }
        return false;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
        return fwrite(data, size, nmemb, userdata);
}

/* A blocking request to the fake: the test drives its fixture while the loop under test stands still. */
static json_object *fake_http(const char *method, const char *path, const char *body, long *ret_status) {
        _cleanup_free_ char *url = NULL, *response = NULL;
        struct curl_slist *headers = NULL;
        size_t response_size = 0;
        json_object *o;
        CURL *c;
        FILE *f;

        ASSERT_TRUE(asprintf(&url, "http://127.0.0.1:%u%s", fake_port, path) > 0);
        f = open_memstream(&response, &response_size);
        c = curl_easy_init();
        ASSERT_NOT_NULL(c);
        headers = curl_slist_append(NULL, "Content-Type: application/json");
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_URL, url), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers), CURLE_OK);
        if (fake_auth) {
                ASSERT_EQ(curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC), CURLE_OK);
                ASSERT_EQ(curl_easy_setopt(c, CURLOPT_USERPWD, fake_auth), CURLE_OK);
        }
        if (body)
                ASSERT_EQ(curl_easy_setopt(c, CURLOPT_POSTFIELDS, body), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_WRITEDATA, f), CURLE_OK);
        ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
        ASSERT_EQ(curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, ret_status), CURLE_OK);
        curl_easy_cleanup(c);
        curl_slist_free_all(headers);
        ASSERT_EQ(fclose(f), 0);
        o = json_tokener_parse(response);
        return o;
}

static void control(const char *body) {
        long status = 0;

        json_object_put(fake_http("POST", "/control", body, &status));
        ASSERT_EQ(status, 200);
}

static json_object *fake_get(const char *path) {
        long status = 0;
        json_object *o = fake_http("GET", path, NULL, &status);

        ASSERT_EQ(status, 200);
        ASSERT_NOT_NULL(o);
        return o;
}

/* Fiscal documents in the fake's journal, of one form ("receipt", "openShift", ...; NULL: all), made by
 * requests with the given uuid prefix set (NULL: any). */
static unsigned journal_count(const char *form, const char *receipt_id) {
        _cleanup_(json_object_putp) json_object *j = fake_get("/control/journal");
        json_object *docs = NULL;
        unsigned n = 0;

        ASSERT_TRUE(json_object_object_get_ex(j, "documents", &docs));
        for (size_t i = 0; i < json_object_array_length(docs); i++) {
                json_object *d = json_object_array_get_idx(docs, i), *v;
                bool mine = !receipt_id;

                ASSERT_TRUE(json_object_object_get_ex(d, "form", &v));
                if (form && !streq(json_object_get_string(v), form) &&
                    !(streq(form, "receipt") && streq(json_object_get_string(v), "receiptCorrection")))
                        continue;
                if (receipt_id && json_object_object_get_ex(d, "uuid", &v))
                        for (unsigned k = 0; k < 32 && !mine; k++) {
                                char uuid[DEVICE_ATOL_UUID_MAX];

                                ASSERT_OK(device_atol_receipt_uuid(receipt_id, k, uuid));
                                mine = streq(uuid, json_object_get_string(v));
                        }
                n += mine;
        }
        return n;
}

static int64_t fake_state_int(const char *key) {
        _cleanup_(json_object_putp) json_object *s = fake_get("/control/state");
        json_object *v;

        ASSERT_TRUE(json_object_object_get_ex(s, key, &v));
        return json_object_get_int64(v);
}

/* The last request body the fake received whose uuid is `uuid`, raw. */
static char *fake_body(const char *uuid) {
        _cleanup_(json_object_putp) json_object *j = fake_get("/control/requests");
        json_object *reqs, *v;
        char *found = NULL;

        ASSERT_TRUE(json_object_object_get_ex(j, "requests", &reqs));
        for (size_t i = 0; i < json_object_array_length(reqs); i++) {
                json_object *r = json_object_array_get_idx(reqs, i);

                ASSERT_TRUE(json_object_object_get_ex(r, "uuid", &v));
                if (!streq(json_object_get_string(v), uuid))
                        continue;
                ASSERT_TRUE(json_object_object_get_ex(r, "body", &v));
                free(found);
                found = strdup(json_object_get_string(v));
        }
        ASSERT_NOT_NULL(found);
        return found;
}

/* ---- the driver on a loop ---- */

static sd_event *event;
static CurlGlue *glue;
static void *drv;
static unsigned ticks;
static sd_event_source *tick_source;

typedef struct Outcome {
        bool done;
        unsigned calls;
        DeviceResult result;
} Outcome;

static void on_done(const DeviceResult *result, void *userdata) {
        Outcome *o = userdata;

        o->calls++;
        o->done = true;
        o->result = *result;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        ticks++;
        ASSERT_OK(sd_event_source_set_time_relative(s, 10 * USEC_PER_MSEC));
        ASSERT_OK(sd_event_source_set_enabled(s, SD_EVENT_ONESHOT));
        return 0;
}

static void driver_new(usec_t timeout, const char *token) {
        char url[64];

        snprintf(url, sizeof url, "http://127.0.0.1:%u/", fake_port);
        ASSERT_OK(device_atol_driver.create(&drv, &(DeviceContext){ .event = event, .glue = glue },
                                            &(DeviceOptions){
                                                    .driver = "atol-web",
                                                    .timeout = timeout,
                                                    .url = url,
                                                    .token = token,
                                                    .cashier = "Default Cashier",
                                                    .cashier_inn = "500100732259",
                                            }));
}

static void driver_free(void) {
        device_atol_driver.free(drv);
        drv = NULL;
}

/* Runs one operation to its end on the loop (bounded); done must come exactly once and never from start. */
static DeviceResult run(const DeviceRequest *req) {
        Outcome o = {};
        usec_t deadline = now(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;

        ASSERT_OK(device_atol_driver.start(drv, req, on_done, &o));
        ASSERT_FALSE(o.done);
        while (!o.done) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < deadline);
                ASSERT_OK(sd_event_run(event, 50 * USEC_PER_MSEC));
        }
        /* Nothing more for this operation. */
        for (unsigned i = 0; i < 5; i++)
                ASSERT_OK(sd_event_run(event, 1 * USEC_PER_MSEC));
        ASSERT_EQ(o.calls, 1);
        return o.result;
}

static DeviceResult op(DeviceOperation operation) {
        DeviceResult r = run(&(DeviceRequest){ .op = operation });

        if (r.error < 0 && r.error != -EALREADY)
                fprintf(stderr, "   %s: %s (%s) \"%s\"\n", device_operation_to_string(operation),
                        strerror(-r.error), device_fault_to_string(r.fault), r.message);
        return r;
}

static DeviceResult print(const char *id, const char *json) {
        return run(&(DeviceRequest){ .op = DEVICE_OP_PRINT, .receipt_id = id, .receipt_json = json });
}

static DeviceResult find(const char *id, const char *json) {
        return run(&(DeviceRequest){ .op = DEVICE_OP_FIND, .receipt_id = id, .receipt_json = json });
}

static void assert_fault(const DeviceResult *r, DeviceFault f) {
        if (r->fault != f) {
                fprintf(stderr, "expected fault %s, got %s (%s) \"%s\"\n", device_fault_to_string(f),
                        device_fault_to_string(r->fault), strerror(-r->error), r->message);
                exit(EXIT_FAILURE);
        }
        ASSERT_TRUE(r->error < 0);
}

static void assert_printed(const DeviceResult *r) {
        if (r->error < 0) {
                fprintf(stderr, "print failed: %s (%s) \"%s\"\n", strerror(-r->error),
                        device_fault_to_string(r->fault), r->message);
                exit(EXIT_FAILURE);
        }
        ASSERT_EQ(r->fault, DEVICE_FAULT_NONE);
        ASSERT_TRUE(r->doc.fiscal_document_number > 0);
        ASSERT_EQ(strlen(r->doc.fiscal_sign), DEVICE_FISCAL_SIGN_LEN);
}

/* ---- receipts ---- */

/* A canonical sale: the keys in canonical order, money as decimal strings. */
static const char sale_json[] =
        "{\"pos_id\":\"POS-1\",\"type\":\"sale\",\"type_tag1054\":1,\"taxation\":\"osn\",\"taxation_"
        "tag1055\":1,"
        "\"cashier\":{\"name\":\"Иванова А.\",\"inn\":\"132202672804\"},"
        "\"items\":[{\"name\":\"Lens "
        "\\\"Acuvue\\\"\",\"price\":\"1500.00\",\"quantity\":\"1.000\",\"total\":\"1500.00\","
        "\"vat\":\"vat22\",\"vat_tag1199\":11,\"vat_amount\":\"270.49\",\"payment_method\":\"full_payment\","
        "\"payment_method_tag1214\":4,\"payment_object\":\"commodity\",\"payment_object_tag1212\":1,"
        "\"measure\":\"piece\",\"measure_tag2108\":0,\"mark_code\":\"0104600439931256215&abc\\u001d91FFD0\"}"
        ","
        "{\"name\":\"Solution\",\"price\":\"333.33\",\"quantity\":\"0.750\",\"total\":\"240.00\","
        "\"discount\":\"10.00\","
        "\"vat\":\"vat122\",\"vat_tag1199\":12,\"vat_amount\":\"43.28\",\"payment_method\":\"full_payment\","
        "\"payment_method_tag1214\":4,\"payment_object\":\"commodity\",\"payment_object_tag1212\":1,"
        "\"measure\":\"liter\",\"measure_tag2108\":41}],"
        "\"payments\":[{\"type\":\"card\",\"amount\":\"1000.00\",\"amount_tag\":1081},"
        "{\"type\":\"cash\",\"amount\":\"800.00\",\"amount_tag\":1031}],"
        "\"total\":\"1740.00\",\"change\":\"60.00\",\"vat_amounts\":[],"
        "\"customer\":{\"email\":\"buyer@example.com\"}}";

/* A one-item receipt of any type and amount; correction adds its block. */
static char *receipt(const char *type, const char *amount, const char *payment, int payment_tag,
                     const char *taxation, const char *correction) {
        char *s;

        ASSERT_TRUE(
                asprintf(&s,
                         "{\"pos_id\":\"POS-1\",\"type\":\"%s\",\"type_tag1054\":1,\"taxation\":\"%s\","
                         "\"taxation_tag1055\":%d,%s"
                         "\"items\":[{\"name\":\"Item\",\"price\":\"%s\",\"quantity\":\"1.000\",\"total\":"
                         "\"%s\","
                         "\"vat\":\"vat20\",\"vat_tag1199\":1,\"vat_amount\":\"0.00\","
                         "\"payment_method\":\"full_prepayment\",\"payment_method_tag1214\":1,"
                         "\"payment_object\":\"service\",\"payment_object_tag1212\":4,\"measure\":\"piece\","
                         "\"measure_tag2108\":0}],"
                         "\"payments\":[{\"type\":\"%s\",\"amount\":\"%s\",\"amount_tag\":%d}],"
                         "\"total\":\"%s\",\"vat_amounts\":[]}",
                         type, taxation,
                         streq(taxation, "osn")          ? 1
                         : streq(taxation, "usn_income") ? 2
                                                         : 32,
                         correction ?: "", amount, amount, payment, amount, payment_tag, amount) > 0);
        return s;
}

static char *sale(const char *amount) {
        return receipt("sale", amount, "card", 1081, "osn", NULL);
}

/* ---- tests ---- */

static void test_uuid_is_rfc4122_v5_and_deterministic(void) {
        char a[DEVICE_ATOL_UUID_MAX], b[DEVICE_ATOL_UUID_MAX], c[DEVICE_ATOL_UUID_MAX];

        ASSERT_OK(device_atol_receipt_uuid("r-1", 0, a));
        ASSERT_OK(device_atol_receipt_uuid("r-1", 0, b));
        ASSERT_OK(device_atol_receipt_uuid("r-1", 1, c));
        ASSERT_STREQ(a, b);
        ASSERT_FALSE(streq(a, c));
        ASSERT_EQ(strlen(a), 36);
        ASSERT_EQ(a[14], '5');
        ASSERT_TRUE(strchr("89ab", a[19]) != NULL);
        /* Python: uuid.uuid5(uuid.UUID("2d20aa2a-1fca-43c1-ac47-3ae347156911"), "receipt:r-1:0") */
        ASSERT_STREQ(a, "9576a047-4397-5921-9e6a-998bc0a07b9c");
        ASSERT_OK(device_atol_shift_uuid("close-shift", "9999078902000123", 7, 0, c));
        ASSERT_FALSE(streq(a, c));
}

static void test_task_maps_every_field_with_exact_money(void) {
        _cleanup_free_ char *task = NULL;
        const char *why = NULL;

        ASSERT_OK(device_atol_receipt_task(sale_json, NULL, NULL, &task, &why));
        fprintf(stderr, "%s\n", task);
        ASSERT_NOT_NULL(strstr(task, "\"type\":\"sell\""));
        ASSERT_NOT_NULL(strstr(task, "\"taxationType\":\"osn\""));
        ASSERT_NOT_NULL(strstr(task, "\"operator\":{\"name\":\"Иванова А.\",\"vatin\":\"132202672804\"}"));
        ASSERT_NOT_NULL(strstr(task, "\"clientInfo\":{\"emailOrPhone\":\"buyer@example.com\"}"));
        ASSERT_NOT_NULL(strstr(
                task,
                "\"name\":\"Lens \\\"Acuvue\\\"\",\"price\":1500.00,\"quantity\":1.000,\"amount\":1500.00"));
        ASSERT_NOT_NULL(strstr(task, "\"tax\":{\"type\":\"vat22\"}"));
        ASSERT_NOT_NULL(strstr(task, "\"tax\":{\"type\":\"vat122\"}"));
        ASSERT_NOT_NULL(strstr(
                task, "\"price\":333.33,\"quantity\":0.750,\"amount\":240.00,\"infoDiscountAmount\":10.00"));
        ASSERT_NOT_NULL(strstr(task, "\"paymentMethod\":\"fullPayment\",\"paymentObject\":\"commodity\","
                                     "\"measurementUnit\":\"piece\""));
        ASSERT_NOT_NULL(strstr(task, "\"measurementUnit\":\"liter\""));
        /* base64 of the code with its GS separator */
        ASSERT_NOT_NULL(strstr(
                task,
                "\"imcParams\":{\"imcType\":\"auto\",\"imc\":\"MDEwNDYwMDQzOTkzMTI1NjIxNSZhYmMdOTFGRkQw\","
                "\"itemEstimatedStatus\":\"itemPieceSold\",\"imcModeProcessing\":0}"));
        ASSERT_NOT_NULL(strstr(task, "\"payments\":[{\"type\":\"electronically\",\"sum\":1000.00},{\"type\":"
                                     "\"cash\",\"sum\":800.00}]"));
        ASSERT_NOT_NULL(strstr(task, "\"total\":1740.00"));

        /* The configured cashier when the receipt names none; a correction's fields. */
        {
                _cleanup_free_ char *r = receipt("refund_correction", "10.00", "prepayment", 1215,
                                                 "usn_income",
                                                 "\"correction\":{\"type\":\"by_order\",\"type_tag1173\":1,"
                                                 "\"date\":\"2025-12-30\",\"order_number\":\"ЕД-7/123\"},"),
                                    *t = NULL;

                ASSERT_OK(device_atol_receipt_task(r, "Default", "7714406168", &t, &why));
                ASSERT_NOT_NULL(strstr(t, "\"type\":\"sellReturnCorrection\""));
                ASSERT_NOT_NULL(strstr(t, "\"taxationType\":\"usnIncome\""));
                ASSERT_NOT_NULL(strstr(t, "\"operator\":{\"name\":\"Default\",\"vatin\":\"7714406168\"}"));
                ASSERT_NOT_NULL(
                        strstr(t, "\"correctionType\":\"instruction\",\"correctionBaseDate\":\"2025.12.30\","
                                  "\"correctionBaseNumber\":\"ЕД-7/123\""));
                ASSERT_NOT_NULL(strstr(t, "\"type\":\"prepaid\",\"sum\":10.00"));
                ASSERT_NOT_NULL(
                        strstr(t, "\"paymentMethod\":\"fullPrepayment\",\"paymentObject\":\"service\""));
        }
        /* Every receipt type and payment form. */
        {
                static const struct {
                        const char *type, *task, *payment, *atol;
                        int tag;
                } cases[] = {
                        { "sale", "sell", "cash", "cash", 1031 },
                        { "refund", "sellReturn", "card", "electronically", 1081 },
                        { "purchase", "buy", "credit", "credit", 1216 },
                        { "purchase_refund", "buyReturn", "other", "other", 1217 },
                        { "sale_correction", "sellCorrection", "prepayment", "prepaid", 1215 },
                        { "purchase_correction", "buyCorrection", "cash", "cash", 1031 },
                        { "purchase_refund_correction", "buyReturnCorrection", "cash", "cash", 1031 },
                };
                for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                        _cleanup_free_ char *r = NULL, *t = NULL, *want = NULL, *pay = NULL;
                        bool corr = strstr(cases[i].type, "correction") != NULL;

                        r = receipt(cases[i].type, "0.01", cases[i].payment, cases[i].tag, "patent",
                                    corr ? "\"correction\":{\"type\":\"self\",\"type_tag1173\":0,\"date\":"
                                           "\"2026-01-02\"},"
                                         : NULL);
                        ASSERT_OK(device_atol_receipt_task(r, NULL, NULL, &t, &why));
                        ASSERT_TRUE(asprintf(&want, "{\"type\":\"%s\"", cases[i].task) > 0);
                        ASSERT_TRUE(asprintf(&pay, "{\"type\":\"%s\",\"sum\":0.01}", cases[i].atol) > 0);
                        ASSERT_TRUE(startswith(t, want));
                        ASSERT_NOT_NULL(strstr(t, pay));
                        ASSERT_NOT_NULL(strstr(t, "\"taxationType\":\"patent\""));
                        ASSERT_NULL(strstr(t, "\"operator\""));
                        if (corr)
                                ASSERT_NOT_NULL(strstr(t, "\"correctionType\":\"self\","
                                                          "\"correctionBaseDate\":\"2026.01.02\""));
                }
        }
        /* What the driver refuses to map: a correction without its block, a VAT ATOL has no name for. */
        {
                _cleanup_free_ char *r = receipt("sale_correction", "1.00", "cash", 1031, "osn", NULL),
                                    *t = NULL;

                ASSERT_ERROR(device_atol_receipt_task(r, NULL, NULL, &t, &why), EINVAL);
                ASSERT_NOT_NULL(why);
        }
}

static void test_error_codes_are_classified(void) {
        bool u;

        ASSERT_EQ(device_atol_error_fault(66, &u), DEVICE_FAULT_REJECTED);
        ASSERT_FALSE(u);
        ASSERT_EQ(device_atol_error_fault(143, &u), DEVICE_FAULT_REJECTED);
        ASSERT_EQ(device_atol_error_fault(44, &u), DEVICE_FAULT_PAPER_OUT);
        ASSERT_TRUE(u);
        ASSERT_EQ(device_atol_error_fault(45, &u), DEVICE_FAULT_COVER_OPEN);
        ASSERT_EQ(device_atol_error_fault(68, &u), DEVICE_FAULT_SHIFT_EXPIRED);
        ASSERT_FALSE(u);
        ASSERT_EQ(device_atol_error_fault(141, &u), DEVICE_FAULT_SHIFT_EXPIRED);
        ASSERT_EQ(device_atol_error_fault(121, &u), DEVICE_FAULT_FN_FULL);
        ASSERT_TRUE(u);
        ASSERT_EQ(device_atol_error_fault(2, &u), DEVICE_FAULT_NOT_CONNECTED);
        ASSERT_TRUE(u);
        ASSERT_EQ(device_atol_error_fault(420, &u), DEVICE_FAULT_REJECTED);
        ASSERT_EQ(device_atol_error_fault(9999, &u), DEVICE_FAULT_ERROR);
        ASSERT_TRUE(u);
}

static void test_status_reports_the_register(void) {
        DeviceResult r = op(DEVICE_OP_OPEN);

        ASSERT_OK(r.error);
        ASSERT_TRUE(r.have_status);
        ASSERT_EQ(r.status.condition, DEVICE_FAULT_NONE);
        ASSERT_STREQ(r.status.fn_number, "9999078902000123");
        ASSERT_STREQ(r.status.serial, "00106712345678");
        ASSERT_STREQ(r.status.registration_number, "0000000001002345");
        ASSERT_STREQ(r.status.inn, "7701234567");
        ASSERT_NOT_NULL(strstr(r.status.model, "АТОЛ"));
        ASSERT_EQ(r.status.taxations, TAXATION_OSN | TAXATION_USN_INCOME);
        ASSERT_FALSE(r.status.shift_open);
        ASSERT_TRUE(r.status.fn_valid_until > now(CLOCK_REALTIME));

        control("{\"paper\": false}");
        r = op(DEVICE_OP_STATUS);
        ASSERT_EQ(r.status.condition, DEVICE_FAULT_PAPER_OUT);
        control("{\"paper\": true, \"cover\": true}");
        r = op(DEVICE_OP_STATUS);
        ASSERT_EQ(r.status.condition, DEVICE_FAULT_COVER_OPEN);
        control("{\"clear\": true}");
}

static void test_print_sends_exact_money_and_returns_the_document(void) {
        char uuid[DEVICE_ATOL_UUID_MAX];
        _cleanup_free_ char *body = NULL;
        DeviceResult r;

        r = print("sale-1", sale_json);
        assert_printed(&r);
        ASSERT_EQ(r.doc.total, 174000);
        ASSERT_EQ(r.doc.change, 6000);
        ASSERT_EQ(r.doc.receipt_type, RECEIPT_TYPE_SALE);
        ASSERT_EQ(r.doc.shift_number, 1);
        ASSERT_EQ(r.doc.document_number_in_shift, 1);
        ASSERT_STREQ(r.doc.fn_number, "9999078902000123");
        ASSERT_STREQ(r.doc.inn, "7701234567");
        ASSERT_STREQ(r.doc.receipt_id, "sale-1");
        ASSERT_TRUE(startswith(r.doc.qr, "t=20"));
        ASSERT_NOT_NULL(strstr(r.doc.qr, "&s=1740.00&fn=9999078902000123&i="));
        ASSERT_EQ(journal_count("receipt", "sale-1"), 1);
        /* The shift was opened by the register itself before the receipt. */
        ASSERT_EQ(journal_count("openShift", NULL), 1);

        ASSERT_OK(device_atol_receipt_uuid("sale-1", 0, uuid));
        body = fake_body(uuid);
        ASSERT_TRUE(startswith(body, "{\"uuid\":\""));
        ASSERT_NOT_NULL(strstr(body, "\"request\":[{\"type\":\"getFnStatus\"},{\"type\":\"sell\""));
        ASSERT_NOT_NULL(strstr(body, "\"price\":1500.00,\"quantity\":1.000,\"amount\":1500.00"));
        ASSERT_NOT_NULL(strstr(body, "\"sum\":800.00"));
        ASSERT_NOT_NULL(strstr(body, "\"total\":1740.00"));
}

static void test_print_again_and_find_answer_the_same_document(void) {
        DeviceResult a, b, c;

        a = print("sale-1", sale_json);
        assert_printed(&a);
        b = find("sale-1", sale_json);
        assert_printed(&b);
        ASSERT_EQ(a.doc.fiscal_document_number, b.doc.fiscal_document_number);
        ASSERT_STREQ(a.doc.fiscal_sign, b.doc.fiscal_sign);
        ASSERT_EQ(journal_count("receipt", "sale-1"), 1);

        c = find("never-sent", sale_json);
        ASSERT_ERROR(c.error, ENOENT);
        ASSERT_EQ(c.fault, DEVICE_FAULT_NONE);
}

static void test_every_receipt_type_prints(void) {
        static const char *const types[] = { "refund",
                                             "purchase",
                                             "purchase_refund",
                                             "sale_correction",
                                             "refund_correction",
                                             "purchase_correction",
                                             "purchase_refund_correction" };

        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                _cleanup_free_ char *r = NULL, *id = NULL;
                bool corr = strstr(types[i], "correction") != NULL;
                DeviceResult res;

                r = receipt(types[i], "12.34", "cash", 1031, "usn_income",
                            corr ? "\"correction\":{\"type\":\"self\",\"type_tag1173\":0,\"date\":\"2026-01-"
                                   "02\"},"
                                 : NULL);
                ASSERT_TRUE(asprintf(&id, "type-%zu", i) > 0);
                res = print(id, r);
                assert_printed(&res);
                ASSERT_EQ(res.doc.total, 1234);
                ASSERT_EQ(journal_count("receipt", id), 1);
        }
}

/* Each fault: its classification, nothing made, and the receipt prints once when it clears. */
static void test_faults_are_classified_and_retries_print_once(void) {
        static const struct {
                const char *fault;
                DeviceFault expect;
                const char *message;
        } cases[] = {
                { "wrong_taxation", DEVICE_FAULT_REJECTED, "Некорректная СНО" },
                { "payments_short", DEVICE_FAULT_REJECTED, "Чек оплачен не полностью" },
                { "shift_expired", DEVICE_FAULT_SHIFT_EXPIRED, NULL },
                { "fn_full", DEVICE_FAULT_FN_FULL, NULL },
                { "paper_out_before", DEVICE_FAULT_PAPER_OUT, NULL },
                { "cover_open", DEVICE_FAULT_COVER_OPEN, NULL },
                { "connection_lost_before", DEVICE_FAULT_NOT_CONNECTED, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *id = NULL, *r = sale("99.99"), *c = NULL;
                unsigned before = journal_count("receipt", NULL);
                DeviceResult res;

                fprintf(stderr, "   fault %s\n", cases[i].fault);
                ASSERT_TRUE(asprintf(&id, "fault-%s", cases[i].fault) > 0);
                ASSERT_TRUE(asprintf(&c, "{\"fault\": \"%s\", \"count\": 1}", cases[i].fault) > 0);
                control(c);
                res = print(id, r);
                assert_fault(&res, cases[i].expect);
                if (cases[i].message)
                        ASSERT_STREQ(res.message, cases[i].message);
                ASSERT_EQ(journal_count("receipt", NULL), before);
                control("{\"clear\": true}");

                res = find(id, r);
                ASSERT_ERROR(res.error, ENOENT);
                res = print(id, r);
                assert_printed(&res);
                ASSERT_EQ(journal_count("receipt", id), 1);
        }
}

/* Paper out after the fiscal drive committed: the register says error 44, yet the document exists; the
 * driver finds it instead of printing a second one, and prints the rest of it once paper is back. */
static void test_paper_out_after_commit_is_one_document(void) {
        _cleanup_free_ char *r = sale("250.00");
        DeviceResult a, b;
        int64_t continued;

        control("{\"fault\": \"paper_out_after\", \"count\": 1}");
        a = print("paper-after", r);
        assert_printed(&a);
        ASSERT_EQ(journal_count("receipt", "paper-after"), 1);
        b = print("paper-after", r);
        assert_printed(&b);
        ASSERT_EQ(a.doc.fiscal_document_number, b.doc.fiscal_document_number);
        ASSERT_EQ(journal_count("receipt", "paper-after"), 1);

        /* Paper back: the next operation first prints the rest of the document. */
        continued = fake_state_int("continued");
        control("{\"paper\": true}");
        ASSERT_OK(op(DEVICE_OP_STATUS).error);
        ASSERT_OK(op(DEVICE_OP_REPORT_X).error);
        ASSERT_EQ(fake_state_int("continued"), continued + 1);

        control("{\"fault\": \"not_printed\", \"count\": 1}");
        a = print("not-printed", r);
        assert_printed(&a);
        control("{\"paper\": true}");
        ASSERT_OK(op(DEVICE_OP_REPORT_X).error);
        ASSERT_EQ(fake_state_int("continued"), continued + 2);
        ASSERT_EQ(journal_count("receipt", "not-printed"), 1);

        control("{\"fault\": \"connection_lost_after\", \"count\": 1}");
        a = print("conn-after", r);
        assert_printed(&a);
        ASSERT_EQ(journal_count("receipt", "conn-after"), 1);
        control("{\"clear\": true}");
}

static void restart_fake(void) {
        for (unsigned i = 0; i < 500 && !fake_exited(); i++)
                usleep(10 * 1000);
        fake_kill();
        fake_start();
}

/* The fake dies after committing the document, before the result is stored: the answer is lost. The
 * driver says "unknown"; after the restart FIND finds the document, and PRINT would too. */
static void test_lost_answer_after_commit_is_found(void) {
        _cleanup_free_ char *r = sale("300.00");
        unsigned receipts = journal_count("receipt", NULL);
        DeviceResult a, b;

        control("{\"fault\": \"die_after_commit\", \"count\": 1}");
        a = print("die-commit", r);
        assert_fault(&a, DEVICE_FAULT_TIMEOUT_UNKNOWN);
        restart_fake();
        ASSERT_EQ(journal_count("receipt", NULL), receipts + 1);
        b = find("die-commit", r);
        assert_printed(&b);
        a = print("die-commit", r);
        assert_printed(&a);
        ASSERT_EQ(a.doc.fiscal_document_number, b.doc.fiscal_document_number);
        ASSERT_EQ(journal_count("receipt", "die-commit"), 1);

        /* Dies after accepting, before answering: the request runs after the restart; FIND waits for it. */
        control("{\"fault\": \"die_after_accept\", \"count\": 1}");
        a = print("die-accept", r);
        assert_fault(&a, DEVICE_FAULT_TIMEOUT_UNKNOWN);
        restart_fake();
        b = find("die-accept", r);
        assert_printed(&b);
        ASSERT_EQ(journal_count("receipt", "die-accept"), 1);

        /* The connection closed without an answer, the server alive: GET tells, within the same PRINT. */
        control("{\"fault\": \"drop_answer\", \"count\": 1}");
        a = print("drop-answer", r);
        assert_printed(&a);
        ASSERT_EQ(journal_count("receipt", "drop-answer"), 1);
}

/* A request with our uuid exists already (the web server answers 409): its result is ours. */
static void test_duplicate_uuid_takes_the_existing_result(void) {
        _cleanup_free_ char *r = sale("77.70"), *task = NULL, *body = NULL;
        char uuid[DEVICE_ATOL_UUID_MAX];
        DeviceResult a;
        long status = 0;

        ASSERT_OK(device_atol_receipt_uuid("dup", 0, uuid));
        ASSERT_OK(device_atol_receipt_task(r, NULL, NULL, &task, NULL));
        ASSERT_TRUE(asprintf(&body, "{\"uuid\":\"%s\",\"request\":[{\"type\":\"getFnStatus\"},%s]}", uuid,
                             task) > 0);
        json_object_put(fake_http("POST", "/api/v2/requests", body, &status));
        ASSERT_EQ(status, 201);
        json_object_put(fake_http("POST", "/api/v2/requests", body, &status));
        ASSERT_EQ(status, 409);
        for (unsigned i = 0; i < 200 && journal_count("receipt", "dup") == 0; i++)
                usleep(10 * 1000);

        control("{\"fault\": \"hide_get\", \"count\": 1}"); /* the walk does not see it: POST meets 409 */
        a = print("dup", r);
        assert_printed(&a);
        ASSERT_EQ(journal_count("receipt", "dup"), 1);
        control("{\"clear\": true}");
}

/* A slow server: the loop keeps running (a 10 ms timer ticks) and the operation completes. */
static void test_slow_server_does_not_block_the_loop(void) {
        _cleanup_free_ char *r = sale("10.00");
        DeviceResult a;
        usec_t t0;

        ticks = 0;
        ASSERT_OK(sd_event_source_set_enabled(tick_source, SD_EVENT_ONESHOT));
        control("{\"hang_ms\": 600, \"hang_count\": 2, \"delay_ms\": 300}");
        t0 = now(CLOCK_MONOTONIC);
        a = print("slow", r);
        assert_printed(&a);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t0 >= 1200 * USEC_PER_MSEC);
        fprintf(stderr, "   %u ticks in %" PRIu64 " ms\n", ticks,
                (now(CLOCK_MONOTONIC) - t0) / USEC_PER_MSEC);
        ASSERT_TRUE(ticks >= 60);
        control("{\"clear\": true}");

        /* A hanging server beyond the budget: the operation ends on time with an unknown outcome. */
        driver_free();
        driver_new(2 * USEC_PER_SEC, NULL);
        control("{\"hang_ms\": 4000, \"hang_count\": 1}");
        ticks = 0;
        t0 = now(CLOCK_MONOTONIC);
        a = print("hang", r);
        ASSERT_TRUE(a.error < 0);
        ASSERT_TRUE(IN_SET(a.fault, DEVICE_FAULT_TIMEOUT_UNKNOWN, DEVICE_FAULT_NOT_CONNECTED));
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t0 < 2 * USEC_PER_SEC);
        ASSERT_TRUE(ticks >= 50);
        (void) sd_event_source_set_enabled(tick_source, SD_EVENT_OFF);
        usleep(2500 * 1000); /* the hung request ends at the fake */
        control("{\"clear\": true}");
        a = print("hang", r); /* the walk finds out whether it was taken: once */
        assert_printed(&a);
        ASSERT_EQ(journal_count("receipt", "hang"), 1);
        driver_free();
        driver_new(10 * USEC_PER_SEC, NULL);
}

/* A blocked queue: a request that waits behind it is withdrawn (nothing made for sure), the blocked one
 * stays undecided until the server resolves it. */
static void test_blocked_queue_and_withdrawn_request(void) {
        _cleanup_free_ char *ra = sale("11.00"), *rb = sale("22.00");
        DeviceResult a, b;

        driver_free();
        driver_new(2 * USEC_PER_SEC, NULL);
        control("{\"fault\": \"blocked\", \"count\": 1}");
        a = print("blocked-a", ra);
        assert_fault(&a, DEVICE_FAULT_TIMEOUT_UNKNOWN);
        b = print("blocked-b", rb);
        assert_fault(&b, DEVICE_FAULT_TIMEOUT_BEFORE);
        a = find("blocked-a", ra);
        ASSERT_TRUE(a.error < 0 && a.error != -ENOENT);
        control("{\"unblock\": true}");
        usleep(300 * 1000);
        a = find("blocked-a", ra);
        assert_printed(&a);
        b = print("blocked-b", rb);
        assert_printed(&b);
        ASSERT_EQ(journal_count("receipt", "blocked-a"), 1);
        ASSERT_EQ(journal_count("receipt", "blocked-b"), 1);
        driver_free();
        driver_new(10 * USEC_PER_SEC, NULL);
}

static void test_shift_operations_are_idempotent(void) {
        DeviceResult r, z;
        uint32_t shift;
        unsigned closes;

        /* Close what is open (receipts opened shift 1). */
        r = op(DEVICE_OP_STATUS);
        ASSERT_TRUE(r.status.shift_open);
        shift = r.status.shift_number;
        ASSERT_TRUE(r.status.shift_totals.by_type[RECEIPT_TYPE_SALE].count > 0);
        ASSERT_TRUE(r.status.shift_open_usec > 0);

        r = op(DEVICE_OP_REPORT_X);
        ASSERT_OK(r.error);
        ASSERT_EQ(r.report.type, DEVICE_REPORT_X);
        ASSERT_EQ(r.report.shift_number, shift);
        ASSERT_TRUE(r.report.totals.by_type[RECEIPT_TYPE_SALE].total > 0);

        r = op(DEVICE_OP_OPEN_SHIFT);
        ASSERT_ERROR(r.error, EALREADY);
        ASSERT_EQ(r.report.shift_number, shift);

        closes = journal_count("closeShift", NULL);
        z = run(&(DeviceRequest){ .op = DEVICE_OP_CLOSE_SHIFT, .shift_number = shift, .cashier = "Петров" });
        ASSERT_OK(z.error);
        ASSERT_EQ(z.report.type, DEVICE_REPORT_Z);
        ASSERT_EQ(z.report.shift_number, shift);
        ASSERT_TRUE(z.report.fiscal_document_number > 0);
        ASSERT_EQ(strlen(z.report.fiscal_sign), 10);
        ASSERT_TRUE(z.report.totals.by_type[RECEIPT_TYPE_SALE].count > 0);
        ASSERT_EQ(journal_count("closeShift", NULL), closes + 1);

        /* Again: -EALREADY with the Z it made, never a second one. */
        r = run(&(DeviceRequest){ .op = DEVICE_OP_CLOSE_SHIFT, .shift_number = shift });
        ASSERT_ERROR(r.error, EALREADY);
        ASSERT_EQ(r.fault, DEVICE_FAULT_NONE);
        ASSERT_EQ(r.report.fiscal_document_number, z.report.fiscal_document_number);
        ASSERT_STREQ(r.report.fiscal_sign, z.report.fiscal_sign);
        r = run(&(DeviceRequest){ .op = DEVICE_OP_CLOSE_SHIFT });
        ASSERT_ERROR(r.error, EALREADY);
        r = run(&(DeviceRequest){ .op = DEVICE_OP_CLOSE_SHIFT, .shift_number = shift + 5 });
        ASSERT_ERROR(r.error, ENOENT);
        ASSERT_EQ(journal_count("closeShift", NULL), closes + 1);

        r = op(DEVICE_OP_REPORT_X);
        ASSERT_OK(r.error);
        ASSERT_FALSE(r.report.shift_open);

        r = op(DEVICE_OP_OPEN_SHIFT);
        ASSERT_OK(r.error);
        ASSERT_EQ(r.report.type, DEVICE_REPORT_OPEN);
        ASSERT_EQ(r.report.shift_number, shift + 1);
        ASSERT_TRUE(r.report.fiscal_document_number > z.report.fiscal_document_number);

        /* The Z's answer lost (the fake dies after committing it): asked again, it answers -EALREADY with
         * that Z, found by its uuid. */
        control("{\"fault\": \"die_after_commit\", \"count\": 1}");
        r = run(&(DeviceRequest){ .op = DEVICE_OP_CLOSE_SHIFT, .shift_number = shift + 1 });
        assert_fault(&r, DEVICE_FAULT_TIMEOUT_UNKNOWN);
        restart_fake();
        r = run(&(DeviceRequest){ .op = DEVICE_OP_CLOSE_SHIFT, .shift_number = shift + 1 });
        ASSERT_ERROR(r.error, EALREADY);
        ASSERT_TRUE(r.report.fiscal_document_number > 0);
        ASSERT_EQ(journal_count("closeShift", NULL), closes + 2);

        /* Shift over 24 hours: the status says so, a receipt is refused with that fault. */
        ASSERT_OK(op(DEVICE_OP_OPEN_SHIFT).error);
        control("{\"shift_age_hours\": 25}");
        r = op(DEVICE_OP_STATUS);
        ASSERT_EQ(r.status.condition, DEVICE_FAULT_SHIFT_EXPIRED);
        {
                _cleanup_free_ char *s = sale("1.00");

                r = print("expired", s);
                assert_fault(&r, DEVICE_FAULT_SHIFT_EXPIRED);
                ASSERT_EQ(journal_count("receipt", "expired"), 0);
        }
        r = run(&(DeviceRequest){ .op = DEVICE_OP_CLOSE_SHIFT });
        ASSERT_OK(r.error);
}

static void test_server_down_is_not_connected_and_free_cancels(void) {
        _cleanup_free_ char *r = sale("5.00");
        DeviceResult a;
        Outcome o = {};

        fake_kill();
        a = op(DEVICE_OP_STATUS);
        assert_fault(&a, DEVICE_FAULT_NOT_CONNECTED);
        a = print("down", r);
        assert_fault(&a, DEVICE_FAULT_NOT_CONNECTED);
        fake_start();
        a = print("down", r);
        assert_printed(&a);

        /* free() in the middle of an operation: done once, with -ECANCELED, the outcome unknown. */
        control("{\"delay_ms\": 1000}");
        ASSERT_OK(device_atol_driver.start(
                drv, &(DeviceRequest){ .op = DEVICE_OP_PRINT, .receipt_id = "freed", .receipt_json = r },
                on_done, &o));
        for (unsigned i = 0; i < 20; i++)
                ASSERT_OK(sd_event_run(event, 10 * USEC_PER_MSEC));
        ASSERT_FALSE(o.done);
        driver_free();
        ASSERT_EQ(o.calls, 1);
        ASSERT_ERROR(o.result.error, ECANCELED);
        ASSERT_EQ(o.result.fault, DEVICE_FAULT_TIMEOUT_UNKNOWN);
        control("{\"clear\": true}");
        driver_new(10 * USEC_PER_SEC, NULL);
        usleep(1500 * 1000);
        a = find("freed", r);
        assert_printed(&a);
        ASSERT_EQ(journal_count("receipt", "freed"), 1);
}

static void test_basic_authentication(void) {
        _cleanup_free_ char *r = sale("6.00");
        DeviceResult a;

        driver_free();
        fake_kill();
        fake_auth = "kassa:secret";
        fake_start();
        driver_new(5 * USEC_PER_SEC, NULL);
        a = op(DEVICE_OP_STATUS);
        ASSERT_ERROR(a.error, EACCES);
        driver_free();
        driver_new(5 * USEC_PER_SEC, "kassa:secret");
        a = op(DEVICE_OP_STATUS);
        ASSERT_OK(a.error);
        a = print("auth", r);
        assert_printed(&a);
        driver_free();
        fake_kill();
        fake_auth = NULL;
        fake_start();
        driver_new(10 * USEC_PER_SEC, NULL);
}

int main(void) {
        char path[PATH_MAX];

        if (access("/usr/bin/python3", X_OK) < 0)
                return EXIT_TEST_SKIP;
        log_setup(LOG_TARGET_CONSOLE);
        if (getenv("ATOL_DEBUG"))
                log_set_max_level(LOG_DEBUG);
        ASSERT_TRUE(mkdtemp(state_dir) != NULL);
        ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
        ASSERT_OK(sd_event_new(&event));
        ASSERT_OK(curl_glue_new(&glue, event));
        ASSERT_OK(sd_event_add_time_relative(event, &tick_source, CLOCK_MONOTONIC, 10 * USEC_PER_MSEC, 1,
                                             on_tick, NULL));
        ASSERT_OK(sd_event_source_set_enabled(tick_source, SD_EVENT_OFF));

        TEST_RUN(test_uuid_is_rfc4122_v5_and_deterministic);
        TEST_RUN(test_task_maps_every_field_with_exact_money);
        TEST_RUN(test_error_codes_are_classified);

        fake_start();
        driver_new(10 * USEC_PER_SEC, NULL);
        TEST_RUN(test_status_reports_the_register);
        TEST_RUN(test_print_sends_exact_money_and_returns_the_document);
        TEST_RUN(test_print_again_and_find_answer_the_same_document);
        TEST_RUN(test_every_receipt_type_prints);
        TEST_RUN(test_faults_are_classified_and_retries_print_once);
        TEST_RUN(test_paper_out_after_commit_is_one_document);
        TEST_RUN(test_lost_answer_after_commit_is_found);
        TEST_RUN(test_duplicate_uuid_takes_the_existing_result);
        TEST_RUN(test_slow_server_does_not_block_the_loop);
        TEST_RUN(test_blocked_queue_and_withdrawn_request);
        TEST_RUN(test_shift_operations_are_idempotent);
        TEST_RUN(test_server_down_is_not_connected_and_free_cancels);
        TEST_RUN(test_basic_authentication);

        driver_free();
        fake_kill();
        tick_source = sd_event_source_disable_unref(tick_source);
        glue = curl_glue_free(glue);
        event = sd_event_unref(event);
        snprintf(path, sizeof path, "%s/fake-atol.json", state_dir);
        (void) unlink(path);
        snprintf(path, sizeof path, "%s/fake-atol.json.tmp", state_dir);
        (void) unlink(path);
        (void) rmdir(state_dir);
        return 0;
}
