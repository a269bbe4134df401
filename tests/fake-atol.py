#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A fake of ATOL's web server (driver 10, /api/v2) for the tests of the atol-web driver. Python stdlib only,
loopback only.

The request queue as the driver meets it: POST /api/v2/requests {"uuid", "request": [tasks]} -> 201 (400 for
more than one fiscal task or a request without uuid/request, 409 for a uuid it has), GET
/api/v2/requests/{uuid} -> {"results": [{"status", "error": {"code", "description"}, "result"}]} (404 for an
unknown uuid), DELETE of a request whose tasks all still wait. One worker runs the requests in order, a task at
a time; after a failed task the rest of its request are "interrupted" (502).

The register behind it: a fiscal memory (document numbers, shifts, their totals, a journal of every document
with the uuid of the request that made it) that persists across restarts in the --state file (written
atomically and fsync'ed on every change, as a fiscal drive commits), the tasks sell/sellReturn/buy/buyReturn,
the four corrections, openShift, closeShift, reportX, continuePrint and the queries getFnStatus,
getShiftStatus, getDeviceStatus, getDeviceInfo, getFnInfo, ofdExchangeStatus, getRegistrationInfo,
getShiftTotals, getFnDocument, getLastFiscalParams. Its refusals: taxation it is not registered for (143),
payments short of the total (66), non-cash above it (52), a total that is not the items' sum (227), a shift
over 24 h (68), a closed shift closed again (73), an open one opened again (83).

After a crash in the middle of a task it recovers as ATOL's server does: a fiscal task that was running is
"ready" with the last document's fiscal parameters when the fiscal drive's last document number grew past the
one noted before it, else "error" (2, no connection).

Faults on demand: POST /control {"fault": NAME, "count": N} (N fiscal tasks; 0: until cleared), {"clear":
true}, {"paper": false}, {"cover": true}, {"delay_ms": N} (each task takes that long), {"hang_ms": N,
"hang_count": M} (the next M HTTP requests are answered that late), {"shift_age_hours": H}, {"unblock": true},
{"registered": ["osn"]}, {"ofd_offline": true}. Fault names:
  shift_expired, paper_out_before (44, nothing made), paper_out_after (the document is made, then 44),
  not_printed (made, "ready" with warnings.notPrinted, paper out), cover_open (45), fn_full (121, nothing),
  wrong_taxation (143), payments_short (66), connection_lost_before (2, nothing), connection_lost_after (made,
  then 2), blocked (the task blocks the queue until {"unblock": true}; "made": true|false), die_after_accept
  (the request is stored, the process exits before answering), die_after_commit (the document is made, the
  process exits before the result is stored), drop_answer (the request is stored, the connection closed
  without an answer), hide_get (GET answers 404 for a uuid it has).
GET /control/journal: {"documents": [...]} every fiscal document made (fd, form, uuid, settlement 1054, total
in kopecks, ...); GET /control/requests: every POST body as received, raw; GET /control/state: counters.

Usage: fake-atol.py --port N (0: any; "PORT=<n>" is printed) --state FILE [--auth login:password]
[--exit-on-eof] (exit when stdin reaches EOF).
"""

import argparse
import base64
import datetime
import decimal
import hashlib
import http.server
import json
import os
import socketserver
import sys
import threading
import time

D = decimal.Decimal
FISCAL_TASKS = {"sell", "sellReturn", "buy", "buyReturn", "sellCorrection", "sellReturnCorrection",
                "buyCorrection", "buyReturnCorrection", "openShift", "closeShift", "reportOfdExchangeStatus"}
RECEIPT_TASKS = {"sell": 1, "sellReturn": 2, "buy": 3, "buyReturn": 4, "sellCorrection": 1,
                 "sellReturnCorrection": 2, "buyCorrection": 3, "buyReturnCorrection": 4}
TOTALS_KEY = {1: "sell", 2: "sellReturn", 3: "buy", 4: "buyReturn"}
PAYMENT_FORMS = ["cash", "electronically", "prepaid", "credit", "other"]
TZ = datetime.timezone(datetime.timedelta(hours=3))  # the register's local time, as a Moscow shop has it

ERRORS = {
    2: "Нет связи", 13: "Нeкорректное значение параметра", 44: "Нет бумаги", 45: "Открыта крышка",
    52: "Сумма не наличных платежей превышает сумму чека", 66: "Чек оплачен не полностью",
    68: "Смена превысила 24 часа", 73: "Смена закрыта - операция невозможна",
    83: "Смена открыта, операция невозможна", 121: "Архив ФН переполнен", 143: "Некорректная СНО",
    227: "Неверный итог чека", 501: "Ошибка парсинга запроса",
    502: "Выполнение прервано из-за предыдущих ошибок",
}


class TaskError(Exception):
    def __init__(self, code, made=False):
        super().__init__(code)
        self.code = code
        self.made = made  # the document was committed before the error


def kopecks(v):
    d = D(str(v)) if not isinstance(v, D) else v
    k = d * 100
    if k != k.to_integral_value():
        raise TaskError(13)
    return int(k)


def roubles(k):
    """An amount as the register answers it: a JSON number in roubles."""
    return float(D(k) / 100)


def now_local():
    return datetime.datetime.now(TZ).replace(microsecond=0)


def iso(dt):
    return dt.isoformat()


class Fake:
    def __init__(self, path):
        self.path = path
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.fault = None
        self.fault_count = 0
        self.delay = 0.0
        self.hang = 0.0
        self.hang_count = 0
        self.unblocked = False
        if os.path.exists(path):
            with open(path) as f:
                # Amounts in stored results are the register's JSON numbers; the tasks' amounts were stored
                # as exact decimal strings.
                self.s = json.load(f)
        else:
            self.s = {
                "fn_number": "9999078902000123", "registration_number": "0000000001002345",
                "inn": "7701234567", "serial": "00106712345678", "model": "АТОЛ 30Ф (fake)",
                "registered": ["osn", "usnIncome"], "last_fd": 0, "shift_number": 0, "shift_open": False,
                "shift_opened_at": None, "shift_receipts": 0, "totals": {}, "documents": [],
                "requests": {}, "order": [], "bodies": [], "paper": True, "cover": False,
                "fn_valid_until": iso(now_local() + datetime.timedelta(days=400)), "ofd_offline": False,
                "x_reports": 0, "continued": 0,
            }
        self.recover()
        self.save()

    # persistence ------------------------------------------------------------------------------------------
    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.s, f, default=lambda o: str(o) if isinstance(o, D) else o)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path)
        dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def recover(self):
        """A task that was running when the process died: decided by the fiscal drive's document number, as
        ATOL's server decides a blocked task."""
        for uuid in self.s["order"]:
            req = self.s["requests"][uuid]
            for i, r in enumerate(req["results"]):
                if r["status"] in ("inProgress", "blocked"):
                    t = req["tasks"][i]
                    before = r.get("fd_before")
                    if t.get("type") in FISCAL_TASKS and before is not None and self.s["last_fd"] > before:
                        doc = self.s["documents"][-1]
                        r.update(status="ready", error={"code": 0, "description": "Ошибок нет"},
                                 result={"fiscalParams": self.fiscal_params(doc), "warnings": None})
                    else:
                        self.fail_task(req, i, 2)

    # faults -----------------------------------------------------------------------------------------------
    def take_fault(self, names):
        with self.lock:
            if self.fault in names:
                f = self.fault
                if self.fault_count > 0:
                    self.fault_count -= 1
                    if self.fault_count == 0:
                        self.fault = None
                return f
            return None

    def peek_fault(self, name):
        with self.lock:
            return self.fault == name

    # the fiscal memory --------------------------------------------------------------------------------------
    def sign(self, fd, dt, total):
        h = hashlib.sha256(f"{self.s['fn_number']}|{fd}|{dt}|{total}".encode()).digest()
        return "%010d" % (int.from_bytes(h[:8], "big") % 10**10)

    def fiscal_params(self, doc):
        fp = {"fiscalDocumentNumber": doc["fd"], "fiscalDocumentSign": doc["sign"],
              "fiscalDocumentDateTime": doc["datetime"], "shiftNumber": doc["shift"],
              "fnNumber": self.s["fn_number"], "registrationNumber": self.s["registration_number"],
              "fnsUrl": "www.nalog.gov.ru"}
        if doc["form"] in ("receipt", "receiptCorrection"):
            fp["fiscalReceiptNumber"] = doc["number_in_shift"]
            fp["total"] = roubles(doc["total"])
        if doc["form"] == "closeShift":
            fp["receiptsCount"] = doc["receipts"]
        return fp

    def commit(self, doc):
        """Numbers the document and writes it to the fiscal memory: then it is made."""
        self.s["last_fd"] += 1
        dt = now_local()
        doc.update(fd=self.s["last_fd"], datetime=iso(dt), shift=self.s["shift_number"],
                   fn=self.s["fn_number"], ofd_confirmed=not self.s["ofd_offline"])
        doc["sign"] = self.sign(doc["fd"], doc["datetime"], doc.get("total", 0))
        self.s["documents"].append(doc)
        self.save()
        return doc

    def shift_expired(self):
        if not self.s["shift_open"]:
            return False
        opened = datetime.datetime.fromisoformat(self.s["shift_opened_at"])
        return now_local() - opened >= datetime.timedelta(hours=24)

    def open_shift(self, uuid):
        self.s["shift_number"] += 1
        self.s["shift_open"] = True
        self.s["shift_opened_at"] = iso(now_local())
        self.s["shift_receipts"] = 0
        self.s["totals"][str(self.s["shift_number"])] = {
            k: {"count": 0, "sum": 0, "payments": {f: 0 for f in PAYMENT_FORMS}} for k in TOTALS_KEY.values()}
        return self.commit({"form": "openShift", "uuid": uuid})

    # tasks ------------------------------------------------------------------------------------------------
    def receipt(self, uuid, t):
        settlement = RECEIPT_TASKS[t["type"]]
        f = self.take_fault({"shift_expired", "paper_out_before", "paper_out_after", "not_printed", "cover_open",
                             "fn_full", "wrong_taxation", "payments_short", "connection_lost_before",
                             "connection_lost_after", "die_after_commit", "blocked"})
        early = {"shift_expired": 68, "paper_out_before": 44, "cover_open": 45, "fn_full": 121,
                 "wrong_taxation": 143, "payments_short": 66, "connection_lost_before": 2}
        if f in early:
            if f == "paper_out_before":
                self.s["paper"] = False
            raise TaskError(early[f])
        if not self.s["paper"]:
            raise TaskError(44)
        if self.s["cover"]:
            raise TaskError(45)
        if self.shift_expired():
            raise TaskError(68)
        tax = t.get("taxationType", self.s["registered"][0])
        if tax not in self.s["registered"]:
            raise TaskError(143)
        items = [i for i in t.get("items", []) if i.get("type") == "position"]
        if not items or not t.get("payments"):
            raise TaskError(13)
        total = sum(kopecks(i["amount"]) for i in items)
        if "total" in t and kopecks(t["total"]) != total:
            raise TaskError(227)
        pays = {form: 0 for form in PAYMENT_FORMS}
        for p in t["payments"]:
            if p.get("type") not in pays:
                raise TaskError(13)
            pays[p["type"]] += kopecks(p["sum"])
        paid = sum(pays.values())
        if paid < total:
            raise TaskError(66)
        if paid - pays["cash"] > total:
            raise TaskError(52)
        change = paid - total
        pays["cash"] -= change
        if not self.s["shift_open"]:
            self.open_shift(uuid)  # a receipt in a closed shift opens one first, as registers do
        self.s["shift_receipts"] += 1
        tot = self.s["totals"][str(self.s["shift_number"])][TOTALS_KEY[settlement]]
        tot["count"] += 1
        tot["sum"] += total
        for form in PAYMENT_FORMS:
            tot["payments"][form] += pays[form]
        doc = self.commit({"form": "receiptCorrection" if "Correction" in t["type"] else "receipt", "uuid": uuid,
                           "task": t["type"], "settlement": settlement, "total": total, "change": change,
                           "number_in_shift": self.s["shift_receipts"], "payments": pays})
        result = {"fiscalParams": self.fiscal_params(doc), "warnings": None}
        if f == "not_printed":
            self.s["paper"] = False
            result["warnings"] = {"notPrinted": True}
        elif f == "paper_out_after":
            self.s["paper"] = False
            raise TaskError(44, made=True)
        elif f == "connection_lost_after":
            raise TaskError(2, made=True)
        elif f == "die_after_commit":
            os._exit(3)
        elif f == "blocked":
            raise TaskError(-1, made=True)
        return result

    def shift_task(self, uuid, t):
        f = self.take_fault({"paper_out_before", "connection_lost_before", "die_after_commit", "blocked",
                             "connection_lost_after"})
        if f == "paper_out_before":
            self.s["paper"] = False
            raise TaskError(44)
        if f == "connection_lost_before":
            raise TaskError(2)
        if not self.s["paper"]:
            raise TaskError(44)
        if t["type"] == "openShift":
            if self.s["shift_open"]:
                raise TaskError(83)
            doc = self.open_shift(uuid)
        else:
            if not self.s["shift_open"]:
                raise TaskError(73)
            self.s["shift_open"] = False
            doc = self.commit({"form": "closeShift", "uuid": uuid, "receipts": self.s["shift_receipts"]})
        if f == "die_after_commit":
            os._exit(3)
        if f == "connection_lost_after":
            raise TaskError(2, made=True)
        if f == "blocked":
            raise TaskError(-1, made=True)
        return {"fiscalParams": self.fiscal_params(doc), "warnings": None}

    def unsent(self):
        return [d for d in self.s["documents"] if not d.get("ofd_confirmed")]

    def tlv(self, doc):
        t = {"fiscalDocumentType": doc["form"], "short": False, "1040": doc["fd"], "1077": int(doc["sign"]),
             "1012": doc["datetime"], "1038": doc["shift"], "1041": doc["fn"],
             "1037": self.s["registration_number"], "1018": self.s["inn"]}
        if doc["form"] in ("receipt", "receiptCorrection"):
            t.update({"1054": doc["settlement"], "1020": roubles(doc["total"]), "1042": doc["number_in_shift"],
                      "qr": "t=%s&s=%s&fn=%s&i=%d&fp=%s&n=%d" % (
                          doc["datetime"][:16].replace("-", "").replace(":", ""), "%.2f" % (doc["total"] / 100),
                          doc["fn"], doc["fd"], doc["sign"], doc["settlement"])})
        return t

    def query(self, t):
        s = self.s
        typ = t["type"]
        if typ == "getFnStatus":
            return {"fnStatus": {"fiscalDocumentNumber": s["last_fd"], "fiscalReceiptNumber": s["shift_receipts"],
                                 "warnings": {}}}
        if typ == "getShiftStatus":
            st = "closed"
            exp = None
            if s["shift_open"]:
                st = "expired" if self.shift_expired() else "opened"
                exp = iso(datetime.datetime.fromisoformat(s["shift_opened_at"]) + datetime.timedelta(hours=24))
            r = {"shiftStatus": {"state": st, "number": s["shift_number"]}}
            if exp:
                r["shiftStatus"]["expiredTime"] = exp
            return r
        if typ == "getDeviceStatus":
            return {"deviceStatus": {"currentDateTime": iso(now_local()), "blocked": False,
                                     "coverOpened": s["cover"], "paperPresent": s["paper"], "fiscal": True,
                                     "fnFiscal": True, "fnPresent": True, "cashDrawerOpened": False,
                                     "shift": "expired" if self.shift_expired() else
                                     ("opened" if s["shift_open"] else "closed")}}
        if typ == "getDeviceInfo":
            return {"deviceInfo": {"model": 67, "modelName": s["model"], "serial": s["serial"],
                                   "firmwareVersion": "5.8.100", "ffdVersion": "1.2", "fnFfdVersion": "1.2"}}
        if typ == "getFnInfo":
            full = self.peek_fault("fn_full")
            return {"fnInfo": {"serial": s["fn_number"], "version": "fn-1.2", "execution": "Ин15-1М",
                               "numberOfRegistrations": 1, "registrationsRemaining": 29,
                               "validityDate": s["fn_valid_until"], "ffdVersion": "1.2",
                               "livePhase": "fiscalMode",
                               "warnings": {"memoryOverflow": full, "needReplacement": False,
                                            "resourceExhausted": False, "ofdTimeout": False,
                                            "criticalError": False}}}
        if typ == "ofdExchangeStatus":
            u = self.unsent()
            st = {"notSentCount": len(u), "notSentFirstDocNumber": u[0]["fd"] if u else 0}
            if u:
                st["notSentFirstDocDateTime"] = u[0]["datetime"]
            return {"status": st, "errors": {}}
        if typ == "getRegistrationInfo":
            return {"organization": {"name": "ООО Оптика", "vatin": s["inn"], "taxationTypes": s["registered"]},
                    "device": {"registrationNumber": s["registration_number"], "ffdVersion": "1.2"}}
        if typ == "getShiftTotals":
            tot = s["totals"].get(str(s["shift_number"])) if s["shift_open"] else None
            rec = {}
            for k in TOTALS_KEY.values():
                v = tot[k] if tot else {"count": 0, "sum": 0, "payments": {f: 0 for f in PAYMENT_FORMS}}
                rec[k] = {"count": v["count"], "sum": roubles(v["sum"]),
                          "payments": {f: roubles(v["payments"][f]) for f in PAYMENT_FORMS}}
            return {"shiftTotals": {"shiftNumber": s["shift_number"], "receipts": rec}}
        if typ == "getFnDocument":
            n = t.get("fiscalDocumentNumber")
            for d in s["documents"]:
                if d["fd"] == n:
                    return {"documentTLV": self.tlv(d)}
            raise TaskError(13)
        if typ == "getLastFiscalParams":
            if not s["documents"]:
                raise TaskError(13)
            return {"fiscalParams": self.fiscal_params(s["documents"][-1])}
        if typ == "reportX":
            if not s["paper"]:
                raise TaskError(44)
            s["x_reports"] += 1
            return None
        if typ == "continuePrint":
            if not s["paper"]:
                raise TaskError(44)
            s["continued"] += 1
            return None
        raise TaskError(501)

    def fail_task(self, req, i, code):
        req["results"][i].update(status="error", error={"code": code, "description": ERRORS.get(code, "Ошибка")},
                                 result=None)
        for j in range(i + 1, len(req["tasks"])):
            req["results"][j].update(status="interrupted",
                                     error={"code": 502, "description": ERRORS[502]}, result=None)

    def run_request(self, uuid):
        req = self.s["requests"][uuid]
        for i, t in enumerate(req["tasks"]):
            r = req["results"][i]
            if r["status"] != "wait":
                continue
            typ = t.get("type")
            if typ in FISCAL_TASKS:
                r["fd_before"] = self.s["last_fd"]
            r["status"] = "inProgress"
            self.save()
            if self.delay:
                self.lock.release()
                try:
                    time.sleep(self.delay)
                finally:
                    self.lock.acquire()
            try:
                if typ in RECEIPT_TASKS:
                    result = self.receipt(uuid, t)
                elif typ in ("openShift", "closeShift"):
                    result = self.shift_task(uuid, t)
                else:
                    result = self.query(t)
                r.update(status="ready", error={"code": 0, "description": "Ошибок нет"}, result=result)
            except TaskError as e:
                if e.code == -1:  # blocked: the outcome unknown until the register answers again
                    r["status"] = "blocked"
                    self.save()
                    while not self.unblocked:
                        self.cond.wait(0.1)
                    self.unblocked = False
                    self.recover()
                    self.save()
                    return
                self.fail_task(req, i, e.code)
                self.save()
                return
            self.save()

    def worker(self):
        with self.lock:
            while True:
                todo = [u for u in self.s["order"]
                        if any(r["status"] == "wait" for r in self.s["requests"][u]["results"])
                        and not any(r["status"] in ("canceled",) for r in self.s["requests"][u]["results"])]
                if not todo:
                    self.cond.wait(0.5)
                    continue
                self.run_request(todo[0])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake = None
    auth = None

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, obj=None, text=None):
        body = (json.dumps(obj, ensure_ascii=False, default=lambda o: float(o) if isinstance(o, D) else str(o))
                if obj is not None else (text or "")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n) if n else b""

    def gate(self):
        """Hangs when asked to; checks the Basic credentials. True: go on."""
        f = self.fake
        with f.lock:
            hang = f.hang if f.hang_count > 0 else 0
            if f.hang_count > 0:
                f.hang_count -= 1
        if hang:
            time.sleep(hang)
        if self.auth and not self.path.startswith("/control"):
            want = "Basic " + base64.b64encode(self.auth.encode()).decode()
            if self.headers.get("Authorization") != want:
                self.answer(401, {"error": {"code": 401, "description": "Unauthorized"}})
                return False
        return True

    def do_POST(self):
        raw = self.body()
        if not self.gate():
            return
        f = self.fake
        if self.path == "/control":
            return self.control(json.loads(raw or b"{}"))
        if self.path.split("?")[0] != "/api/v2/requests":
            return self.answer(404, {"error": {"code": 404, "description": "not found"}})
        try:
            j = json.loads(raw, parse_float=D)
            uuid, tasks = j["uuid"], j["request"]
        except (ValueError, KeyError, TypeError):
            return self.answer(400, {"error": {"code": 501, "description": "'uuid' and / or 'request' not found"}})
        if isinstance(tasks, dict):
            tasks = [tasks]
        if sum(1 for t in tasks if t.get("type") in FISCAL_TASKS) > 1:
            return self.answer(400, {"error": {"code": 501, "description": "Too many fiscal sub-tasks"}})
        with f.lock:
            f.s["bodies"].append({"uuid": uuid, "body": raw.decode()})
            if uuid in f.s["requests"]:
                f.save()
                return self.answer(409, {"error": {"code": 505, "description":
                                                   f"Не удалось добавить задание с UUID [{uuid}], задание с "
                                                   "таким UUID уже есть"}})
            fiscal = any(t.get("type") in FISCAL_TASKS for t in tasks)
            fault = f.take_fault({"die_after_accept", "drop_answer"}) if fiscal else None
            f.s["requests"][uuid] = {"tasks": tasks, "results": [
                {"status": "wait", "error": {"code": 0, "description": "Ошибок нет"}, "result": None}
                for _ in tasks]}
            f.s["order"].append(uuid)
            f.save()
            if fault == "die_after_accept":
                os._exit(3)
            f.cond.notify_all()
        if fault == "drop_answer":
            self.close_connection = True
            return
        self.answer(201, {"number": len(f.s["order"]), "uuid": uuid, "isBlocked": False, "blockedUUID": "",
                          "blockReason": ""})

    def results(self, uuid):
        req = self.fake.s["requests"].get(uuid)
        if req is None:
            return None
        return {"results": [{k: v for k, v in r.items() if k != "fd_before"} for r in req["results"]]}

    def do_GET(self):
        if not self.gate():
            return
        f = self.fake
        path = self.path.split("?")[0]
        with f.lock:
            if path.startswith("/api/v2/requests/"):
                uuid = path[len("/api/v2/requests/"):]
                res = self.results(uuid)
                if res is not None and f.take_fault({"hide_get"}):
                    res = None
                if res is None:
                    return self.answer(404, {"error": {"code": 404, "description":
                                                       f"Задание с UUID [{uuid}] не найдено"}})
                return self.answer(200, res)
            if path == "/control/journal":
                return self.answer(200, {"documents": f.s["documents"]})
            if path == "/control/requests":
                return self.answer(200, {"requests": f.s["bodies"]})
            if path == "/control/state":
                s = f.s
                return self.answer(200, {"last_fd": s["last_fd"], "shift_number": s["shift_number"],
                                         "shift_open": s["shift_open"], "paper": s["paper"],
                                         "x_reports": s["x_reports"], "continued": s["continued"],
                                         "requests": len(s["order"]), "fault": f.fault})
        self.answer(404, {"error": {"code": 404, "description": "not found"}})

    def do_DELETE(self):
        if not self.gate():
            return
        f = self.fake
        path = self.path.split("?")[0]
        if not path.startswith("/api/v2/requests/"):
            return self.answer(404)
        with f.lock:
            req = f.s["requests"].get(path[len("/api/v2/requests/"):])
            if req is None:
                return self.answer(404, {"error": {"code": 404, "description": "not found"}})
            if any(r["status"] != "wait" for r in req["results"]):
                return self.answer(409, {"error": {"code": 505, "description": "Задание уже выполняется"}})
            for r in req["results"]:
                r["status"] = "canceled"
            f.save()
        self.answer(200, {})

    def control(self, c):
        f = self.fake
        with f.lock:
            if c.get("clear"):
                f.fault, f.fault_count, f.delay, f.hang, f.hang_count = None, 0, 0.0, 0.0, 0
                f.s["paper"], f.s["cover"] = True, False
            if "fault" in c:
                f.fault = c["fault"]
                f.fault_count = int(c.get("count", 0))
            if "paper" in c:
                f.s["paper"] = bool(c["paper"])
            if "cover" in c:
                f.s["cover"] = bool(c["cover"])
            if "delay_ms" in c:
                f.delay = c["delay_ms"] / 1000.0
            if "hang_ms" in c:
                f.hang = c["hang_ms"] / 1000.0
                f.hang_count = int(c.get("hang_count", 1))
            if "shift_age_hours" in c and f.s["shift_open"]:
                f.s["shift_opened_at"] = iso(now_local() - datetime.timedelta(hours=c["shift_age_hours"]))
            if "registered" in c:
                f.s["registered"] = list(c["registered"])
            if "ofd_offline" in c:
                f.s["ofd_offline"] = bool(c["ofd_offline"])
            if c.get("unblock"):
                f.unblocked = True
            f.save()
            f.cond.notify_all()
        self.answer(200, {"ok": True})


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that went away (a driver's timeout) is no error of the fake.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--state", required=True)
    ap.add_argument("--auth")
    ap.add_argument("--exit-on-eof", action="store_true")
    a = ap.parse_args()

    fake = Fake(a.state)
    Handler.fake = fake
    Handler.auth = a.auth
    srv = Server(("127.0.0.1", a.port), Handler)
    threading.Thread(target=fake.worker, daemon=True).start()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    print(f"PORT={srv.server_address[1]}", flush=True)
    if a.exit_on_eof:
        sys.stdin.read()
        os._exit(0)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
