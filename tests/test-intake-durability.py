#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Nothing acknowledged is lost: receipts, counters, idempotency and the HLC survive a restart, a SIGTERM under
load and kill -9 under load (repeatedly, on one state directory), and a corrupt buffer.db stops the daemon
from reporting ready instead of being overwritten."""

import os
import random
import signal
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import DOWN, Daemon, check, run_tests, sample_receipt, wait_until  # noqa: E402


BASE = (f"[Bus]\nAddress=none\n"
        f"[Heartbeat]\nURL=http://127.0.0.1:{DOWN}/api/v1/kkt/heartbeat\nInterval=1h\n"
        f"[OFD]\nURL=http://127.0.0.1:{DOWN}/\n"
        f"[Buffer]\nCapacity=1000000\n"
        f"[Device]\nResponseTimeout=0\n")  # answered once durable; printed behind the answer

SEED = int(os.environ.get("KKT_TEST_SEED", time.time_ns() % 1000000))


def post_ok(d, body, key):
    status, headers, payload = d.post_receipt(body, key)
    check(status == 200, f"POST {key} answered {status}: {payload}")
    return payload["receipt_id"], headers


class Load:
    """n client threads, each POSTing receipts with unique keys on fresh connections until stopped, for at
    most `max_each` requests; records every 200 as key -> receipt_id and every other outcome."""

    def __init__(self, d, n, prefix, max_each=2000, timeout=8):
        self.d, self.prefix, self.max_each, self.timeout = d, prefix, max_each, timeout
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}
        self.statuses = {}
        self.errors = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def _run(self, i):
        for j in range(self.max_each):
            if self.stop.is_set():
                return
            key = f"{self.prefix}-{i}-{j}"
            try:
                status, _, p = self.d.post_receipt(sample_receipt(f"POS-{i}", f"{100 + j}.{i % 100:02d}"), key,
                                                   timeout=self.timeout)
            except (OSError, ValueError):
                # Reset, refused or timed out: unacknowledged, so it may or may not be stored.
                with self.lock:
                    self.errors += 1
                continue
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 200:
                    self.acked[key] = p["receipt_id"]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def n_acked(self):
        with self.lock:
            return len(self.acked)

    def finish(self, timeout=30):
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        check(not any(t.is_alive() for t in self.threads), "client threads did not finish")


def check_acked_present_once(db, acked):
    """Every acknowledged key maps to its receipt, and every such receipt is stored exactly once."""
    keys = dict(db.execute("SELECT key, receipt_id FROM idempotency_keys").fetchall())
    ids = {}
    for (rid,) in db.execute("SELECT id FROM receipts"):
        ids[rid] = ids.get(rid, 0) + 1
    for key, rid in acked.items():
        check(keys.get(key) == rid, f"acknowledged {key} -> {rid}, on disk -> {keys.get(key)}")
        check(ids.get(rid) == 1, f"acknowledged receipt {rid} stored {ids.get(rid, 0)} times")
    n_receipts = db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0]
    n_distinct = db.execute("SELECT COUNT(DISTINCT receipt_id) FROM idempotency_keys").fetchone()[0]
    check(n_receipts == len(keys) == n_distinct,
          f"{n_receipts} receipts, {len(keys)} keys naming {n_distinct} receipts: not one key per receipt")
    return n_receipts


def check_integrity(db):
    result = db.execute("PRAGMA integrity_check").fetchall()
    check(result == [("ok",)], f"integrity_check: {result[:5]}")


def test_restart_keeps_receipts_counters_replays_and_hlc_order():
    n = 10
    with Daemon(BASE) as d:
        d.start()
        bodies = {f"restart-{i}": sample_receipt(f"POS-{i}", f"{10 + i}.50") for i in range(n)}
        ids = {k: post_ok(d, b, k)[0] for k, b in bodies.items()}
        db = d.db()
        old_hlc = dict(db.execute("SELECT id, hlc FROM receipts").fetchall())
        db.close()
        d.stop_clean()

        d.start()
        for key, rid in ids.items():
            status, _, r = d.request("GET", f"/v1/kkt/receipt/{rid}")
            check(status == 200 and r["receipt_id"] == rid, f"{rid} after restart: {status} {r}")
            check(r["status"] in ("buffered", "printed") and r["hlc"] == str(old_hlc[rid]),
                  f"{rid} changed by the restart: {r}")
            check(r["receipt"]["pos_id"] == f"POS-{key.split('-')[1]}", f"{rid}: wrong receipt data {r['receipt']}")
        status, _, b = d.request("GET", "/v1/kkt/buffer/status")
        check((b["total_receipts"], b["pending"], b["current_queued"]) == (n, n, n),
              f"counters after restart: {b}")

        # Replays answer with the id from before the restart; a new body for an old key is still refused.
        for key in ("restart-0", "restart-9"):
            rid, headers = post_ok(d, bodies[key], key)
            check(rid == ids[key] and headers.get("idempotent-replayed") == "true",
                  f"replay of {key} after restart gave {rid}, first {ids[key]}")
        status, _, p = d.post_receipt(sample_receipt("POS-x", "1.00"), "restart-0")
        check(status == 422, f"old key with a new body after restart answered {status}: {p}")

        new_id, _ = post_ok(d, sample_receipt("POS-new"), "restart-new")
        db = d.db()
        new_hlc = db.execute("SELECT hlc FROM receipts WHERE id = ?", (new_id,)).fetchone()[0]
        total = db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0]
        db.close()
        check(new_hlc > max(old_hlc.values()), f"HLC after restart {new_hlc} not above {max(old_hlc.values())}")
        check(total == n + 1, f"{total} receipts, expected {n + 1}")
        d.stop_clean()


def test_sigterm_under_load_keeps_every_acknowledged_receipt():
    with Daemon(BASE) as d:
        d.start()
        load = Load(d, 8, "term", timeout=5).start()
        deadline = time.monotonic() + 15
        while load.n_acked() < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        check(load.n_acked() > 0, "no receipt acknowledged under load")
        i = len(d.read_notify())
        d.signal(signal.SIGTERM)
        d.wait_message("STOPPING", "1", after=i)
        d.proc.wait(timeout=20)
        d.stop_clean()
        # New connections now wait in the listen backlog for a daemon that is gone: refuse them.
        d.listener.close()
        d.listener = None
        load.finish()
        others = {s: n for s, n in load.statuses.items() if s not in (200, 503)}
        check(not others, f"answers other than 200 and 503 (shutting down): {others}")
        db = d.db()
        n = check_acked_present_once(db, load.acked)
        check_integrity(db)
        db.close()
        sys.stderr.write(f"   {len(load.acked)} acknowledged, {n} stored, answers {load.statuses}, "
                         f"{load.errors} failed connections\n")


def test_kill9_under_load_loses_no_acknowledged_receipt():
    rng = random.Random(SEED)
    sys.stderr.write(f"   seed {SEED} (KKT_TEST_SEED)\n")
    cycles = 5
    acked = {}
    with Daemon(BASE) as d:
        d.start()
        started = time.monotonic()
        for cycle in range(cycles):
            check(time.monotonic() - started < 50, f"crash cycles take too long (cycle {cycle})")
            load = Load(d, 16, f"crash{cycle}", timeout=8).start()
            # Kill at a random moment once the load is running (some receipts acknowledged).
            deadline = time.monotonic() + 15
            while load.n_acked() < 5 and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.8))
            d.kill()
            # Start again at once: requests waiting in the listen backlog are answered by the new daemon.
            d.start()
            load.finish()
            check(load.acked, f"cycle {cycle}: nothing acknowledged before the kill")
            acked.update(load.acked)

            db = d.db()
            n = check_acked_present_once(db, acked)
            check_integrity(db)
            db.close()
            status, _, b = d.request("GET", "/v1/kkt/buffer/status")
            check(b["total_receipts"] == n and b["pending"] == n,
                  f"cycle {cycle}: counters {b['total_receipts']}/{b['pending']} after the crash, {n} on disk")
            # An acknowledged receipt from before the crash replays with its id.
            key = rng.choice(sorted(load.acked))
            i, j = key.split("-")[1:]
            rid, headers = post_ok(d, sample_receipt(f"POS-{i}", f"{100 + int(j)}.{int(i) % 100:02d}"), key)
            check(rid == acked[key] and headers.get("idempotent-replayed") == "true",
                  f"cycle {cycle}: replay of {key} gave {rid}, acknowledged as {acked[key]}")
            sys.stderr.write(f"   cycle {cycle}: {len(load.acked)} acknowledged, {n} stored in all, "
                             f"answers {load.statuses}, {load.errors} failed connections\n")
        d.stop_clean()
        db = d.db()
        check_acked_present_once(db, acked)
        check_integrity(db)
        db.close()


def test_stop_deadline_answers_a_waiting_request_and_keeps_its_receipt():
    """A receipt whose answer waits for a register slower than the stop deadline (20 s): the daemon gives up
    waiting, answers (503, or 200 when the register's document was stored during the teardown) instead of
    leaving the connection parked (libmicrohttpd aborts the process when it is stopped with a suspended
    connection), exits non-zero, and the receipt, durable before the stop, is
    there after a restart for the client's retry."""
    slow = BASE + "[Device]\nResponseTimeout=60s\nTimeout=5min\nPrintLatencyMin=40s\nPrintLatencyMax=40s\n"
    with Daemon(slow) as d:
        d.start()
        result = []

        def post():
            result.append(d.post_receipt(sample_receipt("POS-slow"), "slow-1", timeout=50))

        t = threading.Thread(target=post, daemon=True)
        t.start()

        def stored():
            db = d.db()
            try:
                return db.execute("SELECT id FROM idempotency_keys JOIN receipts ON receipts.id = receipt_id "
                                  "WHERE key = 'slow-1'").fetchone()
            except sqlite3.OperationalError:
                return None
            finally:
                db.close()

        row = wait_until(stored, 10, "the receipt to be stored")
        check(t.is_alive(), f"answered before the register printed: {result}")
        d.signal(signal.SIGTERM)
        rc = d.proc.wait(timeout=40)
        t.join(10)
        log = d.log_text()
        check(rc not in (0, -signal.SIGABRT, -signal.SIGSEGV) and rc > 0,
              f"exit code {rc} when the stop deadline passed; log:\n{log}")
        check("Sanitizer" not in log and "runtime error:" not in log and "Fatal error" not in log,
              f"crash report in the log:\n{log}")
        check(result, "the waiting client got no answer")
        status, _, p = result[0]
        # Either the register's document made it into the buffer during the teardown (the truth is then
        # "printed"), or the client hears 503 and retries with its key: never silence, never a lie.
        check((status == 503 and isinstance(p, dict) and p.get("detail")) or
              (status == 200 and isinstance(p, dict) and p.get("receipt_id") == row[0]),
              f"waiting client answered {status}: {p}")

        d.start()
        rid, _ = post_ok(d, sample_receipt("POS-slow"), "slow-1")
        check(rid == row[0], f"retry after the stop gave {rid}, stored before the stop as {row[0]}")
        d.kill()  # the register would take 40 s more


def start_on_corrupt_file(d, data):
    for suffix in ("-wal", "-shm"):
        if os.path.exists(d.db_path + suffix):
            os.unlink(d.db_path + suffix)
    with open(d.db_path, "wb") as f:
        f.write(data)
    d.start(wait_ready=False)
    try:
        rc = d.proc.wait(timeout=20)
    except Exception:
        d.kill()
        raise
    check(rc != 0, "the daemon exited 0 on a corrupt buffer.db")
    ready = [m for _, m in d.read_notify()[d.start_index:] if m.get("READY") == "1"]
    check(not ready, "READY=1 reported on a corrupt buffer.db")
    log = d.log_text()
    check(d.db_path in log and "corrupt" in log, f"the log does not say that {d.db_path} is corrupt:\n{log}")
    with open(d.db_path, "rb") as f:
        check(f.read() == data, "the corrupt buffer.db was modified")


def test_corrupt_database_is_refused_without_ready():
    rng = random.Random(SEED)
    with Daemon(BASE) as d:
        # Not a database at all.
        start_on_corrupt_file(d, bytes(rng.getrandbits(8) for _ in range(64 * 1024)))

    with Daemon(BASE) as d:
        # A real one, with its pages overwritten past the header.
        d.start()
        for i in range(50):
            post_ok(d, sample_receipt(f"POS-{i}", name="x" * 200), f"corrupt-{i}")
        d.stop_clean()
        with open(d.db_path, "rb") as f:
            data = bytearray(f.read())
        check(len(data) > 8 * 4096, f"buffer.db is only {len(data)} bytes")
        page = int.from_bytes(data[16:18], "big") or 65536
        for off in range(page, len(data), page):
            data[off:off + page // 2] = bytes(rng.getrandbits(8) for _ in range(page // 2))
        start_on_corrupt_file(d, bytes(data))


run_tests([
    test_restart_keeps_receipts_counters_replays_and_hlc_order,
    test_sigterm_under_load_keeps_every_acknowledged_receipt,
    test_kill9_under_load_loses_no_acknowledged_receipt,
    test_corrupt_database_is_refused_without_ready,
    test_stop_deadline_answers_a_waiting_request_and_keeps_its_receipt,
])
