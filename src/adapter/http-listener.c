/* SPDX-License-Identifier: MIT */
/* Owns libmicrohttpd inside sd-event: one MHD daemon per listening socket in external-epoll mode, its epoll
 * fd as an io source, MHD_get_timeout() as a relative timer and a defer source for answers given; the
 * sockets themselves (bound here without socket activation), and the refusal of a listener on the network
 * without TLS. */

#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <systemd/sd-daemon.h>

#include "http-internal.h"

void http_listener_run_soon(HttpListener *l) {
        int r;

        /* After the loop finished, http_server_free() gives MHD its last run. */
        if (l->server->closing || sd_event_get_state(l->server->event) == SD_EVENT_FINISHED)
                return;
        /* A defer source, not the timer: no timerfd to program, and answers given in one loop iteration
         * share one MHD_run(). */
        r = sd_event_source_set_enabled(l->defer_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to schedule the HTTP server: %m");
}

static void http_on_mhd_log(void *cls, const char *format, va_list ap) {
        HttpServer *s = cls;
        char buf[512];

        if (!s->starting && !ratelimit_below(&s->log_ratelimit, NULL))
                return;
        vsnprintf(buf, sizeof buf, format, ap);
        buf[strcspn(buf, "\n")] = 0;
        log_full(s->starting ? LOG_WARNING : LOG_DEBUG, "HTTP: %s", buf);
}

static void http_listener_arm_timer(HttpListener *l) {
        MHD_UNSIGNED_LONG_LONG ms;
        int r;

        if (MHD_get_timeout(l->daemon, &ms) != MHD_YES) {
                (void) sd_event_source_set_enabled(l->timer_source, SD_EVENT_OFF);
                return;
        }
        if (ms == 0) {
                /* Work already pending (a connection with data MHD has not processed yet): the timer's
                 * coarse accuracy would let it wait up to 250 ms. */
                http_listener_run_soon(l);
                return;
        }
        /* MHD says how long from now, so the timer is relative too. */
        r = sd_event_source_set_time_relative(l->timer_source, (usec_t) ms * USEC_PER_MSEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->timer_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the HTTP timer: %m");
}

static int http_listener_run(HttpListener *l) {
        if (MHD_run(l->daemon) != MHD_YES)
                log_debug("MHD_run() reported a failure.");
        http_listener_arm_timer(l);
        /* Connections came, went and changed phase in that run. */
        http_server_arm_deadlines(l->server);
        return 0;
}

static int http_on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        return http_listener_run(userdata);
}

static int http_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        return http_listener_run(userdata);
}

static int http_on_defer(sd_event_source *source, void *userdata) {
        return http_listener_run(userdata);
}

/* Before the next iteration polls, rather than in an iteration of its own (each costs system calls):
 * the answers given during the last dispatch go out now. */
static int http_on_defer_prepare(sd_event_source *source, void *userdata) {
        (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
        return http_listener_run(userdata);
}

static int http_listener_start(HttpServer *s, HttpListener *l, int fd) {
        const union MHD_DaemonInfo *info;
        int r;

        l->server = s;
        l->fd = fd;

        /* MHD hands the key and certificate to GnuTLS when the daemon starts; our copies outlive it. */
        struct MHD_OptionItem tls_options[] = {
                { MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key },
                { MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_certificate },
                { MHD_OPTION_HTTPS_PRIORITIES, 0, (void *) HTTP_TLS_PRIORITIES },
                { MHD_OPTION_END, 0, NULL },
        };

        s->starting = true;
        l->daemon = MHD_start_daemon(
                MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO |
                        (s->tls_key ? MHD_USE_TLS : 0),
                0, NULL, NULL, http_on_access, l,
                MHD_OPTION_EXTERNAL_LOGGER, http_on_mhd_log, s, /* first, so that no message escapes it */
                MHD_OPTION_LISTEN_SOCKET, fd,
                MHD_OPTION_CONNECTION_LIMIT, s->mhd_connection_limit,
                /* MHD's one timeout counts from a connection's last activity, which a slow client keeps
                 * fresh: the deadlines are ours (http_server_on_deadline()). Its own stays as a backstop,
                 * at the most any of ours may be. */
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) (HTTP_MHD_TIMEOUT / USEC_PER_SEC),
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->mhd_pool_size,
                MHD_OPTION_URI_LOG_CALLBACK, http_on_request_line, l,
                MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, l,
                MHD_OPTION_NOTIFY_CONNECTION, http_on_connection, l,
                MHD_OPTION_ARRAY, s->tls_key ? tls_options : tls_options + 3,
                MHD_OPTION_END);
        s->starting = false;
        if (!l->daemon)
                return -EIO;

        info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info)
                return -EIO;

        r = sd_event_add_io(s->event, &l->io_source, info->epoll_fd, EPOLLIN, http_on_io, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(l->io_source, "http-epoll");

        /* Only MHD's own timeouts (idle connections, in seconds) use the timer: the default accuracy
         * (250 ms) lets sd-event keep the timerfd as it is while every MHD_run() moves the deadline a
         * little. Work due now goes through the defer source instead. */
        r = sd_event_add_time_relative(s->event, &l->timer_source, CLOCK_MONOTONIC, 0, 0, http_on_timer, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(l->timer_source, "http-timer");

        r = sd_event_add_defer(s->event, &l->defer_source, http_on_defer, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(l->defer_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(l->defer_source, "http-run-soon");
        r = sd_event_source_set_prepare(l->defer_source, http_on_defer_prepare);
        if (r < 0)
                return r;
        http_listener_arm_timer(l);
        return 0;
}

void http_listener_done(HttpListener *l) {
        l->io_source = sd_event_source_disable_unref(l->io_source);
        l->timer_source = sd_event_source_disable_unref(l->timer_source);
        l->defer_source = sd_event_source_disable_unref(l->defer_source);
        if (l->daemon) {
                MHD_stop_daemon(l->daemon);
                l->daemon = NULL;
        }
        l->fd = safe_close(l->fd);
}

bool http_sockaddr_is_loopback(const struct sockaddr *sa, socklen_t len) {
        if (sa->sa_family == AF_UNIX)
                return true;
        if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
                return (ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr) >> 24) == 127;
        if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;

                return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        }
        return false; /* the wildcard, a real address, or a family we do not know */
}

/* A listener other machines can reach carries receipts and bearer tokens over the network: only with TLS
 * and a POS token, unless the configuration accepts the risk. */
int http_server_check_exposure(HttpServer *s, const struct sockaddr *sa, socklen_t len,
                               const char *what) {
        const char *missing;

        if (http_sockaddr_is_loopback(sa, len) || (s->tls_key && s->pos_token))
                return 0;
        missing = !s->tls_key && !s->pos_token ? "neither TLS nor a POS token is configured"
                  : !s->tls_key                ? "TLS is not configured"
                                               : "no POS token is configured";
        if (s->options.allow_insecure) {
                log_warning("Serving HTTP on %s, which is not a loopback address, although %s ([HTTP] "
                            "AllowInsecure=yes): anyone on the network can read what crosses it or submit "
                            "receipts.", what, missing);
                return 0;
        }
        return log_error_errno(EPERM,
                               "Refusing to serve HTTP on %s: it is not a loopback address and %s. Set "
                               "[HTTP] TLSCertificate= and TLSKey= (credentials tls-certificate and "
                               "tls-key) and [HTTP] PosToken= (credential pos-token), or [HTTP] "
                               "AllowInsecure=yes to serve it anyway.",
                               what, missing);
}

int http_bind(HttpServer *s, const char *listen_address, int *ret_fd) {
        _cleanup_free_ char *host = NULL;
        _cleanup_close_ int fd = -1;
        struct addrinfo hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
        };
        struct addrinfo *res = NULL;
        const char *colon = strrchr(listen_address, ':');
        int r;

        if (!colon)
                return log_error_errno(EINVAL, "Not an address with a port: %s", listen_address);
        if (listen_address[0] == '[')
                host = strndup(listen_address + 1, (size_t) (colon - listen_address - 2));
        else
                host = strndup(listen_address, (size_t) (colon - listen_address));
        if (!host)
                return log_oom();

        r = getaddrinfo(host, colon + 1, &hints, &res);
        if (r != 0)
                return log_error_errno(r == EAI_SYSTEM ? errno : EADDRNOTAVAIL, "Failed to resolve %s: %s",
                                       listen_address, r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));

        /* Before anything is bound: a refused address is never listened on, not even for a moment. */
        r = http_server_check_exposure(s, res->ai_addr, res->ai_addrlen, listen_address);
        if (r < 0) {
                freeaddrinfo(res);
                return r;
        }

        fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                r = -errno;
                freeaddrinfo(res);
                return r;
        }
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int) { 1 }, sizeof(int));
        if (res->ai_family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int) { 1 }, sizeof(int));
        if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                freeaddrinfo(res);
                return log_error_errno(r, "Failed to listen on %s: %m", listen_address);
        }
        freeaddrinfo(res);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int http_describe_fd(int fd, char **ret) {
        struct sockaddr_storage ss;
        socklen_t l = sizeof ss;
        char host[INET6_ADDRSTRLEN];

        if (getsockname(fd, (struct sockaddr *) &ss, &l) < 0)
                return -errno;
        if (ss.ss_family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *) &ss;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
                return asprintf(ret, "%s:%u", host, ntohs(in->sin_port)) < 0 ? -ENOMEM : 0;
        }
        if (ss.ss_family == AF_INET6) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
                return asprintf(ret, "[%s]:%u", host, ntohs(in6->sin6_port)) < 0 ? -ENOMEM : 0;
        }
        return asprintf(ret, "fd %i", fd) < 0 ? -ENOMEM : 0;
}

int http_server_add_listener(HttpServer *s, int fd) {
        _cleanup_free_ char *d = NULL;
        HttpListener *l;
        int r;

        l = reallocarray(s->listeners, s->n_listeners + 1, sizeof(HttpListener));
        if (!l)
                return -ENOMEM;
        s->listeners = l;
        l = &s->listeners[s->n_listeners];
        *l = (HttpListener) { .fd = -1 };
        s->n_listeners++;

        r = http_listener_start(s, l, fd);
        if (r < 0)
                return r;

        if (http_describe_fd(fd, &d) >= 0) {
                char *joined;
                if (asprintf(&joined, "%s%s%s", strempty(s->description), s->description ? ", " : "", d) >= 0) {
                        free(s->description);
                        s->description = joined;
                }
        }
        return 0;
}
