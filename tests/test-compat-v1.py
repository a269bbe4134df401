#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The prototype's JSON, for its clients: the request shapes its tests and documentation post (with the
changes this daemon requires on purpose: 22 % VAT on 2026 sales, see README "Differences from the
prototype"), and every key and type of the answers they read, against the real daemon started as systemd
would, with the emulated register and tests/fake-upstream.py as the OFD.

The prototype's answers were read from its code (kkt_adapter/app/main.py, models.py, kkt_driver.py,
sync_worker.py, circuit_breaker.py) and its tests (tests/unit/test_fastapi_endpoints.py,
tests/integration/test_receipt_workflow.py, tests/uat/, docs/POS_MONITOR_SPEC.md, the ERP module's
controllers/kkt_adapter_api.py).
"""

import http.client
import json
import os
import re
import sys
import time
import uuid

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import DOWN, Daemon, FakeOfd, check, ini, run_tests, wait_until  # noqa: E402


def config(ofd_url=None, **sections):
    """Upstreams down unless an OFD is given; a fast register; no bus."""
    return ini({
        "Bus": {"Address": "none"},
        "Heartbeat": {"URL": f"http://127.0.0.1:{DOWN}/hb", "Interval": "1h"},
        "OFD": {"URL": ofd_url or f"http://127.0.0.1:{DOWN}/", "Timeout": "2s"},
        "Sync": {"Interval": "300ms", "InitialBackoff": "100ms", "MaxBackoff": "1s", "OpenTimeout": "1h"},
        "Device": {"PrintLatencyMin": "5ms", "PrintLatencyMax": "20ms"},
    }, sections)


# -- the prototype's request shapes (tests/unit/test_fastapi_endpoints.py valid_receipt_data and its
#    variants), with "vat_rate": 22 where it had 20: 20 % is refused on sales from 2026-01-01 -------------

def valid_receipt_data():
    return {
        "pos_id": "POS-001",
        "type": "sale",
        "items": [{"name": "Product A", "price": 100.00, "quantity": 2, "total": 200.00, "vat_rate": 22}],
        "payments": [{"type": "cash", "amount": 200.00}],
    }


def multiple_payments():
    r = valid_receipt_data()
    r["payments"] = [{"type": "cash", "amount": 100.00}, {"type": "card", "amount": 100.00}]
    return r


def multiple_items():
    r = valid_receipt_data()
    r["items"] = [{"name": "Product A", "price": 100.00, "quantity": 2, "total": 200.00, "vat_rate": 22},
                  {"name": "Product B", "price": 50.00, "quantity": 1, "total": 50.00, "vat_rate": 10}]
    r["payments"] = [{"type": "cash", "amount": 250.00}]
    return r


# -- HTTP, with the raw text: number tokens and the trailing newline are checked on it ----------------------

# The administrative paths, which the ERP calls with the admin token it is configured with (README, "The ERP
# on another machine"); the POS paths are called as the prototype's clients call them, without a token.
ADMIN_PATHS = ("/v1/kkt/buffer/sync", "/v1/kkt/dlq", "/v1/kkt/circuit_breaker/")


def raw(d, method, path, body=None, headers=None, timeout=30):
    """(status, headers, parsed JSON, raw text)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    try:
        h = dict(headers or {})
        if path.startswith(ADMIN_PATHS):
            h["Authorization"] = f"Bearer {d.admin_token}"
        if body is not None:
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        text = r.read().decode()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        check(hdrs.get("content-type", "").startswith("application/json"), f"{path}: content type {hdrs}")
        check(text.endswith("}\n"), f"{method} {path}: the JSON does not end with a newline: {text[-20:]!r}")
        return r.status, hdrs, json.loads(text), text
    finally:
        conn.close()


def get(d, path):
    status, _, payload, _ = raw(d, "GET", path)
    check(status == 200, f"GET {path} answered {status}: {payload}")
    return payload


def post_receipt(d, body, key):
    return raw(d, "POST", "/v1/kkt/receipt", body, {"Idempotency-Key": key})


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_types(obj, spec, what):
    """spec: key -> a type or a predicate. Every key present, each of its type."""
    check(isinstance(obj, dict), f"{what} is not an object: {obj!r}")
    for key, want in spec.items():
        check(key in obj, f"{what} lacks {key!r}: {sorted(obj)}")
        v = obj[key]
        ok = isinstance(v, want) if isinstance(want, type) else want(v)
        check(ok, f"{what}[{key!r}] = {v!r} is not of the prototype's type")


# What kkt_driver.print_receipt() returned as fiscal_doc.
FISCAL_DOC = {
    "fiscal_doc_number": is_int,
    "fiscal_sign": str,
    "fiscal_datetime": str,
    "fn_number": str,
    "kkt_number": str,
    "qr_code_data": str,
    "shift_number": is_int,
    "receipt_number": is_int,
    "ofd_name": str,
    "inn": str,
    "rn_kkt": str,
    "total": is_number,
}


def check_fiscal_doc(doc, total_text, text, what):
    check_types(doc, FISCAL_DOC, what)
    check(doc["fiscal_doc_number"] >= 1 and doc["receipt_number"] >= 1 and doc["shift_number"] >= 1,
          f"{what}: numbers {doc}")
    check(re.fullmatch(r"\d{10}", doc["fiscal_sign"]), f"{what}: fiscal_sign {doc['fiscal_sign']!r}")
    check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", doc["fiscal_datetime"]),
          f"{what}: fiscal_datetime {doc['fiscal_datetime']!r}")
    check(doc["qr_code_data"].startswith("t=") and f"&i={doc['fiscal_doc_number']}&" in doc["qr_code_data"],
          f"{what}: qr_code_data {doc['qr_code_data']!r}")
    # Ours stay beside them, with the same values.
    check(doc["fiscal_doc_number"] == doc["fiscal_document_number"] and doc["qr_code_data"] == doc["qr"] and
          doc["kkt_number"] == doc["serial"] and doc["rn_kkt"] == doc["registration_number"] and
          doc["fiscal_datetime"] == doc["datetime"] and doc["receipt_number"] == doc["document_number_in_shift"],
          f"{what}: the prototype's keys and ours disagree: {doc}")
    # Exact money: the number token is the decimal as written from kopecks, not a double's rendering.
    check(f'"total":{total_text},' in text, f"{what}: total is not the token {total_text}: {text}")


def wait_register_ready(d):
    """The register reports ready once opened: until then the health says degraded for it."""
    wait_until(lambda: get(d, "/v1/kkt/device/status")["state"] == "ready", 10, "the register ready")


# -- the tests -----------------------------------------------------------------------------------------------


def test_root_and_docs_answer_the_prototypes_keys():
    with Daemon(config()) as d:
        d.start()
        root = get(d, "/")
        check(root["message"] == "KKT Adapter API" and root["docs"] == "/docs" and root["health"] == "/v1/health"
              and root["status"] == "operational" and root["version"] == "0.1.0", f"GET /: {root}")
        docs = get(d, "/docs")
        paths = {(p["method"], p["path"]): p["access"] for p in docs["paths"]}
        for p in (("POST", "/v1/kkt/receipt"), ("GET", "/v1/kkt/receipt/{id}"), ("GET", "/v1/kkt/buffer/status"),
                  ("POST", "/v1/kkt/buffer/sync"), ("GET", "/v1/kkt/worker/status"), ("GET", "/v1/health")):
            check(p in paths, f"/docs lacks {p}: {sorted(paths)}")
        # Who may call each: the prototype's clients need no token but on the paths this test's raw() sends
        # the admin token to (tests/test-http.c checks the whole table).
        for (method, path), access in paths.items():
            if path.startswith(ADMIN_PATHS):
                check(access == "admin", f"/docs: {method} {path} is {access}")
        for p in (("POST", "/v1/kkt/receipt"), ("GET", "/v1/kkt/receipt/{id}"), ("GET", "/v1/kkt/buffer/status"),
                  ("GET", "/v1/kkt/worker/status"), ("GET", "/v1/kkt/heartbeat/status")):
            check(paths[p] == "pos", f"/docs: {p} is {paths[p]}")
        check(paths[("GET", "/v1/health")] == "public", f"/docs: /v1/health is {paths[('GET', '/v1/health')]}")
        d.stop_clean()


def test_receipt_answers_have_the_prototypes_keys_and_types():
    with Daemon(config()) as d:
        d.start()
        numbers = []
        for body, total in ((valid_receipt_data(), "200.00"), (multiple_payments(), "200.00"),
                            (multiple_items(), "250.00")):
            status, headers, p, text = post_receipt(d, body, str(uuid.uuid4()))
            check(status == 200, f"the prototype's request answered {status}: {p}")
            check_types(p, {"status": str, "receipt_id": str, "fiscal_doc": dict, "message": str}, "answer")
            check(p["status"] == "printed" and p["message"] == "Receipt printed successfully", f"answer {p}")
            uuid.UUID(p["receipt_id"])
            check_fiscal_doc(p["fiscal_doc"], total, text, "POST answer's fiscal_doc")
            check("idempotent-replayed" not in headers, "a first answer marked as a replay")
            numbers.append(p["fiscal_doc"]["fiscal_doc_number"])

            # GET /v1/kkt/receipt/{id}: the same document, the current state, hlc as a string.
            status, _, g, text = raw(d, "GET", f"/v1/kkt/receipt/{p['receipt_id']}")
            check(status == 200 and g["fiscal_doc"] == p["fiscal_doc"], f"GET receipt: {g}")
            check_fiscal_doc(g["fiscal_doc"], total, text, "GET receipt's fiscal_doc")
            check(isinstance(g["hlc"], str) and g["hlc"].isdigit() and int(g["hlc"]) > 2 ** 53,
                  f"hlc is not a decimal string above 2^53: {g['hlc']!r}")
            check(re.search(r'"hlc":"\d+"', text), f"hlc token: {text}")
        check(numbers == list(range(numbers[0], numbers[0] + 3)), f"fiscal documents not consecutive: {numbers}")
        d.stop_clean()


def test_replay_answers_what_the_first_answer_said():
    """The first answer said "printed"; once the receipt is synced a replay still says "printed", with the
    same body, while GET shows "synced". A first answer "buffered" (a register slower than ResponseTimeout)
    stays "buffered" without a fiscal document after the receipt was printed."""
    ofd = FakeOfd().start()
    try:
        with Daemon(config(ofd.url)) as d:
            d.start()
            key = str(uuid.uuid4())
            status, _, first, first_text = post_receipt(d, valid_receipt_data(), key)
            check(status == 200 and first["status"] == "printed", f"first answer {status}: {first}")
            rid = first["receipt_id"]
            wait_until(lambda: get(d, f"/v1/kkt/receipt/{rid}")["status"] == "synced", 20, "the receipt synced")
            status, headers, again, again_text = post_receipt(d, valid_receipt_data(), key)
            check(status == 200 and headers.get("idempotent-replayed") == "true", f"replay {status} {headers}")
            check(again == first and again_text == first_text,
                  f"the replay differs from the first answer:\n{first_text}\n{again_text}")
            check(get(d, f"/v1/kkt/receipt/{rid}")["status"] == "synced", "GET does not show the state now")
            check(len(ofd.state()["keys"]) == 1, "the replay sent something to the OFD")
            d.stop_clean()
    finally:
        ofd.stop()

    with Daemon(config(Device={"PrintLatencyMin": "600ms", "PrintLatencyMax": "600ms",
                               "ResponseTimeout": "100ms"})) as d:
        d.start()
        key = str(uuid.uuid4())
        status, _, first, _ = post_receipt(d, valid_receipt_data(), key)
        check(status == 200 and first["status"] == "buffered" and first["fiscal_doc"] is None,
              f"a slow register's first answer: {first}")
        rid = first["receipt_id"]
        wait_until(lambda: get(d, f"/v1/kkt/receipt/{rid}")["status"] == "printed", 10, "the receipt printed")
        status, headers, again, _ = post_receipt(d, valid_receipt_data(), key)
        check(status == 200 and headers.get("idempotent-replayed") == "true" and again == first,
              f"the replay after the print: {again}, first {first}")
        # The answer was stored with the key when it was given.
        db = d.db()
        stored = db.execute("SELECT response_status, response FROM idempotency_keys WHERE receipt_id = ?",
                            (rid,)).fetchone()
        db.close()
        check(stored[0] == 200 and json.loads(stored[1])["status"] == "buffered", f"stored answer {stored}")
        # After a restart too.
        d.stop_clean()
        d.start()
        status, _, again, _ = post_receipt(d, valid_receipt_data(), key)
        check(status == 200 and again == first, f"the replay after a restart: {again}")
        d.stop_clean()


def test_buffer_status_has_the_prototypes_keys_and_its_network_rule():
    with Daemon(config(Buffer={"Capacity": "4"})) as d:
        d.start()
        spec = {"total_capacity": is_int, "current_queued": is_int, "percent_full": is_number,
                "network_status": str, "total_receipts": is_int, "pending": is_int, "synced": is_int,
                "failed": is_int, "dlq_size": is_int}
        status, _, b, text = raw(d, "GET", "/v1/kkt/buffer/status")
        check(status == 200, f"buffer/status {status}")
        check_types(b, spec, "buffer/status")
        check(b["percent_full"] == 0.0 and '"percent_full":0.00' in text, f"empty buffer: {text}")
        check(b["network_status"] in ("online", "offline", "degraded", "unknown"), f"network_status {b}")
        # The keys the ERP module reads, cb_state as it compares it.
        check_types(b, {"buffer_percent": is_number, "buffer_count": is_int, "cb_state": str}, "buffer/status")
        check(b["cb_state"] == "CLOSED", f"cb_state {b['cb_state']!r}")

        # One receipt waiting for the OFD (which is down): fewer than half the capacity -> "degraded".
        check(post_receipt(d, valid_receipt_data(), "net-1")[0] == 200, "receipt 1")
        status, _, b, text = raw(d, "GET", "/v1/kkt/buffer/status")
        check(b["pending"] == 1 and b["network_status"] == "degraded", f"one pending: {b}")
        check(b["percent_full"] == 25.0 and '"percent_full":25.00' in text, f"percent_full: {text}")
        # Half the capacity waiting -> "offline".
        check(post_receipt(d, multiple_items(), "net-2")[0] == 200, "receipt 2")
        b = get(d, "/v1/kkt/buffer/status")
        check(b["pending"] == 2 and b["network_status"] == "offline", f"two of four pending: {b}")
        d.stop_clean()


def test_full_buffer_says_buffer_full():
    with Daemon(config(Buffer={"Capacity": "2"})) as d:
        d.start()
        for i in range(2):
            check(post_receipt(d, valid_receipt_data(), f"full-{i}")[0] == 200, f"receipt {i}")
        status, headers, p, _ = post_receipt(d, valid_receipt_data(), "full-2")
        check(status == 503 and "Buffer full" in p["detail"] and "2/2" in p["detail"], f"full buffer: {status} {p}")
        check(headers.get("retry-after"), f"no Retry-After: {headers}")
        d.stop_clean()


def test_health_has_the_prototypes_components_and_dead_letters_degrade_it():
    ofd = FakeOfd().start()
    try:
        with Daemon(config(ofd.url, Sync={"BatchSize": "100"}, Buffer={"Capacity": "1000"})) as d:
            d.start()
            wait_register_ready(d)
            status, _, h, _ = raw(d, "GET", "/v1/health")
            check(status == 200 and h["status"] == "healthy" and h["version"] == "0.1.0", f"health {status}: {h}")
            check(h["circuit_breaker_state"] == "CLOSED", f"circuit_breaker_state {h.get('circuit_breaker_state')!r}")
            c = h["components"]
            check_types(c["buffer"], {"status": str, "percent_full": is_number, "dlq_size": is_int, "pending": is_int},
                        "components.buffer")
            check(c["buffer"]["status"] == "healthy" and c["buffer"]["percent_full"] == 0.0
                  and c["buffer"]["dlq_size"] == 0, f"components.buffer {c['buffer']}")
            check(c["database"]["status"] == "healthy" and c["database"]["type"] == "SQLite"
                  and c["database"]["mode"] == "WAL", f"components.database {c['database']}")
            check_types(c["circuit_breaker"], {"state": str, "failure_count": is_int}, "components.circuit_breaker")
            check(c["circuit_breaker"]["state"] == "CLOSED", f"components.circuit_breaker {c['circuit_breaker']}")

            # The OFD refuses every receipt for good: 51 dead letters, one more than the prototype allowed.
            ofd.mode("status", status=422)
            for i in range(51):
                check(post_receipt(d, valid_receipt_data(), f"dead-{i}")[0] == 200, f"receipt {i}")
            wait_until(lambda: get(d, "/v1/kkt/buffer/status")["dlq_size"] == 51, 30, "51 dead letters")
            status, _, h, _ = raw(d, "GET", "/v1/health")
            check(status == 200 and h["status"] == "degraded", f"health with 51 dead letters: {status} {h}")
            check(h["components"]["buffer"]["dlq_size"] == 51, f"dlq_size {h['components']['buffer']}")
            check(h["components"]["dead_letters"]["status"] == "degraded", f"{h['components']['dead_letters']}")

            # Resolved dead letters no longer count.
            for e in get(d, "/v1/kkt/dlq")["dead_letters"][:2]:
                rid = e["receipt_id"]
                st, _, p, _ = raw(d, "POST", f"/v1/kkt/dlq/{rid}/resolve", {"note": "sent by hand"})
                check(st == 200, f"resolve {rid}: {st} {p}")
            h = get(d, "/v1/health")
            check(h["status"] == "healthy" and h["components"]["buffer"]["dlq_size"] == 49, f"after resolving: {h}")

            # The OFD fails: the breaker opens, as the desk monitor reads it.
            ofd.mode("fail")
            for i in range(6):
                check(post_receipt(d, valid_receipt_data(), f"open-{i}")[0] == 200, f"receipt open-{i}")
            wait_until(lambda: get(d, "/v1/health")["circuit_breaker_state"] == "OPEN", 20, "the breaker open")
            h = get(d, "/v1/health")
            check(h["status"] == "degraded" and h["components"]["circuit_breaker"]["state"] == "OPEN"
                  and h["components"]["circuit_breaker"]["failure_count"] >= 5, f"open breaker: {h}")
            check(get(d, "/v1/kkt/buffer/status")["cb_state"] == "OPEN", "cb_state with the breaker open")
            d.stop_clean()
    finally:
        ofd.stop()


def test_manual_sync_answers_the_prototypes_keys_and_waits_when_asked():
    """A printed receipt starts a pass at once (the OFD answers it after 2 s here); ?wait joins that pass and
    answers with its counts once it is over. Regular passes are an hour apart: no other pass runs."""
    ofd = FakeOfd().start()
    try:
        with Daemon(config(ofd.url, Sync={"Interval": "1h"}, OFD={"Timeout": "10s"})) as d:
            d.start()
            spec = {"status": str, "synced": is_int, "failed": is_int, "skipped": is_int,
                    "duration_seconds": is_number, "message": str}
            status, _, s, _ = raw(d, "POST", "/v1/kkt/buffer/sync")
            check(status == 202 and s["status"] in ("started", "already_running"), f"sync {status}: {s}")
            check_types(s, spec, "sync answer")
            wait_until(lambda: not get(d, "/v1/kkt/worker/status")["syncing"], 10, "the first passes over")

            ofd.mode("slow", delay=2)
            check(post_receipt(d, valid_receipt_data(), "sync-1")[0] == 200, "receipt sync-1")
            t0 = time.monotonic()
            status, _, s, text = raw(d, "POST", "/v1/kkt/buffer/sync?wait=20", timeout=30)
            took = time.monotonic() - t0
            check(status == 202, f"sync?wait answered {status}: {s}")
            check_types(s, spec, "sync?wait answer")
            check(s["status"] == "completed" and s["synced"] == 1 and s["failed"] == 0 and s["skipped"] == 0 and
                  s["message"] == "Manual sync completed successfully" and 1.0 < took < 10,
                  f"sync?wait after {took:.2f}s: {s}")
            check(re.search(r'"duration_seconds":\d+\.\d\d,', text) and s["duration_seconds"] >= 1.5,
                  f"duration_seconds: {text}")
            last = get(d, "/v1/kkt/worker/status")["last_pass"]
            check(last["synced"] == s["synced"] and last["selected"] == 1, f"not the pass waited for: {last} {s}")
            check(get(d, "/v1/kkt/buffer/status")["synced"] == 1, "the pass waited for did not sync")

            # Nothing left: the prototype's words.
            ofd.mode("accept")
            status, _, s, _ = raw(d, "POST", "/v1/kkt/buffer/sync?wait=20", timeout=30)
            check(status == 202 and s["status"] == "completed" and s["synced"] == 0 and
                  s["message"] == "No pending receipts", f"empty sync: {s}")

            for bad in ("61", "-1", "1.5", "x", ""):
                status, _, s, _ = raw(d, "POST", f"/v1/kkt/buffer/sync?wait={bad}")
                check(status == 400 and "wait" in s["detail"], f"wait={bad!r} answered {status}: {s}")

            # A pass longer than the wait: the answer comes when the wait is over, and says so.
            ofd.mode("slow", delay=3)
            check(post_receipt(d, valid_receipt_data(), "sync-2")[0] == 200, "receipt sync-2")
            t0 = time.monotonic()
            status, _, s, _ = raw(d, "POST", "/v1/kkt/buffer/sync?wait=1", timeout=30)
            took = time.monotonic() - t0
            check(status == 202 and s["status"] == "running" and 0.9 <= took < 2.5, f"sync?wait=1: {took:.2f}s {s}")
            wait_until(lambda: get(d, "/v1/kkt/buffer/status")["synced"] == 2, 10, "the slow pass over")
            d.stop_clean()
    finally:
        ofd.stop()


def test_worker_status_has_task_status():
    with Daemon(config()) as d:
        d.start()
        w = get(d, "/v1/kkt/worker/status")
        check(w["running"] is True and w["task_status"] == "running", f"worker/status {w}")
        d.stop_clean()


def test_deliberate_differences_hold():
    """What this daemon refuses on purpose (README, "Differences from the prototype")."""
    with Daemon(config()) as d:
        d.start()
        # No Idempotency-Key: 400 (FastAPI said 422), with a detail.
        status, _, p, _ = raw(d, "POST", "/v1/kkt/receipt", valid_receipt_data())
        check(status == 400 and "Idempotency-Key" in p["detail"], f"no key: {status} {p}")
        # 20 % VAT on a 2026 sale: refused, naming the rate to use.
        old = valid_receipt_data()
        old["items"][0]["vat_rate"] = 20
        status, _, p, _ = post_receipt(d, old, "vat20")
        check(status == 422 and "22" in p["detail"], f"vat_rate 20: {status} {p}")
        # A field the format does not know.
        extra = valid_receipt_data()
        extra["customer"] = {"name": "A"}
        status, _, p, _ = post_receipt(d, extra, "unknown-field")
        check(status == 422 and "customer" in p["detail"], f"unknown field: {status} {p}")
        # Payments short of the total.
        short = valid_receipt_data()
        short["payments"][0]["amount"] = 100.00
        status, _, p, _ = post_receipt(d, short, "short")
        check(status == 422, f"short payment: {status} {p}")
        # The same key twice is one receipt (the prototype made a duplicate).
        key = str(uuid.uuid4())
        a = post_receipt(d, valid_receipt_data(), key)[2]
        b = post_receipt(d, valid_receipt_data(), key)[2]
        check(a["receipt_id"] == b["receipt_id"], f"same key, two receipts: {a} {b}")
        # Errors are JSON with a newline too.
        status, _, p, _ = raw(d, "GET", "/v1/nonexistent")
        check(status == 404 and "detail" in p, f"404: {p}")
        d.stop_clean()


if __name__ == "__main__":
    run_tests([
        test_root_and_docs_answer_the_prototypes_keys,
        test_receipt_answers_have_the_prototypes_keys_and_types,
        test_replay_answers_what_the_first_answer_said,
        test_buffer_status_has_the_prototypes_keys_and_its_network_rule,
        test_full_buffer_says_buffer_full,
        test_health_has_the_prototypes_components_and_dead_letters_degrade_it,
        test_manual_sync_answers_the_prototypes_keys_and_waits_when_asked,
        test_worker_status_has_task_status,
        test_deliberate_differences_hold,
    ])
