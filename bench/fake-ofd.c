/* SPDX-License-Identifier: MIT */
/* A fast fake OFD for bench/sync-drain.py, where tests/fake-upstream.py (Python threads) would be the
 * bottleneck: POST /ofd/v1/receipt stores the Idempotency-Key (200 for a new one, 409 for a known one),
 * GET /_control/state counts, POST /_control/mode {"mode": "accept"|"fail"} and POST /_control/reset.
 *
 * Usage: fake-ofd [PORT]   (0 or none: a free port, printed as "PORT=<n>"). Loopback only, one libmicrohttpd
 * polling thread, so the key set needs no lock. Exits when stdin reaches EOF, as the Python fake does. */

#include <arpa/inet.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <time.h>

#include "macro.h"

#define OFD_PATH "/ofd/v1/receipt"
#define MAX_BODY (64U * 1024U)
#define MAX_KEY 256U

/* An open-addressing set of the keys stored, grown at half load. */
typedef struct KeySet {
        char **slots;
        size_t n_slots;
        size_t n_keys;
} KeySet;

typedef struct Fake {
        KeySet keys;
        bool failing;
        uint64_t requests;
        uint64_t duplicates;
        uint64_t failed;
        uint64_t rejected;   /* 400: no key or no JSON object */
        uint64_t bytes;      /* request bodies */
        uint64_t connections;
        unsigned open_connections;
        unsigned max_open_connections;
} Fake;

typedef struct Request {
        char *body;
        size_t size;
        bool too_big;
} Request;

static uint64_t hash_key(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037);

        for (; *s; s++)
                h = (h ^ (uint8_t) *s) * UINT64_C(1099511628211);
        return h;
}

static void key_set_done(KeySet *k) {
        for (size_t i = 0; i < k->n_slots; i++)
                free(k->slots[i]);
        k->slots = mfree(k->slots);
        k->n_slots = k->n_keys = 0;
}

static int key_set_grow(KeySet *k) {
        size_t n = k->n_slots > 0 ? k->n_slots * 2 : 1024;
        char **slots = new0(char *, n);

        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < k->n_slots; i++) {
                size_t j;

                if (!k->slots[i])
                        continue;
                for (j = hash_key(k->slots[i]) & (n - 1); slots[j]; j = (j + 1) & (n - 1))
                        ;
                slots[j] = k->slots[i];
        }
        free(k->slots);
        k->slots = slots;
        k->n_slots = n;
        return 0;
}

/* 1: added, 0: it was there, < 0: out of memory. */
static int key_set_add(KeySet *k, const char *key) {
        size_t j;
        int r;

        if (k->n_keys * 2 >= k->n_slots) {
                r = key_set_grow(k);
                if (r < 0)
                        return r;
        }
        for (j = hash_key(key) & (k->n_slots - 1); k->slots[j]; j = (j + 1) & (k->n_slots - 1))
                if (streq(k->slots[j], key))
                        return 0;
        k->slots[j] = strdup(key);
        if (!k->slots[j])
                return -ENOMEM;
        k->n_keys++;
        return 1;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *fmt, ...) _printf_(3, 4);

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *fmt, ...) {
        struct MHD_Response *response;
        enum MHD_Result ret;
        char buf[512];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= sizeof buf)
                return MHD_NO;

        response = MHD_create_response_from_buffer((size_t) n, buf, MHD_RESPMEM_MUST_COPY);
        if (!response)
                return MHD_NO;
        (void) MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        ret = MHD_queue_response(c, status, response);
        MHD_destroy_response(response);
        return ret;
}

static void format_now(char *buf, size_t size) {
        struct timespec ts;
        struct tm tm;
        size_t n;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        n = gmtime_r(&ts.tv_sec, &tm) ? strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm) : 0;
        snprintf(buf + n, size - n, ".%03dZ", (int) (ts.tv_nsec / 1000000L) % 1000);
}

static enum MHD_Result receipt(Fake *f, struct MHD_Connection *c, const Request *req) {
        const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
        char when[32];
        size_t i = 0;
        int r;

        f->requests++;
        if (f->failing) {
                f->failed++;
                return reply(c, 500, "{\"detail\": \"injected failure\"}");
        }
        if (!key || strlen(key) == 0 || strlen(key) > MAX_KEY || strpbrk(key, "\"\\")) {
                f->rejected++;
                return reply(c, 400, "{\"detail\": \"Idempotency-Key header required\"}");
        }
        while (i < req->size && strchr(" \t\r\n", req->body[i]))
                i++;
        if (req->too_big || i >= req->size || req->body[i] != '{' || !strstr(req->body, "\"fiscal_doc\"")) {
                f->rejected++;
                return reply(c, 400, "{\"detail\": \"body is not a receipt\"}");
        }
        f->bytes += req->size;

        r = key_set_add(&f->keys, key);
        if (r < 0)
                return MHD_NO;
        if (r == 0) {
                f->duplicates++;
                return reply(c, 409, "{\"detail\": \"already have it\", \"ofd_id\": \"ofd-%s\"}", key);
        }
        format_now(when, sizeof when);
        return reply(c, 200, "{\"ofd_id\": \"ofd-%s\", \"received_at\": \"%s\"}", key, when);
}

static enum MHD_Result control(Fake *f, struct MHD_Connection *c, const char *method, const char *url,
                               const Request *req) {
        if (streq(method, "GET") && streq(url, "/_control/state"))
                return reply(c, 200,
                             "{\"mode\": \"%s\", \"requests\": %" PRIu64 ", \"count\": %zu, "
                             "\"duplicates\": %" PRIu64 ", \"failed\": %" PRIu64 ", "
                             "\"rejected\": %" PRIu64 ", \"bytes\": %" PRIu64 ", "
                             "\"connections\": %" PRIu64 ", \"max_open_connections\": %u}",
                             f->failing ? "fail" : "accept", f->requests, f->keys.n_keys, f->duplicates,
                             f->failed, f->rejected, f->bytes, f->connections, f->max_open_connections);
        if (streq(method, "POST") && streq(url, "/_control/reset")) {
                key_set_done(&f->keys);
                *f = (Fake) { .open_connections = f->open_connections };
                return reply(c, 200, "{\"status\": \"ok\"}");
        }
        if (streq(method, "POST") && streq(url, "/_control/mode") && req->body) {
                /* The bench's own requests: a substring test is parsing enough. */
                if (strstr(req->body, "\"fail\""))
                        f->failing = true;
                else if (strstr(req->body, "\"accept\""))
                        f->failing = false;
                else
                        return reply(c, 400, "{\"detail\": \"mode: accept or fail\"}");
                return reply(c, 200, "{\"status\": \"ok\", \"mode\": \"%s\"}",
                             f->failing ? "fail" : "accept");
        }
        return reply(c, 404, "{\"detail\": \"not found\"}");
}

static enum MHD_Result on_request(void *userdata, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
        Fake *f = userdata;
        Request *req = *con_cls;

        if (!req) {
                req = new0(Request, 1);
                if (!req)
                        return MHD_NO;
                *con_cls = req;
                return MHD_YES;
        }

        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;

                if (req->too_big || req->size + n > MAX_BODY)
                        req->too_big = true;
                else {
                        char *b = realloc(req->body, req->size + n + 1);

                        if (!b)
                                return MHD_NO;
                        memcpy(b + req->size, upload_data, n);
                        req->size += n;
                        b[req->size] = 0;
                        req->body = b;
                }
                *upload_data_size = 0;
                return MHD_YES;
        }

        if (streq(method, "POST") && streq(url, OFD_PATH))
                return receipt(f, c, req);
        return control(f, c, method, url, req);
}

static void on_completed(void *userdata, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
        Request *req = *con_cls;

        if (req) {
                free(req->body);
                free(req);
        }
        *con_cls = NULL;
}

static void on_connection(void *userdata, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
        Fake *f = userdata;

        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                f->connections++;
                f->open_connections++;
                f->max_open_connections = MAX(f->max_open_connections, f->open_connections);
        } else if (f->open_connections > 0)
                f->open_connections--;
}

int main(int argc, char *argv[]) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        const union MHD_DaemonInfo *info;
        struct MHD_Daemon *d;
        Fake f = {};
        char buf[256];
        long port = 0;

        if (argc > 2 || (argc == 2 && (port = strtol(argv[1], NULL, 10)) < 0) || port > 65535) {
                fprintf(stderr, "Usage: %s [PORT]\n", argv[0]);
                return 2;
        }
        sa.sin_port = htons((uint16_t) port);
        (void) signal(SIGPIPE, SIG_IGN);

        d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG,
                             0, NULL, NULL, on_request, &f,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
                             MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                             MHD_OPTION_NOTIFY_CONNECTION, on_connection, &f,
                             MHD_OPTION_CONNECTION_LIMIT, 256U,
                             MHD_OPTION_CONNECTION_TIMEOUT, 60U,
                             MHD_OPTION_LISTENING_ADDRESS_REUSE, 1U,
                             MHD_OPTION_END);
        if (!d) {
                fprintf(stderr, "Failed to listen on 127.0.0.1:%ld.\n", port);
                return 1;
        }
        info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        printf("PORT=%u\n", info ? (unsigned) info->port : (unsigned) port);
        fflush(stdout);

        while (read(STDIN_FILENO, buf, sizeof buf) > 0)
                ;

        MHD_stop_daemon(d);
        key_set_done(&f.keys);
        return 0;
}
