#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""org.opticserp.KktAdapter1 as the running daemon serves it on a private dbus-daemon: introspection against
the contract dbus/org.opticserp.KktAdapter1.xml, SubmitReceipt/GetReceipt with their named errors and
idempotency shared with HTTP, the admin methods' NotSupported, coalesced PropertiesChanged of the counters,
ReceiptStateChanged once per new receipt, the fiscal day (OpenShift, PrintXReport, CloseShift and their JSON,
the shift's properties and their change signals, CheckRefund), a receipt the register rejects (the
PrintRejected signal and property, ListRejected, RetryPrint, CancelReceipt), and the reconnection after the
bus went away.

Usage: test-dbus-api.py [INTERFACE-XML]; meson passes the XML, else the dbus/ directory of this tree.
Exit 77 (skipped) without dbus-daemon.
"""

import json
import os
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
import dbusclient  # noqa: E402
from busdaemon import DaemonOnBus  # noqa: E402
from dbusclient import DBusError  # noqa: E402
from kkttest import Daemon, TestFailure, check, closed_port, run_tests, wait_until  # noqa: E402

INTERFACE_XML = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "dbus",
                                                                   "org.opticserp.KktAdapter1.xml")
NAME = "org.opticserp.KktAdapter1"
PATH = "/org/opticserp/KktAdapter1"
IFACE = "org.opticserp.KktAdapter1"
ERROR = "org.opticserp.KktAdapter1.Error."
CONST = "org.freedesktop.DBus.Property.EmitsChangedSignal"

RECEIPT = {"pos_id": "POS-1", "type": "sale",
           "items": [{"name": "Frame", "price": 1500.00, "quantity": 1, "total": 1500.00, "vat_rate": 22}],
           "payments": [{"type": "cash", "amount": 1500.00}]}
OTHER_RECEIPT = {**RECEIPT, "pos_id": "POS-2"}
BODY = json.dumps(RECEIPT)

# The emulated register prints in 200-500 ms and SubmitReceipt waits for it up to [Device] ResponseTimeout=.
ANSWER_AT_ONCE = "[Device]\nResponseTimeout=0\n"  # answers "buffered", printing goes on behind
FAST_PRINTS = "[Device]\nResponseTimeout=0\nPrintLatencyMin=0\nPrintLatencyMax=0\n"
# The answer waits for the print (ResponseTimeout=7s by default), which is quick.
PRINTS_AT_ONCE = "[Device]\nPrintLatencyMin=0\nPrintLatencyMax=0\n"

# What the fiscal day added to the interface: the introspection test checks that they are all there.
FISCAL_DAY_MEMBERS = {
    "property": {"ShiftOpen", "ShiftExpiresUSec", "ShiftReceipts", "PrintRejected", "FnValidUntilUSec",
                 "OfdUnsent", "OfdFirstUnsentUSec"},
    "method": {"OpenShift", "PrintXReport", "CloseShift", "CheckRefund", "RetryPrint", "CancelReceipt",
               "ListRejected"},
    "signal": {"PrintRejected"},
}


class Setup(DaemonOnBus):
    """A private bus, a recorder of our object's signals on it, and the daemon."""

    def __init__(self, config=""):
        heartbeat = f"[Heartbeat]\nURL=http://127.0.0.1:{closed_port()}/hb\nInterval=1h\n"
        super().__init__(heartbeat + config, name="kkt-dbus-api")

    def report(self, member):
        """OpenShift(), PrintXReport() or CloseShift(): the JSON answer, parsed."""
        (text,) = self.call(member, timeout=60)
        return json.loads(text)

    def submit(self, key, body=BODY):
        return self.call("SubmitReceipt", "ss", key, body)

    def http_submit(self, key, body=BODY):
        return self.daemon.request("POST", "/v1/kkt/receipt", body, {"Idempotency-Key": key})


def expect_error(name, f, *args):
    try:
        result = f(*args)
    except DBusError as e:
        check(e.name == ERROR + name, f"expected {ERROR}{name}, got {e.name}: {e.message}")
        return e
    raise TestFailure(f"expected {ERROR}{name}, got success: {result}")


def receipt_signals(recorder, member="ReceiptStateChanged"):
    return [tuple(m.body) for _, m in recorder.taken() if m.member == member and m.interface == IFACE]


# ---- introspection ---------------------------------------------------------------------------------------

def interface_members(xml_text, where):
    """{kind: {name: description}} and the names in document order, for our interface in xml_text."""
    root = ET.fromstring(xml_text)
    ifaces = [i for i in root.findall("interface") if i.get("name") == IFACE]
    check(len(ifaces) == 1, f"{where}: {len(ifaces)} interfaces named {IFACE}")
    members = {"property": {}, "method": {}, "signal": {}}
    order = []
    for el in ifaces[0]:
        if el.tag not in members:
            continue
        name = el.get("name")
        check(name not in members[el.tag], f"{where}: {el.tag} {name} twice")
        annotations = {a.get("name"): a.get("value") for a in el.findall("annotation")}
        if el.tag == "property":
            desc = (el.get("type"), el.get("access"), annotations.get(CONST))
        elif el.tag == "method":
            desc = tuple((a.get("name"), a.get("type"), a.get("direction") or "in")
                         for a in el.findall("arg"))
        else:
            desc = tuple((a.get("name"), a.get("type")) for a in el.findall("arg"))
        members[el.tag][name] = desc
        order.append((el.tag, name))
    return members, order


def test_introspection_matches_the_contract():
    with open(INTERFACE_XML) as f:
        contract, contract_order = interface_members(f.read(), INTERFACE_XML)
    with Setup() as s:
        served, served_order = interface_members(s.conn.introspect(NAME, PATH), "the daemon's introspection")
        for kind in ("property", "method", "signal"):
            want, got = contract[kind], served[kind]
            check(want, f"the contract has no {kind}: parsing went wrong")
            check(set(want) == set(got), f"{kind} names differ: missing {sorted(set(want) - set(got))}, "
                  f"extra {sorted(set(got) - set(want))}")
            for name in want:
                check(want[name] == got[name], f"{kind} {name}: contract {want[name]}, daemon {got[name]}")
        check(contract_order == served_order, "the members are not in the contract's order")
        for kind, names in FISCAL_DAY_MEMBERS.items():
            check(names <= set(contract[kind]), f"the contract lacks the {kind}s "
                  f"{sorted(names - set(contract[kind]))}")
        check(contract["method"]["CheckRefund"] == (("id", "s", "in"), ("allowed", "b", "out"),
                                                    ("sync_status", "s", "out"), ("reason", "s", "out")),
              f"CheckRefund: {contract['method']['CheckRefund']}")
        # What the introspection says about const-ness holds: AdapterId and Version are there and stable.
        check(s.get("Version") and s.get("AdapterId"), "Version or AdapterId is empty")
        s.daemon.stop_clean()


# ---- methods ---------------------------------------------------------------------------------------------

def check_answer(answer, rid=None):
    """(id, status, fiscal_json) as the contract says: fiscal_json is JSON, null until printed."""
    got_id, status, fiscal = answer
    check(got_id and (rid is None or got_id == rid), f"receipt id {got_id!r}, expected {rid!r}")
    check(status in ("buffered", "printed"), f"status {status!r}")
    doc = json.loads(fiscal)
    if status == "buffered":
        check(doc is None, f"fiscal_json {fiscal!r} for a buffered receipt is not JSON null")
    else:
        check(isinstance(doc, dict) and doc.get("receipt_id") == got_id
              and doc.get("fiscal_document_number"),
              f"fiscal_json {fiscal!r} of a printed receipt is not its fiscal document")
    return got_id, status, doc


def test_submit_receipt_validates_and_is_idempotent():
    with Setup(ANSWER_AT_ONCE) as s:
        rid, status, _ = check_answer(s.submit("dbus-1"))
        check(status == "buffered", f"with ResponseTimeout=0 the answer is {status!r}, not buffered")
        check_answer(s.submit("dbus-1"), rid)  # replayed: the same receipt, printed by now or not
        expect_error("KeyMismatch", s.submit, "dbus-1", json.dumps(OTHER_RECEIPT))
        expect_error("InvalidArgument", s.submit, "dbus-2", "this is not JSON")
        expect_error("InvalidArgument", s.submit, "", BODY)
        e = expect_error("InvalidReceipt", s.submit, "dbus-3",
                         json.dumps({"pos_id": "POS-1", "type": "sale"}))
        check(e.message, "InvalidReceipt carries no message naming the problem")
        check(s.get("Pending") == 1, f"Pending is {s.get('Pending')} after one accepted receipt")

        doc = json.loads(s.call("GetReceipt", "s", rid)[0])
        check(doc["receipt_id"] == rid and doc["status"] in ("buffered", "printed"), f"GetReceipt: {doc}")
        check(doc["receipt"]["pos_id"] == "POS-1" and doc["receipt"]["items"][0]["name"] == "Frame",
              f"GetReceipt does not carry the receipt: {doc}")
        expect_error("NotFound", s.call, "GetReceipt", "s", "no-such-receipt")
        expect_error("InvalidArgument", s.call, "GetReceipt", "s", "")
        s.daemon.stop_clean()


def test_submit_receipt_waits_for_the_print_and_replays_the_fiscal_document():
    with Setup() as s:
        answer = s.submit("print-1")
        rid, status, fiscal = check_answer(answer)
        check(status == "printed",
              f"with the default ResponseTimeout=7s the answer is {status!r}, not printed")
        check(s.submit("print-1") == answer, "the replay is not the first answer")
        doc = json.loads(s.call("GetReceipt", "s", rid)[0])
        check(doc["status"] == "printed" and doc["fiscal_doc"] == fiscal,
              f"GetReceipt after the print: {doc}")
        s.daemon.stop_clean()


def test_full_buffer_refuses_with_buffer_full():
    with Setup("[Buffer]\nCapacity=2\n" + FAST_PRINTS) as s:
        check(s.get("Capacity") == 2, f"Capacity is {s.get('Capacity')}, not 2 from [Buffer] Capacity=")
        first = s.submit("full-1")
        check_answer(first)
        check_answer(s.submit("full-2"))
        expect_error("BufferFull", s.submit, "full-3")
        check(s.get("Pending") == 2, f"Pending is {s.get('Pending')} with a full buffer")
        check_answer(s.submit("full-1"), first[0])  # a replay is not a new receipt
        status, headers, _ = s.http_submit("full-4")
        check(status == 503 and "retry-after" in headers, f"HTTP with a full buffer: {status} {headers}")
        s.daemon.stop_clean()


def test_admin_methods_work_and_name_their_errors():
    with Setup(FAST_PRINTS) as s:
        check(s.call("SyncNow", "") == [], "SyncNow did not return empty")
        check(s.call("ResetCircuitBreaker", "") == [], "ResetCircuitBreaker did not return empty")
        check(json.loads(s.call("ListDeadLetters", "b", False)[0]) == [], "the dead-letter queue is not empty")
        expect_error("NotFound", s.call, "RetryDeadLetter", "s", "no-such-receipt")
        expect_error("NotFound", s.call, "ResolveDeadLetter", "ss", "no-such-receipt", "handled by phone")
        expect_error("InvalidArgument", s.call, "ResolveDeadLetter", "ss", "r-1", "")
        expect_error("InvalidArgument", s.call, "RetryDeadLetter", "s", "")
        rid = s.submit("admin-1")[0]
        # A receipt that is not dead-lettered has nothing to retry or resolve.
        expect_error("Conflict", s.call, "RetryDeadLetter", "s", rid)
        s.daemon.stop_clean()


def test_receipts_cross_between_http_and_dbus():
    with Setup(FAST_PRINTS) as s:
        rid = s.submit("cross-dbus")[0]
        status, _, doc = s.daemon.request("GET", f"/v1/kkt/receipt/{rid}")
        check(status == 200 and doc["receipt_id"] == rid, f"HTTP GET of a D-Bus receipt: {status} {doc}")
        status, headers, answer = s.http_submit("cross-dbus")
        check(status == 200 and answer["receipt_id"] == rid and headers.get("idempotent-replayed") == "true",
              f"HTTP POST with a D-Bus key did not replay it: {status} {headers} {answer}")

        status, _, answer = s.http_submit("cross-http")
        check(status == 200, f"HTTP POST answered {status}: {answer}")
        hid = answer["receipt_id"]
        doc = json.loads(s.call("GetReceipt", "s", hid)[0])
        check(doc["receipt_id"] == hid and doc["receipt"]["pos_id"] == "POS-1",
              f"GetReceipt of an HTTP one: {doc}")
        check_answer(s.submit("cross-http"), hid)  # replayed across the doors
        expect_error("KeyMismatch", s.submit, "cross-http", json.dumps(OTHER_RECEIPT))
        check(s.get("Pending") == 2, f"Pending is {s.get('Pending')} after two receipts")
        s.daemon.stop_clean()


# ---- signals ---------------------------------------------------------------------------------------------

def test_receipt_state_changed_once_per_new_receipt_not_for_replays():
    with Setup(FAST_PRINTS) as s:
        rid = s.submit("sig-1")[0]
        status, _, answer = s.http_submit("sig-2")
        check(status == 200, f"HTTP POST answered {status}")
        hid = answer["receipt_id"]
        # Let the register finish, so that every signal the two receipts cause has been sent.
        for i in (rid, hid):
            wait_until(lambda: json.loads(s.call("GetReceipt", "s", i)[0])["status"] == "printed", 10,
                       f"receipt {i} printed")
        time.sleep(0.3)
        before = receipt_signals(s.recorder)
        check([x for x in before if x[1] == "buffered"] == [(rid, "buffered"), (hid, "buffered")],
              f"ReceiptStateChanged \"buffered\" is not once per new receipt, in order: {before}")
        for i in (rid, hid):
            states = [st for j, st in before if j == i]
            check(states[0] == "buffered" and len(states) == len(set(states)) and
                  set(states) <= {"buffered", "printed", "print_failed"},
                  f"ReceiptStateChanged for {i}: {states}")

        # Replays through both doors are not new receipts.
        for key in ("sig-1", "sig-2"):
            s.submit(key)
            check(s.http_submit(key)[0] == 200, f"HTTP replay of {key}")
        time.sleep(0.5)  # a signal for them would have arrived by now
        check(receipt_signals(s.recorder) == before,
              f"replays sent signals: {receipt_signals(s.recorder)[len(before):]}")
        check(receipt_signals(s.recorder, "DeadLettered") == [], "DeadLettered without a dead letter")
        s.daemon.stop_clean()


def pending_changes(recorder):
    return [m.body[1]["Pending"][1] for _, m in recorder.taken()
            if m.member == "PropertiesChanged" and m.body[0] == IFACE and "Pending" in m.body[1]]


def test_burst_of_50_receipts_gives_few_pending_signals():
    with Setup(FAST_PRINTS) as s:
        check(s.get("Pending") == 0 and s.get("Capacity") == 200, "Pending/Capacity at start")
        # One after the other, not pipelined: the store would commit a pipelined burst in a few group
        # transactions, and a few signals would not tell coalescing from batching.
        started = time.monotonic()
        ids = [s.submit(f"burst-{i}")[0] for i in range(50)]
        took = time.monotonic() - started
        check(len(set(ids)) == 50, "50 submissions did not give 50 receipts")
        check(s.get("Pending") == 50, f"Pending is {s.get('Pending')} after 50 receipts")
        wait_until(lambda: pending_changes(s.recorder)[-1:] == [50], 5, "PropertiesChanged with Pending=50")
        time.sleep(0.5)  # the coalescing timer has nothing left to send
        changes = pending_changes(s.recorder)
        sys.stderr.write(f"   50 receipts in {took * 1000:.0f} ms: {len(changes)} PropertiesChanged with "
                         f"Pending {changes}\n")
        check(changes[-1] == 50 and changes == sorted(changes), f"Pending in the signals: {changes}")
        # One per 200 ms at most, however many receipts came in meanwhile.
        check(len(changes) <= int(took / 0.2) + 2, f"{len(changes)} PropertiesChanged for 50 receipts "
              f"in {took:.2f} s: not coalesced")
        signalled = [x for x in receipt_signals(s.recorder) if x[1] == "buffered"]
        check(sorted(signalled) == sorted((i, "buffered") for i in ids),
              f"ReceiptStateChanged for the burst: {len(signalled)} signals for 50 receipts")
        s.daemon.stop_clean()


# ---- the fiscal day --------------------------------------------------------------------------------------

def decimal_text(v):
    """Amounts in reports are exact decimal strings: '1500.00', never a JSON number."""
    return isinstance(v, str) and v.replace("-", "", 1).replace(".", "", 1).isdigit() and v[-3] == "."


def property_changes(recorder, name):
    return [m.body[1][name][1] for _, m in recorder.taken()
            if m.member == "PropertiesChanged" and m.body[0] == IFACE and name in m.body[1]]


def test_open_shift_x_and_z_reports_answer_json_and_move_the_shift_properties():
    with Setup(PRINTS_AT_ONCE) as s:
        opened = s.report("OpenShift")
        check(opened["already_open"] is False and opened["shiftNumber"] >= 1 and "reportType" not in opened and
              opened["report"] == "open",
              f"OpenShift: {opened}")
        check(opened["fiscalDocumentNumber"] > 0 and len(opened["fiscalSign"]) == 10 and
              opened["fiscalSign"].isdigit(), f"the opening is not a fiscal document: {opened}")
        shift = opened["shiftNumber"]
        again = s.report("OpenShift")
        check(again["already_open"] is True and again["shiftNumber"] == shift, f"second OpenShift: {again}")

        wait_until(lambda: s.get("ShiftOpen") is True, 5, "ShiftOpen true")
        check(s.get("ShiftNumber") == shift, f"ShiftNumber {s.get('ShiftNumber')} != {shift}")
        opened_at = s.get("ShiftOpenUSec")
        check(opened_at > 0 and s.get("ShiftExpiresUSec") == opened_at + 24 * 3600 * 10**6,
              f"ShiftExpiresUSec {s.get('ShiftExpiresUSec')} is not ShiftOpenUSec {opened_at} + 24 h")
        wait_until(lambda: True in property_changes(s.recorder, "ShiftOpen"), 5,
                   "PropertiesChanged with ShiftOpen=true")
        got = json.loads(s.call("GetShift")[0])
        check(got["shift_open"] is True and got["shift_number"] == shift and got["sales_refused"] is False,
              f"GetShift: {got}")
        dev = json.loads(s.call("GetDeviceStatus")[0])
        check(dev["shift_open"] is True and dev["driver"] == "emulator" and len(dev["fn_number"]) == 16,
              f"GetDeviceStatus: {dev}")

        rid, status, _ = check_answer(s.submit("day-1"))
        check(status == "printed", f"the sale was {status}")
        x = s.report("PrintXReport")
        check(x["reportType"] == 1 and x["report"] == "x" and x["shiftNumber"] == shift, f"X: {x}")
        check(x["cashTotal"] == "1500.00" and x["totalSales"] == "1500.00" and x["cardTotal"] == "0.00" and
              x["totalRefunds"] == "0.00", f"X totals: {x}")
        check(all(decimal_text(x[k]) for k in ("cashTotal", "cardTotal", "totalSales", "totalRefunds")),
              f"X amounts are not decimal strings: {x}")
        check(x["receiptCounts"]["sale"] == 1 and isinstance(x["offline"], bool), f"X counts: {x}")
        check("fiscalDocumentNumber" not in x, f"an X report is not a fiscal document: {x}")
        wait_until(lambda: s.get("ShiftReceipts") == 1, 5, "ShiftReceipts 1")

        z = s.report("CloseShift")
        check(z["reportType"] == 2 and z["report"] == "z" and z["shiftNumber"] == shift and
              z["already_closed"] is False, f"Z: {z}")
        check(z["fiscalDocumentNumber"] > opened["fiscalDocumentNumber"] and len(z["fiscalSign"]) == 10,
              f"Z is not a later fiscal document: {z}")
        check(z["totalSales"] == "1500.00" and z["receiptCounts"]["sale"] == 1, f"Z totals: {z}")
        wait_until(lambda: s.get("ShiftOpen") is False, 5, "ShiftOpen false")
        check(s.get("ShiftExpiresUSec") == 0 and s.get("ShiftReceipts") == 0,
              f"closed shift: expires {s.get('ShiftExpiresUSec')}, receipts {s.get('ShiftReceipts')}")
        check(s.get("LastFiscalDocument") == z["fiscalDocumentNumber"],
              f"LastFiscalDocument {s.get('LastFiscalDocument')} != Z's {z['fiscalDocumentNumber']}")
        wait_until(lambda: False in property_changes(s.recorder, "ShiftOpen"), 5,
                   "PropertiesChanged with ShiftOpen=false")

        expect_error("NoShift", s.call, "CloseShift")
        # The next sale opens the next shift by itself.
        check(check_answer(s.submit("day-2"))[1] == "printed", "the sale after the Z was not printed")
        wait_until(lambda: s.get("ShiftOpen") is True and s.get("ShiftNumber") == shift + 1, 5,
                   f"shift {shift + 1} opened by the sale")
        s.daemon.stop_clean()


def test_check_refund_names_the_original_and_waits_for_the_ofd():
    with Setup(PRINTS_AT_ONCE) as s:
        expect_error("NotFound", s.call, "CheckRefund", "s", "01900000-0000-7000-8000-000000000000")
        expect_error("InvalidArgument", s.call, "CheckRefund", "s", "")
        rid = s.submit("refund-original")[0]
        for ref in (rid, "refund-original"):
            allowed, sync_status, reason = s.call("CheckRefund", "s", ref)
            check(allowed is False and sync_status in ("pending", "failed") and "not synced" in reason,
                  f"CheckRefund({ref}) before the OFD: {allowed} {sync_status} {reason!r}")
        # The HTTP door says the same.
        status, _, answer = s.daemon.request("POST", "/v1/pos/refund", {"original_fiscal_doc_id": rid})
        check(status == 409 and answer["allowed"] is False, f"POST /v1/pos/refund: {status} {answer}")
        s.daemon.stop_clean()


def reject_next(s):
    """The emulated register rejects the next document (test builds' hook)."""
    status, _, answer = s.daemon.request("POST", "/v1/kkt/debug/device/fault",
                                         {"fault": "rejected", "count": 1})
    check(status == 200, f"the fault hook answered {status}: {answer}")


def test_rejected_receipt_is_signalled_listed_retried_and_cancelled():
    with Setup(PRINTS_AT_ONCE) as s:
        reject_next(s)
        rid, status, fiscal = s.submit("rejected-1")
        check(status == "print_rejected" and json.loads(fiscal) is None, f"rejected: {status} {fiscal}")
        sig = s.recorder.wait_for(lambda m: m.member == "PrintRejected" and m.interface == IFACE, 5)
        check(sig and sig.body[0] == rid and sig.body[1],
              f"no PrintRejected({rid}, reason): {sig and sig.body}")
        # The two signals are sent one after the other; the recorder may see the second a moment later.
        wait_until(lambda: (rid, "print_rejected") in receipt_signals(s.recorder), 5,
                   "ReceiptStateChanged print_rejected")
        wait_until(lambda: s.get("PrintRejected") == 1, 5, "PrintRejected property 1")
        wait_until(lambda: 1 in property_changes(s.recorder, "PrintRejected"), 5,
                   "PropertiesChanged with PrintRejected=1")

        # The next receipt prints: one bad receipt does not stop the others.
        check(check_answer(s.submit("after-rejected"))[1] == "printed", "the receipt after it did not print")

        listed = json.loads(s.call("ListRejected")[0])
        check([r["receipt_id"] for r in listed] == [rid] and listed[0]["status"] == "print_rejected",
              f"ListRejected: {listed}")
        doc = json.loads(s.call("GetReceipt", "s", rid)[0])
        check(doc["status"] == "print_rejected", f"GetReceipt of the rejected one: {doc}")

        expect_error("NotFound", s.call, "RetryPrint", "s", "no-such-receipt")
        expect_error("InvalidArgument", s.call, "RetryPrint", "s", "")
        printed = s.submit("printed-1")[0]
        expect_error("Conflict", s.call, "RetryPrint", "s", printed)
        expect_error("Conflict", s.call, "CancelReceipt", "ss", printed, "not rejected")

        check(s.call("RetryPrint", "s", rid) == [], "RetryPrint did not return empty")
        wait_until(lambda: json.loads(s.call("GetReceipt", "s", rid)[0])["status"] == "printed", 10,
                   "the retried receipt printed")
        states = [st for i, st in receipt_signals(s.recorder) if i == rid]
        check(states[-2:] == ["buffered", "printed"], f"signals after RetryPrint: {states}")
        wait_until(lambda: s.get("PrintRejected") == 0, 5, "PrintRejected property 0")
        check(json.loads(s.call("ListRejected")[0]) == [], "ListRejected is not empty after the retry")

        reject_next(s)
        rid2, status, _ = s.submit("rejected-2")
        check(status == "print_rejected", f"second rejection: {status}")
        expect_error("InvalidArgument", s.call, "CancelReceipt", "ss", rid2, "")
        check(s.call("CancelReceipt", "ss", rid2, "sold again as another receipt") == [],
              "CancelReceipt did not return empty")
        wait_until(lambda: (rid2, "cancelled") in receipt_signals(s.recorder), 5,
                   "ReceiptStateChanged cancelled")
        doc = json.loads(s.call("GetReceipt", "s", rid2)[0])
        check(doc["status"] == "cancelled" and doc["fiscal_doc"] is None, f"cancelled: {doc}")
        expect_error("Conflict", s.call, "CancelReceipt", "ss", rid2, "again")
        expect_error("Conflict", s.call, "RetryPrint", "s", rid2)
        wait_until(lambda: s.get("PrintRejected") == 0, 5, "PrintRejected property 0 after the cancel")
        rejected = [tuple(m.body) for _, m in s.recorder.taken() if m.member == "PrintRejected"
                    and m.interface == IFACE]
        check([r[0] for r in rejected] == [rid, rid2], f"PrintRejected signals: {rejected}")
        s.daemon.stop_clean()


def test_reports_say_offline_when_the_ofd_is_unreachable():
    """offline in a report is the OFD leg's state, the same over D-Bus as over HTTP."""
    ofd_down = f"[OFD]\nURL=http://127.0.0.1:{closed_port()}\n[Sync]\nFailureThreshold=1\nInterval=200ms\n"
    with Setup(PRINTS_AT_ONCE + ofd_down) as s:
        s.submit("offline-1")
        wait_until(lambda: s.get("CircuitState") == "open", 10, "the circuit breaker to open")
        status, _, http_x = s.daemon.request("POST", "/v1/kkt/report/x", b"")
        check(status == 200 and http_x["offline"] is True,
              f"HTTP X report with the OFD down: {status} {http_x}")
        x = s.report("PrintXReport")
        check(x["offline"] is True,
              f"PrintXReport() with the OFD down says offline={x['offline']}, HTTP says true")
        s.daemon.stop_clean()


# ---- the bus goes away -----------------------------------------------------------------------------------

def test_bus_restart_http_keeps_working_and_the_daemon_comes_back():
    with Setup() as s:
        s.conn.close()
        s.conn = None
        s.recorder.close()
        s.recorder = None
        s.bus.kill()
        wait_until(lambda: "Lost the connection to the bus" in s.daemon.log_text(), 5,
                   "the daemon to notice the bus is gone")

        status, _, answer = s.http_submit("while-no-bus")
        check(status == 200, f"HTTP POST without a bus answered {status}: {answer}")
        status, _, buf = s.daemon.request("GET", "/v1/kkt/buffer/status")
        check(status == 200 and buf["pending"] == 1, f"buffer/status without a bus: {status} {buf}")

        restarted = time.monotonic()
        s.bus.start()
        owner = dbusclient.wait_for_name(s.bus.address, NAME, timeout=35)
        check(owner, f"the daemon did not own {NAME} again within 35 s; log:\n{s.daemon.log_text()}")
        sys.stderr.write(f"   name owned again {time.monotonic() - restarted:.1f} s after the bus "
                         "restarted\n")
        s.conn = dbusclient.Connection(s.bus.address)
        check(s.get("Pending") == 1, f"Pending is {s.get('Pending')} after the reconnect")
        doc = json.loads(s.call("GetReceipt", "s", answer["receipt_id"])[0])
        check(doc["receipt_id"] == answer["receipt_id"], "GetReceipt after the reconnect")
        check_answer(s.submit("after-reconnect"))
        check(s.daemon.proc.poll() is None, "the daemon died with the bus")
        s.daemon.stop_clean()


def test_daemon_started_before_the_bus_takes_the_name_once_it_appears():
    tmp = tempfile.mkdtemp(prefix="kkt-dbus-api-")
    bus = dbusclient.PrivateBus(tmp)
    try:
        with Daemon(f"[Heartbeat]\nURL=http://127.0.0.1:{closed_port()}/hb\nInterval=1h\n",
                    args=[f"--bus={bus.address}"], name="kkt-dbus-api") as d:
            d.start()  # READY=1 without a bus: it is a second door, not a precondition
            status, _, answer = d.request("POST", "/v1/kkt/receipt", BODY, {"Idempotency-Key": "no-bus-yet"})
            check(status == 200, f"HTTP POST before the bus exists answered {status}: {answer}")
            bus.start()
            owner = dbusclient.wait_for_name(bus.address, NAME, timeout=35)
            check(owner, f"the daemon did not own {NAME} within 35 s of the bus appearing")
            with dbusclient.Connection(bus.address) as c:
                check(c.get_property(NAME, PATH, IFACE, "Pending") == 1, "Pending once the bus appeared")
            d.stop_clean()
    finally:
        bus.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if not shutil.which("dbus-daemon"):
        sys.stderr.write("SKIP: dbus-daemon is not installed\n")
        sys.exit(77)
    if not os.path.exists(INTERFACE_XML):
        sys.stderr.write(f"FAIL: {INTERFACE_XML} is missing\n")
        sys.exit(1)
    run_tests([
        test_introspection_matches_the_contract,
        test_submit_receipt_validates_and_is_idempotent,
        test_submit_receipt_waits_for_the_print_and_replays_the_fiscal_document,
        test_full_buffer_refuses_with_buffer_full,
        test_admin_methods_work_and_name_their_errors,
        test_receipts_cross_between_http_and_dbus,
        test_receipt_state_changed_once_per_new_receipt_not_for_replays,
        test_burst_of_50_receipts_gives_few_pending_signals,
        test_open_shift_x_and_z_reports_answer_json_and_move_the_shift_properties,
        test_check_refund_names_the_original_and_waits_for_the_ofd,
        test_rejected_receipt_is_signalled_listed_retried_and_cancelled,
        test_bus_restart_http_keeps_working_and_the_daemon_comes_back,
        test_daemon_started_before_the_bus_takes_the_name_once_it_appears,
        test_reports_say_offline_when_the_ofd_is_unreachable,
    ])
