/* SPDX-License-Identifier: MIT */
/* Who may call what over HTTP, as the route table says it (every route is classified on purpose, and the
 * administrative paths are those the D-Bus policy keeps for kkt-admin), and which addresses count as
 * loopback, i.e. may be served without TLS and a POS token. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "http-api.h"
#include "http.h"
#include "tests.h"

static const struct {
        HttpMethod method;
        const char *pattern;
        HttpAccess access;
} expected[] = {
        /* Monitoring and the name: open. */
        { HTTP_GET, "/", HTTP_ACCESS_PUBLIC },
        { HTTP_GET, "/docs", HTTP_ACCESS_PUBLIC },
        { HTTP_GET, "/v1/health", HTTP_ACCESS_PUBLIC },
        { HTTP_GET, "/health", HTTP_ACCESS_PUBLIC },
        { HTTP_GET, "/metrics", HTTP_ACCESS_PUBLIC },
        /* What group kkt-pos may do on the bus, and the status reads. */
        { HTTP_POST, "/v1/kkt/receipt", HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/receipt/*", HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/buffer/status", HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/heartbeat/status", HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/device/status", HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/worker/status", HTTP_ACCESS_POS },
        { HTTP_GET, "/v1/kkt/shift", HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/pos/refund", HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/report/x", HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/x_report", HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/report/z", HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/z_report", HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/shift/close", HTTP_ACCESS_POS },
        { HTTP_POST, "/v1/kkt/shift/open", HTTP_ACCESS_POS },
        /* What only kkt-admin and root may do on the bus. */
        { HTTP_POST, "/v1/kkt/buffer/sync", HTTP_ACCESS_ADMIN },
        { HTTP_GET, "/v1/kkt/dlq", HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/dlq/*/retry", HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/dlq/*/resolve", HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/circuit_breaker/reset", HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/receipt/*/retry", HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/receipt/*/cancel", HTTP_ACCESS_ADMIN },
        { HTTP_GET, "/v1/kkt/receipts/rejected", HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/debug/device/fault", HTTP_ACCESS_ADMIN },
        { HTTP_POST, "/v1/kkt/debug/device/settings", HTTP_ACCESS_ADMIN },
};

static void test_every_route_has_its_intended_access(void) {
        unsigned n = 0;

        for (const HttpRoute *r = http_api_routes; r->pattern; r++, n++) {
                bool found = false;

                for (size_t i = 0; i < ELEMENTSOF(expected); i++) {
                        if (expected[i].method != r->method || !streq(expected[i].pattern, r->pattern))
                                continue;
                        found = true;
                        if (expected[i].access != r->access) {
                                fprintf(stderr, "%s is %s, expected %s\n", r->pattern,
                                        http_access_to_string(r->access),
                                        http_access_to_string(expected[i].access));
                                exit(EXIT_FAILURE);
                        }
                }
                if (!found) {
                        /* A new route: decide who may call it, and say so here and in kkt-adapterd(8). */
                        fprintf(stderr, "route %s is not classified in this test\n", r->pattern);
                        exit(EXIT_FAILURE);
                }
        }
        /* Test builds have the debug hooks: every expected route exists. */
        ASSERT_EQ(n, ELEMENTSOF(expected));
}

static void test_the_unclassified_default_is_admin(void) {
        HttpRoute r = { .method = HTTP_GET, .pattern = "/x" };

        ASSERT_EQ(r.access, HTTP_ACCESS_ADMIN);
        ASSERT_STREQ(http_access_to_string(HTTP_ACCESS_ADMIN), "admin");
        ASSERT_STREQ(http_access_to_string(HTTP_ACCESS_POS), "pos");
        ASSERT_STREQ(http_access_to_string(HTTP_ACCESS_PUBLIC), "public");
}

static bool v4(const char *address) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(8000) };

        ASSERT_EQ(inet_pton(AF_INET, address, &sin.sin_addr), 1);
        return http_sockaddr_is_loopback((struct sockaddr *) &sin, sizeof sin);
}

static bool v6(const char *address) {
        struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(8000) };

        ASSERT_EQ(inet_pton(AF_INET6, address, &sin6.sin6_addr), 1);
        return http_sockaddr_is_loopback((struct sockaddr *) &sin6, sizeof sin6);
}

static void test_loopback_addresses(void) {
        struct sockaddr_un sun = { .sun_family = AF_UNIX, .sun_path = "/run/kkt.sock" };
        struct sockaddr_in short_sin = { .sin_family = AF_INET };

        ASSERT_TRUE(v4("127.0.0.1"));
        ASSERT_TRUE(v4("127.1.2.3"));
        ASSERT_TRUE(v6("::1"));
        ASSERT_TRUE(v6("::ffff:127.0.0.1"));
        ASSERT_TRUE(http_sockaddr_is_loopback((struct sockaddr *) &sun, sizeof sun));

        /* The wildcard reaches every interface. */
        ASSERT_FALSE(v4("0.0.0.0"));
        ASSERT_FALSE(v6("::"));
        ASSERT_FALSE(v4("192.168.1.100"));
        ASSERT_FALSE(v4("10.0.0.1"));
        ASSERT_FALSE(v4("128.0.0.1"));
        ASSERT_FALSE(v6("::ffff:192.168.1.100"));
        ASSERT_FALSE(v6("fe80::1"));
        ASSERT_FALSE(v6("2001:db8::1"));
        /* An address too short to read is not trusted. */
        short_sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_FALSE(http_sockaddr_is_loopback((struct sockaddr *) &short_sin, sizeof(sa_family_t)));
}

int main(void) {
        TEST_RUN(test_every_route_has_its_intended_access);
        TEST_RUN(test_the_unclassified_default_is_admin);
        TEST_RUN(test_loopback_addresses);
        return 0;
}
