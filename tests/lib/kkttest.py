# SPDX-License-Identifier: MIT
"""Starts the real kkt-adapterd the way systemd would, for the integration tests.

The daemon gets its HTTP listener as fd 3 (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES), a NOTIFY_SOCKET that the
test reads, optionally WATCHDOG_USEC, a temporary state directory, a configuration file and a credentials
directory ($CREDENTIALS_DIRECTORY) with an admin token, which Daemon.request() sends unless told otherwise.
Python's standard library only, so it runs on a bare Debian machine.
"""

import json
import os
import secrets
import select
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import http.client

DAEMON = os.environ.get("KKT_ADAPTERD", "kkt-adapterd")
FAKE_UPSTREAM = os.environ.get("KKT_FAKE_UPSTREAM", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fake-upstream.py"))


class TestFailure(Exception):
    pass


class Skip(Exception):
    """A test that cannot run here (a tool is missing): reported, not failed (run_all)."""


def check(cond, message):
    if not cond:
        raise TestFailure(message)


def wait_until(predicate, timeout, what, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TestFailure(f"timed out after {timeout}s waiting for {what}")


# Daemon.request(token=DEFAULT_TOKEN) sends the daemon's admin token, if it has one.
DEFAULT_TOKEN = object()


class Daemon:
    """One kkt-adapterd process with its sockets, state directory, credentials and log.

    admin_token: True (the default) makes a random admin token, passed as the credential admin-token and sent
    by request() unless it is given another token= (None: no Authorization header); None configures no admin
    token (the administrative paths are then closed); a string is that token. pos_token: the credential
    pos-token, when given. credentials: more credentials, {name: text}."""

    def __init__(self, config="", env=None, watchdog_usec=None, args=(), socket_activation=True, name="kkt",
                 admin_token=True, pos_token=None, credentials=None, private_files=None):
        self.tmp = tempfile.mkdtemp(prefix=f"{name}-")
        self.state_dir = os.path.join(self.tmp, "state")
        os.mkdir(self.state_dir)
        self.credentials_dir = os.path.join(self.tmp, "credentials")
        os.mkdir(self.credentials_dir, 0o700)
        self.admin_token = secrets.token_urlsafe(24) if admin_token is True else admin_token
        self.pos_token = pos_token
        # {"/etc/group": "/tmp/.../group"}: the daemon runs in a mount namespace of its own (unshare, as root)
        # where these files are bind-mounted over the system's; nothing outside it sees them.
        self.private_files = dict(private_files or {})
        creds = dict(credentials or {})
        if self.admin_token:
            creds["admin-token"] = self.admin_token + "\n"
        if self.pos_token:
            creds["pos-token"] = self.pos_token + "\n"
        for cred_name, text in creds.items():
            self.write_credential(cred_name, text)
        self.config_path = os.path.join(self.tmp, "kkt-adapter.conf")
        self.write_config(config)
        self.log_path = os.path.join(self.tmp, "daemon.log")
        self.extra_env = dict(env or {})
        self.watchdog_usec = watchdog_usec
        self.args = list(args)
        self.socket_activation = socket_activation
        self.proc = None
        self.messages = []  # (monotonic seconds, {"KEY": "value"})
        self.notify_path = os.path.join(self.tmp, "notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(0.1)
        self.lock = threading.Lock()
        self.closing = False
        # Messages are stamped when they arrive, not when a test looks, so watchdog gaps can be measured.
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()
        self.listener = None
        self.port = None
        self.start_index = 0  # messages before the last start() belong to an earlier run

    # configuration -----------------------------------------------------------------------------------------
    def write_config(self, text):
        with open(self.config_path, "w") as f:
            f.write(text)

    def write_credential(self, cred_name, text, mode=0o600):
        """A file in the credentials directory, as systemd's LoadCredential= leaves it (read at the start)."""
        path = os.path.join(self.credentials_dir, cred_name)
        if os.path.exists(path):
            os.unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(path, mode)

    # process -----------------------------------------------------------------------------------------------
    def start(self, wait_ready=True, timeout=20):
        """Starts the daemon (again, on the same state directory and listener, after a stop or a kill)."""
        with self.lock:
            self.start_index = len(self.messages)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NOTIFY_SOCKET": self.notify_path,
            "STATE_DIRECTORY": self.state_dir,
            "CREDENTIALS_DIRECTORY": self.credentials_dir,
            "LANG": "C.UTF-8",
        }
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS", "MALLOC_PERTURB_"):
            if k in os.environ:
                env[k] = os.environ[k]
        if self.watchdog_usec:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        env.update(self.extra_env)

        pass_fds = ()
        preexec = None
        if self.socket_activation:
            if self.listener is None:
                self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.listener.bind(("127.0.0.1", 0))
                self.listener.listen(128)
                self.port = self.listener.getsockname()[1]
            env["LISTEN_FDS"] = "1"
            env["LISTEN_FDNAMES"] = "http"
            lfd = self.listener.fileno()

            def preexec():
                os.dup2(lfd, 3)
                os.set_inheritable(3, True)

            pass_fds = (3,)

        # LISTEN_PID must be the daemon's own pid: let the shell put in its $$ and exec into the daemon.
        script = 'if [ -n "$LISTEN_FDS" ]; then export LISTEN_PID=$$; fi; exec "$0" "$@"'
        prefix = []
        if self.private_files:
            # unshare execs the shell in the same process, so $$ is still the daemon's pid.
            prefix = ["unshare", "--mount", "--propagation", "private"]
            script = "".join(f"mount --bind {shlex.quote(src)} {shlex.quote(dst)} || exit 1; "
                             for dst, src in self.private_files.items()) + script
        cmd = prefix + ["/bin/sh", "-c", script, DAEMON, f"--config={self.config_path}"] + self.args
        if getattr(self, "log", None):
            self.log.close()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     pass_fds=pass_fds, preexec_fn=preexec)
        if wait_ready:
            self.wait_message("READY", "1", timeout=timeout, after=self.start_index)
        return self

    def _read_loop(self):
        while not self.closing:
            try:
                data = self.notify.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            msg = {}
            for line in data.decode().splitlines():
                k, _, v = line.partition("=")
                msg[k] = v
            with self.lock:
                self.messages.append((time.monotonic(), msg))

    def read_notify(self):
        """Kept for readability at call sites: messages are collected by the reader thread."""
        with self.lock:
            return list(self.messages)

    def wait_message(self, key, value=None, timeout=20, after=0):
        """Waits for a notify message with KEY (=value); returns (time, message). Looks at messages from index
        `after` on."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (t, m) in enumerate(self.read_notify()):
                if i < after:
                    continue
                if key in m and (value is None or m[key] == value):
                    return i, t, m
            if self.proc.poll() is not None:
                raise TestFailure(f"daemon exited with {self.proc.returncode} before {key}={value}; log:\n"
                                  + self.log_text())
            if time.monotonic() > deadline:
                raise TestFailure(f"no {key}={value} within {timeout}s; got {self.messages}; log:\n"
                                  + self.log_text())
            time.sleep(0.01)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("daemon did not stop within %ss after SIGTERM; log:\n%s" % (timeout, self.log_text()))

    def stop_clean(self, timeout=20):
        """SIGTERM; fails unless the daemon exits 0 with no sanitizer report in its log."""
        rc = self.stop(timeout=timeout)
        check(rc == 0, f"exit code {rc} after SIGTERM; log:\n" + self.log_text())
        log = self.log_text()
        check("Sanitizer" not in log and "runtime error:" not in log, "sanitizer report in the log:\n" + log)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        if getattr(self, "log", None):
            self.log.close()
        if self.listener:
            self.listener.close()
        self.closing = True
        self.reader.join()
        self.notify.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None:
                sys.stderr.write("---- daemon log ----\n" + self.log_text() + "\n--------------------\n")
        finally:
            self.cleanup()  # even when stderr is gone (a closed pipe): never leave a daemon behind

    # HTTP --------------------------------------------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=30, token=DEFAULT_TOKEN, context=None):
        """Returns (status, headers dict, parsed JSON or raw text). token: the bearer token to send (by
        default the admin token; None: none). context: an ssl.SSLContext to speak HTTPS with."""
        if context is not None:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        if token is DEFAULT_TOKEN:
            token = self.admin_token
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode()  # JSON is UTF-8; http.client would send a str as Latin-1
            h = {"Content-Type": "application/json"} if body is not None else {}
            if token:
                h["Authorization"] = f"Bearer {token}"
            h.update(headers or {})
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            try:
                payload = json.loads(data) if data else None
            except ValueError:
                payload = data.decode(errors="replace")
            return r.status, hdrs, payload
        finally:
            conn.close()


    def connect(self, timeout=10):
        """A raw TCP connection to the daemon's listener."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    @property
    def db_path(self):
        return os.path.join(self.state_dir, "buffer.db")

    def db(self):
        """A read-only connection to buffer.db, as the other tools that read it open it."""
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10, isolation_level=None)

    def metrics(self):
        """GET /metrics as {"name{labels}": number}."""
        status, _, text = self.request("GET", "/metrics")
        check(status == 200, f"/metrics answered {status}")
        return parse_metrics(text)

    def post_receipt(self, body, key, timeout=30, token=DEFAULT_TOKEN):
        """POST /v1/kkt/receipt with an Idempotency-Key (None: without one)."""
        headers = {} if key is None else {"Idempotency-Key": key}
        return self.request("POST", "/v1/kkt/receipt", body, headers, timeout=timeout, token=token)


class FakeUpstream:
    """tests/fake-upstream.py on loopback, seen as one of its targets: "ofd" (the OFD, the default) or "erp"
    (the heartbeat). It exits when its stdin (our pipe) closes, so a crashed test leaves nothing running;
    stop() and start() again keep the port (the upstream "comes back")."""

    def __init__(self, port=0, target="ofd"):
        self.port = port
        self.target = target
        self.proc = None

    def start(self, timeout=10):
        self.proc = subprocess.Popen([sys.executable, FAKE_UPSTREAM, "--port", str(self.port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.port == 0:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            line = self.proc.stdout.readline().strip() if ready else ""
            if not line.startswith("PORT="):
                self.stop()
                raise TestFailure(f"the fake {self.target} did not start: {line!r}")
            self.port = int(line[5:])
        else:
            wait_until(self._answers, timeout, f"the fake {self.target} on port {self.port}", interval=0.02)
        return self

    def _answers(self):
        try:
            self.state()
            return True
        except OSError:
            check(self.proc.poll() is None, f"the fake {self.target} exited with {self.proc.returncode}")
            return False

    def stop(self):
        """Gone: connections to its port are refused from now on."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.stdin.close()  # it exits at EOF on stdin
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": "application/json"} if body is not None else {})
            r = c.getresponse()
            data = json.loads(r.read())
            check(r.status == 200, f"fake {self.target}: {method} {path} answered {r.status}: {data}")
            return data
        finally:
            c.close()

    def mode(self, mode, **kw):
        self._call("POST", "/_control/mode", {"target": self.target, "mode": mode, **kw})

    def state(self):
        return self._call("GET", "/_control/state")[self.target]

    def reset(self):
        """Both targets forget everything and accept again."""
        self._call("POST", "/_control/reset", {})

    @property
    def url(self):
        """What the daemon's [OFD] URL= or [Heartbeat] URL= is set to."""
        base = f"http://127.0.0.1:{self.port}"
        return base + "/api/v1/kkt/heartbeat" if self.target == "erp" else base


class FakeOfd(FakeUpstream):
    def __init__(self, port=0):
        super().__init__(port, "ofd")


class FakeErp(FakeUpstream):
    def __init__(self, port=0):
        super().__init__(port, "erp")



def closed_port():
    """A loopback port nobody listens on: calls to it fail at once with a refused connection."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# One closed port for the test process: where an upstream that is down points (the heartbeat, an OFD that is
# never reached).
DOWN = closed_port()


def down_url(path="/"):
    return f"http://127.0.0.1:{DOWN}{path}"


def ini(*layers):
    """The text of a configuration file from {section: {key: value}} layers: each later layer adds sections
    and keys and overrides the earlier ones key by key (a test's **sections over its file's defaults)."""
    merged = {}
    for layer in layers:
        for section, keys in layer.items():
            merged.setdefault(section, {}).update(keys)
    return "".join(f"[{s}]\n" + "".join(f"{k}={v}\n" for k, v in keys.items()) for s, keys in merged.items())


def call(d, method, path, body=None, expect=200, timeout=60):
    """d.request() that must answer `expect`; its JSON answer. A POST without a body sends an empty one."""
    status, _, answer = d.request(method, path, body if body is not None else (b"" if method == "POST" else None),
                                  timeout=timeout)
    check(status == expect, f"{method} {path} answered {status}, expected {expect}: {answer}")
    return answer


def wait_status(d, receipt_id, status, timeout=20, interval=0.05):
    """Waits until GET /v1/kkt/receipt/ID says `status`; its answer. On a timeout, says what it is instead."""
    def probe():
        _, _, r = d.request("GET", f"/v1/kkt/receipt/{receipt_id}")
        return r if r and r.get("status") == status else None
    try:
        return wait_until(probe, timeout, f"receipt {receipt_id} {status}", interval=interval)
    except TestFailure:
        _, _, r = d.request("GET", f"/v1/kkt/receipt/{receipt_id}")
        raise TestFailure(f"receipt {receipt_id} is {r and r.get('status')}, not {status}: {r}") from None


def check_detail(status, payload, want_status, *words):
    """An error answer: that status, a JSON {"detail": "..."} that names every one of words."""
    check(status == want_status, f"answered {status}, expected {want_status}: {payload}")
    check(isinstance(payload, dict) and isinstance(payload.get("detail"), str) and payload["detail"],
          f"answer {status} has no JSON detail: {payload!r}")
    for w in words:
        check(w.lower() in payload["detail"].lower(), f"detail {payload['detail']!r} does not name {w!r}")


def parse_metrics(text):
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
    return values


def sample_receipt(pos_id="POS-1", price="1500.00", name="Lens"):
    """A valid receipt: one item, paid by card. Amounts are JSON numbers written as given."""
    return ('{"pos_id": "%s", "type": "sale", "items": [{"name": "%s", "price": %s, "quantity": 1, '
            '"total": %s, "vat_rate": 22}], "payments": [{"type": "card", "amount": %s}]}'
            % (pos_id, name, price, price, price))


def read_response(sock, timeout=10):
    """Reads one HTTP/1.1 response from a raw socket, and nothing of the next one (pipelined answers stay
    in the socket): (status, headers dict, body bytes); None when the server closed or reset the connection
    before a complete status line and headers."""
    deadline = time.monotonic() + timeout

    def recv(n):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            return sock.recv(n)
        except (ConnectionResetError, BrokenPipeError):
            return b""

    head = b""
    while not head.endswith(b"\r\n\r\n"):
        c = recv(1)
        if not c:
            return None
        head += c
    lines = head[:-4].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    body = b""
    while len(body) < length:
        chunk = recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return status, headers, body


def run_tests(tests):
    """Runs named test functions; prints each name; exits 1 on the first failure."""
    sys.exit(run_all(tests, stop_at_failure=True, exit=False))


def run_all(tests, stop_at_failure=False, exit=True):
    """Runs every test (up to the first failure with stop_at_failure); a Skip is reported. The status, 1 when
    one failed, 77 (skipped) when all were skipped, else 0, is exited with, or returned when not exit."""
    failed, skipped = [], []
    for t in tests:
        sys.stderr.write(f"== {t.__name__}\n")
        sys.stderr.flush()
        try:
            t()
        except Skip as e:
            sys.stderr.write(f"SKIP {t.__name__}: {e}\n")
            skipped.append(t.__name__)
        except TestFailure as e:
            sys.stderr.write(f"FAIL {t.__name__}: {e}\n")
            failed.append(t.__name__)
            if stop_at_failure:
                break
    if not stop_at_failure:
        sys.stderr.write(f"{len(tests) - len(failed) - len(skipped)} passed, {len(failed)} failed, "
                         f"{len(skipped)} skipped\n")
    status = 1 if failed else 77 if tests and len(skipped) == len(tests) else 0
    if exit:
        sys.exit(status)
    return status
