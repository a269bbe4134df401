#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Slow and idle clients cannot lock others out, against the real daemon: each phase of a connection has its
own deadline that a steady trickle does not extend, a new connection takes the place of the one nearest its
deadline (of its own address, over the per-address limit), oversized headers and chunked bodies get JSON
answers, and a receipt client keeps its latency under a thousand slowloris and a thousand idle connections.

Attackers connect to 127.0.0.1 from other loopback addresses (127.0.0.2, ...) so that the per-address limit
can be kept or broken on purpose. Every swarm and every loop stops by itself."""

import contextlib
import http.client
import json
import os
import resource
import select
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import (DOWN, Daemon, check, check_detail, read_response, run_tests,  # noqa: E402
                     sample_receipt, wait_until)
from slowclients import Swarm  # noqa: E402

BASE = (f"[Bus]\nAddress=none\n"
        f"[Heartbeat]\nURL=http://127.0.0.1:{DOWN}/api/v1/kkt/heartbeat\nInterval=1h\n"
        f"[OFD]\nURL=http://127.0.0.1:{DOWN}/\n")
ANSWER_AT_ONCE = "[Device]\nResponseTimeout=0\nPrintLatencyMin=0\nPrintLatencyMax=0\n"


def config(http="", device=ANSWER_AT_ONCE):
    return BASE + device + "[Buffer]\nCapacity=100000\n[HTTP]\n" + http


@contextlib.contextmanager
def serving(conf, backlog=None):
    """A started daemon, stopped at the end of the block: it must exit 0 without a sanitizer report. With
    `backlog`, its listener has that backlog, as kkt-adapter.socket's (systemd's default is SOMAXCONN)."""
    with Daemon(conf, name="kkt-slow") as d:
        if backlog:
            d.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            d.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            d.listener.bind(("127.0.0.1", 0))
            d.listener.listen(backlog)
            d.port = d.listener.getsockname()[1]
        d.start()
        yield d
        d.stop_clean(timeout=60)


def connect(d, source=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source:
        s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", d.port))
    return s


def slow(d, source=None):
    """A connection that has sent its request line and one header, and not the end of its headers."""
    s = connect(d, source)
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: kkt\r\n")
    return s


def get(s, path="/"):
    """One keep-alive GET on a raw connection: the response, or None when the server closed it."""
    s.sendall(b"GET %s HTTP/1.1\r\nHost: kkt\r\n\r\n" % path.encode())
    return read_response(s)


def is_open(s, wait=0.3):
    """True when the server has not closed the connection within `wait` seconds (nothing is expected)."""
    r, _, _ = select.select([s], [], [], wait)
    if not r:
        return True
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


def closed_after(s, start, limit):
    """Seconds from `start` until the server closes `s`; fails after `limit` seconds."""
    s.settimeout(0.05)
    while time.monotonic() - start < limit:
        try:
            if s.recv(65536) == b"":
                return time.monotonic() - start
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - start
    check(False, f"connection still open {limit} s after it started")


def raw_json(r):
    check(r is not None, "no answer")
    status, headers, body = r
    check(headers.get("content-type", "").startswith("application/json"), f"{status} is not JSON: {headers} {body!r}")
    return status, headers, json.loads(body)


def percentile(values, p):
    s = sorted(values)
    return s[max(0, -(-len(s) * p // 100) - 1)]


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- the swarm --------------------------------------------------------------------------------------------


def test_thousand_slowloris_and_thousand_idle_connections_do_not_delay_receipts():
    if raise_fd_limit(4096) < 2500:
        sys.stderr.write("   skipped: RLIMIT_NOFILE below 2500\n")
        return
    # 40 attacker addresses with 50 connections each: under the per-address limit, so that it is the global
    # limit and the deadlines that hold them. The daemon's listener has kkt-adapter.socket's backlog.
    sources = [f"127.0.0.{2 + k}" for k in range(40)]
    with serving(config(), backlog=socket.SOMAXCONN) as d:
        swarm = Swarm(d.port, slow=1000, idle=1000, sources=sources, interval=5, max_rate=1000, lifetime=60)
        with swarm:
            check(swarm.wait_connected(2000, 30), f"the swarm did not get 2000 connections up: {swarm.snapshot()}")
            time.sleep(1)
            latencies, failures = [], []
            end = time.monotonic() + 10
            i = 0
            while time.monotonic() < end:
                t0 = time.monotonic()
                c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
                try:
                    c.request("POST", "/v1/kkt/receipt", body=sample_receipt(f"POS-{i % 4}").encode(),
                              headers={"Content-Type": "application/json", "Idempotency-Key": f"swarm-{i}"})
                    r = c.getresponse()
                    r.read()
                    status = r.status
                except (OSError, http.client.HTTPException) as e:
                    status = f"{type(e).__name__}: {e}"
                finally:
                    c.close()
                took = time.monotonic() - t0
                if status == 200:
                    latencies.append(took)
                else:
                    failures.append((i, status, round(took, 3)))
                i += 1
            during = swarm.snapshot()
            m = d.metrics()
        check(not failures, f"{len(failures)} of {i} receipts failed under the swarm, e.g. {failures[:5]}")
        check(len(latencies) >= 100, f"only {len(latencies)} receipts in 10 s under the swarm")
        p99 = percentile(latencies, 99)
        sys.stderr.write(f"   {len(latencies)} receipts under 1000 slow + 1000 idle: p50 "
                         f"{percentile(latencies, 50) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max "
                         f"{max(latencies) * 1000:.1f} ms; the server closed {during['closed_by_server']} attacker "
                         f"connections\n")
        check(p99 < 1.0, f"p99 {p99:.3f} s under the swarm")
        check(during["closed_by_server"] >= 1000, f"the server closed only {during['closed_by_server']} attackers")
        check(m["kkt_http_connections"] <= 256 + 64, f"{m['kkt_http_connections']} connections open at the limit")
        db = d.db()
        stored = db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0]
        db.close()
        check(stored == i, f"{stored} receipts stored of {i} posted")
        status, _, h = d.request("GET", "/v1/health")
        check(status == 200, f"health after the swarm: {status} {h}")


# -- eviction and refusal ---------------------------------------------------------------------------------


def test_at_the_limit_a_new_connection_takes_the_place_of_the_one_nearest_its_deadline():
    with serving(config("MaxConnections=4\nHeaderTimeout=20s\nIdleTimeout=60s\nBodyTimeout=60s\n")) as d:
        kept = connect(d)
        r = get(kept)
        check(r is not None and r[0] == 200, f"the kept-alive connection's request answered {r}")
        slows = []
        for _ in range(3):
            slows.append(slow(d))
            time.sleep(0.2)
        check(all(is_open(s) for s in slows + [kept]), "a connection was closed under the limit")
        # Each new one evicts the slow one with the nearest header deadline (20 s), oldest first: the idle
        # one's deadline (60 s) is further away although it was opened first.
        news = []
        for k in range(3):
            n = connect(d)
            r = get(n)
            check(r is not None and r[0] == 200, f"new connection {k} answered {r}")
            news.append(n)
            t = closed_after(slows[k], time.monotonic(), 5)
            check(t < 5, f"slow connection {k} not evicted")
            for later in slows[k + 1:]:
                check(is_open(later), f"a younger slow connection was evicted for new connection {k}")
            check(is_open(kept, 0.05), f"the idle connection was evicted before a slow one (new {k})")
        # Now all four are idle: the longest idle goes.
        n = connect(d)
        r = get(n)
        check(r is not None and r[0] == 200, f"the fifth new connection answered {r}")
        closed_after(kept, time.monotonic(), 5)
        for s in news:
            check(is_open(s, 0.05), "a younger idle connection was evicted before the oldest")
        r = get(news[0])
        check(r is not None and r[0] == 200, f"a surviving connection answered {r}")
        for s in slows + news + [kept, n]:
            s.close()


def post_in_background(d, results, key, source=None):
    def run():
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30,
                                       source_address=(source, 0) if source else None)
        try:
            c.request("POST", "/v1/kkt/receipt", body=sample_receipt().encode(),
                      headers={"Content-Type": "application/json", "Idempotency-Key": key})
            r = c.getresponse()
            r.read()
            results[key] = r.status
        except (OSError, http.client.HTTPException) as e:
            results[key] = repr(e)
        finally:
            c.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# The register takes 2 s a receipt and the answer waits for the print: requests stay with their handler.
SLOW_PRINTER = "[Device]\nResponseTimeout=20s\nPrintLatencyMin=2s\nPrintLatencyMax=2s\n"


def test_when_every_connection_is_busy_a_new_one_is_answered_503():
    with serving(config("MaxConnections=2\n", device=SLOW_PRINTER)) as d:
        results = {}
        threads = [post_in_background(d, results, f"busy-{k}") for k in range(2)]
        time.sleep(0.7)
        s = connect(d)
        status, headers, p = raw_json(get(s))
        check_detail(status, p, 503, "too many connections")
        check(headers.get("retry-after") == "1", f"503 without Retry-After: {headers}")
        check(headers.get("connection", "").lower() == "close", f"503 keeps the connection: {headers}")
        s.close()
        for t in threads:
            t.join(30)
        check(results == {"busy-0": 200, "busy-1": 200}, f"the busy requests answered {results}")
        wait_until(lambda: d.request("GET", "/")[0] == 200, 10, "a free connection after the busy ones")


def test_per_address_limit_evicts_that_address_own_connection():
    with serving(config("MaxConnections=100\nMaxConnectionsPerAddress=3\nHeaderTimeout=20s\n")) as d:
        a = [slow(d, "127.0.0.5") for _ in range(3)]
        b = [slow(d, "127.0.0.6") for _ in range(3)]
        time.sleep(0.2)
        n = connect(d, "127.0.0.5")
        r = get(n)
        check(r is not None and r[0] == 200, f"a fourth connection from 127.0.0.5 answered {r}")
        closed_after(a[0], time.monotonic(), 5)
        check(all(is_open(s, 0.05) for s in a[1:]), "127.0.0.5's younger connections were evicted")
        check(all(is_open(s, 0.05) for s in b), "127.0.0.6's connections were evicted for 127.0.0.5")
        # Loopback counts: 127.0.0.1 has its own three.
        local = [slow(d) for _ in range(3)]
        fourth = connect(d)
        r = get(fourth)
        check(r is not None and r[0] == 200, f"a fourth local connection answered {r}")
        closed_after(local[0], time.monotonic(), 5)
        for s in a + b + local + [n, fourth]:
            s.close()


def test_per_address_limit_with_every_connection_busy_answers_503_naming_the_address():
    with serving(config("MaxConnectionsPerAddress=2\n", device=SLOW_PRINTER)) as d:
        results = {}
        threads = [post_in_background(d, results, f"addr-{k}", "127.0.0.7") for k in range(2)]
        time.sleep(0.7)
        s = connect(d, "127.0.0.7")
        status, headers, p = raw_json(get(s))
        check_detail(status, p, 503, "127.0.0.7")
        check(headers.get("retry-after") == "1", f"503 without Retry-After: {headers}")
        s.close()
        other = connect(d, "127.0.0.8")
        r = get(other)
        check(r is not None and r[0] == 200, f"another address answered {r} while 127.0.0.7 is at its limit")
        other.close()
        for t in threads:
            t.join(30)
        check(results == {"addr-0": 200, "addr-1": 200}, f"the busy requests answered {results}")


# -- deadlines --------------------------------------------------------------------------------------------


def test_header_deadline_holds_against_a_steady_trickle():
    with serving(config("HeaderTimeout=2s\nIdleTimeout=30s\nBodyTimeout=30s\n")) as d:
        start = time.monotonic()
        trickle = slow(d)
        silent = connect(d)
        kept = connect(d)
        check(get(kept)[0] == 200, "keep-alive request")
        stop = threading.Event()

        def drip():
            k = 0
            while not stop.wait(0.25) and k < 40:
                try:
                    trickle.send(b"X-Drip-%d: x\r\n" % k)
                except OSError:
                    return
                k += 1

        t = threading.Thread(target=drip, daemon=True)
        t.start()
        for what, s in (("trickling", trickle), ("silent", silent)):
            took = closed_after(s, start, 8)
            check(1.8 <= took <= 3.5, f"the {what} connection was closed after {took:.2f} s (HeaderTimeout=2s)")
        stop.set()
        t.join()
        check(is_open(kept, 0.5), "an idle kept-alive connection was closed by the header deadline")

        # On a kept-alive connection the headers' clock starts at the request line, not at the last answer.
        answered = time.monotonic()
        time.sleep(1.5)
        kept.sendall(b"GET /v1/health HTTP/1.1\r\n")
        line_sent = time.monotonic()
        for k in range(8):
            time.sleep(0.25)
            try:
                kept.sendall(b"X-Late-%d: x\r\n" % k)
            except OSError:
                break
        took = closed_after(kept, line_sent, 6)
        check(1.8 <= took <= 3.5, f"kept-alive headers closed {took:.2f} s after the request line, "
                                  f"{line_sent - answered + took:.2f} s after the answer")
        for s in (trickle, silent, kept):
            s.close()
        check(d.request("GET", "/v1/health")[0] == 200, "health after the header deadlines")


def test_body_deadline_closes_a_slow_body_and_lets_a_prompt_one_through():
    with serving(config("HeaderTimeout=30s\nBodyTimeout=2s\nIdleTimeout=30s\n")) as d:
        body = sample_receipt("POS-body").encode()
        # Content-Length announced, the body a byte every 100 ms.
        s = connect(d)
        s.sendall(b"POST /v1/kkt/receipt HTTP/1.1\r\nHost: kkt\r\nIdempotency-Key: slow-body\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        start = time.monotonic()
        stop = threading.Event()

        def drip(sock, pieces):
            for piece in pieces:
                if stop.wait(0.1):
                    return
                try:
                    sock.send(piece)
                except OSError:
                    return

        t = threading.Thread(target=drip, args=(s, [body[k:k + 1] for k in range(len(body))]), daemon=True)
        t.start()
        took = closed_after(s, start, 8)
        stop.set()
        t.join()
        check(1.8 <= took <= 3.5, f"a trickled body was closed after {took:.2f} s (BodyTimeout=2s)")
        s.close()

        # The same body in ten pieces over one second is taken.
        s = connect(d)
        s.sendall(b"POST /v1/kkt/receipt HTTP/1.1\r\nHost: kkt\r\nIdempotency-Key: prompt-body\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        step = -(-len(body) // 10)
        for k in range(0, len(body), step):
            time.sleep(0.1)
            s.sendall(body[k:k + step])
        r = read_response(s)
        check(r is not None and r[0] == 200, f"a body sent within its deadline answered {r}")
        s.close()
        db = d.db()
        keys = [k for (k,) in db.execute("SELECT key FROM idempotency_keys")]
        db.close()
        check(keys == ["prompt-body"], f"stored keys {keys}")


def test_idle_deadline_closes_kept_alive_connections_and_a_new_request_restarts_it():
    with serving(config("HeaderTimeout=30s\nBodyTimeout=30s\nIdleTimeout=2s\n")) as d:
        s = connect(d)
        check(get(s)[0] == 200, "first request")
        answered = time.monotonic()
        time.sleep(1.2)
        check(get(s)[0] == 200, "second request on the kept-alive connection")
        again = time.monotonic()
        took = closed_after(s, again, 6)
        check(1.8 <= took <= 3.5, f"idle connection closed {took:.2f} s after its last answer "
                                  f"({again - answered + took:.2f} s after the first; IdleTimeout=2s)")
        s.close()


def test_new_deadlines_apply_to_open_connections_on_reload():
    with serving(config("HeaderTimeout=60s\n")) as d:
        start = time.monotonic()
        s = slow(d)
        time.sleep(1)
        check(is_open(s, 0.05), "the slow connection was closed before the reload")
        d.write_config(config("HeaderTimeout=2s\n"))
        d.signal(signal.SIGHUP)
        took = closed_after(s, start, 8)
        check(took < 4, f"the slow connection outlived the lowered HeaderTimeout= by {took - 2:.1f} s")
        s.close()
        wait_until(lambda: "Configuration reloaded" in d.log_text(), 10, "the reload")


def test_connection_timeout_still_works_for_what_is_not_set():
    with serving(config("ConnectionTimeout=2s\nIdleTimeout=30s\n")) as d:
        check("ConnectionTimeout= is deprecated" in d.log_text(), "no notice about the deprecated key:\n"
              + d.log_text())
        start = time.monotonic()
        silent = connect(d)
        kept = connect(d)
        check(get(kept)[0] == 200, "keep-alive request")
        took = closed_after(silent, start, 8)
        check(1.8 <= took <= 3.5, f"silent connection closed after {took:.2f} s (ConnectionTimeout=2s)")
        check(is_open(kept, 1.5), "IdleTimeout=30s set beside ConnectionTimeout=2s did not win")
        silent.close()
        kept.close()


# -- sizes ------------------------------------------------------------------------------------------------


def test_oversized_headers_get_a_json_431():
    with serving(config("MaxHeaderSize=16K\n")) as d:
        cases = {
            "one 20K header": b"GET /v1/health HTTP/1.1\r\nHost: kkt\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
            "one 64K header": b"GET /v1/health HTTP/1.1\r\nHost: kkt\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n",
            "300 header lines": b"GET /v1/health HTTP/1.1\r\nHost: kkt\r\n" +
                                b"".join(b"X-H%d: %s\r\n" % (k, b"b" * 100) for k in range(300)) + b"\r\n",
            "a 20K request line": b"GET /v1/health?" + b"q" * 20000 + b" HTTP/1.1\r\nHost: kkt\r\n\r\n",
        }
        for what, wire in cases.items():
            s = connect(d)
            s.sendall(wire)
            status, headers, p = raw_json(read_response(s))
            check_detail(status, p, 431, "too large", "16384")
            check(headers.get("connection", "").lower() == "close", f"{what}: 431 keeps the connection")
            s.close()
        # Past the library's memory for a connection (4 x 16K + 16K) it answers by itself: still a 431.
        s = connect(d)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: kkt\r\nX-Huge: " + b"a" * 200000 + b"\r\n\r\n")
        r = read_response(s)
        check(r is not None and r[0] == 431, f"a 200K header answered {r and r[0]}")
        s.close()
        status, _, _ = d.request("GET", "/v1/health", headers={"X-Normal": "a" * 15000})
        check(status == 200, f"a 15K header under the limit answered {status}")


def test_chunked_body_past_the_limit_gets_413_not_a_reset():
    with serving(config()) as d:  # MaxBodySize=256K
        s = connect(d)
        s.sendall(b"POST /v1/kkt/receipt HTTP/1.1\r\nHost: kkt\r\nIdempotency-Key: chunk-2m\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b" " * 65536
        for _ in range(32):  # 2M, eight times the limit
            s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        status, _, p = raw_json(read_response(s, timeout=30))
        check_detail(status, p, 413, "too large")
        s.close()
        db = d.db()
        n = db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0]
        db.close()
        check(n == 0, f"{n} receipts stored from a refused body")


run_tests([
    test_thousand_slowloris_and_thousand_idle_connections_do_not_delay_receipts,
    test_at_the_limit_a_new_connection_takes_the_place_of_the_one_nearest_its_deadline,
    test_when_every_connection_is_busy_a_new_one_is_answered_503,
    test_per_address_limit_evicts_that_address_own_connection,
    test_per_address_limit_with_every_connection_busy_answers_503_naming_the_address,
    test_header_deadline_holds_against_a_steady_trickle,
    test_body_deadline_closes_a_slow_body_and_lets_a_prompt_one_through,
    test_idle_deadline_closes_kept_alive_connections_and_a_new_request_restarts_it,
    test_new_deadlines_apply_to_open_connections_on_reload,
    test_connection_timeout_still_works_for_what_is_not_set,
    test_oversized_headers_get_a_json_431,
    test_chunked_body_past_the_limit_gets_413_not_a_reset,
])
