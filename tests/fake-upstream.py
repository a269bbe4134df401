#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fake upstreams for the integration tests: the OFD (fiscal data operator) receipt endpoint and the ERP
heartbeat endpoint in one HTTP/1.1 keep-alive server on loopback, with failure modes switched at run time
through a control API on the same port. Python standard library only.

Usage: fake-upstream.py [--port N] [--host 127.0.0.1|::1] [--verbose]
  --port 0 (the default) picks a free port and prints "PORT=<n>" on stdout.
  The server exits on SIGTERM/SIGINT and as soon as its stdin reaches EOF, so give it a pipe as stdin and
  a crashed test cannot leave it running.

Upstream routes:
  POST /ofd/v1/receipt      the OFD. Needs an Idempotency-Key header (400 otherwise) and a JSON body
                            (400 otherwise). A new key is stored: 200 {"ofd_id", "received_at"}; a known key
                            is a duplicate, not stored again: 409 {"detail": "already have it", "ofd_id"}.
  POST /heartbeat, POST <any other path>
                            the ERP heartbeat: the payload is recorded, 200 {"status": "ok"}.
Control routes:
  POST /_control/mode       {"target": "ofd"|"erp", "mode": M, "count": N, "retry_after": S, "delay": S,
                             "status": CODE}
  GET  /_control/state      everything received, per target (see Target.snapshot); "in_flight" and
                            "max_in_flight" count requests not answered yet, "arrivals" has the
                            monotonic time each one came in, to check for overlap
  POST /_control/reset      forget everything, both targets back to "accept"
Modes:
  accept      the default
  fail        500 always
  fail_next   500 for the next "count" requests, then accept
  hang        read the request, never answer; the connection is closed once the client gave up (at most
              120 s)
  status      answer "status" (e.g. 422, 503) with {"detail": ...}; Retry-After when "retry_after" is set
  ratelimit   429 with Retry-After: "retry_after" (default 1)
  drop        read the request (the OFD records it as received: the outcome is unknown to the client), then
              close the connection without answering
  slow        process the request, answer after "delay" seconds (at most 120)
  flap        "count" requests accepted, the next "count" failed with 500, and so on (count default 1)
"Refused" needs no mode: the test stops this server.
"""

import argparse
import datetime
import http.server
import json
import os
import select
import signal
import socket
import sys
import threading
import time

HANG_LIMIT = 120.0
MODES = ("accept", "fail", "fail_next", "hang", "status", "ratelimit", "drop", "slow", "flap")
TARGETS = ("ofd", "erp")
OFD_PATH = "/ofd/v1/receipt"


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class Target:
    """What one fake upstream has received, and the failure mode it is in."""

    def __init__(self, name):
        self.name = name
        self.set_mode({"mode": "accept"})
        self.requests = 0          # every request that reached this target, whatever the answer
        self.keys = []             # OFD: Idempotency-Keys of stored receipts, in arrival order
        self.bodies = []           # stored payloads (parsed JSON when possible)
        self.ofd_ids = {}          # OFD: key -> ofd_id
        self.duplicates = 0        # OFD: requests with a key already stored
        self.duplicate_keys = []
        self.dropped = 0           # connections closed without an answer (drop)
        self.hung = 0              # requests never answered (hang)
        self.statuses = {}         # status code -> how many answers
        self.connections = set()   # serials of the connections that carried a request for this target
        self.in_flight = 0         # requests received and not yet answered (or given up on)
        self.max_in_flight = 0     # the most there ever were at once
        self.arrivals = []         # time.monotonic() of each request, to see how they were spaced
        self.last_authorization = None
        self.last_content_type = None
        self.paths = []

    def set_mode(self, m):
        self.mode = m.get("mode", "accept")
        self.count = int(m.get("count", 1))
        self.remaining = self.count
        self.retry_after = m.get("retry_after")
        self.delay = float(m.get("delay", 0))
        self.status = int(m.get("status", 503))
        self.flap_index = 0

    def decide(self):
        """The behaviour for the next request: "accept", "fail", "hang", "status", "ratelimit", "drop",
        "slow"."""
        if self.mode == "fail_next":
            if self.remaining > 0:
                self.remaining -= 1
                return "fail"
            return "accept"
        if self.mode == "flap":
            n = max(self.count, 1)
            phase = (self.flap_index // n) % 2
            self.flap_index += 1
            return "accept" if phase == 0 else "fail"
        return self.mode

    def snapshot(self):
        return {
            "mode": self.mode,
            "requests": self.requests,
            "count": len(self.bodies),
            "keys": list(self.keys),
            "bodies": list(self.bodies),
            "duplicates": self.duplicates,
            "duplicate_keys": list(self.duplicate_keys),
            "dropped": self.dropped,
            "hung": self.hung,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "connections": len(self.connections),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "arrivals": list(self.arrivals),
            "last_authorization": self.last_authorization,
            "last_content_type": self.last_content_type,
            "paths": list(self.paths),
        }


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.reset()

    def reset(self):
        self.targets = {t: Target(t) for t in TARGETS}
        self.connections = 0
        self.connection_serial = getattr(self, "connection_serial", 0)  # never reused, survives resets
        self.next_ofd_id = 1

    def snapshot(self):
        return {
            "connections": self.connections,
            "ofd": self.targets["ofd"].snapshot(),
            "erp": self.targets["erp"].snapshot(),
        }


STATE = State()


class Handler(http.server.BaseHTTPRequestHandler):
    # Headers and body go out in separate sends: with Nagle on, each answer would wait for the client's
    # delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries a Content-Length
    server_version = "fake-upstream/1"
    verbose = False

    def setup(self):
        super().setup()
        with STATE.lock:
            STATE.connections += 1
            STATE.connection_serial += 1
            self.connection_id = STATE.connection_serial

    def log_message(self, format, *args):
        if self.verbose:
            sys.stderr.write("fake-upstream: %s - %s\n" % (self.address_string(), format % args))

    # ---- plumbing ----

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def reply(self, target, status, obj, headers=None):
        body = json.dumps(obj).encode()
        if target is not None:
            with STATE.lock:
                target.statuses[status] = target.statuses.get(status, 0) + 1
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def wait_for_client_to_give_up(self, limit):
        """Holds the connection without answering until the peer closes it, the limit passes or we stop."""
        deadline = time.monotonic() + limit
        sock = self.connection
        while not STATE.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([sock], [], [], min(left, 0.2))
            if r:
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        break
                except OSError:
                    break
                # The client sent more (a pipelined request): still not answering, but do not spin.
                time.sleep(0.05)
        self.close_connection = True

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---- routes ----

    def do_GET(self):
        if self.path == "/_control/state":
            with STATE.lock:
                snap = STATE.snapshot()
            return self.reply(None, 200, snap)
        self.read_body()
        self.reply(None, 404, {"detail": "not found"})

    def do_POST(self):
        body = self.read_body()
        if self.path.startswith("/_control/"):
            return self.control(body)
        if self.path == OFD_PATH:
            return self.upstream(STATE.targets["ofd"], body)
        return self.upstream(STATE.targets["erp"], body)

    def control(self, body):
        if self.path == "/_control/reset":
            with STATE.lock:
                STATE.reset()
            return self.reply(None, 200, {"status": "ok"})
        if self.path == "/_control/mode":
            try:
                m = json.loads(body or b"{}")
                target = m["target"]
                mode = m["mode"]
                if target not in TARGETS or mode not in MODES:
                    raise ValueError("unknown target or mode")
                int(m.get("count", 1))
                float(m.get("delay", 0))
                int(m.get("status", 503))
            except (ValueError, KeyError, TypeError) as e:
                return self.reply(None, 400, {"detail": "bad mode request: %s" % e})
            with STATE.lock:
                STATE.targets[target].set_mode(m)
            return self.reply(None, 200, {"status": "ok", "target": target, "mode": mode})
        self.reply(None, 404, {"detail": "not found"})

    def upstream(self, t, body):
        # Re-read under the lock: a reset may have replaced the Target objects meanwhile.
        with STATE.lock:
            t = STATE.targets[t.name]
            t.in_flight += 1
            t.max_in_flight = max(t.max_in_flight, t.in_flight)
            t.arrivals.append(time.monotonic())
        try:
            self.upstream_answer(t, body)
        finally:
            with STATE.lock:
                t.in_flight -= 1

    def upstream_answer(self, t, body):
        with STATE.lock:
            t.requests += 1
            t.connections.add(self.connection_id)
            t.paths.append(self.path)
            t.last_authorization = self.headers.get("Authorization")
            t.last_content_type = self.headers.get("Content-Type")
            action = t.decide()
            retry_after = t.retry_after
            delay = min(max(t.delay, 0.0), HANG_LIMIT)
            status = t.status

        if action == "fail":
            return self.reply(t, 500, {"detail": "injected failure"})
        if action == "ratelimit":
            ra = retry_after if retry_after is not None else 1
            return self.reply(t, 429, {"detail": "rate limited"}, {"Retry-After": ra})
        if action == "status":
            hdrs = {"Retry-After": retry_after} if retry_after is not None else None
            return self.reply(t, status, {"detail": "injected status %d" % status}, hdrs)
        if action == "hang":
            with STATE.lock:
                t.hung += 1
            return self.wait_for_client_to_give_up(HANG_LIMIT)

        # accept, slow and drop process the request (drop only for the OFD: the answer is what gets lost).
        if t.name == "ofd":
            status, answer = self.ofd_process(t, body)
        else:
            status, answer = self.erp_process(t, body, record=(action != "drop"))

        if action == "drop":
            with STATE.lock:
                t.dropped += 1
            return self.drop()
        if action == "slow" and delay > 0:
            STATE.stopping.wait(delay)
        self.reply(t, status, answer)

    def ofd_process(self, t, body):
        key = self.headers.get("Idempotency-Key")
        if not key:
            return 400, {"detail": "Idempotency-Key header required"}
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {"detail": "body is not JSON"}
        with STATE.lock:
            if key in t.ofd_ids:
                t.duplicates += 1
                t.duplicate_keys.append(key)
                return 409, {"detail": "already have it", "ofd_id": t.ofd_ids[key]}
            ofd_id = "ofd-%08d" % STATE.next_ofd_id
            STATE.next_ofd_id += 1
            t.ofd_ids[key] = ofd_id
            t.keys.append(key)
            t.bodies.append(payload)
        return 200, {"ofd_id": ofd_id, "received_at": utc_now()}

    def erp_process(self, t, body, record):
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = body.decode(errors="replace")
        if record:
            with STATE.lock:
                t.bodies.append(payload)
        return 200, {"status": "ok"}


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class Server6(Server):
    address_family = socket.AF_INET6


def main():
    p = argparse.ArgumentParser(description="Fake OFD and ERP heartbeat upstream for the tests.")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1", "::1"))
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()

    Handler.verbose = args.verbose
    cls = Server6 if args.host == "::1" else Server
    try:
        server = cls((args.host, args.port), Handler)
    except OSError as e:
        # One line that says why, for tools/run.sh to show (its port is often the one that is taken).
        sys.stderr.write(f"fake-upstream.py: cannot listen on {args.host} port {args.port}: {e.strerror}\n")
        return 1
    port = server.server_address[1]

    def stop(*_):
        STATE.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch_stdin():
        try:
            while os.read(sys.stdin.fileno(), 4096):
                pass
        except OSError:
            pass
        stop()

    threading.Thread(target=watch_stdin, daemon=True).start()
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    serving.start()

    if args.port == 0:
        print("PORT=%d" % port, flush=True)

    while not STATE.stopping.wait(0.5):
        pass

    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
