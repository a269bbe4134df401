/* SPDX-License-Identifier: MIT */
/* The tests' handle on tests/fake-upstream.py: start it as a child on a free loopback port, talk to its
 * /_control API (blocking: the test drives its fixture while the loop under test stands still), stop it. */

#include <curl/curl.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>

#include "fake-upstream-client.h"
#include "json-util.h"
#include "tests.h"

pid_t fake_pid = -1;
unsigned fake_port;
static int fake_stdin = -1;

static const char *fake_script(void) {
        static char path[PATH_MAX];
        const char *e = getenv("KKT_FAKE_UPSTREAM"), *slash;

        if (e)
                return e;
        /* Next to this source file, as the compiler saw it: meson sets $KKT_FAKE_UPSTREAM. */
        slash = strrchr(__FILE__, '/');
        if (slash)
                ASSERT_TRUE(snprintf(path, sizeof path, "%.*s/fake-upstream.py", (int) (slash - __FILE__),
                                     __FILE__) < (int) sizeof path);
        else
                snprintf(path, sizeof path, "fake-upstream.py");
        return path;
}

void fake_start(void) {
        int in[2], out[2];
        char buf[128];
        size_t n = 0;

        if (access("/usr/bin/python3", X_OK) < 0) {
                fprintf(stderr, "/usr/bin/python3 is missing, skipping.\n");
                exit(EXIT_TEST_SKIP);
        }
        ASSERT_TRUE(access(fake_script(), R_OK) == 0);

        ASSERT_OK(pipe2(in, O_CLOEXEC));
        ASSERT_OK(pipe2(out, O_CLOEXEC));
        fake_pid = fork();
        ASSERT_TRUE(fake_pid >= 0);
        if (fake_pid == 0) {
                if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0)
                        _exit(127);
                execl("/usr/bin/python3", "python3", fake_script(), "--port", "0", (char *) NULL);
                _exit(127);
        }
        close(in[0]);
        close(out[1]);
        fake_stdin = in[1];

        /* "PORT=<n>\n" once it listens. */
        while (n < sizeof buf - 1 && !memchr(buf, '\n', n)) {
                ssize_t k = read(out[0], buf + n, sizeof buf - 1 - n);

                ASSERT_TRUE(k > 0);
                n += (size_t) k;
        }
        buf[n] = 0;
        close(out[0]);
        ASSERT_EQ(sscanf(buf, "PORT=%u", &fake_port), 1);
        ASSERT_TRUE(fake_port > 0 && fake_port < 65536);
}

void fake_stop(void) {
        int status;

        /* EOF on its stdin makes it exit. */
        fake_stdin = safe_close(fake_stdin);
        for (unsigned i = 0; i < 500; i++) {
                pid_t p = waitpid(fake_pid, &status, WNOHANG);

                ASSERT_TRUE(p >= 0);
                if (p == fake_pid) {
                        fake_pid = -1;
                        return;
                }
                usleep(10 * 1000);
        }
        (void) kill(fake_pid, SIGKILL);
        (void) waitpid(fake_pid, &status, 0);
        fake_pid = -1;
}

static size_t on_control_body(char *data, size_t size, size_t nmemb, void *userdata) {
        return fwrite(data, size, nmemb, userdata);
}

/* A blocking request to the control API: the test talking to its fixture while the loop stands still. */
json_object *fake_control(const char *method, const char *path, const char *body) {
        _cleanup_free_ char *url = NULL, *response = NULL;
        size_t response_size = 0;
        struct curl_slist *headers = NULL;
        json_object *o;
        long status = 0;
        CURL *c;
        FILE *f;

        ASSERT_TRUE(asprintf(&url, "http://127.0.0.1:%u%s", fake_port, path) > 0);
        f = open_memstream(&response, &response_size);
        ASSERT_NOT_NULL(f);
        c = curl_easy_init();
        ASSERT_NOT_NULL(c);
        headers = curl_slist_append(NULL, "Content-Type: application/json");
        ASSERT_NOT_NULL(headers);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_URL, url), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers), CURLE_OK);
        if (body)
                ASSERT_EQ(curl_easy_setopt(c, CURLOPT_POSTFIELDS, body), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_control_body), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_WRITEDATA, f), CURLE_OK);
        ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
        ASSERT_EQ(curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status), CURLE_OK);
        ASSERT_EQ(status, 200);
        curl_easy_cleanup(c);
        curl_slist_free_all(headers);
        ASSERT_EQ(fclose(f), 0);

        o = json_tokener_parse(response);
        ASSERT_NOT_NULL(o);
        return o;
}

void fake_mode(const char *json) {
        json_object_put(fake_control("POST", "/_control/mode", json));
}

void fake_reset(void) {
        json_object_put(fake_control("POST", "/_control/reset", NULL));
}

json_object *fake_state(const char *target, json_object **ret_root) {
        json_object *root = fake_control("GET", "/_control/state", NULL), *t;

        ASSERT_TRUE(json_object_object_get_ex(root, target, &t));
        *ret_root = root;
        return t;
}

int64_t fake_int(const char *target, const char *key) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        json_object *v;

        ASSERT_TRUE(json_object_object_get_ex(fake_state(target, &root), key, &v));
        return json_object_get_int64(v);
}
