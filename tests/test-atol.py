#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The real daemon with [Device] Driver=atol-web against tests/fake-atol.py: a shop's day (the shift opened,
sales of every type with change, an advance and its offset at pickup, a refund, a purchase and its return, a
correction, the X and Z reports, the next sale opening shift two) through the HTTP API; every fault of the
fake with its outcome (a refusal goes to print_rejected with the register's words, transient faults are
retried, a lost answer is found instead of printed again); and kill -9 of the daemon and of the fake at random
moments, each run checked against the fake's fiscal journal: exactly one document per acknowledged receipt and
none for anything else.

ATOL_CRASH_RUNS sets the number of kill -9 runs here (default 4); bench/atol-crash.py runs more.
"""

import collections
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kkttest  # noqa: E402
from kkttest import (DOWN, Daemon, TestFailure, call, check, ini, run_tests,  # noqa: E402
                     wait_until)

FAKE_ATOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake-atol.py")
PYTHON = "/usr/bin/python3"
# The driver's uuid namespace (device-atol.c): the request uuids of receipt R are uuid5(NS, "receipt:R:<n>").
NS = uuid.UUID("2d20aa2a-1fca-43c1-ac47-3ae347156911")


def log(msg):
    sys.stderr.write(f"   {msg}\n")
    sys.stderr.flush()


class FakeAtol:
    """tests/fake-atol.py as a child: its fiscal memory in a temporary file, kept across restarts, on the same
    port each time."""

    def __init__(self, tmp, auth=None):
        self.state = os.path.join(tmp, "fake-atol.json")
        self.port = 0
        self.auth = auth
        self.proc = None

    def start(self, timeout=20):
        cmd = [PYTHON, FAKE_ATOL, "--port", str(self.port), "--state", self.state, "--exit-on-eof"]
        if self.auth:
            cmd += ["--auth", self.auth]
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            line = self.proc.stdout.readline().decode()
            if line.startswith("PORT="):
                self.port = int(line[5:])
                return self
            self.proc.wait()
            # The old process's port may linger a moment after a kill -9.
            check(time.monotonic() < deadline, f"fake-atol did not start: {line!r}")
            time.sleep(0.1)

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()

    def exited(self):
        return self.proc is None or self.proc.poll() is not None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            check(r.status == 200, f"fake-atol {method} {path}: {r.status} {data!r}")
            return json.loads(data)
        finally:
            c.close()

    def control(self, **kw):
        return self._call("POST", "/control", kw)

    def journal(self):
        return self._call("GET", "/control/journal")["documents"]

    def bodies(self):
        return self._call("GET", "/control/requests")["requests"]

    def url(self):
        return f"http://127.0.0.1:{self.port}"


def request_uuids(receipt_id, n=64):
    return {str(uuid.uuid5(NS, f"receipt:{receipt_id}:{k}")) for k in range(n)}


def receipt_docs(fake):
    return [d for d in fake.journal() if d["form"] in ("receipt", "receiptCorrection")]


def check_one_document_each(fake, receipt_ids, what=""):
    """Exactly one fiscal document per receipt id, and none made for anything else."""
    owner = {}
    for rid in receipt_ids:
        for u in request_uuids(rid):
            owner[u] = rid
    counts = collections.Counter(owner.get(d["uuid"]) for d in receipt_docs(fake))
    check(counts.get(None, 0) == 0, f"{what}: {counts.get(None)} document(s) for no receipt of ours")
    for rid in receipt_ids:
        check(counts.get(rid, 0) == 1, f"{what}: receipt {rid} has {counts.get(rid, 0)} documents")


def config(fake, timeout="4s", **sections):
    return ini({
        "Heartbeat": {"URL": f"http://127.0.0.1:{DOWN}/hb", "Interval": "1h"},
        "OFD": {"URL": f"http://127.0.0.1:{DOWN}/", "Timeout": "2s"},
        "Device": {"Driver": "atol-web", "URL": fake.url(), "Timeout": timeout},
        "Bus": {"Address": "none"},
    }, sections)


def money(k):
    sign = "-" if k < 0 else ""
    k = abs(k)
    return f"{sign}{k // 100}.{k % 100:02d}"


def receipt(items, payments, kind="sale", **extra):
    """items: (name, price kopecks, qty, vat[, payment_method, payment_object]); payments: (type, kopecks)."""
    its = []
    for it in items:
        name, p, q, v = it[:4]
        s = '{"name": %s, "price": %s, "quantity": %d, "total": %s, "vat": "%s"' % (json.dumps(name), money(p), q,
                                                                                      money(p * q), v)
        if len(it) > 4:
            s += ', "payment_method": "%s", "payment_object": "%s"' % it[4:6]
        its.append(s + "}")
    pays = ", ".join('{"type": "%s", "amount": %s}' % (t, money(a)) for t, a in payments)
    rest = "".join(f', "{k}": {json.dumps(v, ensure_ascii=False)}' for k, v in extra.items())
    return '{"pos_id": "POS-1", "type": "%s", "items": [%s], "payments": [%s]%s}' % (kind, ", ".join(its), pays,
                                                                                    rest)


def post(d, body, key, expect=200, timeout=30):
    status, _, answer = d.post_receipt(body, key, timeout=timeout)
    check(status == expect, f"POST {key} answered {status}, expected {expect}: {answer}")
    return answer


def wait_status(d, receipt_id, status, timeout=60):
    return kkttest.wait_status(d, receipt_id, status, timeout, interval=0.1)


# ---- a day -------------------------------------------------------------------------------------------------

FRAME, LENS, CLOTH = 1500000, 420050, 39900   # kopecks


def test_a_day_through_the_atol_web_server():
    tmp = tempfile.mkdtemp(prefix="kkt-atol-day-")
    fake = FakeAtol(tmp).start()
    try:
        with Daemon(config(fake), name="kkt-atol-day") as d:
            d.start()
            dv = wait_until(lambda: (lambda s: s if s.get("model") else None)(call(d, "GET", "/v1/kkt/device/status")),
                            20, "the register's status")
            log(f"device: {json.dumps(dv, ensure_ascii=False)[:400]}")
            check(dv["driver"] == "atol-web", f"driver: {dv}")
            check(dv["fn_number"] == "9999078902000123" and dv["serial"] == "00106712345678" and
                  "АТОЛ" in dv["model"] and dv["registration_number"] == "0000000001002345", f"identity: {dv}")
            # The chain's FN alert reads this from a real driver too: the fake's drive expires in 400 days.
            days = d.metrics().get("kkt_fiscal_memory_days_left")
            check(days is not None and 399 < days < 401, f"kkt_fiscal_memory_days_left from atol-web: {days}")

            opened = call(d, "POST", "/v1/kkt/shift/open", {"cashier": {"name": "Иванова А."}})
            check(opened["shift_number"] == 1 and opened["fiscal_document_number"] == 1 and
                  opened["already_open"] is False, f"opening: {opened}")
            again = call(d, "POST", "/v1/kkt/shift/open")
            check(again["already_open"] is True and again["shift_number"] == 1, f"second opening: {again}")

            ids, cash, card, prepaid, sales = [], 0, 0, 0, 0
            # Cash with change, card, mixed.
            a = post(d, receipt([("Frame", FRAME, 1, "vat22")], [("cash", 1600000)],
                                cashier={"name": "Иванова А.", "inn": "132202672804"},
                                customer={"email": "buyer@example.com"}), "day-cash")
            check(a["status"] == "printed" and a["fiscal_doc"]["change"] == money(100000), f"cash sale: {a}")
            ids.append(a["receipt_id"])
            cash += FRAME
            b = post(d, receipt([("Lens", LENS, 2, "vat22")], [("card", 2 * LENS)]), "day-card")
            ids.append(b["receipt_id"])
            card += 2 * LENS
            c = post(d, receipt([("Frame", FRAME, 1, "vat22"), ("Cloth", CLOTH, 1, "none")],
                                [("card", 1000000), ("cash", 539900)]), "day-mixed")
            ids.append(c["receipt_id"])
            card += 1000000
            cash += 539900
            sales += FRAME + 2 * LENS + FRAME + CLOTH
            # The optics flow: an advance, offset at pickup.
            adv = post(d, receipt([("Glasses order", 1000000, 1, "vat122", "prepayment", "payment")],
                                  [("card", 1000000)]), "day-advance")
            ids.append(adv["receipt_id"])
            pick = post(d, receipt([("Glasses", 2500000, 1, "vat22", "full_payment", "commodity")],
                                   [("prepayment", 1000000), ("cash", 1500000)]), "day-pickup")
            ids.append(pick["receipt_id"])
            card += 1000000
            cash += 1500000
            prepaid += 1000000
            sales += 1000000 + 2500000
            for r in (b, c, adv, pick):
                check(r["status"] == "printed", f"sale: {r}")
            # A refund, a purchase, its return, a correction.
            ref = post(d, receipt([("Lens", LENS, 1, "vat22")], [("card", LENS)], kind="refund"), "day-refund")
            pur = post(d, receipt([("Old frame", 50000, 1, "none")], [("cash", 50000)], kind="purchase"),
                       "day-purchase")
            purr = post(d, receipt([("Old frame", 50000, 1, "none")], [("cash", 50000)], kind="purchase_refund"),
                        "day-purchase-refund")
            corr = post(d, receipt([("Unregistered sale", 30000, 1, "vat22")], [("cash", 30000)],
                                   kind="sale_correction", correction={"type": "self", "date": "2026-01-05"}),
                        "day-correction")
            for r in (ref, pur, purr, corr):
                check(r["status"] == "printed", f"{r}")
                ids.append(r["receipt_id"])
            check(ref["fiscal_doc"]["receipt_type"] == "refund", f"refund: {ref}")
            check(corr["fiscal_doc"]["receipt_type"] == "sale_correction", f"correction: {corr}")
            fds = [call(d, "GET", f"/v1/kkt/receipt/{i}")["fiscal_doc"]["fiscal_document_number"] for i in ids]
            check(fds == list(range(2, 2 + len(ids))), f"consecutive documents after the opening: {fds}")

            x = call(d, "POST", "/v1/kkt/report/x")
            log(f"X: {json.dumps({k: x.get(k) for k in ('shiftNumber', 'cashTotal', 'cardTotal', 'totalSales')})}")
            check(x["reportType"] == 1 and x["shiftNumber"] == 1, f"X: {x}")
            check(x["totalSales"] == money(sales + 30000), f"X totalSales {x['totalSales']}")
            check(x["receiptCounts"]["sale"] >= 5 and x["receiptCounts"]["refund"] == 1, f"X counts {x}")

            z = call(d, "POST", "/v1/kkt/report/z", {"cashier": {"name": "Иванова А."}})
            check(z["reportType"] == 2 and z["shiftNumber"] == 1 and z["already_closed"] is False, f"Z: {z}")
            check(z["fiscalDocumentNumber"] == 2 + len(ids) and len(z["fiscalSign"]) == 10, f"Z document: {z}")
            call(d, "POST", "/v1/kkt/report/z", expect=409)
            shift = call(d, "GET", "/v1/kkt/shift")
            check(shift["shift_open"] is False and shift["shift_number"] == 1, f"after Z: {shift}")

            nxt = post(d, receipt([("Cloth", CLOTH, 1, "vat22")], [("cash", CLOTH)]), "day-next")
            check(nxt["status"] == "printed" and nxt["fiscal_doc"]["shift_number"] == 2, f"next sale: {nxt}")
            ids.append(nxt["receipt_id"])
            d.stop_clean()

        forms = collections.Counter(doc["form"] for doc in fake.journal())
        check(forms["openShift"] == 2 and forms["closeShift"] == 1, f"journal: {forms}")
        check_one_document_each(fake, ids, "the day")
        # The money as the POS wrote it, exactly, in what the register received.
        first = [b["body"] for b in fake.bodies() if b["uuid"] in request_uuids(ids[0])][0]
        check('"price":15000.00,"quantity":1.000,"amount":15000.00' in first and '"sum":16000.00' in first and
              '"tax":{"type":"vat22"}' in first and '"operator":{"name":"Иванова А.","vatin":"132202672804"}' in first,
              f"request body: {first}")
    finally:
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ---- faults ------------------------------------------------------------------------------------------------

def test_every_fault_of_the_register():
    tmp = tempfile.mkdtemp(prefix="kkt-atol-faults-")
    fake = FakeAtol(tmp).start()
    ids = []
    try:
        with Daemon(config(fake, timeout="3s", Device={"StatusInterval": "1s"}), name="kkt-atol-faults") as d:
            d.start()
            ids.append(post(d, receipt([("Cloth", CLOTH, 1, "vat22")], [("cash", CLOTH)]), "f-warmup")["receipt_id"])

            # Refusals of the document: print_rejected with the register's words; the next receipt prints.
            for i, (fault, words) in enumerate((("wrong_taxation", "Некорректная СНО"),
                                                ("payments_short", "Чек оплачен не полностью"))):
                fake.control(fault=fault, count=1)
                bad = post(d, receipt([("Cloth", CLOTH + i, 1, "vat22")], [("cash", CLOTH + i)]), f"f-{fault}")
                check(bad["status"] == "print_rejected" and words in bad["message"], f"{fault}: {bad}")
                good = post(d, receipt([("Cloth", CLOTH, 1, "vat22")], [("cash", CLOTH)]), f"f-after-{fault}")
                check(good["status"] == "printed", f"after {fault}: {good}")
                ids.append(good["receipt_id"])
                check(not [x for x in receipt_docs(fake) if x["uuid"] in request_uuids(bad["receipt_id"])],
                      f"{fault}: a document was made")

            # Transient faults: print_failed (or buffered), retried, printed once.
            for fault in ("paper_out_before", "cover_open", "fn_full", "connection_lost_before"):
                log(f"fault {fault}")
                fake.control(fault=fault, count=1)
                r = post(d, receipt([("Cloth", CLOTH, 1, "vat22")], [("cash", CLOTH)]), f"f-{fault}")
                check(r["status"] in ("print_failed", "buffered", "printed"), f"{fault}: {r}")
                fake.control(clear=True)
                wait_status(d, r["receipt_id"], "printed")
                ids.append(r["receipt_id"])

            # The shift over 24 hours at the register: sales wait for a Z report, which opens the way.
            fake.control(shift_age_hours=25)
            wait_until(lambda: call(d, "GET", "/v1/kkt/shift")["sales_refused"], 20, "sales refused")
            status, _, answer = d.post_receipt(receipt([("Cloth", CLOTH, 1, "vat22")], [("cash", CLOTH)]), "f-24h")
            check(status == 409 and "kktctl shift close" in answer["detail"], f"a sale after 24 h: {status} {answer}")
            z = call(d, "POST", "/v1/kkt/report/z")
            check(z["reportType"] == 2 and z["already_closed"] is False, f"Z of the expired shift: {z}")
            r = post(d, receipt([("Cloth", CLOTH, 1, "vat22")], [("cash", CLOTH)]), "f-24h")
            check(r["status"] == "printed" and r["fiscal_doc"]["shift_number"] == z["shiftNumber"] + 1, f"{r}")
            ids.append(r["receipt_id"])

            # The document made, the answer bad or lost: found, never printed twice.
            for fault in ("paper_out_after", "not_printed", "connection_lost_after", "drop_answer"):
                log(f"fault {fault}")
                fake.control(fault=fault, count=1)
                r = post(d, receipt([("Frame", FRAME, 1, "vat22")], [("card", FRAME)]), f"f-{fault}")
                fake.control(paper=True)
                wait_status(d, r["receipt_id"], "printed")
                ids.append(r["receipt_id"])
            check(fake._call("GET", "/control/state")["continued"] >= 1, "continuePrint after paper out")

            # The fake dies after committing, or after accepting: found after its restart.
            for fault in ("die_after_commit", "die_after_accept"):
                log(f"fault {fault}")
                fake.control(fault=fault, count=1)
                r = post(d, receipt([("Lens", LENS, 1, "vat22")], [("card", LENS)]), f"f-{fault}")
                wait_until(fake.exited, 10, "the fake's planned death")
                fake.kill9()
                time.sleep(0.5)
                fake.start()
                wait_status(d, r["receipt_id"], "printed")
                ids.append(r["receipt_id"])

            # A blocked queue: the receipt waits (never printed on a guess) until the register answers.
            fake.control(fault="blocked", count=1)
            blocked = post(d, receipt([("Lens", LENS, 1, "vat22")], [("cash", LENS)]), "f-blocked")
            behind = post(d, receipt([("Cloth", CLOTH, 1, "vat22")], [("cash", CLOTH)]), "f-behind", timeout=60)
            time.sleep(4)
            st = call(d, "GET", f"/v1/kkt/receipt/{blocked['receipt_id']}")["status"]
            check(st != "printed", f"blocked receipt printed while the queue was blocked: {st}")
            fake.control(unblock=True)
            wait_status(d, blocked["receipt_id"], "printed")
            wait_status(d, behind["receipt_id"], "printed")
            ids += [blocked["receipt_id"], behind["receipt_id"]]

            # A hanging server, beyond the register's timeout.
            fake.control(hang_ms=5000, hang_count=1)
            r = post(d, receipt([("Cloth", CLOTH, 2, "vat22")], [("cash", 2 * CLOTH)]), "f-hang", timeout=60)
            wait_status(d, r["receipt_id"], "printed")
            ids.append(r["receipt_id"])

            # The web server down: buffered, printed when it is back.
            fake.kill9()
            r = post(d, receipt([("Cloth", CLOTH, 3, "vat22")], [("cash", 3 * CLOTH)]), "f-down")
            check(r["status"] in ("print_failed", "buffered"), f"server down: {r}")
            dev = call(d, "GET", "/v1/kkt/device/status")
            log(f"device while down: {json.dumps(dev, ensure_ascii=False)[:200]}")
            fake.start()
            wait_status(d, r["receipt_id"], "printed")
            ids.append(r["receipt_id"])
            d.stop_clean()
        check_one_document_each(fake, ids, "faults")
    finally:
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ---- kill -9 -----------------------------------------------------------------------------------------------

def crash_run(run, rng, receipts=8, budget=120):
    """One run: receipts posted while the daemon, the fake or both are killed -9 at a random moment and
    restarted; the POS repeats what was not acknowledged (same key, same body). At the end every receipt is
    acknowledged and printed, and the journal holds exactly one document for each."""
    tmp = tempfile.mkdtemp(prefix=f"kkt-atol-crash{run}-")
    fake = FakeAtol(tmp).start()
    fake.control(delay_ms=rng.choice([10, 60, 150]))
    victim = rng.choice(["daemon", "fake", "both", "daemon", "fake"])
    delay = rng.uniform(0.1, 2.5)
    deadline = time.monotonic() + budget
    keys = [f"crash-{run}-{j}" for j in range(receipts)]
    bodies = {k: receipt([("Item %d" % j, 10000 + 137 * j + run, 1 + j % 2, "vat22")],
                         [("card" if j % 2 else "cash", (10000 + 137 * j + run) * (1 + j % 2))])
              for j, k in enumerate(keys)}
    acked = {}
    try:
        with Daemon(config(fake, timeout="3s"), name=f"kkt-atol-crash{run}") as d:
            d.start()

            def kill():
                if victim in ("daemon", "both"):
                    d.kill()
                if victim in ("fake", "both"):
                    fake.kill9()
                time.sleep(rng.uniform(0.05, 0.5))
                if victim in ("fake", "both"):
                    fake.start()
                if victim in ("daemon", "both"):
                    d.start()

            killer = threading.Timer(delay, kill)
            killer.start()
            try:
                while len(acked) < len(keys):
                    check(time.monotonic() < deadline, f"run {run}: not all acknowledged: {sorted(acked)}")
                    for k in keys:
                        if k in acked:
                            continue
                        try:
                            status, _, answer = d.post_receipt(bodies[k], k, timeout=20)
                        except (OSError, http.client.HTTPException):
                            time.sleep(0.1)
                            continue
                        if status == 200:
                            acked[k] = answer["receipt_id"]
                        elif status not in (409, 503):
                            raise TestFailure(f"run {run}: POST {k} answered {status}: {answer}")
            finally:
                killer.join()
            for k, rid in acked.items():
                wait_status(d, rid, "printed", timeout=max(1, deadline - time.monotonic()))
            d.stop_clean()
        check_one_document_each(fake, list(acked.values()), f"run {run} ({victim} at {delay:.2f}s)")
        log(f"run {run}: {victim} killed at {delay:.2f}s, {len(acked)} receipts, one document each")
    finally:
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def crash_runs(n, seed=None):
    seed = seed if seed is not None else int(os.environ.get("ATOL_CRASH_SEED", time.time()))
    log(f"kill -9 runs: {n}, seed {seed}")
    rng = random.Random(seed)
    for i in range(n):
        crash_run(i, rng)


def test_kill_9_of_the_daemon_and_the_fake_never_makes_two_documents():
    crash_runs(int(os.environ.get("ATOL_CRASH_RUNS", "4")))


if __name__ == "__main__":
    if not os.path.exists(PYTHON):
        sys.exit(77)
    run_tests([
        test_a_day_through_the_atol_web_server,
        test_every_fault_of_the_register,
        test_kill_9_of_the_daemon_and_the_fake_never_makes_two_documents,
    ])
