#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The OFD sync's drain rate (issue 5: "drain 10,000 buffered receipts to a local fake OFD, at least 2,000/s
on the 2-core machine") and the intake latency while such a drain runs.

Starts the real kkt-adapterd as the integration tests do (socket activation, a temporary state directory,
the emulated register with zero print latency, no bus, the heartbeat pointed at a closed port) and a fake OFD
on loopback, then:

  ceiling    the fake alone, with wrk (6 connections, the daemon's MaxInFlight ceiling, unique keys), when wrk
             is installed: the most the fake can take, so that a slow fake is not mistaken for a slow daemon;
  buffer     COUNT receipts posted by 8 keep-alive clients while the fake answers 500: five sends fail, the
             circuit breaker opens ([Sync] OpenTimeout=1h) and nothing else goes out; waits until all are
             printed (only printed receipts are sent);
  baseline   intake latency at --intake-rate receipts/s for 3 s with the sync idle (breaker open);
  drain      the fake switched to accept, POST /v1/kkt/circuit_breaker/reset (closes the breaker and starts
             a pass) and the clock runs until the buffer says COUNT synced; meanwhile a client posts at
             --intake-rate receipts/s and records each answer's latency;
  hang       (--hang-seconds, 5 by default; 0 skips it) a second daemon against tests/fake-upstream.py in
             mode "hang", [OFD] Timeout=2s: intake at --intake-rate and GET /v1/kkt/buffer/status and
             /v1/health 20 times a second while MaxInFlight requests hang, time out and open the breaker.

The fake is bench/fake-ofd.c (libmicrohttpd, de-duplicating by Idempotency-Key; compiled into a temporary
directory unless --fake-ofd names a binary) or, with --fake python, tests/fake-upstream.py. Afterwards every
receipt must be at the fake exactly once (no duplicates). Exits 1 when the rate misses --target.

    bench/sync-drain.py --daemon build/src/adapter/kkt-adapterd [--count 10000] [--batch-size 50]
                        [--max-in-flight 6] [--intake-rate 100] [--fake c|python] [--target 2000]
                        [--hang-seconds 5]

Not a meson test. Bounded: every wait has a deadline.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

WRK_SCRIPT = r"""
local n = 0
local threads = {}
function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end
function request()
   n = n + 1
   local key = string.format("ceiling-%d-%d", tid, n)
   local body = '{"receipt_id": "' .. key .. '", "pos_id": "POS-1", "hlc": "h", "receipt": {"items": []}, ' ..
                '"fiscal_doc": {"fiscal_sign": "1"}}'
   return wrk.format("POST", "/ofd/v1/receipt",
                     {["Content-Type"] = "application/json", ["Idempotency-Key"] = key}, body)
end
"""


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def receipt(i):
    price = 1000 + i % 50000
    return ('{"pos_id": "bench-%d", "type": "sale", "items": [{"name": "Lens %d", "price": %d.50, '
            '"quantity": 1, "total": %d.50, "vat_rate": 22}], "payments": [{"type": "card", "amount": %d.50}]}'
            % (i % 4, i, price, price, price))


def percentile(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, -(-len(s) * p // 100) - 1)
    return s[int(k)]


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Fake:
    """The fake OFD process; state() is normalised to {"count", "duplicates", "requests"}."""

    def __init__(self, kind, binary):
        self.kind = kind
        if kind == "c":
            cmd = [binary, "0"]
        else:
            cmd = [sys.executable, os.path.join(ROOT, "tests", "fake-upstream.py"), "--port", "0"]
        # Its stderr goes to a file: the Python fake prints a traceback for every connection wrk resets.
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("PORT="):
            raise RuntimeError(f"the fake OFD said {line!r}")
        self.port = int(line[5:])

    def call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None)
            r = c.getresponse()
            data = json.loads(r.read())
            if r.status != 200:
                raise RuntimeError(f"fake OFD {path}: {r.status} {data}")
            return data
        finally:
            c.close()

    def mode(self, mode):
        self.call("POST", "/_control/mode", {"target": "ofd", "mode": mode})

    def reset(self):
        self.call("POST", "/_control/reset", {})

    def state(self):
        s = self.call("GET", "/_control/state")
        return s["ofd"] if self.kind == "python" else s

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


def build_fake(tmp):
    """bench/fake-ofd.c compiled into tmp; returns the binary."""
    out = os.path.join(tmp, "fake-ofd")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libmicrohttpd"], check=True,
                           capture_output=True, text=True).stdout.split()
    subprocess.run([os.environ.get("CC", "cc"), "-std=gnu11", "-O2", "-I", os.path.join(ROOT, "src", "shared"),
                    os.path.join(HERE, "fake-ofd.c"), "-o", out] + flags, check=True)
    return out


def wrk_ceiling(port, tmp, seconds=3):
    """Requests/s the fake takes from wrk with 6 connections; None without wrk."""
    if not shutil.which("wrk"):
        return None
    script = os.path.join(tmp, "ceiling.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT)
    out = subprocess.run(["wrk", "-t2", "-c6", f"-d{seconds}s", "-s", script,
                          f"http://127.0.0.1:{port}/ofd/v1/receipt"], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else None


class Poster:
    """One keep-alive client of the daemon's intake."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def post(self, i, prefix):
        body = receipt(i).encode()
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                t0 = time.monotonic()
                self.conn.request("POST", "/v1/kkt/receipt", body=body,
                                  headers={"Content-Type": "application/json",
                                           "Idempotency-Key": f"{prefix}-{i}"})
                r = self.conn.getresponse()
                data = r.read()
                took = time.monotonic() - t0
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                if r.status != 200:
                    raise RuntimeError(f"POST {prefix}-{i} answered {r.status}: {data[:200]!r}")
                return took
            except (http.client.HTTPException, ConnectionError):
                # The server closed an idle keep-alive connection: a replay with the same key is harmless.
                self.conn.close()
                self.conn = None
        raise RuntimeError(f"POST {prefix}-{i} failed three times")

    def close(self):
        if self.conn:
            self.conn.close()


def post_all(port, count, clients, prefix):
    """count receipts from `clients` keep-alive clients; returns the seconds it took."""
    nxt = iter(range(count))
    lock = threading.Lock()
    errors = []

    def run():
        p = Poster(port)
        try:
            while True:
                with lock:
                    i = next(nxt, None)
                if i is None:
                    return
                p.post(i, prefix)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            p.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    if errors:
        raise errors[0]
    return time.monotonic() - t0


class PacedIntake:
    """Posts at `rate` receipts/s (on a schedule, so a slow answer is not hidden by a late start) until
    stopped, and records each answer's latency."""

    def __init__(self, port, rate, prefix, limit):
        self.port, self.rate, self.prefix, self.limit = port, rate, prefix, limit
        self.latencies = []
        self.errors = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        p = Poster(self.port)
        t0 = time.monotonic()
        try:
            for i in range(self.limit):
                due = t0 + i / self.rate
                delay = due - time.monotonic()
                if self.stopping.wait(max(0.0, delay)):
                    return
                self.latencies.append(p.post(i, self.prefix))
        except Exception as e:  # noqa: BLE001 - reported by the caller
            self.errors.append(e)
        finally:
            p.close()

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=120)
        if self.errors:
            raise self.errors[0]
        return self.latencies


def summary(lat):
    if not lat:
        return "no samples"
    ms = [x * 1000 for x in lat]
    return (f"n={len(ms)} p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
            f"max {max(ms):.1f} ms")


def wait_for(what, predicate, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def daemon_config(ofd_port, sync, capacity=200, timeout="10s"):
    return (f"[Bus]\nAddress=none\n"
            f"[Heartbeat]\nURL=http://127.0.0.1:{closed_port()}/hb\nInterval=1h\n"
            f"[OFD]\nURL=http://127.0.0.1:{ofd_port}\nTimeout={timeout}\n"
            f"[Buffer]\nCapacity={capacity}\n"
            "[Device]\nPrintLatencyMin=0\nPrintLatencyMax=0\nResponseTimeout=0\n"
            "[Sync]\n" + "".join(f"{k}={v}\n" for k, v in sync.items()))


def run_drain(args, Daemon, fake):
    """The drain of args.count receipts; prints the figures and returns whether the run passed."""
    ceiling = wrk_ceiling(fake.port, fake.tmp)
    fake.reset()
    fake.mode("fail")

    sync = {"Interval": "10s", "BatchSize": args.batch_size, "MaxInFlight": args.max_in_flight,
            "InitialBackoff": "10ms", "MaxBackoff": "10ms", "FailureThreshold": 5, "OpenTimeout": "1h"}
    with Daemon(daemon_config(fake.port, sync, capacity=max(2 * args.count, 200)), name="kkt-sync-drain") as d:
        d.start()

        took = post_all(d.port, args.count, args.clients, "drain")
        print(f"buffered {args.count} receipts in {took:.2f} s ({args.count / took:.0f}/s, "
              f"{args.clients} clients)", flush=True)

        def printed():
            with d.db() as c:
                return c.execute("SELECT COUNT(*) FROM receipts WHERE print_status = 'printed'").fetchone()[0]
        t0 = time.monotonic()
        wait_for("every receipt printed", lambda: printed() >= args.count, 600, interval=0.2)
        print(f"all printed {time.monotonic() - t0:.2f} s later", flush=True)
        _, _, w = d.request("GET", "/v1/kkt/worker/status")
        if w["circuit_breaker"]["state"] != "open" or w["totals"]["synced"] != 0:
            raise RuntimeError(f"the breaker should be open with nothing synced: {w}")

        base_cpu0 = cpu_seconds(d.proc.pid)
        baseline = PacedIntake(d.port, args.intake_rate, "baseline", int(args.intake_rate * 3) + 1).start()
        time.sleep(3.0)
        base = baseline.stop()
        base_cpu = cpu_seconds(d.proc.pid) - base_cpu0
        extra = len(base)

        daemon_cpu0, fake_cpu0 = cpu_seconds(d.proc.pid), cpu_seconds(fake.proc.pid)
        fake.mode("accept")
        intake = PacedIntake(d.port, args.intake_rate, "during", 1000000)
        t0 = time.monotonic()
        status, _, answer = d.request("POST", "/v1/kkt/circuit_breaker/reset", b"")
        if status != 200:
            raise RuntimeError(f"breaker reset answered {status}: {answer}")
        intake.start()

        def synced():
            return d.request("GET", "/v1/kkt/buffer/status")[2]["synced"] >= args.count
        wait_for(f"{args.count} receipts synced", synced, 600, interval=0.02)
        drain = time.monotonic() - t0
        daemon_cpu = cpu_seconds(d.proc.pid) - daemon_cpu0
        fake_cpu = cpu_seconds(fake.proc.pid) - fake_cpu0
        during = intake.stop()
        extra += len(during)

        total = args.count + extra
        wait_for("the receipts posted during the drain synced",
                 lambda: d.request("GET", "/v1/kkt/buffer/status")[2]["synced"] >= total, 60)
        st = fake.state()
        _, _, w = d.request("GET", "/v1/kkt/worker/status")
        d.stop_clean()

    rate = args.count / drain
    print(f"fake OFD: {args.fake}" + (f", ceiling {ceiling:.0f} requests/s (wrk, 6 connections)"
                                      if ceiling else ", ceiling not measured (no wrk)"))
    print(f"drain: {args.count} receipts in {drain:.2f} s = {rate:.0f} receipts/s "
          f"(BatchSize={args.batch_size}, MaxInFlight={args.max_in_flight}; "
          f"{w['totals']['passes']} passes, {w['totals']['sent']} requests)")
    print(f"CPU during the drain: daemon {daemon_cpu:.2f} s ({100 * daemon_cpu / drain:.0f} % of one core), "
          f"fake {fake_cpu:.2f} s")
    print(f"intake at {args.intake_rate:.0f}/s, sync idle:    {summary(base)}; "
          f"daemon CPU {base_cpu:.2f} s in 3 s")
    print(f"intake at {args.intake_rate:.0f}/s, during drain: {summary(during)}")
    print(f"at the fake: {st['count']} receipts, {st['duplicates']} duplicates, {st['requests']} requests")
    ok = st["duplicates"] == 0 and st["count"] == total
    if not ok:
        print(f"FAIL: expected {total} receipts at the fake, each once", file=sys.stderr)
    if rate < args.target:
        print(f"FAIL: {rate:.0f} receipts/s is below the target of {args.target:.0f}", file=sys.stderr)
        ok = False
    return ok


class StatusPoller:
    """GET /v1/kkt/buffer/status and /v1/health in turn, `rate` a second, recording each latency."""

    def __init__(self, d, rate):
        self.d, self.rate = d, rate
        self.latencies = {"/v1/kkt/buffer/status": [], "/v1/health": []}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        paths = list(self.latencies)
        for i in range(1000000):
            if self.stopping.wait(1 / self.rate):
                return
            path = paths[i % len(paths)]
            t0 = time.monotonic()
            self.d.request("GET", path, timeout=30)
            self.latencies[path].append(time.monotonic() - t0)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=60)
        return self.latencies


def run_hang(args, Daemon):
    """Intake and status latency while every request to the OFD hangs (tests/fake-upstream.py, mode hang):
    MaxInFlight requests wait for [OFD] Timeout=2s, time out as unknown outcomes, open the breaker, and the
    trial sends hang again."""
    fake = Fake("python", None)
    try:
        fake.mode("hang")
        sync = {"Interval": "1s", "MaxInFlight": args.max_in_flight, "InitialBackoff": "100ms",
                "MaxBackoff": "1s", "OpenTimeout": "1s"}
        with Daemon(daemon_config(fake.port, sync, capacity=10000, timeout="2s"), name="kkt-sync-hang") as d:
            d.start()
            post_all(d.port, 20, 4, "hang")
            wait_for("requests hanging at the OFD", lambda: fake.state()["in_flight"] >= 1, 10)
            intake = PacedIntake(d.port, args.intake_rate, "hang-intake", 1000000).start()
            status = StatusPoller(d, 20).start()
            time.sleep(args.hang_seconds)
            lat = intake.stop()
            st_lat = status.stop()
            st = fake.state()
            _, _, w = d.request("GET", "/v1/kkt/worker/status")
            d.stop_clean()
        print(f"hanging OFD for {args.hang_seconds:.0f} s ({st['hung']} requests hung, "
              f"{w['totals']['failures']['unknown_outcome']} timed out as unknown outcomes, breaker opened "
              f"{w['circuit_breaker']['opened_total']} times):")
        print(f"  intake at {args.intake_rate:.0f}/s:       {summary(lat)}")
        for path, v in st_lat.items():
            print(f"  GET {path:22} {summary(v)}")
    finally:
        fake.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", default=os.environ.get("KKT_ADAPTERD",
                                                       os.path.join(ROOT, "build", "src", "adapter",
                                                                    "kkt-adapterd")))
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--max-in-flight", type=int, default=6)
    ap.add_argument("--intake-rate", type=float, default=100.0, help="receipts/s posted during the drain")
    ap.add_argument("--clients", type=int, default=8, help="clients buffering the receipts")
    ap.add_argument("--fake", choices=("c", "python"), default="c")
    ap.add_argument("--fake-ofd", help="a built bench/fake-ofd (else compiled into a temporary directory)")
    ap.add_argument("--target", type=float, default=2000.0, help="receipts/s below which the run fails")
    ap.add_argument("--hang-seconds", type=float, default=5.0, help="the hanging-OFD phase; 0: skipped")
    args = ap.parse_args()

    os.environ["KKT_ADAPTERD"] = args.daemon
    from kkttest import Daemon  # noqa: E402 - reads KKT_ADAPTERD at import

    tmp = tempfile.mkdtemp(prefix="kkt-sync-drain-")
    fake = None
    try:
        binary = args.fake_ofd or (build_fake(tmp) if args.fake == "c" else None)
        fake = Fake(args.fake, binary)
        fake.tmp = tmp
        ok = run_drain(args, Daemon, fake)
        fake.close()
        fake = None
        if args.hang_seconds > 0:
            run_hang(args, Daemon)
        return 0 if ok else 1
    finally:
        if fake:
            fake.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
