/* SPDX-License-Identifier: MIT */
/* The configuration: defaults, files, drop-in order, environment overrides, every kind of bad value, and the
 * dump that reads back unchanged. */

#include <sys/stat.h>
#include <syslog.h>

#include "conf.h"
#include "tests.h"

static char tmpdir[] = "/tmp/test-conf-XXXXXX";

static const char *const prototype_env[] = {
        "BUFFER_DB_PATH", "OFD_BASE_URL", "OFD_TIMEOUT", "HEARTBEAT_URL", "HEARTBEAT_INTERVAL",
        "HEARTBEAT_TIMEOUT", "STATE_DIRECTORY",
};

static void clear_env(void) {
        for (size_t i = 0; i < ELEMENTSOF(prototype_env); i++)
                unsetenv(prototype_env[i]);
}

/* Returns the file's path, for the caller to free. */
static char *write_file(const char *name, const char *content) {
        char *p;
        FILE *f;

        ASSERT_TRUE(asprintf(&p, "%s/%s", tmpdir, name) > 0);
        f = fopen(p, "we");
        ASSERT_NOT_NULL(f);
        fputs(content, f);
        fclose(f);
        return p;
}

/* Loads `content` as the main file and expects failure with a message containing every fragment. */
static void expect_bad(const char *content, const char *fragment1, const char *fragment2) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_free_ char *path = write_file("bad.conf", content);

        ASSERT_ERROR(config_load(path, &c, &error), EINVAL);
        ASSERT_NULL(c);
        ASSERT_NOT_NULL(error);
        if (!strstr(error, fragment1) || (fragment2 && !strstr(error, fragment2))) {
                fprintf(stderr, "message '%s' lacks '%s' / '%s'\n", error, fragment1, strna(fragment2));
                exit(EXIT_FAILURE);
        }
        ASSERT_TRUE(strstr(error, path) == error); /* names the file first */
}

static void test_defaults_work_out_of_the_box(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL;

        clear_env();
        ASSERT_OK(config_load("/dev/null", &c, &error));
        ASSERT_NULL(error);
        ASSERT_STREQ(c->http_listen, "127.0.0.1:8000");
        ASSERT_EQ_U(c->http_max_body_size, 256 * 1024);
        ASSERT_EQ(c->buffer_capacity, 200);
        ASSERT_EQ(c->buffer_max_items, 1000);
        ASSERT_STREQ(c->buffer_path, PKGSTATEDIR "/buffer.db");
        ASSERT_STREQ(c->ofd_url, "http://localhost:9000");
        ASSERT_EQ_U(c->ofd_timeout, 10 * USEC_PER_SEC);
        ASSERT_STREQ(c->heartbeat_url, "http://localhost:8069/api/v1/kkt/heartbeat");
        ASSERT_EQ_U(c->heartbeat_interval, 30 * USEC_PER_SEC);
        ASSERT_EQ_U(c->heartbeat_timeout, 5 * USEC_PER_SEC);
        ASSERT_EQ(c->heartbeat_online_threshold, 2);
        ASSERT_EQ(c->heartbeat_offline_threshold, 3);
        ASSERT_EQ_U(c->sync_interval, 10 * USEC_PER_SEC);
        ASSERT_EQ(c->sync_batch_size, 50);
        ASSERT_EQ(c->sync_max_attempts, 20);
        ASSERT_EQ(c->sync_failure_threshold, 5);
        ASSERT_EQ_U(c->sync_open_timeout, 60 * USEC_PER_SEC);
        ASSERT_EQ_U(c->buffer_synced_retention, 7 * USEC_PER_DAY);
        ASSERT_EQ_U(c->buffer_dead_letter_retention, 90 * USEC_PER_DAY);
        ASSERT_STREQ(c->device_driver, "emulator");
        ASSERT_STREQ(c->bus_address, "system");
        ASSERT_EQ(c->log_level, LOG_INFO);
        ASSERT_NULL(c->adapter_id);
}

static void test_state_directory_sets_buffer_path(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL;

        clear_env();
        setenv("STATE_DIRECTORY", "/var/lib/kkt-adapter:/var/lib/other", 1);
        ASSERT_OK(config_load("/dev/null", &c, &error));
        ASSERT_STREQ(c->buffer_path, "/var/lib/kkt-adapter/buffer.db");
        clear_env();
}

static void test_file_values_and_units(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_free_ char *path = write_file("good.conf",
                                      "# comment\n"
                                      "[Adapter]\nId=desk-7\nLogLevel=debug\n"
                                      "[HTTP]\nListen=[::1]:8080\nMaxBodySize=64K\nConnectionTimeout=2500ms\n"
                                      "[Buffer]\nPath=/srv/buffer.db\nCapacity=5000\n"
                                      "[Heartbeat]\nInterval=5min\nTimeout=1.5s\nOnlineThreshold=1\n"
                                      "[sync]\nmaxbackoff=1h\n" /* section and key names are case-insensitive */
                                      "[Bus]\nAddress=unix:path=/run/test-bus\n");

        clear_env();
        ASSERT_OK(config_load(path, &c, &error));
        ASSERT_STREQ(c->adapter_id, "desk-7");
        ASSERT_EQ(c->log_level, LOG_DEBUG);
        ASSERT_STREQ(c->http_listen, "[::1]:8080");
        ASSERT_EQ_U(c->http_max_body_size, 64 * 1024);
        ASSERT_EQ_U(c->http_connection_timeout, 2500 * USEC_PER_MSEC);
        ASSERT_STREQ(c->buffer_path, "/srv/buffer.db");
        ASSERT_EQ(c->buffer_capacity, 5000);
        ASSERT_EQ_U(c->heartbeat_interval, 5 * USEC_PER_MINUTE);
        ASSERT_EQ_U(c->heartbeat_timeout, 1500 * USEC_PER_MSEC);
        ASSERT_EQ(c->heartbeat_online_threshold, 1);
        ASSERT_EQ_U(c->sync_max_backoff, USEC_PER_HOUR);
        ASSERT_STREQ(c->bus_address, "unix:path=/run/test-bus");
}

static void test_dropins_apply_in_lexical_order(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *dir = NULL;
        _cleanup_free_ char *path = write_file("order.conf", "[Buffer]\nCapacity=100\nMaxItems=10\n");

        clear_env();
        ASSERT_TRUE(asprintf(&dir, "%s.d", path) > 0);
        ASSERT_OK(mkdir(dir, 0755));
        free(write_file("order.conf.d/20-second.conf", "[Buffer]\nCapacity=300\n"));
        free(write_file("order.conf.d/10-first.conf", "[Buffer]\nCapacity=200\nMaxItems=20\n"));
        free(write_file("order.conf.d/30-ignored.txt", "[Buffer]\nCapacity=999\n")); /* not *.conf */
        free(write_file("order.conf.d/.99-hidden.conf", "[Buffer]\nCapacity=999\n"));

        ASSERT_OK(config_load(path, &c, &error));
        ASSERT_EQ(c->buffer_capacity, 300); /* 20-second.conf wins over 10-first.conf and the main file */
        ASSERT_EQ(c->buffer_max_items, 20);
}

static void test_bad_dropin_names_its_file(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *dir = NULL;
        _cleanup_free_ char *path = write_file("dropbad.conf", "[Buffer]\nCapacity=100\n");

        ASSERT_TRUE(asprintf(&dir, "%s.d", path) > 0);
        ASSERT_OK(mkdir(dir, 0755));
        free(write_file("dropbad.conf.d/50-bad.conf", "\n[Sync]\nBatchSize=0\n"));
        ASSERT_ERROR(config_load(path, &c, &error), EINVAL);
        ASSERT_NOT_NULL(strstr(error, "dropbad.conf.d/50-bad.conf:3: [Sync] BatchSize=0: must be in the range"));
}

static void test_empty_value_resets_to_default(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_free_ char *path = write_file("reset.conf", "[OFD]\nTimeout=3s\nTimeout=\n[Adapter]\nId=x\nId=\n");

        clear_env();
        ASSERT_OK(config_load(path, &c, &error));
        ASSERT_EQ_U(c->ofd_timeout, 10 * USEC_PER_SEC);
        ASSERT_NULL(c->adapter_id);
}

static void test_environment_overrides_files(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_free_ char *path = write_file("env.conf", "[OFD]\nURL=http://file.example:1\nTimeout=3s\n");

        clear_env();
        setenv("BUFFER_DB_PATH", "/tmp/x/buffer.db", 1);
        setenv("OFD_BASE_URL", "https://ofd.example", 1);
        setenv("OFD_TIMEOUT", "15", 1); /* the prototype's seconds */
        setenv("HEARTBEAT_URL", "http://erp.example/hb", 1);
        setenv("HEARTBEAT_INTERVAL", "60", 1);
        setenv("HEARTBEAT_TIMEOUT", "2.5", 1);
        ASSERT_OK(config_load(path, &c, &error));
        ASSERT_STREQ(c->buffer_path, "/tmp/x/buffer.db");
        ASSERT_STREQ(c->ofd_url, "https://ofd.example");
        ASSERT_EQ_U(c->ofd_timeout, 15 * USEC_PER_SEC);
        ASSERT_STREQ(c->heartbeat_url, "http://erp.example/hb");
        ASSERT_EQ_U(c->heartbeat_interval, 60 * USEC_PER_SEC);
        ASSERT_EQ_U(c->heartbeat_timeout, 2500 * USEC_PER_MSEC);
        clear_env();
}

static void test_bad_environment_names_the_variable(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL;

        clear_env();
        setenv("HEARTBEAT_INTERVAL", "soon", 1);
        ASSERT_ERROR(config_load("/dev/null", &c, &error), EINVAL);
        ASSERT_STREQ(error, "environment: HEARTBEAT_INTERVAL=soon: not a time span (expected e.g. 500ms, 30s, 5min)");
        clear_env();
}

static void test_every_kind_of_bad_value(void) {
        clear_env();
        expect_bad("[Nope]\nKey=1\n", ":2: [Nope] Key=1: unknown section", NULL);
        expect_bad("[HTTP]\nListen=127.0.0.1:8000\nNope=1\n", ":3: [HTTP] Nope=1: unknown key", NULL);
        expect_bad("Key=1\n", ":1:", "unknown section");
        expect_bad("[HTTP]\nthis is not ini\n", ":2: syntax error", NULL);
        expect_bad("[HTTP]\nMaxBodySize=12Q\n", ":2: [HTTP] MaxBodySize=12Q: not a size", NULL);
        expect_bad("[HTTP]\nMaxBodySize=1\n", "MaxBodySize=1: must be at least 1K", NULL);
        expect_bad("[HTTP]\nMaxBodySize=1G\n", "must be at most 64M", NULL);
        expect_bad("[HTTP]\nListen=localhost\n", "[HTTP] Listen=localhost: not an address with port", NULL);
        expect_bad("[HTTP]\nListen=127.0.0.1:70000\n", "not an address with port", NULL);
        expect_bad("[Heartbeat]\nInterval=fast\n", "[Heartbeat] Interval=fast: not a time span", NULL);
        expect_bad("[Heartbeat]\nInterval=1ms\n", "must be at least 100ms", NULL);
        expect_bad("[Heartbeat]\nInterval=99999999999999999999s\n", "time span too large", NULL);
        expect_bad("[Heartbeat]\nURL=ftp://erp\n", "[Heartbeat] URL=ftp://erp: not an http:// or https:// URL", NULL);
        expect_bad("[Buffer]\nCapacity=-1\n", "[Buffer] Capacity=-1: not a non-negative integer", NULL);
        expect_bad("[Buffer]\nCapacity=0\n", "must be in the range 1..", NULL);
        expect_bad("[Buffer]\nCapacity=12abc\n", "not a non-negative integer", NULL);
        expect_bad("[Buffer]\nCapacity=99999999999999999999999\n", "not a non-negative integer", NULL);
        expect_bad("[Buffer]\nPath=relative/buffer.db\n", "not an absolute path", NULL);
        expect_bad("[Adapter]\nLogLevel=loud\n", "[Adapter] LogLevel=loud: not a log level", NULL);
        expect_bad("[Adapter]\nId=" "0123456789012345678901234567890123456789012345678901234567890123456789\n",
                   "length must be 0..64", NULL);
        expect_bad("[Device]\nDriver=atol\n", "[Device] Driver=atol: unknown driver", NULL);
        expect_bad("[Bus]\nAddress=nowhere\n", "[Bus] Address=nowhere: not a bus", NULL);
        expect_bad("[Device]\nPrintLatencyMin=2s\nPrintLatencyMax=1s\n", "PrintLatencyMin= must not exceed", NULL);
        expect_bad("[Sync]\nInitialBackoff=10min\nMaxBackoff=1min\n", "InitialBackoff= must not exceed", NULL);
        expect_bad("[HTTP]\nAllowInsecure=maybe\n", "[HTTP] AllowInsecure=maybe: not a boolean", NULL);
        expect_bad("[HTTP]\nAdminToken=../admin\n", "[HTTP] AdminToken=../admin: not a credential name", NULL);
        expect_bad("[HTTP]\nPosToken=pos token\n", "not a credential name", NULL);
        expect_bad("[HTTP]\nTLSKey=..\n", "not a credential name", NULL);
}

/* The HTTP listener's secrets name systemd credentials by default; a path names a file instead. */
static void test_http_access_keys(void) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_free_ char *path = write_file("access.conf",
                                               "[HTTP]\nPosToken=/etc/kkt-adapter/pos\nAdminToken=erp-admin\n"
                                               "TLSKey=/etc/ssl/key.pem\nAllowInsecure=Yes\n");

        clear_env();
        ASSERT_OK(config_load("/dev/null", &c, &error));
        ASSERT_STREQ(c->http_pos_token, "pos-token");
        ASSERT_STREQ(c->http_admin_token, "admin-token");
        ASSERT_STREQ(c->http_tls_certificate, "tls-certificate");
        ASSERT_STREQ(c->http_tls_key, "tls-key");
        ASSERT_FALSE(c->http_allow_insecure);

        ASSERT_OK(config_load(path, &d, &error));
        ASSERT_STREQ(d->http_pos_token, "/etc/kkt-adapter/pos");
        ASSERT_STREQ(d->http_admin_token, "erp-admin");
        ASSERT_STREQ(d->http_tls_certificate, "tls-certificate");
        ASSERT_STREQ(d->http_tls_key, "/etc/ssl/key.pem");
        ASSERT_TRUE(d->http_allow_insecure);
        ASSERT_OK(config_set(d, "HTTP", "AllowInsecure", "off", "test", 1, &error));
        ASSERT_FALSE(d->http_allow_insecure);
        ASSERT_OK(config_set(d, "HTTP", "AllowInsecure", "1", "test", 1, &error));
        ASSERT_TRUE(d->http_allow_insecure);
        /* Empty is the default again. */
        ASSERT_OK(config_set(d, "HTTP", "AllowInsecure", "", "test", 1, &error));
        ASSERT_FALSE(d->http_allow_insecure);
        ASSERT_OK(config_set(d, "HTTP", "PosToken", "", "test", 1, &error));
        ASSERT_STREQ(d->http_pos_token, "pos-token");
}

static void test_unreadable_file(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL;
        char path[600];

        snprintf(path, sizeof path, "%s/does-not-exist.conf", tmpdir);
        ASSERT_ERROR(config_load(path, &c, &error), ENOENT);
        ASSERT_NOT_NULL(strstr(error, "does-not-exist.conf: cannot read"));

        free(error);
        error = NULL;
        ASSERT_ERROR(config_load(tmpdir, &c, &error), EISDIR);
        ASSERT_NOT_NULL(error);
}

static void test_dump_reads_back_unchanged(void) {
        _cleanup_(config_freep) Config *a = NULL, *b = NULL;
        _cleanup_free_ char *error = NULL, *dump_a = NULL, *dump_b = NULL;
        size_t la = 0, lb = 0;
        _cleanup_free_ char *path = write_file("dump-src.conf",
                                               "[HTTP]\nConnectionTimeout=90s\nAllowInsecure=true\n"
                                               "AdminToken=/etc/a\n[Sync]\nMaxBackoff=90500ms\n"
                                               "[Adapter]\nId=desk\n");
        _cleanup_free_ char *dump_path = NULL;
        FILE *f;

        clear_env();
        ASSERT_OK(config_load(path, &a, &error));
        f = open_memstream(&dump_a, &la);
        ASSERT_OK(config_dump(a, f));
        fclose(f);
        ASSERT_NOT_NULL(strstr(dump_a, "[HTTP]\n"));
        ASSERT_NOT_NULL(strstr(dump_a, "ConnectionTimeout=90s\n"));
        ASSERT_NOT_NULL(strstr(dump_a, "MaxBackoff=90500ms\n"));
        ASSERT_NOT_NULL(strstr(dump_a, "AllowInsecure=yes\n"));
        ASSERT_NOT_NULL(strstr(dump_a, "AdminToken=/etc/a\n"));

        dump_path = write_file("dumped.conf", dump_a);
        ASSERT_OK(config_load(dump_path, &b, &error));
        f = open_memstream(&dump_b, &lb);
        ASSERT_OK(config_dump(b, f));
        fclose(f);
        ASSERT_STREQ(dump_a, dump_b);
}

static void test_http_deadlines_and_the_deprecated_connection_timeout(void) {
        _cleanup_free_ char *only_old = write_file("old.conf", "[HTTP]\nConnectionTimeout=2s\n");
        _cleanup_free_ char *both = write_file("both.conf",
                                               "[HTTP]\nIdleTimeout=40s\nConnectionTimeout=2s\nHeaderTimeout=\n");
        _cleanup_free_ char *error = NULL, *dump = NULL;
        size_t l = 0;
        Config *c = NULL;
        FILE *f;

        clear_env();
        /* Defaults: separate deadlines, the old key unset. */
        ASSERT_OK(config_load("/dev/null", &c, &error));
        ASSERT_EQ_U(c->http_header_timeout, 10 * USEC_PER_SEC);
        ASSERT_EQ_U(c->http_body_timeout, 30 * USEC_PER_SEC);
        ASSERT_EQ_U(c->http_idle_timeout, 15 * USEC_PER_SEC);
        ASSERT_EQ_U(c->http_connection_timeout, 0);
        ASSERT_EQ(c->http_max_connections_per_address, 64);
        f = open_memstream(&dump, &l);
        ASSERT_OK(config_dump(c, f));
        fclose(f);
        ASSERT_NOT_NULL(strstr(dump, "\nConnectionTimeout=\n")); /* unset reads back unset */
        c = config_free(c);

        /* A configuration of before: the old key stands for all three. */
        ASSERT_OK(config_load(only_old, &c, &error));
        ASSERT_EQ_U(c->http_header_timeout, 2 * USEC_PER_SEC);
        ASSERT_EQ_U(c->http_body_timeout, 2 * USEC_PER_SEC);
        ASSERT_EQ_U(c->http_idle_timeout, 2 * USEC_PER_SEC);
        c = config_free(c);

        /* One given explicitly wins, before or after it; one reset to empty is given (its default). */
        ASSERT_OK(config_load(both, &c, &error));
        ASSERT_EQ_U(c->http_idle_timeout, 40 * USEC_PER_SEC);
        ASSERT_EQ_U(c->http_header_timeout, 10 * USEC_PER_SEC);
        ASSERT_EQ_U(c->http_body_timeout, 2 * USEC_PER_SEC);
        c = config_free(c);

        expect_bad("[HTTP]\nHeaderTimeout=0\n", "[HTTP] HeaderTimeout=0: must be at least 1s", NULL);
        expect_bad("[HTTP]\nIdleTimeout=2h\n", "must be at most 1h", NULL);
        expect_bad("[HTTP]\nMaxConnectionsPerAddress=0\n", "must be in the range 1..65536", NULL);
}

static void test_config_set_applies_one_key(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL;

        ASSERT_OK(config_new(&c));
        ASSERT_OK(config_set(c, "Sync", "BatchSize", "10", "test", 1, &error));
        ASSERT_EQ(c->sync_batch_size, 10);
        ASSERT_ERROR(config_set(c, "Sync", "BatchSize", "x", "test", 7, &error), EINVAL);
        ASSERT_STREQ(error, "test:7: [Sync] BatchSize=x: not a non-negative integer");
        ASSERT_EQ(c->sync_batch_size, 10); /* unchanged on failure */
}

int main(void) {
        ASSERT_NOT_NULL(mkdtemp(tmpdir));

        TEST_RUN(test_defaults_work_out_of_the_box);
        TEST_RUN(test_state_directory_sets_buffer_path);
        TEST_RUN(test_file_values_and_units);
        TEST_RUN(test_dropins_apply_in_lexical_order);
        TEST_RUN(test_bad_dropin_names_its_file);
        TEST_RUN(test_empty_value_resets_to_default);
        TEST_RUN(test_environment_overrides_files);
        TEST_RUN(test_bad_environment_names_the_variable);
        TEST_RUN(test_every_kind_of_bad_value);
        TEST_RUN(test_http_access_keys);
        TEST_RUN(test_unreadable_file);
        TEST_RUN(test_dump_reads_back_unchanged);
        TEST_RUN(test_http_deadlines_and_the_deprecated_connection_timeout);
        TEST_RUN(test_config_set_applies_one_key);

        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        ASSERT_EQ(system(cmd), 0);
        return 0;
}
