#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Store-and-forward to the OFD as the running daemon does it, against the fake OFD (tests/fake-upstream.py,
which de-duplicates by Idempotency-Key): 50 receipts buffered while the OFD refuses, then all delivered once
and in HLC order with their fiscal attributes; a flapping OFD opening and closing the circuit breaker (HTTP,
D-Bus and the log); a hanging OFD leaving intake and status latency alone; 422 -> dead letter, retried over
HTTP and D-Bus, resolved with a note; three concurrent manual syncs; SIGTERM and kill -9 in the middle of a
sync; an answer lost after the OFD stored the receipt; 429 and 503 with Retry-After holding every send;
/metrics and the health's "ofd" component; unprinted receipts never sent. tests/test-sync.c covers the
worker module on its own; that a second daemon on the same state directory refuses to start is
test-daemon-lifecycle's.

The D-Bus parts need dbus-daemon; without it they are skipped (and said so), the rest still runs.
"""

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
import dbusclient  # noqa: E402
from busdaemon import DaemonOnBus  # noqa: E402
from dbusclient import DBusError  # noqa: E402
from kkttest import (DOWN, FakeOfd, TestFailure, check, closed_port, ini, run_tests,  # noqa: E402
                     sample_receipt, wait_until)

NAME = "org.opticserp.KktAdapter1"
PATH = "/org/opticserp/KktAdapter1"
IFACE = "org.opticserp.KktAdapter1"
HAVE_DBUS = shutil.which("dbus-daemon") is not None
BUS = None  # the private dbus-daemon shared by the tests, started in main()

def log(msg):
    sys.stderr.write(f"   {msg}\n")
    sys.stderr.flush()


# ---- the daemon --------------------------------------------------------------------------------------------

# Short periods, so that a test sees several passes, backoffs and breaker timeouts within seconds.
DEFAULTS = {
    "OFD": {"Timeout": "2s"},
    "Sync": {"Interval": "300ms", "InitialBackoff": "100ms", "MaxBackoff": "1s", "OpenTimeout": "500ms"},
    "Device": {"PrintLatencyMin": "0", "PrintLatencyMax": "0"},
    "Heartbeat": {"URL": f"http://127.0.0.1:{DOWN}/hb", "Interval": "1h"},
}


def make_config(ofd_url, bus, sections):
    return ini(DEFAULTS, {"OFD": {"URL": ofd_url}, "Bus": {"Address": BUS.address if bus and BUS else "none"}},
               sections)


class Setup(DaemonOnBus):
    """A fake OFD (running or not yet), a recorder of the daemon's D-Bus signals when asked for one, and the
    daemon with the DEFAULTS overridden by `sections`."""

    def __init__(self, name, sections=None, fake_running=True, bus=False):
        on_bus = bus and BUS is not None
        self.fake = FakeOfd()
        if fake_running:
            self.fake.start()
        else:
            self.fake.port = closed_port()
        super().__init__(make_config(self.fake.url, on_bus, sections or {}), name=f"kkt-{name}",
                         bus=BUS if on_bus else False, helpers=[self.fake])


# ---- helpers -----------------------------------------------------------------------------------------------

def post(d, key, i=0):
    """One receipt (varied by i); returns the answer, which must be a 200."""
    body = sample_receipt(pos_id=f"POS-{i % 3}", price=f"{100 + i}.{i % 100:02d}", name=f"Item {i}")
    status, _, answer = d.post_receipt(body, key)
    check(status == 200, f"POST {key} answered {status}: {answer}")
    return answer


def post_many(d, n, prefix):
    """n receipts one after another; returns {receipt_id: answer}."""
    out = {}
    for i in range(n):
        a = post(d, f"{prefix}-{i}", i)
        out[a["receipt_id"]] = a
    return out


def get(d, path):
    status, _, answer = d.request("GET", path)
    check(status == 200, f"GET {path} answered {status}: {answer}")
    return answer


def buffer_status(d):
    return get(d, "/v1/kkt/buffer/status")


def worker(d):
    return get(d, "/v1/kkt/worker/status")


def health(d):
    """GET /v1/health: 200 or 503 both carry the components."""
    _, _, answer = d.request("GET", "/v1/health")
    return answer


def rows(d):
    """{id: row} of buffer.db's receipts."""
    with d.db() as c:
        c.row_factory = lambda cur, r: {col[0]: v for col, v in zip(cur.description, r)}
        return {r["id"]: r for r in c.execute(
            "SELECT id, hlc, status, attempts, print_status, ofd_response, last_error FROM receipts")}


def wait_synced(d, n, timeout, what="receipts synced"):
    try:
        return wait_until(lambda: (lambda b: b if b["synced"] == n else None)(buffer_status(d)), timeout,
                          f"{n} {what}", interval=0.05)
    except TestFailure as e:
        raise TestFailure(f"{e}; buffer status {buffer_status(d)}, worker {worker(d)}") from None


def sync_now(d):
    status, _, answer = d.request("POST", "/v1/kkt/buffer/sync", b"")
    check(status == 202, f"POST /v1/kkt/buffer/sync answered {status}: {answer}")
    return answer


def check_each_once(state, ids, what):
    """Every receipt of ids is stored at the fake exactly once and nothing else is."""
    keys = state["keys"]
    check(len(keys) == len(set(keys)), f"{what}: a key stored twice at the OFD: {keys}")
    check(set(keys) == set(ids), f"{what}: the OFD has {len(keys)} receipts, expected {len(ids)}; "
          f"missing {set(ids) - set(keys)}, unexpected {set(keys) - set(ids)}")


def breaker_changes(recorder):
    return [m.body[1]["CircuitState"][1] for _, m in recorder.taken()
            if m.member == "PropertiesChanged" and m.body[0] == IFACE and "CircuitState" in m.body[1]]


def receipt_signals(recorder, member):
    return [tuple(m.body) for _, m in recorder.taken() if m.member == member and m.interface == IFACE]


def metric(d, name):
    return d.metrics().get(name)


# ---- the tests ---------------------------------------------------------------------------------------------

def test_offline_receipts_all_delivered_once_in_hlc_order_with_fiscal_attributes():
    # MaxInFlight=1 makes the arrival order at the fake the sending order. MaxBackoff=InitialBackoff keeps
    # every failed receipt's retry shorter than OpenTimeout, so each pass finds all 50 due and HLC order is
    # the whole order (a receipt still backing off is rightly sent after later ones). OpenTimeout=2s leaves
    # the checks of the open breaker time before its next trial send.
    sections = {"Sync": {"MaxInFlight": "1", "MaxBackoff": "100ms", "OpenTimeout": "2s"}}
    with Setup("sync-offline", sections, fake_running=False) as s:
        d = s.daemon
        check(metric(d, "kkt_receipts_synced_total") == 0, "synced total before anything")
        answers = post_many(d, 50, "offline")
        ids = list(answers)
        check(all(a["status"] == "printed" and a["fiscal_doc"] for a in answers.values()),
              "receipts were not printed at once with PrintLatency 0")

        # Refused: everything stays pending and the breaker opens.
        wait_until(lambda: worker(d)["circuit_breaker"]["state"] == "open", 10, "the breaker to open")
        b = buffer_status(d)
        check(b["pending"] == 50 and b["synced"] == 0 and b["cb_state"] == "OPEN", f"buffer while refused: {b}")
        w = worker(d)
        check(w["totals"]["failures"]["connection"] >= 5 and w["totals"]["synced"] == 0,
              f"worker while refused: {w['totals']}")
        ofd = health(d)["components"]["ofd"]
        check(ofd["status"] == "degraded" and "open" in ofd["detail"], f"health's ofd while open: {ofd}")
        m = d.metrics()
        check(m["kkt_circuit_breaker_state"] == 2 and m['kkt_circuit_breaker_status{state="open"}'] == 1 and
              m['kkt_circuit_breaker_status{state="closed"}'] == 0 and m["kkt_receipts_synced_total"] == 0,
              f"metrics while open: { {k: v for k, v in m.items() if 'circuit' in k} }")
        failed_before = m["kkt_sync_failed_attempts_total"]
        check(failed_before >= 5, f"failed attempts while refused: {failed_before}")
        check("OFD circuit breaker opened after 5 consecutive failures" in d.log_text(),
              "no log line for the breaker opening")

        # The OFD comes back.
        back = time.monotonic()
        s.fake.start()
        wait_synced(d, 50, 20)
        log(f"50 receipts synced {time.monotonic() - back:.2f} s after the OFD came back")
        b = buffer_status(d)
        check(b["pending"] == 0 and b["dlq_size"] == 0, f"buffer after: {b}")

        st = s.fake.state()
        check_each_once(st, ids, "offline then back")
        check(st["duplicates"] == 0 and st["requests"] == 50 and st["statuses"] == {"200": 50},
              f"the OFD saw resends: requests {st['requests']}, statuses {st['statuses']}")
        db = rows(d)
        by_hlc = sorted(ids, key=lambda i: db[i]["hlc"])
        check(st["keys"] == by_hlc, "not sent in HLC order:\n sent " + " ".join(st["keys"]) +
              "\n hlc  " + " ".join(by_hlc))
        hlcs = [body["hlc"] for body in st["bodies"]]
        check(hlcs == sorted(hlcs) and len(set(hlcs)) == 50, f"body HLCs not increasing: {hlcs}")

        for key, body in zip(st["keys"], st["bodies"]):
            a = answers[key]
            check(body["receipt_id"] == key, f"body of {key} names {body.get('receipt_id')}")
            check(body["pos_id"].startswith("POS-") and isinstance(body["receipt"], dict) and
                  body["receipt"]["pos_id"] == body["pos_id"] and body["receipt"]["items"],
                  f"body of {key}: pos_id/receipt {body}")
            fd = body["fiscal_doc"]
            check(fd == a["fiscal_doc"],
                  f"fiscal_doc of {key} differs from the one printed:\n{fd}\n{a['fiscal_doc']}")
            for attr in ("fiscal_document_number", "fiscal_sign", "fn_number", "registration_number", "inn",
                         "shift_number", "qr", "datetime"):
                check(fd.get(attr) not in (None, ""), f"fiscal_doc of {key} lacks {attr}: {fd}")
            row = db[key]
            check(row["status"] == "synced" and json.loads(row["ofd_response"])["ofd_id"].startswith("ofd-"),
                  f"row of {key}: {row}")

        m = d.metrics()
        check(m["kkt_receipts_synced_total"] == 50,
              f"kkt_receipts_synced_total {m['kkt_receipts_synced_total']}")
        check(m["kkt_sync_duration_seconds_count"] >= 1 and m["kkt_sync_requests_total"] >= 50 + failed_before,
              f"sync duration count {m['kkt_sync_duration_seconds_count']}, requests "
              f"{m['kkt_sync_requests_total']}")
        check(m["kkt_circuit_breaker_state"] == 0 and m['kkt_circuit_breaker_status{state="closed"}'] == 1 and
              m["kkt_dlq_size"] == 0,
              "metrics after recovery")
        ofd = health(d)["components"]["ofd"]
        check(ofd["status"] == "healthy", f"health's ofd after recovery: {ofd}")
        check("OFD circuit breaker closed after successful trial sends" in d.log_text(),
              "no log line for the breaker closing")
        w = worker(d)
        check(w["last_sync"] is not None and w["circuit_breaker"]["state"] == "closed", f"worker after: {w}")
        d.stop_clean()


def test_flapping_ofd_opens_and_closes_the_breaker_and_delivers_all_once():
    # flap count=4: 4 accepted, 4 failed, ... FailureThreshold=2 opens on the 2nd failure of a run; the trial
    # sends of the half-open breaker meet the rest of it, then 2 successes close it again.
    sections = {"Sync": {"MaxInFlight": "1", "FailureThreshold": "2", "CloseAfter": "2",
                         "OpenTimeout": "300ms"}}
    with Setup("sync-flap", sections, bus=True) as s:
        d = s.daemon
        s.fake.mode("flap", count=4)
        ids = list(post_many(d, 20, "flap"))
        started = time.monotonic()
        wait_synced(d, 20, 40)
        log(f"20 receipts through a flapping OFD in {time.monotonic() - started:.2f} s")

        st = s.fake.state()
        check_each_once(st, ids, "flapping")
        check(st["duplicates"] == 0 and st["statuses"].get("500", 0) >= 4,
              f"flapping: duplicates {st['duplicates']}, statuses {st['statuses']}")
        cb = worker(d)["circuit_breaker"]
        check(cb["opened_total"] >= 2 and cb["closed_total"] >= 1 and cb["state"] == "closed",
              f"breaker after flapping: {cb}")
        text = d.log_text()
        check("OFD circuit breaker opened after 2 consecutive failures" in text and
              "OFD circuit breaker closed after successful trial sends" in text and
              "OFD circuit breaker half-open" in text, "breaker transitions missing from the log")
        if s.recorder:
            wait_until(lambda: breaker_changes(s.recorder)[-1:] == ["closed"], 5,
                       "PropertiesChanged CircuitState=closed")
            changes = breaker_changes(s.recorder)
            log(f"CircuitState PropertiesChanged: {changes}")
            check("open" in changes and "half_open" in changes and changes.count("closed") >= 1,
                  f"CircuitState changes: {changes}")
            for a, b in zip(changes, changes[1:]):
                check(a != b and (a, b) in (("closed", "open"), ("open", "half_open"), ("half_open", "open"),
                                            ("half_open", "closed")), f"impossible transition {a} -> {b}")
            check(s.conn.get_property(NAME, PATH, IFACE, "CircuitState") == "closed", "CircuitState property")
            check(s.conn.get_property(NAME, PATH, IFACE, "Synced") == 20, "Synced property")
            synced = {rid for rid, state in receipt_signals(s.recorder, "ReceiptStateChanged")
                      if state == "synced"}
            check(synced == set(ids), f"ReceiptStateChanged synced for {len(synced)} of 20")
        else:
            log("no dbus-daemon: the D-Bus part is skipped")
        d.stop_clean()


def test_hanging_ofd_leaves_intake_and_status_latency_alone():
    sections = {"OFD": {"Timeout": "2s"}, "Sync": {"MaxInFlight": "6"}}
    with Setup("sync-hang", sections) as s:
        d = s.daemon
        s.fake.mode("hang")
        ids = list(post_many(d, 10, "hang"))
        # The first pass sends the first receipt printed, alone, and waits for it: 2 s later the next one
        # sends six at once.
        wait_until(lambda: s.fake.state()["in_flight"] >= 6, 10, "six requests hanging at the OFD")

        worst = {"intake": 0.0, "buffer": 0.0, "health": 0.0, "worker": 0.0}
        deadline = time.monotonic() + 2.5  # across the timeout of those six: unknown outcomes, breaker open
        i = 0
        while time.monotonic() < deadline and i < 300:
            t0 = time.monotonic()
            a = post(d, f"hang-live-{i}", i)
            t1 = time.monotonic()
            buffer_status(d)
            t2 = time.monotonic()
            health(d)
            t3 = time.monotonic()
            worker(d)
            t4 = time.monotonic()
            ids.append(a["receipt_id"])
            for k, v in (("intake", t1 - t0), ("buffer", t2 - t1), ("health", t3 - t2), ("worker", t4 - t3)):
                worst[k] = max(worst[k], v)
            i += 1
            time.sleep(0.02)
        st = s.fake.state()
        log(f"hanging OFD ({st['hung']} requests hung, {i} rounds): max latency intake "
            f"{worst['intake'] * 1000:.1f} ms, buffer status {worst['buffer'] * 1000:.1f} ms, health "
            f"{worst['health'] * 1000:.1f} ms, worker status {worst['worker'] * 1000:.1f} ms")
        for k, v in worst.items():
            check(v < 1.0, f"{k} took {v:.3f} s while the OFD hung")
        check(st["hung"] >= 6 and st["count"] == 0, f"the fake: hung {st['hung']}, stored {st['count']}")
        w = worker(d)
        check(w["totals"]["failures"]["unknown_outcome"] >= 1 and w["totals"]["synced"] == 0,
              f"timeouts after sending are unknown outcomes: {w['totals']}")

        s.fake.mode("accept")
        wait_synced(d, len(ids), 20)
        st = s.fake.state()
        check_each_once(st, ids, "after the hang")
        check(st["duplicates"] == 0, f"hung requests were never stored, yet {st['duplicates']} duplicates")
        d.stop_clean()


def test_rejected_receipt_is_dead_lettered_then_retried_or_resolved():
    with Setup("sync-dlq", {"Sync": {"MaxInFlight": "1"}}, bus=True) as s:
        d = s.daemon
        s.fake.mode("status", status=422)
        ids = [post(d, f"dlq-{i}", i)["receipt_id"] for i in range(3)]
        wait_until(lambda: buffer_status(d)["dlq_size"] == 3, 10, "3 dead letters")
        time.sleep(0.8)  # two more intervals: a dead letter is not sent again
        st = s.fake.state()
        check(st["requests"] == 3 and st["statuses"] == {"422": 3}, f"the OFD saw {st['requests']} requests "
              f"({st['statuses']}) for 3 rejected receipts: dead-lettered at the first 422?")

        listing = get(d, "/v1/kkt/dlq")
        check(listing["count"] == 3 and {e["receipt_id"] for e in listing["dead_letters"]} == set(ids),
              f"GET /v1/kkt/dlq: {listing}")
        for e in listing["dead_letters"]:
            check("422" in e["reason"] and "injected status 422" in e["reason"] and e["attempts"] == 1 and
                  e["resolved"] is False and e["status"] == "dlq", f"dead letter: {e}")
        m = d.metrics()
        check(m["kkt_dlq_size"] == 3 and m["kkt_receipts_dead_lettered_total"] == 3,
              f"metrics: dlq size {m['kkt_dlq_size']}, dead-lettered {m['kkt_receipts_dead_lettered_total']}")
        check("moved to the dead-letter queue after 1 attempt: HTTP 422: injected status 422" in d.log_text(),
              "no log line for the dead letter")
        if s.recorder:
            listed = json.loads(s.call("ListDeadLetters", "b", False)[0])
            check({e["receipt_id"] for e in listed} == set(ids), f"ListDeadLetters(false): {listed}")
            wait_until(lambda: len(receipt_signals(s.recorder, "DeadLettered")) == 3, 5, "3 DeadLettered")
            for rid, reason in receipt_signals(s.recorder, "DeadLettered"):
                check(rid in ids and "injected status 422" in reason, f"DeadLettered({rid}, {reason})")
            dead = {rid for rid, state in receipt_signals(s.recorder, "ReceiptStateChanged")
                    if state == "dead_letter"}
            check(dead == set(ids), f"ReceiptStateChanged dead_letter for {dead}")
            check(s.conn.get_property(NAME, PATH, IFACE, "DeadLettered") == 3, "DeadLettered property")

        # The OFD is fixed: one retried over HTTP, one over D-Bus (or HTTP without a bus), one resolved.
        s.fake.mode("accept")
        a, b, c = ids
        status, _, answer = d.request("POST", f"/v1/kkt/dlq/{a}/retry", b"")
        check(status == 200 and answer == {"receipt_id": a, "status": "pending"},
              f"retry {a}: {status} {answer}")
        wait_until(lambda: rows(d)[a]["status"] == "synced", 5, "the retried receipt synced")
        if s.recorder:
            s.call("RetryDeadLetter", "s", b)
        else:
            check(d.request("POST", f"/v1/kkt/dlq/{b}/retry", b"")[0] == 200, "second HTTP retry")
        wait_until(lambda: rows(d)[b]["status"] == "synced", 5, "the receipt retried over D-Bus synced")
        status, _, answer = d.request("POST", f"/v1/kkt/dlq/{c}/resolve",
                                      {"note": "re-entered by hand at the OFD portal",
                                       "resolved_by": "auditor"})
        check(status == 200 and answer == {"receipt_id": c, "status": "resolved"},
              f"resolve: {status} {answer}")

        # Refused: retrying a synced receipt, resolving twice, retrying a resolved one (final: it was handled
        # by hand, a send now would record it twice), an unknown id, a resolve without a note.
        status, _, answer = d.request("POST", f"/v1/kkt/dlq/{a}/retry", b"")
        check(status == 409 and "not in the dead-letter queue" in answer["detail"], f"retry of a synced receipt: "
              f"{status} {answer}")
        status, _, answer = d.request("POST", f"/v1/kkt/dlq/{c}/resolve", {"note": "again"})
        check(status == 409 and "is resolved" in answer["detail"] and "final" in answer["detail"],
              f"second resolve: {status} {answer}")
        status, _, answer = d.request("POST", f"/v1/kkt/dlq/{c}/retry", b"")
        check(status == 409 and "is resolved" in answer["detail"], f"retry of a resolved one: {status} {answer}")
        check(rows(d)[c]["status"] == "dlq", "the resolved receipt left the dead-letter queue")
        if s.recorder:
            for member, sig, args in (("RetryDeadLetter", "s", (c,)), ("ResolveDeadLetter", "ss", (c, "again"))):
                try:
                    s.call(member, sig, *args)
                    raise TestFailure(f"{member} of a resolved dead letter succeeded")
                except DBusError as e:
                    check(e.name == "org.opticserp.KktAdapter1.Error.Conflict" and "is resolved" in e.message,
                          f"{member}: {e.name}: {e.message}")
        check(d.request("POST", "/v1/kkt/dlq/no-such-receipt/retry", b"")[0] == 404, "retry of an unknown id")
        check(d.request("POST", f"/v1/kkt/dlq/{c}/resolve", {})[0] == 422, "resolve without a note")

        check(get(d, "/v1/kkt/dlq")["count"] == 0, "unresolved dead letters remain")
        entries = {e["receipt_id"]: e for e in get(d, "/v1/kkt/dlq?all=1")["dead_letters"]}
        check(set(entries) == set(ids), f"GET /v1/kkt/dlq?all=1: {entries}")
        e = entries[c]
        check(e["resolved"] is True and e["resolved_by"] == "auditor" and
              e["resolution_note"] == "re-entered by hand at the OFD portal" and e["resolved_at"] and
              e["status"] == "dlq", f"the resolved dead letter: {e}")
        check(entries[a]["resolved_by"] == "http" and entries[a]["resolution_note"] == "retried" and
              entries[a]["status"] == "synced", f"the dead letter retried over HTTP: {entries[a]}")
        if s.recorder:
            check(entries[b]["resolved_by"] == f"dbus:uid={os.geteuid()}" and entries[b]["status"] == "synced",
                  f"the dead letter retried over D-Bus: {entries[b]}")
            listed = json.loads(s.call("ListDeadLetters", "b", True)[0])
            check({x["receipt_id"] for x in listed} == set(ids), f"ListDeadLetters(true): {listed}")
            synced = {rid for rid, state in receipt_signals(s.recorder, "ReceiptStateChanged")
                      if state == "synced"}
            check(synced == {a, b}, f"ReceiptStateChanged synced for {synced}")

        time.sleep(0.7)  # the resolved one stays where it is: never sent again
        st = s.fake.state()
        check_each_once(st, [a, b], "DLQ retries")
        check(st["requests"] == 5, f"{st['requests']} requests: 3 rejected and 2 retried expected")
        bs = buffer_status(d)
        check(bs["synced"] == 2 and bs["dlq_size"] == 1 and bs["pending"] == 0, f"buffer after: {bs}")
        check(rows(d)[c]["status"] == "dlq", "the resolved receipt left the DLQ")
        d.stop_clean()


def concurrent_syncs(d, n=3):
    """n POST /v1/kkt/buffer/sync released at once; returns their answers."""
    barrier = threading.Barrier(n)
    out = [None] * n

    def one(i):
        barrier.wait(timeout=10)
        out[i] = d.request("POST", "/v1/kkt/buffer/sync", b"")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    check(all(o is not None for o in out), "a manual sync did not answer")
    for status, _, answer in out:
        check(status == 202 and answer["status"] in ("started", "already_running"),
              f"manual sync answered {status}: {answer}")
    return [answer["status"] for _, _, answer in out]


def test_concurrent_manual_syncs_send_each_receipt_once():
    # Interval=1h: only printing and the manual syncs start passes. A slow OFD keeps each pass busy, so the
    # triggers land on a running pass; BatchSize=5 makes the drain several passes.
    sections = {"Sync": {"Interval": "1h", "MaxInFlight": "2", "BatchSize": "5"}}
    with Setup("sync-manual", sections) as s:
        d = s.daemon
        s.fake.mode("slow", delay=0.2)
        ids = list(post_many(d, 15, "manual"))
        answers = []
        for _ in range(3):
            answers += concurrent_syncs(d)
            time.sleep(0.15)
        wait_synced(d, 15, 20)
        wait_until(lambda: not worker(d)["syncing"], 5, "the worker to finish its pass")
        answers += concurrent_syncs(d)
        log(f"manual sync answers: {answers}")
        check("started" in answers[-3:], f"three syncs on an idle worker started nothing: {answers[-3:]}")
        time.sleep(0.3)
        st = s.fake.state()
        check_each_once(st, ids, "concurrent manual syncs")
        check(st["requests"] == 15 and st["duplicates"] == 0,
              f"{st['requests']} requests, {st['duplicates']} duplicates for 15 receipts")
        check(st["max_in_flight"] <= 2,
              f"{st['max_in_flight']} requests at once with MaxInFlight=2: two passes at once?")
        d.stop_clean()


def restart_in_flight(kill):
    sections = {"Sync": {"MaxInFlight": "6"}}
    name = "sync-kill" if kill else "sync-term"
    with Setup(name, sections) as s:
        d = s.daemon
        s.fake.mode("slow", delay=1.0)
        ids = list(post_many(d, 20, name))
        wait_until(lambda: s.fake.state()["in_flight"] >= 3, 5, "requests in flight at the slow OFD")
        at_stop = set(s.fake.state()["keys"])  # received by the OFD, answers still on their way
        t0 = time.monotonic()
        if kill:
            d.kill()
        else:
            d.stop_clean()
        took = time.monotonic() - t0
        st = s.fake.state()
        db = rows(d)
        acked = {i for i, r in db.items() if r["status"] == "synced"}
        unknown = set(st["keys"]) - acked  # the OFD has them, the buffer does not know
        log(f"{'kill -9' if kill else 'SIGTERM'} after {len(at_stop)} received, {len(acked)} recorded synced, "
            f"{len(unknown)} outcomes unknown; stopped in {took:.2f} s")
        check(acked <= set(st["keys"]), "the buffer says synced what the OFD never got")
        check(all(db[i]["status"] in ("pending", "synced") for i in ids), "a receipt left pending/synced")
        if not kill:
            # A stop lets the requests in flight finish and records their answers.
            check(not unknown, f"SIGTERM left {len(unknown)} answers unrecorded")

        s.fake.mode("accept")
        s.start()
        wait_synced(d, 20, 20)
        st = s.fake.state()
        check_each_once(st, ids, "after the restart")
        check(set(st["duplicate_keys"]) == unknown and st["duplicates"] == len(unknown) and
              st["statuses"].get("409", 0) == len(unknown),
              f"resends: duplicates {st['duplicate_keys']}, expected exactly the unknown outcomes {unknown}")
        db = rows(d)
        for i in unknown:
            check(db[i]["status"] == "synced" and
                  json.loads(db[i]["ofd_response"])["ofd_id"].startswith("ofd-"),
                  f"the resent receipt {i}: {db[i]}")
        w = worker(d)
        check(w["totals"]["duplicates"] == len(unknown), f"worker duplicates {w['totals']['duplicates']}")
        d.stop_clean()


def test_sigterm_in_the_middle_of_a_sync_loses_nothing_and_sends_nothing_twice():
    restart_in_flight(kill=False)


def test_kill9_in_the_middle_of_a_sync_resends_unknown_outcomes_with_the_same_key():
    restart_in_flight(kill=True)


class ArrivalClock:
    """The fake keeps no times: a thread polls its request counter every 10 ms and stamps each new request on
    sight, so a stamp is at most one poll (plus a state query) late."""

    def __init__(self, fake, limit=10.0):
        self.fake, self.limit = fake, limit
        self.arrivals = []
        self.seen = fake.state()["requests"]  # those came before
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        seen = self.seen
        deadline = time.monotonic() + self.limit
        while not self.closing.is_set() and time.monotonic() < deadline:
            n = self.fake.state()["requests"]
            if n > seen:
                self.arrivals += [time.monotonic()] * (n - seen)
                seen = n
            time.sleep(0.01)

    def stop(self):
        self.closing.set()
        self.thread.join(timeout=5)
        return list(self.arrivals)


def held_phase(s, what, mode, kw, failure, prefix, synced_before):
    """Three receipts while the fake answers `mode` with Retry-After: 1; checks that requests come at least
    0.9 s apart for 3.2 s, then lets them through. Returns their ids."""
    d = s.daemon
    s.fake.mode(mode, retry_after=1, **kw)
    clock = ArrivalClock(s.fake)  # running before the first request can come
    ids = list(post_many(d, 3, prefix))
    wait_until(lambda: clock.arrivals, 5, "the first request")
    time.sleep(max(0.0, clock.arrivals[0] + 3.2 - time.monotonic()))
    arrivals = [t for t in clock.stop() if t <= clock.arrivals[0] + 3.2]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    log(f"{what} with Retry-After: 1: {len(arrivals)} requests in 3.2 s, gaps {[round(g, 3) for g in gaps]}")
    check(2 <= len(arrivals) <= 4, f"{len(arrivals)} requests within 3.2 s of {what} with Retry-After: 1")
    check(all(g >= 0.9 for g in gaps), f"a request came before the Retry-After passed: gaps {gaps}")
    wait_until(lambda: worker(d)["backoff"]["hold_until"], 3, "the hold in the worker status")
    check(worker(d)["totals"]["failures"][failure] >= len(arrivals), f"{failure} failures not counted")

    s.fake.mode("accept")
    wait_synced(d, synced_before + 3, 5)
    return ids


def test_retry_after_holds_every_send_until_it_passed():
    with Setup("sync-429", {"Sync": {"MaxInFlight": "1"}}) as s:
        d = s.daemon
        ids = held_phase(s, "429", "ratelimit", {}, "rate_limited", "ratelimit", 0)
        ids += held_phase(s, "503", "status", {"status": 503}, "unavailable", "unavailable", 3)
        st = s.fake.state()
        check_each_once(st, ids, "after 429 and 503")
        check(st["duplicates"] == 0, "duplicates after 429 and 503")
        w = worker(d)
        f = w["totals"]["failures"]
        check(f["rate_limited"] == st["statuses"]["429"] and f["unavailable"] == st["statuses"]["503"] and
              w["backoff"]["hold_until"] is None, f"at the fake {st['statuses']}, worker {f}, {w['backoff']}")
        d.stop_clean()


def test_dropped_answer_is_resent_with_the_same_key_and_synced_once():
    # "drop": the OFD stores the receipt and closes the connection without answering, an unknown outcome.
    with Setup("sync-drop", {"Sync": {"MaxInFlight": "1"}}) as s:
        d = s.daemon
        s.fake.mode("drop")
        ids = list(post_many(d, 3, "drop"))
        wait_until(lambda: s.fake.state()["count"] == 3, 5, "the three receipts stored at the OFD")
        check(buffer_status(d)["synced"] == 0, "synced without an answer")
        s.fake.mode("accept")
        wait_synced(d, 3, 10)
        st = s.fake.state()
        check_each_once(st, ids, "dropped answers")
        w = worker(d)
        check(w["totals"]["failures"]["unknown_outcome"] >= 3 and w["totals"]["duplicates"] == 3 and
              st["statuses"].get("409", 0) == 3 and set(st["duplicate_keys"]) == set(ids),
              f"resends: worker {w['totals']}, fake statuses {st['statuses']}, "
              f"duplicates {st['duplicate_keys']}")
        d.stop_clean()


def test_unprinted_receipt_is_never_sent():
    with Setup("sync-unprinted", {"Device": {"ResponseTimeout": "0"}}) as s:
        d = s.daemon
        status, _, answer = d.request("POST", "/v1/kkt/debug/device/fault", {"fault": "paper-out"})
        check(status == 200, f"injecting paper-out answered {status}: {answer}")
        a = post(d, "unprinted-1")
        rid = a["receipt_id"]
        check(a["status"] == "buffered", f"with paper out the answer is {a['status']}")
        wait_until(lambda: rows(d)[rid]["print_status"] == "print_failed", 5, "the print to fail")
        for _ in range(3):
            sync_now(d)
            time.sleep(0.35)  # each one a pass, and the 300 ms interval passes too
        w = worker(d)
        st = s.fake.state()
        check(st["requests"] == 0 and w["totals"]["sent"] == 0 and w["totals"]["passes"] >= 3,
              f"an unprinted receipt went to the OFD: fake {st['requests']} requests, worker {w['totals']}")
        check(buffer_status(d)["pending"] == 1, "the unprinted receipt is not pending")

        cleared = time.monotonic()
        status, _, answer = d.request("POST", "/v1/kkt/debug/device/fault", {"fault": "none"})
        check(status == 200, f"clearing the fault answered {status}: {answer}")
        wait_synced(d, 1, 15, "receipt printed and synced")
        log(f"synced {time.monotonic() - cleared:.2f} s after the paper came back (print retry backoff)")
        st = s.fake.state()
        check(st["keys"] == [rid] and st["bodies"][0]["fiscal_doc"]["fiscal_document_number"] >= 1,
              f"the OFD got {st['keys']}")
        check(rows(d)[rid]["print_status"] == "printed", "synced but not printed")
        d.stop_clean()


def main():
    global BUS
    tmp = tempfile.mkdtemp(prefix="kkt-sync-daemon-")
    try:
        if HAVE_DBUS:
            BUS = dbusclient.PrivateBus(tmp).start()
        else:
            log("dbus-daemon not found: the D-Bus checks are skipped")
        run_tests([
            test_offline_receipts_all_delivered_once_in_hlc_order_with_fiscal_attributes,
            test_flapping_ofd_opens_and_closes_the_breaker_and_delivers_all_once,
            test_hanging_ofd_leaves_intake_and_status_latency_alone,
            test_rejected_receipt_is_dead_lettered_then_retried_or_resolved,
            test_concurrent_manual_syncs_send_each_receipt_once,
            test_sigterm_in_the_middle_of_a_sync_loses_nothing_and_sends_nothing_twice,
            test_kill9_in_the_middle_of_a_sync_resends_unknown_outcomes_with_the_same_key,
            test_retry_after_holds_every_send_until_it_passed,
            test_dropped_answer_is_resent_with_the_same_key_and_synced_once,
            test_unprinted_receipt_is_never_sent,
        ])
    finally:
        if BUS:
            BUS.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
