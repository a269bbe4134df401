#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Receipt intake over HTTP against the real daemon: every endpoint and every error status. Each answer is
checked against what buffer.db holds, read-only, as the other tools read it."""

import contextlib
import json
import os
import re
import socket
import sqlite3
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import (DOWN, Daemon, check, check_detail, parse_metrics, read_response,  # noqa: E402
                     run_tests, sample_receipt, wait_until)


# A long heartbeat interval keeps the heartbeat's verdict out of the health states checked here. The
# register's ResponseTimeout=0: a receipt is answered once durable, as intake alone answers it ("buffered"),
# while it is printed behind the answer.
BASE = (f"[Bus]\nAddress=none\n"
        f"[Heartbeat]\nURL=http://127.0.0.1:{DOWN}/api/v1/kkt/heartbeat\nInterval=1h\n"
        f"[OFD]\nURL=http://127.0.0.1:{DOWN}/\n"
        f"[Device]\nResponseTimeout=0\n")


def config(buffer="", http=""):
    return BASE + "[Buffer]\n" + buffer + "[HTTP]\n" + http


@contextlib.contextmanager
def serving(conf):
    """A started daemon, stopped at the end of the block: it must exit 0 without a sanitizer report."""
    with Daemon(conf) as d:
        d.start()
        yield d
        d.stop_clean()


def counts(d):
    """(receipts, idempotency keys) on disk."""
    db = d.db()
    try:
        return (db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0],
                db.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()[0])
    finally:
        db.close()


def check_uuid(s):
    try:
        u = uuid.UUID(s)
    except (ValueError, TypeError, AttributeError):
        u = None
    check(u is not None and str(u) == s and u.variant == uuid.RFC_4122 and u.version in (4, 7),
          f"receipt_id {s!r} is not a lower-case RFC 4122 UUID (random or time-ordered)")


def check_answer_consistent(p, rid):
    """A stored receipt as an answer shows it: buffered without a fiscal document, or printed (behind an
    earlier answer) with the document of this receipt."""
    check(p["receipt_id"] == rid, f"answer names {p['receipt_id']}, expected {rid}")
    if p["status"] == "buffered":
        check(p["fiscal_doc"] is None, f"buffered with a fiscal document: {p}")
    else:
        check(p["status"] == "printed" and isinstance(p["fiscal_doc"], dict), f"answer {p}")
        check(p["fiscal_doc"].get("receipt_id", rid) == rid, f"fiscal document of another receipt: {p}")


def post_ok(d, body, key):
    status, headers, payload = d.post_receipt(body, key)
    check(status == 200, f"POST with key {key!r} answered {status}: {payload}")
    return payload["receipt_id"], headers


# -- POST /v1/kkt/receipt ----------------------------------------------------------------------------------


def test_valid_receipt_is_answered_buffered_and_is_on_disk():
    with serving(config()) as d:
        status, headers, p = d.post_receipt(sample_receipt("POS-7"), "key-valid-1")
        check(status == 200, f"valid receipt answered {status}: {p}")
        check(headers.get("content-type", "").startswith("application/json"), f"content type {headers}")
        check(set(p) == {"status", "receipt_id", "fiscal_doc", "message"}, f"keys of the answer: {sorted(p)}")
        check(p["status"] == "buffered", f"status {p['status']!r}")
        check_uuid(p["receipt_id"])
        check(p["fiscal_doc"] is None, f"fiscal_doc {p['fiscal_doc']!r} before any device")
        check(isinstance(p["message"], str) and p["message"], "empty message")
        check("idempotent-replayed" not in headers, "a first answer claims to be a replay")

        # The answer came after the commit: a second connection sees the row at once.
        db = d.db()
        row = db.execute("SELECT pos_id, status, receipt_type, total_kopecks, hlc, hlc_timestamp, created_at, "
                         "print_status, attempts, receipt_data FROM receipts WHERE id = ?",
                         (p["receipt_id"],)).fetchone()
        check(row is not None, "the acknowledged receipt is not in buffer.db")
        pos_id, st, rtype, total, hlc, hlc_ts, created, print_status, attempts, data = row
        check((pos_id, st, rtype, total) == ("POS-7", "pending", "sale", 150000),
              f"stored pos_id/status/type/total: {row[:4]}")
        check(isinstance(hlc, int) and hlc > 0 and hlc_ts, f"HLC not set: hlc={hlc!r} hlc_timestamp={hlc_ts!r}")
        check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", created or ""), f"created_at {created!r}")
        check(print_status in ("unprinted", "printed") and attempts == 0,
              f"print_status {print_status}, attempts {attempts}")
        doc = json.loads(data)
        check(doc["pos_id"] == "POS-7" and doc["items"][0]["name"] == "Lens", f"receipt_data {data}")
        key = db.execute("SELECT receipt_id, request_hash FROM idempotency_keys WHERE key = ?",
                         ("key-valid-1",)).fetchone()
        check(key is not None and key[0] == p["receipt_id"], f"idempotency row {key} for {p['receipt_id']}")
        check(re.fullmatch(r"[0-9a-f]{64}", key[1] or ""), f"request_hash {key[1]!r} is not a SHA-256")
        db.close()
        check(counts(d) == (1, 1), f"rows after one receipt: {counts(d)}")


def test_idempotency_key_is_required_and_must_be_visible_ascii():
    with serving(config()) as d:
        body = sample_receipt()
        status, _, p = d.post_receipt(body, None)
        check_detail(status, p, 400, "Idempotency-Key")
        for bad in ("", "k" * 256, "two words", "tab\there", "ключ".encode()):
            status, _, p = d.post_receipt(body, bad)
            check_detail(status, p, 400, "Idempotency-Key")
        check(counts(d) == (0, 0), f"rows stored for refused keys: {counts(d)}")
        # The limits themselves are accepted.
        post_ok(d, body, "k" * 255)
        post_ok(d, sample_receipt("POS-2"), "!~")
        check(counts(d) == (2, 2), f"rows after two good keys: {counts(d)}")


def test_idempotency_key_is_trimmed_on_both_sides():
    with serving(config()) as d:
        body = sample_receipt("POS-trim")
        rid, headers = post_ok(d, body, "trim-1 \t ")
        check("idempotent-replayed" not in headers, "the first request is a replay")
        for key in ("trim-1", "  trim-1", "\ttrim-1\t", "trim-1   "):
            again, headers = post_ok(d, body, key)
            check(again == rid and headers.get("idempotent-replayed") == "true",
                  f"key {key!r} is not the same key as 'trim-1 \\t ': {again} vs {rid}, {headers}")
        status, _, p = d.post_receipt(body, " \t ")
        check_detail(status, p, 400, "Idempotency-Key")
        db = d.db()
        keys = [k for (k,) in db.execute("SELECT key FROM idempotency_keys")]
        db.close()
        check(keys == ["trim-1"], f"stored keys {keys}")


def test_same_key_and_same_body_replays_the_stored_answer():
    with serving(config()) as d:
        body = sample_receipt("POS-R", "1500.00")
        rid, _ = post_ok(d, body, "replay-1")
        equivalent = [
            body,
            # other whitespace
            body.replace(": ", ":").replace(", ", ",") + "\n\n",
            # other key order
            ('{"payments": [{"amount": 1500.00, "type": "card"}], "type": "sale", "pos_id": "POS-R", '
             '"items": [{"vat_rate": 22, "total": 1500.00, "quantity": 1, "price": 1500.00, "name": "Lens"}]}'),
            # 1500 is 1500.00; 1 is 1.000
            sample_receipt("POS-R", "1500").replace('"quantity": 1,', '"quantity": 1.000,'),
        ]
        for i, b in enumerate(equivalent):
            status, headers, p = d.post_receipt(b, "replay-1")
            check(status == 200, f"equivalent body #{i} answered {status}: {p}")
            check(p["receipt_id"] == rid, f"replay #{i} gave {p['receipt_id']}, first answer {rid}")
            check(headers.get("idempotent-replayed") == "true", f"replay #{i} lacks Idempotent-Replayed: {headers}")
            check_answer_consistent(p, rid)
        check(counts(d) == (1, 1), f"replays stored rows: {counts(d)}")

        for b in (sample_receipt("POS-R", "1600.00"), sample_receipt("POS-OTHER", "1500.00"),
                  sample_receipt("POS-R", "1500.00", name="Frame")):
            status, headers, p = d.post_receipt(b, "replay-1")
            check_detail(status, p, 422, "Idempotency-Key")
            check("idempotent-replayed" not in headers, "a mismatch is marked as a replay")
        check(counts(d) == (1, 1), f"key mismatches stored rows: {counts(d)}")
        m = d.metrics()
        check(m['kkt_receipts_received_total{outcome="accepted"}'] == 1, f"accepted counter: {m}")
        check(m['kkt_receipts_received_total{outcome="replayed"}'] == len(equivalent), f"replayed counter: {m}")


class Poster(threading.Thread):
    """One POST on its own connection, in the background."""

    def __init__(self, d, body, key, timeout=30):
        super().__init__(daemon=True)
        self.d, self.body, self.key, self.timeout = d, body, key, timeout
        self.result = None
        self.error = None

    def run(self):
        try:
            self.result = self.d.post_receipt(self.body, self.key, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


def test_same_key_while_in_flight_is_409():
    """Another process holding buffer.db's write lock keeps the first request from committing (the writer
    waits out its busy timeout of 5 s), so the second request with that key surely finds it in flight."""
    with serving(config()) as d:
        post_ok(d, sample_receipt("POS-warm"), "warm-up")
        body = sample_receipt("POS-409")
        lock = sqlite3.connect(d.db_path, isolation_level=None, timeout=5)
        lock.execute("BEGIN IMMEDIATE")
        released = False
        try:
            first = Poster(d, body, "in-flight")
            first.start()
            time.sleep(0.2)
            second = Poster(d, body, "in-flight")
            second.start()
            # Whichever reached the daemon second is refused at once, while the lock is still held.
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and not (first.result or second.result):
                time.sleep(0.01)
            done = [t for t in (first, second) if t.result]
            check(len(done) == 1, f"expected exactly one answer while the write lock is held, got "
                                  f"{[t.result for t in (first, second)]} {first.error} {second.error}")
            status, _, p = done[0].result
            check_detail(status, p, 409, "Idempotency-Key")
            waiting = second if done[0] is first else first
            # A different body with the key in flight is a conflict too, not a mismatch: nothing is decided yet.
            status, _, p = d.post_receipt(sample_receipt("POS-other"), "in-flight", timeout=3)
            check_detail(status, p, 409)
            check(waiting.is_alive(), "the first request was answered while the database was locked")
            lock.execute("ROLLBACK")
            released = True
        finally:
            if not released:
                lock.execute("ROLLBACK")
            lock.close()
        waiting.join(20)
        check(waiting.result is not None, f"no answer after the lock was released: {waiting.error}")
        status, _, p = waiting.result
        check(status == 200, f"the request in flight answered {status} after the lock was released: {p}")
        rid2, headers = post_ok(d, body, "in-flight")
        check(rid2 == p["receipt_id"] and headers.get("idempotent-replayed") == "true",
              "after the first request landed, the same key replays it")
        check(counts(d) == (2, 2), f"rows: {counts(d)}")
        check(d.metrics()['kkt_receipts_received_total{outcome="conflict"}'] == 2, "conflict counter")


def test_client_gone_while_in_flight_still_gets_its_receipt_stored():
    """A client that hangs up while its receipt waits for the commit: the receipt is still stored once, the
    dropped answer harms nothing, and a retry with the key replays it."""
    with serving(config()) as d:
        post_ok(d, sample_receipt("POS-warm"), "warm-up")
        body = sample_receipt("POS-gone").encode()
        lock = sqlite3.connect(d.db_path, isolation_level=None, timeout=5)
        lock.execute("BEGIN IMMEDIATE")
        try:
            socks = []
            for i in range(3):
                s = d.connect()
                s.sendall(b"POST /v1/kkt/receipt HTTP/1.1\r\nHost: kkt\r\nIdempotency-Key: gone-%d\r\n"
                          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (i, len(body), body))
                socks.append(s)
            time.sleep(0.3)
            for s in socks:
                s.close()
            time.sleep(0.2)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        deadline = time.monotonic() + 10
        while counts(d) != (4, 4) and time.monotonic() < deadline:
            time.sleep(0.05)
        check(counts(d) == (4, 4), f"(receipts, keys) {counts(d)}, expected 3 abandoned and 1 earlier receipt")
        rid, headers = post_ok(d, body, "gone-1")
        check(headers.get("idempotent-replayed") == "true", "the retry of an abandoned request is not a replay")
        check(counts(d) == (4, 4), f"rows after the retry: {counts(d)}")
        status, _, _ = d.request("GET", "/v1/health")
        check(status == 200, f"health after abandoned requests: {status}")


def test_pipelined_requests_are_answered_in_order():
    """Requests sent back to back on one connection: each POST parks the connection until its commit, and the
    ones behind it are answered after it, in order."""
    with serving(config()) as d:
        s = d.connect()
        wire = b""
        for i in range(5):
            body = sample_receipt(f"POS-pipe-{i}").encode()
            wire += (b"POST /v1/kkt/receipt HTTP/1.1\r\nHost: kkt\r\nIdempotency-Key: pipe-%d\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (i, len(body), body))
        wire += b"GET /v1/kkt/buffer/status HTTP/1.1\r\nHost: kkt\r\n\r\n"
        s.sendall(wire)
        ids = []
        for i in range(5):
            r = read_response(s)
            check(r is not None and r[0] == 200, f"pipelined POST {i} answered {r}")
            ids.append(json.loads(r[2])["receipt_id"])
        r = read_response(s)
        s.close()
        check(r is not None and r[0] == 200 and json.loads(r[2])["current_queued"] == 5,
              f"the GET behind five POSTs answered {r}")
        db = d.db()
        keys = dict(db.execute("SELECT key, receipt_id FROM idempotency_keys").fetchall())
        db.close()
        check([keys.get(f"pipe-{i}") for i in range(5)] == ids, f"answers out of order: {ids} vs {keys}")


def test_concurrent_same_key_requests_store_one_receipt():
    rounds, per_round = 15, 6
    with serving(config()) as d:
        conflicts = 0
        deadline = time.monotonic() + 30
        for r in range(rounds):
            check(time.monotonic() < deadline, "rounds take too long")
            key, body = f"race-{r}", sample_receipt(f"POS-race-{r}")
            barrier = threading.Barrier(per_round)
            results = [None] * per_round

            def post(i):
                barrier.wait(10)
                results[i] = d.post_receipt(body, key, timeout=20)

            threads = [threading.Thread(target=post, args=(i,), daemon=True) for i in range(per_round)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            check(all(results), f"round {r}: some requests got no answer")
            ids = {p["receipt_id"] for s, _, p in results if s == 200}
            others = [(s, p) for s, _, p in results if s not in (200, 409)]
            check(not others, f"round {r}: answers other than 200 and 409: {others}")
            check(len(ids) == 1, f"round {r}: 200 answers name {len(ids)} receipts: {ids}")
            conflicts += sum(1 for s, _, _ in results if s == 409)
        check(counts(d) == (rounds, rounds), f"{rounds} keys stored as {counts(d)} rows")
        sys.stderr.write(f"   {conflicts} of {rounds * per_round} concurrent same-key requests got 409\n")


def test_invalid_receipts_are_rejected_with_a_detail_and_not_stored():
    def body(**changes):
        doc = {"pos_id": "POS-1", "type": "sale",
               "items": [{"name": "Lens", "price": "@1500.00", "quantity": 1, "total": "@1500.00", "vat_rate": 22}],
               "payments": [{"type": "card", "amount": "@1500.00"}]}
        for path, value in changes.items():
            *parents, last = path.split("__")
            o = doc
            for k in parents:
                o = o[int(k)] if isinstance(o, list) else o[k]
            if value is DELETE:
                del o[last]
            elif isinstance(o, list):
                o[int(last)] = value
            else:
                o[last] = value
        # "@1.5" stands for the number written exactly as 1.5, which json.dumps cannot do.
        return re.sub(r'"@([^"]*)"', r"\1", json.dumps(doc, ensure_ascii=False))

    DELETE = object()
    item = {"name": "Lens", "price": 1, "quantity": 1, "total": 1, "vat_rate": 22}
    cases = [
        ("malformed JSON", '{"pos_id": "POS-1", "type": ', 400, "JSON"),
        ("trailing garbage", body() + " x", 400, "JSON"),
        ("not an object", "[1, 2]", 400, "object"),
        ("empty body", "", 400, "body"),
        ("invalid UTF-8 in a string", body(items__0__name="Lens").replace("Lens", "L\udcffns")
            .encode("utf-8", "surrogateescape"), 400, "UTF-8"),
        ("pos_id a number", body(pos_id=123), 422, "pos_id"),
        ("pos_id missing", body(pos_id=DELETE), 422, "pos_id"),
        ("type missing", body(type=DELETE), 422, "type"),
        ("unknown type", body(type="gift"), 422, "type"),
        ("items missing", body(items=DELETE), 422, "items"),
        ("items an object", body(items={}), 422, "items"),
        ("items empty", body(items=[]), 422, "items"),
        ("too many items", body(items=[item] * 4, payments=[{"type": "card", "amount": 4}]), 422, "items"),
        ("item not an object", body(items=["Lens"]), 422, "items[0]"),
        ("name missing", body(items__0__name=DELETE), 422, "items[0].name"),
        ("name empty", body(items__0__name=""), 422, "items[0].name"),
        ("name 256 characters", body(items__0__name="Ж" * 256), 422, "items[0].name"),
        ("NUL in name", body(items__0__name="Le\u0000ns"), 422, "items[0].name"),
        ("price a boolean", body(items__0__price=True), 422, "items[0].price"),
        ("price missing", body(items__0__price=DELETE), 422, "items[0].price"),
        ("price with 3 decimals", body(items__0__price="@1500.001"), 422, "items[0].price"),
        ("price in exponent form", body(items__0__price="@1.5e3"), 422, "items[0].price"),
        ("price out of range", body(items__0__price="@99999999999999999999"), 422, "items[0].price"),
        ("price negative", body(items__0__price="@-1500.00"), 422, "items[0].price"),
        ("quantity negative", body(items__0__quantity=-1), 422, "items[0].quantity"),
        ("quantity zero", body(items__0__quantity=0), 422, "items[0].quantity"),
        ("quantity with 4 decimals", body(items__0__quantity="@1.0001"), 422, "items[0].quantity"),
        ("total 2 kopecks over", body(items__0__total="@1500.02"), 422, "items[0].total"),
        ("total 2 kopecks under", body(items__0__total="@1499.98"), 422, "items[0].total"),
        ("unknown VAT rate", body(items__0__vat_rate=18), 422, "vat"),
        ("payments missing", body(payments=DELETE), 422, "payments"),
        ("payments empty", body(payments=[]), 422, "payments"),
        ("unknown payment type", body(payments__0__type="barter"), 422, "payments[0]"),
        ("payment zero", body(payments__0__amount=0), 422, "payments[0]"),
        ("payments 1 kopeck short", body(payments__0__amount="@1499.99"), 422, "payments"),
        ("card 1 kopeck over", body(payments__0__amount="@1500.01"), 422, "payments"),
        ("unknown field", body(items__0__colour="red"), 422, "colour"),
        ("vat 20 % on a 2026 sale", body(items__0__vat_rate=20), 422, "22"),
    ]
    with serving(config(buffer="MaxItems=3\n")) as d:
        for i, (what, b, want, word) in enumerate(cases):
            status, headers, p = d.post_receipt(b, f"invalid-{i}")
            try:
                check_detail(status, p, want, word)
            except Exception as e:
                raise type(e)(f"{what}: {e}")
        check(counts(d) == (0, 0), f"rejected receipts left rows: {counts(d)}")
        m = d.metrics()
        check(m['kkt_receipts_received_total{outcome="invalid"}'] == len(cases), f"invalid counter {m}")
        check(m['kkt_receipts_received_total{outcome="accepted"}'] == 0, "accepted counter moved")

        # The limits themselves, one kopeck of a line's rounding either way, and cash above the total (the
        # change) are accepted; payments are exact since the fiscal day's rules.
        good = [
            body(items=[item] * 3, payments=[{"type": "cash", "amount": 3}]),
            body(items__0__name="Ж" * 255),
            body(items__0__total="@1500.01", payments__0__amount="@1500.01"),
            body(items__0__total="@1499.99", payments__0__amount="@1499.99"),
            body(payments=[{"type": "cash", "amount": "@1500.01"}]),
            body(payments=[{"type": "cash", "amount": "@2000.00"}]),
        ]
        for i, b in enumerate(good):
            status, _, p = d.post_receipt(b, f"good-{i}")
            check(status == 200, f"acceptable receipt #{i} answered {status}: {p}")
        check(counts(d) == (len(good), len(good)), f"rows after the acceptable ones: {counts(d)}")


def test_full_buffer_answers_503_and_still_replays():
    with serving(config(buffer="Capacity=5\n")) as d:
        ids = [post_ok(d, sample_receipt(f"POS-{i}"), f"cap-{i}")[0] for i in range(5)]
        status, headers, p = d.post_receipt(sample_receipt("POS-5"), "cap-5")
        check_detail(status, p, 503, "full")
        check(headers.get("retry-after", "").isdigit(), f"503 without a Retry-After in seconds: {headers}")
        check(counts(d) == (5, 5), f"rows after the refused 6th receipt: {counts(d)}")
        status, headers, p = d.post_receipt(sample_receipt("POS-0"), "cap-0")
        check(status == 200 and p["receipt_id"] == ids[0], f"replay on a full buffer answered {status}: {p}")
        check(headers.get("idempotent-replayed") == "true", "replay on a full buffer is not marked")
        check(counts(d) == (5, 5), f"rows after the replay: {counts(d)}")

        status, _, h = d.request("GET", "/v1/health")
        check(status == 503 and h["status"] == "unhealthy", f"health with a full buffer: {status} {h}")
        check(h["components"]["buffer"]["status"] == "unhealthy", f"buffer component: {h['components']}")
        status, _, b = d.request("GET", "/v1/kkt/buffer/status")
        check(b["current_queued"] == 5 and b["percent_full"] == 100, f"buffer status when full: {b}")
        check(d.metrics()['kkt_receipts_received_total{outcome="buffer_full"}'] == 1, "buffer_full counter")


# -- HTTP limits -------------------------------------------------------------------------------------------


def test_full_disk_answers_507_and_keeps_what_was_acknowledged():
    """SQLITE_FULL (the debug hook caps the database at a few pages, as a full disk would) is a 507 with a
    detail, health turns unhealthy, and every receipt acknowledged before is still there after a restart
    without the cap."""
    with Daemon(config(), env={"KKT_ADAPTER_DEBUG_MAX_PAGES": "60"}) as d:
        d.start()
        acknowledged, full = [], None
        for i in range(3000):
            status, _, p = d.post_receipt(sample_receipt(f"POS-{i}"), f"disk-{i}")
            if status == 507:
                full = p
                break
            check(status == 200, f"receipt {i}: {status} {p}")
            acknowledged.append(p["receipt_id"])
        check(full is not None, "3000 receipts fitted into 60 pages: the cap is not applied")
        check_detail(507, full, 507, "storage")
        check(len(acknowledged) > 0, "the first receipt already did not fit")
        status, _, h = d.request("GET", "/v1/health")
        check(status == 503 and h["components"]["store"]["status"] == "unhealthy", f"health: {status} {h}")
        check(d.stop() == 0, "exit code after a full disk is not 0")

        d.extra_env.pop("KKT_ADAPTER_DEBUG_MAX_PAGES")
        d.start()
        for rid in acknowledged:
            status, _, r = d.request("GET", f"/v1/kkt/receipt/{rid}")
            check(status == 200, f"acknowledged receipt {rid} is gone after the disk filled up: {status}")
        status, _, p = d.post_receipt(sample_receipt("POS-after"), "disk-after")
        check(status == 200, f"with room again: {status} {p}")
        d.stop_clean()


def test_body_over_limit_with_content_length_is_refused_before_it_is_read():
    with serving(config(http="MaxBodySize=4K\n")) as d:
        # Announces 100 MB and sends 100 bytes: the answer must not wait for the rest.
        s = d.connect()
        s.sendall(b"POST /v1/kkt/receipt HTTP/1.1\r\nHost: kkt\r\nIdempotency-Key: big-1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n" + b"{" * 100)
        r = read_response(s, timeout=10)
        s.close()
        check(r is not None, "no answer to an announced 100 MB body")
        status, headers, raw = r
        check(status == 413, f"announced 100 MB body answered {status}")
        check_detail(status, json.loads(raw), 413, "too large")
        check(headers.get("content-type", "").startswith("application/json"), f"413 is not JSON: {headers}")

        # 4097 announced, nothing sent: refused on the header alone.
        s = d.connect()
        s.sendall(b"POST /v1/kkt/receipt HTTP/1.1\r\nHost: kkt\r\nIdempotency-Key: big-2\r\n"
                  b"Content-Length: 4097\r\n\r\n")
        r = read_response(s, timeout=10)
        s.close()
        check(r is not None and r[0] == 413, f"4097 announced bytes answered {r}")

        # Exactly the limit is accepted.
        body = sample_receipt("POS-4K")
        body += " " * (4096 - len(body))
        status, _, p = d.post_receipt(body, "big-3")
        check(status == 200, f"a receipt of exactly 4096 bytes answered {status}: {p}")
        check(counts(d) == (1, 1), f"rows: {counts(d)}")


def chunked(data, size):
    out = b""
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def test_chunked_body_growing_past_limit_is_refused():
    head = (b"POST /v1/kkt/receipt HTTP/1.1\r\nHost: kkt\r\nIdempotency-Key: %s\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    with serving(config(http="MaxBodySize=4K\n")) as d:
        # A small chunked receipt is put together and stored.
        s = d.connect()
        s.sendall(head % b"chunk-ok" + chunked(sample_receipt("POS-chunk").encode(), 50))
        r = read_response(s)
        s.close()
        check(r is not None and r[0] == 200, f"small chunked receipt answered {r}")

        # 8K in 1K chunks: 413 with a JSON detail once the body ended.
        s = d.connect()
        s.sendall(head % b"chunk-big" + chunked(b" " * 8192, 1024))
        r = read_response(s)
        s.close()
        check(r is not None, "no answer to a chunked body past the limit")
        check_detail(r[0], json.loads(r[2]), 413, "too large")

        # A chunked body that does not stop is cut off; the sender sees the connection fail.
        s = d.connect()
        s.sendall(head % b"chunk-endless")
        sent, failed = 0, False
        deadline = time.monotonic() + 15
        piece = chunked(b" " * 65536, 65536)[:-5]  # one chunk, without the final one
        try:
            while sent < 64 * 1024 * 1024 and time.monotonic() < deadline:
                s.sendall(piece)
                sent += len(piece)
        except OSError:
            failed = True
        s.close()
        check(failed, f"the server kept reading an endless chunked body ({sent} bytes sent)")

        check(counts(d) == (1, 1), f"rows: {counts(d)}")
        status, _, _ = d.request("GET", "/v1/health")
        check(status == 200, f"health after refused bodies: {status}")


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow():
    with serving(config()) as d:
        for path in ("/nope", "/v1/kkt", "/v1/kkt/receipt/a/b", "/v2/health"):
            status, headers, p = d.request("GET", path)
            check_detail(status, p, 404)
            check(headers.get("content-type", "").startswith("application/json"), f"404 not JSON: {headers}")
        for method, path, allow in (("GET", "/v1/kkt/receipt", "POST"), ("DELETE", "/v1/kkt/receipt", "POST"),
                                    ("POST", "/v1/health", "GET, HEAD"), ("PUT", "/metrics", "GET, HEAD"),
                                    ("POST", "/v1/kkt/buffer/status", "GET, HEAD")):
            status, headers, p = d.request(method, path, body="{}" if method in ("POST", "PUT") else None)
            check_detail(status, p, 405)
            check(headers.get("allow") == allow, f"{method} {path}: Allow {headers.get('allow')!r}, want {allow!r}")
        status, headers, p = d.request("PATCH", "/")
        check_detail(status, p, 405)
        check("allow" in headers, f"405 for PATCH without Allow: {headers}")
        for path in ("/", "/v1/health", "/health", "/v1/kkt/buffer/status", "/metrics"):
            status, headers, p = d.request("HEAD", path)
            check(status == 200, f"HEAD {path} answered {status}")
            check(p is None, f"HEAD {path} came with a body: {p!r}")
            check(int(headers.get("content-length", "0")) > 0, f"HEAD {path}: no Content-Length of the GET body")
        check(counts(d) == (0, 0), "rows stored")


def test_connections_over_the_limit_evict_the_longest_idle():
    # Refusal with 503 when every connection is busy: tests/test-http-slowloris.py.
    with serving(config(http="MaxConnections=4\nConnectionTimeout=30s\n")) as d:
        import http.client
        conns = []
        try:
            for _ in range(4):
                c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
                c.request("GET", "/")
                r = c.getresponse()
                r.read()
                check(r.status == 200, f"connection {len(conns) + 1} of 4 answered {r.status}")
                conns.append(c)
            conns[0].request("GET", "/metrics")
            r = conns[0].getresponse()
            m = parse_metrics(r.read().decode())
            check(m["kkt_http_connections"] == 4, f"open connections {m['kkt_http_connections']}, expected 4")

            # A fifth takes the place of the longest idle one: conns[1], as conns[0] was used since.
            status, headers, p = d.request("GET", "/", timeout=10)
            check(status == 200, f"a connection over the limit answered {status}: {p}")
            conns[1].sock.settimeout(5)
            try:
                gone = conns[1].sock.recv(1) == b""
            except ConnectionResetError:
                gone = True
            check(gone, "the longest idle connection was not closed for the new one")
            # The others keep working.
            for k in (0, 2, 3):
                conns[k].request("GET", "/v1/health")
                r = conns[k].getresponse()
                r.read()
                check(r.status == 200, f"admitted connection {k} answered {r.status} after the eviction")
        finally:
            for c in conns:
                c.close()


def test_idle_and_slow_connections_are_closed_after_the_timeout():
    with serving(config(http="ConnectionTimeout=2s\n")) as d:

        def closed_after(sock, start):
            sock.settimeout(10)
            try:
                while sock.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            except socket.timeout:
                check(False, "connection still open 10 s after going idle (timeout 2 s)")
            return time.monotonic() - start

        start = time.monotonic()
        silent = d.connect()
        slow = d.connect()
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: k")  # and never the rest
        kept = d.connect()
        kept.sendall(b"GET / HTTP/1.1\r\nHost: kkt\r\n\r\n")
        r = read_response(kept)
        check(r is not None and r[0] == 200, f"keep-alive request answered {r}")
        for what, s in (("silent", silent), ("slow", slow), ("idle keep-alive", kept)):
            t = closed_after(s, start)
            s.close()
            check(1.0 <= t < 6, f"{what} connection closed after {t:.1f} s (timeout 2 s)")
        status, _, _ = d.request("GET", "/v1/health")
        check(status == 200, f"health after the timeouts: {status}")


def test_oversized_headers_are_rejected_and_the_server_carries_on():
    with serving(config(http="MaxHeaderSize=16K\n")) as d:
        s = d.connect()
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: kkt\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
        r = read_response(s)
        s.close()
        check(r is not None, "no answer to a 64K header")
        check(400 <= r[0] < 500, f"a 64K header answered {r[0]}")
        # Many header lines adding up past the limit as well.
        s = d.connect()
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: kkt\r\n" +
                  b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(300)) + b"\r\n")
        r = read_response(s)
        s.close()
        check(r is not None and 400 <= r[0] < 500, f"300 header lines answered {r}")
        status, _, _ = d.request("GET", "/v1/health", headers={"X-Normal": "a" * 2000})
        check(status == 200, f"health after oversized headers: {status}")


# -- the other endpoints -----------------------------------------------------------------------------------


def test_get_receipt_shows_the_stored_receipt_and_404_for_unknown_ids():
    with serving(config()) as d:
        rid, _ = post_ok(d, sample_receipt("POS-G"), "get-1")
        status, _, r = d.request("GET", f"/v1/kkt/receipt/{rid}")
        check(status == 200, f"GET of a stored receipt answered {status}: {r}")
        for k in ("receipt_id", "status", "created_at", "updated_at", "attempts", "last_error", "fiscal_doc",
                  "hlc", "receipt"):
            check(k in r, f"GET receipt lacks {k}: {sorted(r)}")
        check_answer_consistent(r, rid)
        check(r["attempts"] == 0 and r["last_error"] is None, f"GET receipt: {r}")
        check(r["pos_id"] == "POS-G" and r["type"] == "sale", f"GET receipt: {r}")
        check(r["receipt"]["items"][0]["name"] == "Lens", f"GET receipt body: {r['receipt']}")
        db = d.db()
        hlc, created = db.execute("SELECT hlc, created_at FROM receipts WHERE id = ?", (rid,)).fetchone()
        db.close()
        check(r["hlc"] == str(hlc) and r["created_at"] == created, f"GET receipt {r['hlc']}/{r['created_at']} "
                                                              f"vs on disk {hlc}/{created}")
        status, _, r2 = d.request("GET", f"/v1/kkt/receipt/{rid}/")
        check(status == 200 and r2["receipt_id"] == rid, f"trailing slash: {status}")
        for unknown in (str(uuid.uuid4()), "not-a-uuid", "%27%20OR%201%3D1"):
            status, _, p = d.request("GET", f"/v1/kkt/receipt/{unknown}")
            check_detail(status, p, 404)


def test_buffer_status_has_all_keys_with_right_values():
    with serving(config(buffer="Capacity=8\n")) as d:
        status, _, b = d.request("GET", "/v1/kkt/buffer/status")
        check(status == 200, f"buffer status answered {status}")
        keys = {"total_capacity", "current_queued", "percent_full", "network_status", "total_receipts", "pending",
                "synced", "failed", "dlq_size", "buffer_percent", "buffer_count", "cb_state"}
        check(keys <= set(b), f"buffer status lacks {keys - set(b)}")
        check(b["total_capacity"] == 8 and b["current_queued"] == 0 and b["total_receipts"] == 0, f"empty: {b}")
        for i in range(3):
            post_ok(d, sample_receipt(f"POS-{i}"), f"status-{i}")
        post_ok(d, sample_receipt("POS-0"), "status-0")  # a replay adds nothing
        d.post_receipt("{", "status-bad")                 # nor does a rejected one
        status, _, b = d.request("GET", "/v1/kkt/buffer/status")
        want = {"total_capacity": 8, "current_queued": 3, "percent_full": 37.5, "total_receipts": 3, "pending": 3,
                "synced": 0, "failed": 0, "dlq_size": 0, "buffer_percent": 37.5, "buffer_count": 3}
        got = {k: b[k] for k in want}
        check(got == want, f"buffer status after 3 receipts: {got}, expected {want}")
        check(isinstance(b["network_status"], str) and b["network_status"], f"network_status {b}")
        check(b["cb_state"] is None or isinstance(b["cb_state"], str), f"cb_state {b['cb_state']!r}")
        db = d.db()
        view = db.execute("SELECT pending, total FROM v_buffer_status").fetchone()
        db.close()
        check(view == (3, 3), f"the prototype's view v_buffer_status says {view}")


def wait_device_settled(d):
    """The register (when there is one) reports ready once opened: wait, so that its start-up state does not
    colour the overall health."""
    def settled():
        status, _, h = d.request("GET", "/v1/health")
        dev = h.get("components", {}).get("device")
        return dev is None or dev["status"] == "healthy"
    wait_until(settled, 10, "the register to be ready", interval=0.05)


def test_health_is_healthy_degraded_on_low_disk():
    with serving(config()) as d:
        wait_device_settled(d)
        for path in ("/v1/health", "/health"):
            status, _, h = d.request("GET", path)
            check(status == 200 and h["status"] == "healthy", f"{path}: {status} {h}")
            for c in ("store", "disk", "buffer"):
                check(h["components"][c]["status"] == "healthy", f"{path}: component {c}: {h['components']}")
    with serving(config(buffer="MinFreeDisk=1T\n")) as d:
        wait_device_settled(d)
        status, _, h = d.request("GET", "/v1/health")
        check(status == 200 and h["status"] == "degraded", f"health with 1T required free: {status} {h}")
        check(h["components"]["disk"]["status"] == "degraded", f"disk component: {h['components']['disk']}")
        check(h["components"]["store"]["status"] == "healthy", f"store component: {h['components']['store']}")
        # Degraded, not down: receipts are still taken.
        post_ok(d, sample_receipt(), "low-disk")


def test_metrics_and_root():
    with serving(config()) as d:
        status, headers, text = d.request("GET", "/metrics")
        check(status == 200 and headers.get("content-type", "").startswith("text/plain"), f"/metrics: {headers}")
        check("# TYPE kkt_http_requests_total counter" in text, "no TYPE line for kkt_http_requests_total")
        before = parse_metrics(text)
        post_ok(d, sample_receipt(), "m-1")
        post_ok(d, sample_receipt(), "m-1")
        d.post_receipt("{", "m-2")
        d.request("GET", "/nope")
        after = d.metrics()

        def delta(name):
            return after.get(name, 0) - before.get(name, 0)

        check(delta('kkt_receipts_received_total{outcome="accepted"}') == 1, "accepted did not count 1")
        check(delta('kkt_receipts_received_total{outcome="replayed"}') == 1, "replayed did not count 1")
        check(delta('kkt_receipts_received_total{outcome="invalid"}') == 1, "invalid did not count 1")
        check(delta("kkt_http_requests_total") == 5, f"requests counted {delta('kkt_http_requests_total')} of 5")
        check(delta('kkt_http_responses_total{class="4xx"}') == 2, "4xx did not count 2")
        check(delta('kkt_http_responses_total{class="2xx"}') >= 3, "2xx did not count the 200s")
        check(after['kkt_buffer_receipts{status="pending"}'] == 1, "pending gauge")
        check(delta("kkt_store_jobs_total") >= 2 and delta("kkt_store_transactions_total") >= 1,
              "store counters did not move")

        status, _, p = d.request("GET", "/")
        check(status == 200 and p.get("name") == "kkt-adapter" and re.match(r"^\d+\.\d+", p.get("version", "")),
              f"GET /: {status} {p}")


def test_fifty_concurrent_posts_all_land_exactly_once():
    n = 50
    with serving(config()) as d:
        barrier = threading.Barrier(n)
        results = [None] * n

        def post(i):
            barrier.wait(20)
            results[i] = d.post_receipt(sample_receipt(f"POS-{i}"), f"fifty-{i}", timeout=30)

        threads = [threading.Thread(target=post, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        check(all(results), f"{sum(1 for r in results if not r)} requests got no answer")
        bad = [(s, p) for s, _, p in results if s != 200]
        check(not bad, f"concurrent POSTs not answered 200: {bad[:3]}")
        ids = [p["receipt_id"] for _, _, p in results]
        check(len(set(ids)) == n, f"{len(set(ids))} distinct receipt ids for {n} receipts")
        db = d.db()
        rows = dict(db.execute("SELECT key, receipt_id FROM idempotency_keys").fetchall())
        stored = {r[0] for r in db.execute("SELECT id FROM receipts")}
        db.close()
        check(len(rows) == n and len(stored) == n, f"{len(stored)} receipts and {len(rows)} keys stored for {n}")
        for i, rid in enumerate(ids):
            check(rows.get(f"fifty-{i}") == rid and rid in stored, f"fifty-{i}: answered {rid}, stored "
                                                                   f"{rows.get(f'fifty-{i}')}")
        m = d.metrics()
        sys.stderr.write(f"   {n} receipts in {int(m['kkt_store_transactions_total'])} transactions\n")


run_tests([
    test_valid_receipt_is_answered_buffered_and_is_on_disk,
    test_idempotency_key_is_required_and_must_be_visible_ascii,
    test_idempotency_key_is_trimmed_on_both_sides,
    test_same_key_and_same_body_replays_the_stored_answer,
    test_same_key_while_in_flight_is_409,
    test_client_gone_while_in_flight_still_gets_its_receipt_stored,
    test_pipelined_requests_are_answered_in_order,
    test_concurrent_same_key_requests_store_one_receipt,
    test_invalid_receipts_are_rejected_with_a_detail_and_not_stored,
    test_full_buffer_answers_503_and_still_replays,
    test_full_disk_answers_507_and_keeps_what_was_acknowledged,
    test_body_over_limit_with_content_length_is_refused_before_it_is_read,
    test_chunked_body_growing_past_limit_is_refused,
    test_unknown_path_is_404_and_wrong_method_is_405_with_allow,
    test_connections_over_the_limit_evict_the_longest_idle,
    test_idle_and_slow_connections_are_closed_after_the_timeout,
    test_oversized_headers_are_rejected_and_the_server_carries_on,
    test_get_receipt_shows_the_stored_receipt_and_404_for_unknown_ids,
    test_buffer_status_has_all_keys_with_right_values,
    test_health_is_healthy_degraded_on_low_disk,
    test_metrics_and_root,
    test_fifty_concurrent_posts_all_land_exactly_once,
])
