/* SPDX-License-Identifier: MIT */
/* What the Manager renders from its modules without a bus or a listener: the health verdict and its
 * components (GET /v1/health, kkt_health_state), the prototype's buffer words (network_status,
 * percent_full) and the shift view with no register. A real Store in a temporary directory and intake;
 * the modules not set up stay NULL, as before the Manager starts them. */

#include <limits.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "conf.h"
#include "health.h"
#include "intake.h"
#include "json-util.h"
#include "modules.h"
#include "store.h"
#include "test-loop.h"
#include "test-util.h"
#include "tests.h"
#include "time-util.h"

typedef struct Env {
        char dir[PATH_MAX / 2];
        char db_path[PATH_MAX];
        Modules modules;
        unsigned n_keys;
} Env;

static void env_setup(Env *e, unsigned capacity) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";

        *e = (Env) {};
        snprintf(e->dir, sizeof e->dir, "%s/test-health-XXXXXX", tmp);
        ASSERT_NOT_NULL(mkdtemp(e->dir));
        snprintf(e->db_path, sizeof e->db_path, "%s/buffer.db", e->dir);
        ASSERT_OK(sd_event_new(&e->modules.event));
        ASSERT_OK(config_new(&e->modules.config));
        e->modules.config->buffer_min_free_disk = 0; /* whatever the test machine has left */
        ASSERT_OK(store_open(&e->modules.store, e->modules.event, e->db_path,
                             &(StoreOptions) { .capacity = capacity }));
        ASSERT_OK(intake_new(&e->modules.intake, e->modules.store, &(ReceiptOptions) {}));
}

static void env_teardown(Env *e) {
        TEST_RUN_UNTIL(e->modules.event, store_is_idle(e->modules.store));
        e->modules.store = store_free(e->modules.store);
        e->modules.intake = intake_free(e->modules.intake);
        e->modules.config = config_free(e->modules.config);
        e->modules.event = sd_event_unref(e->modules.event);
        test_rm_rf(e->dir);
}

static void on_stored(Store *s, int error, StoreSubmitOutcome outcome, const StoreReceipt *r, void *userdata) {
        bool *done = userdata;

        ASSERT_OK(error);
        ASSERT_EQ(outcome, STORE_SUBMIT_CREATED);
        *done = true;
}

/* Makes one more receipt durable (pending), as intake would. */
static void env_add_pending(Env *e) {
        char key[32];
        bool done = false;

        snprintf(key, sizeof key, "key-%u", ++e->n_keys);
        ASSERT_OK(store_submit_receipt(e->modules.store,
                                       &(StoreReceiptNew) { .idempotency_key = key,
                                                            .request_hash = key,
                                                            .pos_id = "POS-1",
                                                            .type = "sale",
                                                            .total_kopecks = 100,
                                                            .receipt_data = "{}" },
                                       on_stored, &done));
        TEST_RUN_UNTIL(e->modules.event, done);
}

/* The verdict, and components[name].status in the body. */
static Health health(Env *e, uint64_t dead_letters_open, const char *component, const char **ret_status,
                     json_object **ret_body) {
        json_object *body = NULL, *components, *c, *status;
        Health h;

        ASSERT_OK(health_build(&e->modules, dead_letters_open, &h, &body));
        ASSERT_TRUE(json_object_object_get_ex(body, "status", &status));
        ASSERT_STREQ(json_object_get_string(status), health_to_string(h));
        ASSERT_TRUE(json_object_object_get_ex(body, "components", &components));
        if (component) {
                ASSERT_TRUE(json_object_object_get_ex(components, component, &c));
                ASSERT_TRUE(json_object_object_get_ex(c, "status", &status));
                *ret_status = json_object_get_string(status);
        }
        *ret_body = body;
        return h;
}

static void test_fresh_daemon_is_healthy_without_register_sync_or_heartbeat(void) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        json_object *components, *v;
        const char *status;
        Env e;

        env_setup(&e, 10);
        ASSERT_EQ(health(&e, 0, "store", &status, &body), HEALTH_HEALTHY);
        ASSERT_STREQ(status, "healthy");
        ASSERT_TRUE(json_object_object_get_ex(body, "components", &components));
        /* What is not there is not judged, but the heartbeat is: no verdict yet. */
        ASSERT_FALSE(json_object_object_get_ex(components, "device", NULL));
        ASSERT_FALSE(json_object_object_get_ex(components, "ofd", NULL));
        ASSERT_TRUE(json_object_object_get_ex(components, "heartbeat", NULL));
        ASSERT_TRUE(json_object_object_get_ex(body, "circuit_breaker_state", &v));
        ASSERT_STREQ(json_object_get_string(v), "UNKNOWN");
        ASSERT_TRUE(json_object_object_get_ex(body, "version", NULL));
        env_teardown(&e);
}

static void test_stopping_makes_the_store_unhealthy(void) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        const char *status;
        Env e;

        env_setup(&e, 10);
        e.modules.stopping = true;
        ASSERT_EQ(health(&e, 0, "store", &status, &body), HEALTH_UNHEALTHY);
        ASSERT_STREQ(status, "unhealthy");
        env_teardown(&e);
}

static void test_buffer_fill_degrades_at_80_percent_and_fails_when_full(void) {
        const char *status;
        Env e;

        env_setup(&e, 5);
        for (unsigned i = 0; i < 5; i++) {
                _cleanup_(json_object_putp) json_object *body = NULL;
                Health expected = i < 4 ? HEALTH_HEALTHY : HEALTH_DEGRADED; /* 4 of 5 pending: 80 % */

                ASSERT_EQ(health(&e, 0, "buffer", &status, &body), expected);
                env_add_pending(&e);
        }
        {
                _cleanup_(json_object_putp) json_object *body = NULL;

                ASSERT_EQ(health(&e, 0, "buffer", &status, &body), HEALTH_UNHEALTHY);
                ASSERT_STREQ(status, "unhealthy");
        }
        env_teardown(&e);
}

static void test_more_than_50_open_dead_letters_degrade(void) {
        _cleanup_(json_object_putp) json_object *b1 = NULL, *b2 = NULL, *b3 = NULL;
        const char *status;
        Env e;

        env_setup(&e, 10);
        ASSERT_EQ(health(&e, HEALTH_DEAD_LETTERS_DEGRADED, "dead_letters", &status, &b1), HEALTH_HEALTHY);
        ASSERT_EQ(health(&e, HEALTH_DEAD_LETTERS_DEGRADED + 1, "dead_letters", &status, &b2), HEALTH_DEGRADED);
        ASSERT_STREQ(status, "degraded");
        /* Not counted: the receipts in the DLQ (none here) stand in. */
        ASSERT_EQ(health(&e, UINT64_MAX, "dead_letters", &status, &b3), HEALTH_HEALTHY);
        env_teardown(&e);
}

static void test_buffer_words_follow_the_prototypes_rule(void) {
        Env e;

        env_setup(&e, 4);
        ASSERT_STREQ(modules_network_status(&e.modules), "unknown");
        ASSERT_STREQ(modules_buffer_network_status(&e.modules), "unknown");
        ASSERT_NULL(modules_circuit_state(&e.modules));
        ASSERT_NULL(modules_circuit_state_upper(&e.modules));
        ASSERT_FALSE(modules_ofd_offline(&e.modules));
        {
                _cleanup_(json_object_putp) json_object *p = modules_percent_full_to_json(&e.modules);

                ASSERT_STREQ(json_object_to_json_string(p), "0.00");
        }

        env_add_pending(&e); /* 1 of 4: receipts wait for the OFD */
        ASSERT_STREQ(modules_buffer_network_status(&e.modules), "degraded");
        {
                _cleanup_(json_object_putp) json_object *p = modules_percent_full_to_json(&e.modules);

                ASSERT_STREQ(json_object_to_json_string(p), "25.00");
        }
        env_add_pending(&e); /* half the capacity */
        ASSERT_STREQ(modules_buffer_network_status(&e.modules), "offline");
        env_teardown(&e);
}

static void test_shift_without_a_register_is_not_known(void) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *v;
        Env e;

        env_setup(&e, 4);
        ASSERT_OK(modules_shift_to_json(&e.modules, &o));
        ASSERT_TRUE(json_object_object_get_ex(o, "known", &v));
        ASSERT_FALSE(json_object_get_boolean(v));
        ASSERT_TRUE(json_object_object_get_ex(o, "shift_open", &v));
        ASSERT_FALSE(json_object_get_boolean(v));
        ASSERT_TRUE(json_object_object_get_ex(o, "sales_refused", &v));
        ASSERT_FALSE(json_object_get_boolean(v));
        ASSERT_TRUE(json_object_object_get_ex(o, "totals", NULL));
        env_teardown(&e);
}

int main(void) {
        TEST_RUN(test_fresh_daemon_is_healthy_without_register_sync_or_heartbeat);
        TEST_RUN(test_stopping_makes_the_store_unhealthy);
        TEST_RUN(test_buffer_fill_degrades_at_80_percent_and_fails_when_full);
        TEST_RUN(test_more_than_50_open_dead_letters_degrade);
        TEST_RUN(test_buffer_words_follow_the_prototypes_rule);
        TEST_RUN(test_shift_without_a_register_is_not_known);
        return 0;
}
