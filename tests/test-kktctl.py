#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""kktctl against the real kkt-adapterd on a private bus: every command's output, its --json form and the
exit statuses kktctl(1) promises to scripts, the fiscal day's commands included (shift, shift open|close,
report x|z, refund-check, receipt rejected|retry|cancel, device).

A session-type dbus-daemon (its policy allows everything) listens on a socket in a temporary directory;
kkt-adapterd is started on it with --bus=ADDRESS, socket-activated as systemd would, its heartbeat pointed at
a closed loopback port. kktctl ($KKTCTL) talks to it with --address=. Python's standard library only.
Exit 77 (skipped) when dbus-daemon is missing.
"""

import datetime
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import dbusclient  # noqa: E402
from busdaemon import DaemonOnBus  # noqa: E402
from kkttest import FakeOfd, check, closed_port, run_all, wait_until  # noqa: E402

KKTCTL = os.environ.get("KKTCTL", "kktctl")
HERE = os.path.dirname(os.path.abspath(__file__))
INTERFACE_XML = os.environ.get("KKT_DBUS_INTERFACE",
                               os.path.join(HERE, "..", "dbus", "org.opticserp.KktAdapter1.xml"))
CAPACITY = 37

# The exit statuses of kktctl(1).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_ACCESS, EXIT_NOT_RUNNING, EXIT_REFUSED, EXIT_RETRY, \
    EXIT_NOT_SUPPORTED, EXIT_NOT_ALLOWED, EXIT_SHIFT_EXPIRED = range(11)

RECEIPT = {
    "pos_id": "pos-kktctl",
    "type": "sale",
    "items": [{"name": "Lens 1.6 AR", "price": 1234.50, "quantity": 2, "total": 2469.00, "vat": "vat22"}],
    "payments": [{"type": "card", "amount": 2469.00}],
}

# What `kktctl --json shift` prints: these properties and no others.
SHIFT_PROPERTIES = {"ShiftOpen", "ShiftNumber", "ShiftOpenUSec", "ShiftExpiresUSec", "ShiftReceipts"}
# kktctl runs in this zone (POSIX form: no tzdata needed); times are local unless --utc.
TZ = "MSK-3"
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+03:00"
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"

tmp = None
address = None    # the private bus's address
daemon = None     # the kkt-adapterd Daemon


# A session-like bus whose mandatory policy refuses what kkt-pos and kkt-admin may do, even to root.
DENYING_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <policy context="mandatory">
    <deny send_destination="org.opticserp.KktAdapter1" send_interface="org.opticserp.KktAdapter1"
          send_member="SubmitReceipt"/>
    <deny send_destination="org.opticserp.KktAdapter1" send_interface="org.opticserp.KktAdapter1"
          send_member="SyncNow"/>
    <deny send_destination="org.opticserp.KktAdapter1" send_interface="org.opticserp.KktAdapter1"
          send_member="CloseShift"/>
    <deny send_destination="org.opticserp.KktAdapter1" send_interface="org.opticserp.KktAdapter1"
          send_member="RetryPrint"/>
    <deny send_destination="org.opticserp.KktAdapter1" send_interface="org.opticserp.KktAdapter1"
          send_member="ResetCircuitBreaker"/>
  </policy>
</busconfig>
"""


def kktctl_env():
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": TZ}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


def kktctl(*args, stdin=None, addr=None, timeout=60):
    cmd = [KKTCTL] + ([f"--address={addr or address}"] if addr is not False else []) + list(args)
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=kktctl_env())


def expect(r, status, what):
    check(r.returncode == status,
          f"{what}: exit {r.returncode}, expected {status}; stdout {r.stdout!r}, stderr {r.stderr!r}")


def expect_message(r, *needles):
    """Errors are one line on stderr starting with 'kktctl:'; nothing is printed on stdout."""
    lines = [l for l in r.stderr.splitlines() if not l.startswith("Idempotency-Key: ")]
    check(len(lines) == 1 and lines[0].startswith("kktctl: "), f"not one 'kktctl:' line: {r.stderr!r}")
    for n in needles:
        check(n.lower() in lines[0].lower(), f"{n!r} not in {lines[0]!r}")
    check(r.stdout == "", f"an error printed data on stdout: {r.stdout!r}")


def interface_properties():
    root = ET.parse(INTERFACE_XML).getroot()
    iface = root.find("interface[@name='org.opticserp.KktAdapter1']")
    return [(p.get("name"), p.get("type")) for p in iface.findall("property")]


def receipt_file(receipt=None, name="receipt.json"):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump(receipt or RECEIPT, f)
    return path


def submitted(r):
    """The 'Label: value' lines of a text-mode submit."""
    fields = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition(":")
        fields[k.strip()] = v.strip()
    return fields


# status ----------------------------------------------------------------------------------------------------

def test_status_is_the_default_command_and_shows_every_field():
    for args in ((), ("status",)):
        r = kktctl(*args)
        expect(r, EXIT_OK, f"kktctl {' '.join(args)}")
        check(r.stderr == "", f"status wrote to stderr: {r.stderr!r}")
        labels = [l.split(":", 1)[0] for l in r.stdout.splitlines()]
        for label in ("State", "Last heartbeat", "Consecutive", "Receipts", "Print rejected",
                      "Circuit breaker", "Last sync", "Register", "Shift", "Last fiscal document",
                      "Fiscal drive", "OFD exchange", "Adapter ID", "Version"):
            check(label in [x.strip() for x in labels], f"status lacks {label!r}:\n{r.stdout}")
        # Aligned like timedatectl: every colon in the same column.
        check(len({len(x) for x in labels}) == 1, f"labels are not aligned:\n{r.stdout}")
        check(re.search(r"^\s*Version: \d+\.\d+\.\d+$", r.stdout, re.M), f"no version:\n{r.stdout}")
        counters = rf"^\s*Receipts: \d+ pending of {CAPACITY}, \d+ synced, \d+ failed, \d+ dead-lettered$"
        check(re.search(counters, r.stdout, re.M), f"no counters with capacity {CAPACITY}:\n{r.stdout}")


def test_status_json_has_every_property_of_the_interface():
    r = kktctl("--json", "status")
    expect(r, EXIT_OK, "kktctl --json status")
    check(len(r.stdout.strip().splitlines()) == 1, f"not one JSON line: {r.stdout!r}")
    o = json.loads(r.stdout)
    for name, sig in interface_properties():
        check(name in o, f"--json status lacks {name}")
        if sig in "yqnuixt":
            check(isinstance(o[name], int), f"{name} is {o[name]!r}, not a JSON number")
        elif sig == "s":
            check(isinstance(o[name], str), f"{name} is {o[name]!r}, not a JSON string")
    check(o["Capacity"] == CAPACITY, f"Capacity {o['Capacity']} != [Buffer] Capacity={CAPACITY}")
    check(o["State"] in ("unknown", "online", "offline"), f"State {o['State']!r}")


def labelled(text):
    """{label: value} of aligned 'Label: value' lines."""
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def check_aligned(r, what):
    labels = [l.split(":", 1)[0] for l in r.stdout.splitlines()]
    check(labels and len({len(x) for x in labels}) == 1, f"{what}: labels are not aligned:\n{r.stdout}")


def test_status_text_and_json_agree():
    # The heartbeat fails against the closed port, so the streak and the result are not trivial values.
    wait_until(lambda: json.loads(kktctl("--json").stdout)["ConsecutiveFailures"] >= 1, 20,
               "a failed heartbeat")
    o = json.loads(kktctl("--json", "status").stdout)
    text = kktctl("status").stdout
    check(re.search(rf"^\s*State: {o['State']}$", text, re.M), f"State differs:\n{text}\n{o}")
    check(re.search(rf"^\s*Adapter ID: {re.escape(o['AdapterId'])}$", text, re.M),
          f"AdapterId differs:\n{text}")
    check(re.search(rf"^\s*Last heartbeat: {ISO} \(.+\)$", text, re.M),
          f"the last heartbeat has no time and result:\n{text}")
    check(re.search(r"^\s*Consecutive: \d+ succeeded, [1-9]\d* failed$", text, re.M),
          f"the failed heartbeats are not counted:\n{text}")


# submit ----------------------------------------------------------------------------------------------------

def test_submit_file_with_a_generated_key():
    r = kktctl("submit", receipt_file())
    expect(r, EXIT_OK, "submit FILE")
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    m = re.search(rf"^Idempotency-Key: ({uuid})$", r.stderr, re.M)
    check(m, f"no generated Idempotency-Key on stderr: {r.stderr!r}")
    f = submitted(r)
    check(f.get("Receipt ID"), f"no receipt id: {r.stdout!r}")
    check(f.get("Status") in ("printed", "buffered"), f"status: {r.stdout!r}")
    check(f.get("Idempotency-Key") == m.group(1), f"stdout's key differs from stderr's: {r.stdout!r}")

    # Two submissions without --key are two receipts.
    r2 = kktctl("submit", receipt_file())
    expect(r2, EXIT_OK, "second submit")
    check(submitted(r2)["Receipt ID"] != f["Receipt ID"], "two generated keys gave the same receipt")


def test_submit_stdin_with_a_key_replays_the_same_receipt():
    body = json.dumps(RECEIPT)
    r = kktctl("--json", "submit", "--key=kktctl-replay-1", "-", stdin=body)
    expect(r, EXIT_OK, "submit - --key")
    check("Idempotency-Key" not in r.stderr, f"a given key was printed again: {r.stderr!r}")
    first = json.loads(r.stdout)
    check(set(first) == {"receipt_id", "status", "idempotency_key", "fiscal_doc"}, f"keys: {sorted(first)}")
    check(first["idempotency_key"] == "kktctl-replay-1", f"key {first['idempotency_key']!r}")
    check(first["status"] in ("printed", "buffered"), f"status {first['status']!r}")
    check(first["fiscal_doc"] is None or isinstance(first["fiscal_doc"], dict),
          f"fiscal_doc is {first['fiscal_doc']!r}")
    if first["status"] == "printed":
        check(isinstance(first["fiscal_doc"], dict), "printed without a fiscal document")

    # The same key and body from a file: the first answer again, not a second receipt.
    r = kktctl("--json", "submit", "--key=kktctl-replay-1", receipt_file())
    expect(r, EXIT_OK, "replay")
    again = json.loads(r.stdout)
    check(again["receipt_id"] == first["receipt_id"],
          f"replay gave {again['receipt_id']} != {first['receipt_id']}")

    # The same key with another receipt is refused for good.
    other = dict(RECEIPT, pos_id="pos-other")
    r = kktctl("submit", "--key=kktctl-replay-1", "-", stdin=json.dumps(other))
    expect(r, EXIT_REFUSED, "key reused for another receipt")
    expect_message(r, "refused")


def test_submit_invalid_receipt_is_refused():
    r = kktctl("submit", "--key=kktctl-invalid-1", "-", stdin=json.dumps({"pos_id": "pos-1"}))
    expect(r, EXIT_REFUSED, "invalid receipt")
    expect_message(r, "submit")

    r = kktctl("submit", "--key=kktctl-invalid-2", "-", stdin="this is not json")
    expect(r, EXIT_REFUSED, "malformed body")
    expect_message(r, "json")

    r = subprocess.run([KKTCTL, f"--address={address}", "submit", "-"], input=b"\xff\xfe{}",
                       capture_output=True, timeout=60)
    check(r.returncode == EXIT_REFUSED, f"invalid UTF-8: exit {r.returncode}, {r.stderr!r}")
    check(b"UTF-8" in r.stderr, f"invalid UTF-8: {r.stderr!r}")


def test_submit_unreadable_file_is_a_usage_error():
    r = kktctl("submit", os.path.join(tmp, "does-not-exist.json"))
    expect(r, EXIT_USAGE, "missing FILE")
    expect_message(r, "does-not-exist.json", "No such file")
    r = kktctl("submit", tmp)
    expect(r, EXIT_USAGE, "a directory as FILE")
    expect_message(r, "Is a directory")


# show ------------------------------------------------------------------------------------------------------

def test_show_is_text_for_people_and_json_with_json():
    r = kktctl("--json", "submit", "--key=kktctl-show-1", receipt_file())
    expect(r, EXIT_OK, "submit")
    rid = json.loads(r.stdout)["receipt_id"]

    r = kktctl("--json", "show", rid)
    expect(r, EXIT_OK, "--json show ID")
    check(len(r.stdout.strip().splitlines()) == 1, f"--json show is not one line: {r.stdout!r}")
    o = json.loads(r.stdout)
    check(o["receipt_id"] == rid, f"--json show {rid} gave {o.get('receipt_id')}")
    check(o["receipt"]["pos_id"] == RECEIPT["pos_id"], f"the receipt body is missing: {o}")
    for key in ("status", "print_status", "created_at", "attempts", "last_error", "fiscal_doc"):
        check(key in o, f"--json show lacks {key}")

    r = kktctl("show", rid)
    expect(r, EXIT_OK, "show ID")
    check(not r.stdout.lstrip().startswith("{"), f"show is JSON, not text: {r.stdout!r}")
    check_aligned(r, "show")
    f = labelled(r.stdout)
    check(f.get("Receipt ID") == rid, f"show: {r.stdout}")
    check(f.get("Status", "").startswith(f"{o['status']} (buffer: {o['buffer_status']}, print: "
                                         f"{o['print_status']})"), f"show status: {r.stdout}")
    check(f.get("POS") == RECEIPT["pos_id"] and f.get("Type") == "sale", f"show: {r.stdout}")
    check(re.fullmatch(ISO, f.get("Created", "")), f"show has no local creation time: {r.stdout}")
    check(f.get("Attempts") == str(o["attempts"]), f"show attempts: {r.stdout}")
    # Amounts as the daemon keeps them (its canonical text), not re-computed by kktctl.
    check(re.fullmatch(r"Lens 1\.6 AR, 2(\.0+)? x 1234\.50? = 2469(\.0+)?, vat22", f.get("Item", "")),
          f"show item: {r.stdout}")
    check(re.fullmatch(r"card 2469(\.0+)?", f.get("Payment", "")), f"show payment: {r.stdout}")
    if o["fiscal_doc"]:
        check(json.loads(f.get("Fiscal document", "")) == o["fiscal_doc"], f"show fiscal doc: {r.stdout}")
    else:
        check(f.get("Fiscal document") == "none yet", f"show fiscal doc: {r.stdout}")


def test_show_unknown_id_is_not_found():
    r = kktctl("show", "01900000-0000-7000-8000-000000000000")
    expect(r, EXIT_NOT_FOUND, "show unknown")
    expect_message(r, "show the receipt")


# sync and dlq ----------------------------------------------------------------------------------------------

def test_sync_starts_a_round_and_prints_nothing():
    r = kktctl("sync")
    expect(r, EXIT_OK, "sync")
    check(r.stdout == "" and r.stderr == "", f"sync printed something: {r.stdout!r} {r.stderr!r}")


def test_dlq_list_when_empty():
    r = kktctl("dlq", "list")
    expect(r, EXIT_OK, "dlq list")
    check(r.stdout.strip() == "No unresolved dead letters.", f"dlq list: {r.stdout!r}")
    r = kktctl("dlq", "list", "--all")
    expect(r, EXIT_OK, "dlq list --all")
    check(r.stdout.strip() == "No dead letters.", f"dlq list --all: {r.stdout!r}")
    for args in (("dlq", "list"), ("dlq", "list", "--all")):
        r = kktctl("--json", *args)
        expect(r, EXIT_OK, f"--json {' '.join(args)}")
        check(json.loads(r.stdout) == [], f"--json {' '.join(args)}: {r.stdout!r}")


def test_breaker_reset_closes_the_open_breaker_and_sends_at_once():
    fake = FakeOfd().start()
    try:
        fake.mode("status", status=503)
        # One failure opens the breaker, for an hour: only the reset can close it within the test.
        config = daemon_config(ofd=fake.url) + \
            "[Sync]\nInterval=200ms\nFailureThreshold=1\nOpenTimeout=1h\n"
        with DaemonOnBus(config, name="kktctl-breaker", record=None, helpers=[fake]) as setup:
            addr, d = setup.address, setup.daemon
            r = kktctl("--json", "submit", "--key=kktctl-breaker-1", receipt_file(), addr=addr)
            expect(r, EXIT_OK, "submit")
            rid = json.loads(r.stdout)["receipt_id"]
            wait_until(lambda: json.loads(kktctl("--json", addr=addr).stdout)["CircuitState"] == "open", 20,
                       "the breaker open")
            check(labelled(kktctl("status", addr=addr).stdout).get("Circuit breaker") == "open",
                  "status does not show the open breaker")

            fake.mode("accept")
            r = kktctl("breaker", "reset", addr=addr)
            expect(r, EXIT_OK, "breaker reset")
            check(r.stdout == "" and r.stderr == "", f"breaker reset printed {r.stdout!r} {r.stderr!r}")
            check(json.loads(kktctl("--json", addr=addr).stdout)["CircuitState"] == "closed",
                  "the breaker is not closed right after the reset")
            # Within seconds, not after the hour: the reset also started a sync.
            wait_until(lambda: json.loads(kktctl("--json", "show", rid, addr=addr).stdout)["status"]
                       == "synced", 10, "the receipt synced after the reset")
            r = kktctl("breaker", "reset", addr=addr)
            expect(r, EXIT_OK, "breaker reset of a closed breaker")
            d.stop_clean()
    finally:
        fake.stop()


def test_times_are_local_and_utc_with_utc():
    o = json.loads(kktctl("--json").stdout)
    check(o["LastHeartbeatUSec"] > 0, f"no heartbeat yet: {o}")
    local = labelled(kktctl("status").stdout)["Last heartbeat"].split(" ")[0]
    utc = labelled(kktctl("--utc", "status").stdout)["Last heartbeat"].split(" ")[0]
    check(re.fullmatch(ISO, local), f"status's time is not local ({TZ}): {local!r}")
    check(re.fullmatch(ISO_UTC, utc), f"status --utc's time is not UTC: {utc!r}")
    # One instant, the heartbeat's, in both: a later beat may have come between the calls.
    a = datetime.datetime.fromisoformat(local.replace("Z", "+00:00"))
    b = datetime.datetime.fromisoformat(utc.replace("Z", "+00:00"))
    check(a.utcoffset() == datetime.timedelta(hours=3) and abs((a - b).total_seconds()) < 30,
          f"local {local} and UTC {utc} are not the same time")
    usec = json.loads(kktctl("--json").stdout)["LastHeartbeatUSec"]
    check(abs(b.timestamp() - usec / 1e6) < 30, f"{utc} is not LastHeartbeatUSec {usec}")

    r = kktctl("--utc", "shift")
    expect(r, EXIT_OK, "--utc shift")
    opened = labelled(r.stdout).get("Opened")
    check(opened is None or re.fullmatch(ISO_UTC, opened), f"--utc shift: {r.stdout}")


def test_no_pager_is_accepted_and_changes_nothing():
    r = kktctl("--no-pager", "--json", "shift")
    expect(r, EXIT_OK, "--no-pager --json shift")
    check(json.loads(r.stdout) == json.loads(kktctl("--json", "shift").stdout), "--no-pager changed the output")
    r = kktctl("device", "--no-pager")
    expect(r, EXIT_OK, "device --no-pager")
    check(labelled(r.stdout).get("Driver") == "emulator", f"device --no-pager: {r.stdout}")


def test_dlq_retry_and_resolve_of_an_unknown_id():
    for args in (("retry", "01900000-0000-7000-8000-000000000001"),
                 ("resolve", "01900000-0000-7000-8000-000000000001", "entered by hand")):
        r = kktctl("dlq", *args)
        expect(r, EXIT_NOT_FOUND, f"dlq {args[0]}")
        expect_message(r, "dead letter")


def test_usage_errors():
    for args, needle in ((("frobnicate",), "Unknown command"),
                         (("--frobnicate",), "Unknown option"),
                         (("status", "extra"), "fewer arguments"),
                         (("show",), "more arguments"),
                         (("dlq",), "more arguments"),
                         (("dlq", "frob"), "Unknown dlq command"),
                         (("dlq", "retry"), "number of arguments"),
                         (("dlq", "resolve", "some-id", ""), "note"),
                         (("--key=k", "status"), "--key="),
                         (("--all", "status"), "--all"),
                         (("dlq", "retry", "some-id", "--all"), "--all"),
                         (("breaker",), "more arguments"),
                         (("breaker", "frob"), "Unknown breaker command"),
                         (("breaker", "reset", "now"), "fewer arguments"),
                         (("--bus=nonsense",), "--bus="),
                         (("submit",), "more arguments")):
        r = kktctl(*args)
        expect(r, EXIT_USAGE, f"kktctl {' '.join(args)}")
        expect_message(r, needle)


def test_help_and_version():
    r = kktctl("--help", addr=False)
    expect(r, EXIT_OK, "--help")
    for word in ("status", "submit", "show", "sync", "dlq list", "dlq retry", "dlq resolve", "monitor",
                 "shift open", "shift close", "report x", "report z", "refund-check", "receipt rejected",
                 "receipt retry", "receipt cancel", "device", "breaker reset", "--json", "--bus=", "--address=",
                 "--key=", "--all", "--utc", "--no-pager"):
        check(word in r.stdout, f"--help does not mention {word}")
    r = kktctl("--version", addr=False)
    expect(r, EXIT_OK, "--version")
    check(re.match(r"kktctl \(kkt-adapter\) \d+\.\d+\.\d+\n$", r.stdout), f"--version: {r.stdout!r}")


# monitor ---------------------------------------------------------------------------------------------------

class Monitor:
    """kktctl monitor in the background; lines() reads what it printed so far."""

    def __init__(self, *args, addr=None):
        self.proc = subprocess.Popen([KKTCTL, f"--address={addr or address}", *args, "monitor"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=kktctl_env())
        self.out = b""
        self.err = b""
        # The "Following ..." line comes once the matches are installed: nothing after it is missed.
        wait_until(lambda: self._read() or b"Following" in self.err, 20, "monitor to start")

    def _read(self):
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream.closed:  # after stop()
                continue
            ready, _, _ = select.select([stream], [], [], 0)
            if ready:
                data = os.read(stream.fileno(), 65536)
                if stream is self.proc.stdout:
                    self.out += data
                else:
                    self.err += data
        return False

    def lines(self):
        self._read()
        return self.out.decode().splitlines()

    def wait_line(self, predicate, what, timeout=20):
        def found():
            for line in self.lines():
                if predicate(line):
                    return line
            return None
        return wait_until(found, timeout, what)

    def stop(self, sig=signal.SIGINT):
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=20)
        self.out += out
        self.err += err
        return self.proc.returncode


def test_monitor_prints_receipt_state_changes_and_exits_0_on_sigint():
    mon = Monitor()
    try:
        r = kktctl("--json", "submit", "--key=kktctl-monitor-1", receipt_file())
        expect(r, EXIT_OK, "submit while monitoring")
        rid = json.loads(r.stdout)["receipt_id"]
        line = mon.wait_line(lambda l: "ReceiptStateChanged" in l and rid in l, "ReceiptStateChanged")
        check(re.match(rf"^{ISO} ReceiptStateChanged id={rid} status=\w+$", line),
              f"unexpected line {line!r}")
        mon.wait_line(lambda l: " PropertiesChanged " in l and "Pending=" in l,
                      "Pending in PropertiesChanged")
    finally:
        status = mon.stop(signal.SIGINT)
    check(status == EXIT_OK, f"monitor exit {status} on SIGINT; stderr {mon.err!r}")


def test_monitor_json_is_one_object_per_line_and_exits_0_on_sigterm():
    mon = Monitor("--json")
    try:
        r = kktctl("--json", "submit", "--key=kktctl-monitor-2", receipt_file())
        expect(r, EXIT_OK, "submit while monitoring")
        rid = json.loads(r.stdout)["receipt_id"]
        mon.wait_line(lambda l: rid in l, "the receipt's event")
        mon.wait_line(lambda l: '"PropertiesChanged"' in l and '"Pending"' in l,
                      "Pending in PropertiesChanged")
    finally:
        status = mon.stop(signal.SIGTERM)
    check(status == EXIT_OK, f"monitor exit {status} on SIGTERM; stderr {mon.err!r}")
    events = [json.loads(l) for l in mon.lines()]
    for e in events:
        check(isinstance(e.get("time_usec"), int) and isinstance(e.get("event"), str), f"event {e}")
    mine = [e for e in events if e.get("id") == rid]
    check(mine and mine[0] == dict(mine[0], event="ReceiptStateChanged") and mine[0]["status"],
          f"no ReceiptStateChanged for {rid}: {events}")
    changed = [e for e in events if e["event"] == "PropertiesChanged"]
    check(any(isinstance(e["properties"].get("Pending"), int) for e in changed),
          f"no Pending number: {changed}")


def test_monitor_shows_only_what_changed():
    before = json.loads(kktctl("--json").stdout)
    mon = Monitor("--json")
    try:
        r = kktctl("--json", "submit", "--key=kktctl-monitor-quiet-1", receipt_file())
        expect(r, EXIT_OK, "submit while monitoring")
        # A print announces all ten of the register's properties; the document number is one that changed.
        mon.wait_line(lambda l: '"LastFiscalDocument"' in l, "LastFiscalDocument in PropertiesChanged")
    finally:
        status = mon.stop(signal.SIGTERM)
    check(status == EXIT_OK, f"monitor exit {status}; stderr {mon.err!r}")
    known = dict(before)
    changed = [json.loads(l) for l in mon.lines()]
    changed = [e["properties"] for e in changed if e["event"] == "PropertiesChanged"]
    check(changed, "no PropertiesChanged at all")
    for props in changed:
        check(props, "an empty PropertiesChanged was printed")
        for name, value in props.items():
            # The first line may repeat a value that changed between the snapshot and the monitor's start.
            check(value is None or value != known.get(name) or props is changed[0],
                  f"{name}={value!r} shown though it did not change: {changed}")
            known[name] = value
    for name in ("FnValidUntilUSec", "AdapterId", "Capacity"):
        check(all(name not in p for p in changed), f"{name} never changes but was shown: {changed}")

    # The text form follows the same rule: nothing for an announcement with nothing new.
    mon = Monitor()
    try:
        r = kktctl("--json", "submit", "--key=kktctl-monitor-quiet-2", receipt_file())
        expect(r, EXIT_OK, "submit while monitoring")
        mon.wait_line(lambda l: " LastFiscalDocument=" in l, "LastFiscalDocument in the text form")
    finally:
        mon.stop()
    for line in mon.lines():
        check(not re.fullmatch(rf"{ISO} PropertiesChanged", line), f"an empty line of changes: {line!r}")
        check("FnValidUntilUSec=" not in line, f"an unchanged property shown: {line!r}")


# the fiscal day -------------------------------------------------------------------------------------------

def shift_json():
    r = kktctl("--json", "shift")
    expect(r, EXIT_OK, "--json shift")
    o = json.loads(r.stdout)
    check(set(o) == SHIFT_PROPERTIES, f"--json shift has {sorted(o)}, not {sorted(SHIFT_PROPERTIES)}")
    check(isinstance(o["ShiftOpen"], bool) and
          all(isinstance(o[k], int) for k in SHIFT_PROPERTIES - {"ShiftOpen"}), f"--json shift types: {o}")
    return o


def report_json(*args, status=EXIT_OK):
    r = kktctl("--json", *args)
    expect(r, status, f"--json {' '.join(args)}")
    check(len(r.stdout.strip().splitlines()) == 1, f"--json {' '.join(args)} is not one line: {r.stdout!r}")
    return json.loads(r.stdout)


def test_shift_shows_the_open_shift_and_report_x_its_figures():
    # The receipts submitted above opened shift 1.
    o = shift_json()
    check(o["ShiftOpen"] and o["ShiftNumber"] >= 1 and o["ShiftReceipts"] >= 1,
          f"the sales above did not open a shift: {o}")
    check(o["ShiftExpiresUSec"] == o["ShiftOpenUSec"] + 24 * 3600 * 10**6,
          f"expiry is not opening + 24 h: {o}")

    r = kktctl("shift")
    expect(r, EXIT_OK, "shift")
    check_aligned(r, "shift")
    f = labelled(r.stdout)
    check(f.get("Shift") == f"{o['ShiftNumber']}, open", f"shift: {r.stdout}")
    check(re.fullmatch(ISO, f.get("Opened", "")), f"shift has no opening time: {r.stdout}")
    check(re.fullmatch(rf"{ISO} \(in 2[0-3]h \d+min\)", f.get("Shift expires", "")),
          f"shift does not say when it reaches 24 hours: {r.stdout}")
    check(f.get("Receipts") == str(o["ShiftReceipts"]), f"shift receipts: {r.stdout}")

    x = report_json("report", "x")
    check(x["reportType"] == 1 and x["shiftNumber"] == o["ShiftNumber"], f"--json report x: {x}")
    check(x["receiptCounts"]["sale"] == o["ShiftReceipts"] and isinstance(x["totalSales"], str) and
          x["cardTotal"] == x["totalSales"], f"report x figures (every sale here was by card): {x}")
    r = kktctl("report", "x")
    expect(r, EXIT_OK, "report x")
    check_aligned(r, "report x")
    f = labelled(r.stdout)
    check(re.fullmatch(rf"X, shift {o['ShiftNumber']} open since {ISO}", f.get("Report", "")),
          f"report x: {r.stdout}")
    check(f.get("Receipts") == f"{o['ShiftReceipts']}: {o['ShiftReceipts']} sale",
          f"report x receipts: {r.stdout}")
    check(f.get("Sales") == x["totalSales"] and f.get("Card") == x["cardTotal"] and
          f.get("Cash") == x["cashTotal"], f"report x text and JSON differ:\n{r.stdout}\n{x}")
    check("Fiscal document" not in f, f"an X report is not a fiscal document: {r.stdout}")


def test_shift_close_prints_the_z_report_and_shift_open_opens_the_next():
    before = shift_json()
    r = kktctl("shift", "close")
    expect(r, EXIT_OK, "shift close")
    check_aligned(r, "shift close")
    f = labelled(r.stdout)
    check(f.get("Report") == f"Z, shift {before['ShiftNumber']} closed", f"shift close: {r.stdout}")
    check(re.fullmatch(r"\d+, fiscal sign \d{10}", f.get("Fiscal document", "")),
          f"no Z document: {r.stdout}")
    check(f.get("Receipts", "").startswith(f"{before['ShiftReceipts']}"), f"Z receipts: {r.stdout}")

    after = shift_json()
    check(not after["ShiftOpen"] and after["ShiftExpiresUSec"] == 0 and
          after["ShiftNumber"] == before["ShiftNumber"], f"after the Z: {after}")
    r = kktctl("shift")
    expect(r, EXIT_OK, "shift with none open")
    check(labelled(r.stdout).get("Shift") == f"none open (last: {before['ShiftNumber']})",
          f"shift: {r.stdout}")

    r = kktctl("shift", "close")
    expect(r, EXIT_NOT_FOUND, "shift close with no shift open")
    expect_message(r, "close the shift", "no shift")

    r = kktctl("shift", "open")
    expect(r, EXIT_OK, "shift open")
    f = labelled(r.stdout)
    check(f.get("Shift") == f"{before['ShiftNumber'] + 1} opened", f"shift open: {r.stdout}")
    check(re.fullmatch(r"\d+, fiscal sign \d{10}", f.get("Fiscal document", "")),
          f"no opening document: {r.stdout}")
    r = kktctl("shift", "open")
    expect(r, EXIT_OK, "shift open with a shift open")
    check(labelled(r.stdout).get("Shift") ==
          f"{before['ShiftNumber'] + 1} was open already; no document was made",
          f"second shift open: {r.stdout}")
    o = report_json("shift", "open")
    check(o["already_open"] is True and o["shiftNumber"] == before["ShiftNumber"] + 1,
          f"--json shift open: {o}")

    # report z is shift close.
    z = report_json("report", "z")
    check(z["reportType"] == 2 and z["shiftNumber"] == before["ShiftNumber"] + 1 and
          z["already_closed"] is False and len(z["fiscalSign"]) == 10 and z["fiscalDocumentNumber"] > 0,
          f"--json report z: {z}")
    check(z["receiptCounts"]["sale"] == 0 and z["totalSales"] == "0.00", f"an empty shift's Z: {z}")

    for args, needle in ((("shift", "frob"), "Unknown shift command"),
                         (("shift", "open", "now"), "fewer arguments"),
                         (("report",), "more arguments"),
                         (("report", "y"), "Unknown report")):
        r = kktctl(*args)
        expect(r, EXIT_USAGE, f"kktctl {' '.join(args)}")
        expect_message(r, needle)


def debug_hook(path, body):
    status, _, answer = daemon.request("POST", path, body)
    check(status == 200, f"POST {path} answered {status}: {answer}")
    return answer


def test_submit_when_the_shift_reaches_24_hours_exits_10_until_it_is_closed():
    # The next sale opens a shift; the emulator's hook then makes it 23 h 56 min old.
    r = kktctl("--json", "submit", "--key=kktctl-24h-opener", receipt_file())
    expect(r, EXIT_OK, "the sale that opens the shift")
    debug_hook("/v1/kkt/debug/device/settings", {"shift_age_seconds": 24 * 3600 - 4 * 60})
    wait_until(lambda: re.search(r"ago|in [0-4]min",
                                 labelled(kktctl("shift").stdout).get("Shift expires", "")),
               10, "the shift to be 4 minutes from 24 hours")

    r = kktctl("submit", "--key=kktctl-24h-1", receipt_file())
    expect(r, EXIT_SHIFT_EXPIRED, "submit into a shift that reaches 24 hours")
    expect_message(r, "submit the receipt", "kktctl shift close")
    r = kktctl("shift", "close")
    expect(r, EXIT_OK, "shift close")
    r = kktctl("--json", "submit", "--key=kktctl-24h-1", receipt_file())
    expect(r, EXIT_OK, "the same receipt again after the Z report")


def test_refund_check_exits_0_once_the_ofd_acknowledged_the_original_and_9_before():
    fake = FakeOfd().start()
    try:
        fake.mode("fail")
        config = daemon_config(ofd=fake.url) + \
            "[Sync]\nInterval=200ms\nInitialBackoff=100ms\nMaxBackoff=200ms\nFailureThreshold=1000\n"
        with DaemonOnBus(config, name="kktctl-refund", record=None, helpers=[fake]) as setup:
            addr, d = setup.address, setup.daemon
            r = kktctl("refund-check", "01900000-0000-7000-8000-00000000000f", addr=addr)
            expect(r, EXIT_NOT_FOUND, "refund-check of an unknown receipt")
            expect_message(r, "check the refund")

            r = kktctl("--json", "submit", "--key=kktctl-refund-1", receipt_file(), addr=addr)
            expect(r, EXIT_OK, "submit the original")
            rid = json.loads(r.stdout)["receipt_id"]
            r = kktctl("refund-check", rid, addr=addr)
            expect(r, EXIT_NOT_ALLOWED, "refund-check before the OFD acknowledged it")
            check(r.stderr == "", f"a 'no' is an answer, not an error: {r.stderr!r}")
            f = labelled(r.stdout)
            check(f.get("Refund") == "not allowed" and f.get("Status") in ("pending", "failed") and
                  "not synced" in f.get("Reason", ""), f"refund-check before: {r.stdout}")
            r = kktctl("--json", "refund-check", "kktctl-refund-1", addr=addr)
            expect(r, EXIT_NOT_ALLOWED, "--json refund-check by Idempotency-Key")
            o = json.loads(r.stdout)
            check(o["allowed"] is False and o["sync_status"] in ("pending", "failed") and o["reason"],
                  f"--json refund-check before: {o}")

            fake.mode("accept")
            wait_until(lambda: json.loads(kktctl("--json", "show", rid, addr=addr).stdout)["status"]
                       == "synced", 20, "the original synced")
            r = kktctl("refund-check", rid, addr=addr)
            expect(r, EXIT_OK, "refund-check once synced")
            f = labelled(r.stdout)
            check(f.get("Refund") == "allowed" and f.get("Status") == "synced" and "Reason" not in f,
                  f"refund-check after: {r.stdout}")
            o = json.loads(kktctl("--json", "refund-check", "kktctl-refund-1", addr=addr).stdout)
            check(o == {"allowed": True, "sync_status": "synced", "reason": ""},
                  f"--json refund-check after: {o}")
            d.stop_clean()
    finally:
        fake.stop()


def test_a_resolved_dead_letter_is_final_refused_not_try_again():
    fake = FakeOfd().start()
    try:
        fake.mode("status", status=422)  # a permanent refusal: dead-lettered at once
        config = daemon_config(ofd=fake.url) + "[Sync]\nInterval=200ms\n"
        with DaemonOnBus(config, name="kktctl-dlq", record=None, helpers=[fake]) as setup:
            addr, d = setup.address, setup.daemon
            r = kktctl("--json", "submit", "--key=kktctl-dlq-1", receipt_file(), addr=addr)
            expect(r, EXIT_OK, "submit")
            rid = json.loads(r.stdout)["receipt_id"]
            wait_until(lambda: [e["receipt_id"] for e in json.loads(kktctl("--json", "dlq", "list",
                                                                           addr=addr).stdout)] == [rid],
                       20, "the receipt dead-lettered")
            r = kktctl("dlq", "list", addr=addr)
            expect(r, EXIT_OK, "dlq list")
            lines = r.stdout.splitlines()
            check(len(lines) == 2 and re.match(rf"^{rid} +{ISO} +open ", lines[1]), f"dlq list:\n{r.stdout}")
            r = kktctl("--utc", "dlq", "list", addr=addr)
            check(re.match(rf"^{rid} +{ISO_UTC} +open ", r.stdout.splitlines()[1]),
                  f"dlq list --utc:\n{r.stdout}")
            r = kktctl("dlq", "resolve", rid, "entered at the OFD portal by hand", addr=addr)
            expect(r, EXIT_OK, "dlq resolve")
            # Resolved is final and out of the default list (as GET /v1/kkt/dlq), still in --all.
            r = kktctl("dlq", "list", addr=addr)
            check(r.stdout.strip() == "No unresolved dead letters.", f"dlq list after resolve: {r.stdout!r}")
            check(json.loads(kktctl("--json", "dlq", "list", addr=addr).stdout) == [],
                  "--json dlq list lists a resolved dead letter")
            r = kktctl("dlq", "list", "--all", addr=addr)
            expect(r, EXIT_OK, "dlq list --all")
            lines = r.stdout.splitlines()
            check(len(lines) == 2 and re.match(rf"^{rid} +{ISO} +resolved ", lines[1]),
                  f"dlq list --all:\n{r.stdout}")
            listed = json.loads(kktctl("--json", "dlq", "list", "--all", addr=addr).stdout)
            check([e["receipt_id"] for e in listed] == [rid] and listed[0]["resolved"],
                  f"--json dlq list --all: {listed}")
            r = kktctl("dlq", "resolve", rid, "again", addr=addr)
            expect(r, EXIT_REFUSED, "dlq resolve of a resolved dead letter")
            expect_message(r, "resolve the dead letter", "refused", "is resolved")
            r = kktctl("dlq", "retry", rid, addr=addr)
            expect(r, EXIT_REFUSED, "dlq retry of a resolved dead letter")
            expect_message(r, "retry the dead letter", "refused", "final")
            d.stop_clean()
    finally:
        fake.stop()


def test_receipt_rejected_retry_and_cancel():
    mon = Monitor()
    try:
        debug_hook("/v1/kkt/debug/device/fault", {"fault": "rejected", "count": 1})
        r = kktctl("--json", "submit", "--key=kktctl-rejected-1", receipt_file())
        expect(r, EXIT_OK, "a receipt the register rejects is still accepted")
        first = json.loads(r.stdout)
        rid = first["receipt_id"]
        check(first["status"] == "print_rejected" and first["fiscal_doc"] is None, f"rejected: {first}")
        line = mon.wait_line(lambda l: " PrintRejected " in l and rid in l, "PrintRejected in monitor")
        check(re.match(rf"^{ISO} PrintRejected id={rid} reason=", line), f"monitor line {line!r}")

        wait_until(lambda: json.loads(kktctl("--json").stdout)["PrintRejected"] == 1, 10, "PrintRejected 1")
        check(labelled(kktctl("status").stdout).get("Print rejected", "").startswith("1 receipt set aside"),
              "status does not show the rejected receipt")

        r = kktctl("receipt", "rejected")
        expect(r, EXIT_OK, "receipt rejected")
        lines = r.stdout.splitlines()
        check(lines[0].split() == ["RECEIPT", "POS", "SET", "ASIDE", "REASON"] and len(lines) == 2 and
              lines[1].startswith(rid) and RECEIPT["pos_id"] in lines[1], f"receipt rejected:\n{r.stdout}")
        r = kktctl("--json", "receipt", "rejected")
        expect(r, EXIT_OK, "--json receipt rejected")
        listed = json.loads(r.stdout)
        check([x["receipt_id"] for x in listed] == [rid] and listed[0]["status"] == "print_rejected",
              f"--json receipt rejected: {listed}")

        r = kktctl("receipt", "retry", rid)
        expect(r, EXIT_OK, "receipt retry")
        check(r.stdout == "" and r.stderr == "",
              f"receipt retry printed something: {r.stdout!r} {r.stderr!r}")
        wait_until(lambda: json.loads(kktctl("--json", "show", rid).stdout)["status"] == "printed", 20,
                   "the retried receipt printed")
        r = kktctl("receipt", "retry", rid)
        expect(r, EXIT_REFUSED, "receipt retry of a printed receipt")
        expect_message(r, "retry the print", "refused")

        debug_hook("/v1/kkt/debug/device/fault", {"fault": "rejected", "count": 1})
        r = kktctl("--json", "submit", "--key=kktctl-rejected-2", receipt_file())
        expect(r, EXIT_OK, "a second rejected receipt")
        rid2 = json.loads(r.stdout)["receipt_id"]
        check(json.loads(r.stdout)["status"] == "print_rejected", f"second: {r.stdout}")
        r = kktctl("receipt", "cancel", rid2, "sold again as another receipt")
        expect(r, EXIT_OK, "receipt cancel")
        check(r.stdout == "", f"receipt cancel printed {r.stdout!r}")
        check(json.loads(kktctl("--json", "show", rid2).stdout)["status"] == "cancelled", "not cancelled")
        r = kktctl("receipt", "cancel", rid2, "again")
        expect(r, EXIT_REFUSED, "receipt cancel of a cancelled receipt")
        expect_message(r, "cancel the receipt", "refused")
        r = kktctl("receipt", "retry", "01900000-0000-7000-8000-00000000000e")
        expect(r, EXIT_NOT_FOUND, "receipt retry of an unknown receipt")

        wait_until(lambda: kktctl("receipt", "rejected").stdout.strip() == "No rejected receipts.", 10,
                   "no rejected receipts left")
        check(json.loads(kktctl("--json", "receipt", "rejected").stdout) == [],
              "--json receipt rejected is not []")
    finally:
        status = mon.stop()
    check(status == EXIT_OK, f"monitor exit {status}; stderr {mon.err!r}")

    for args, needle in ((("receipt",), "more arguments"),
                         (("receipt", "frob"), "Unknown receipt command"),
                         (("receipt", "retry"), "number of arguments"),
                         (("receipt", "cancel", "some-id", ""), "note"),
                         (("refund-check",), "more arguments"),
                         (("refund-check", ""), "refund-check needs")):
        r = kktctl(*args)
        expect(r, EXIT_USAGE, f"kktctl {' '.join(args)}")
        expect_message(r, needle)


def test_device_shows_what_the_register_reports():
    r = kktctl("device")
    expect(r, EXIT_OK, "device")
    check_aligned(r, "device")
    f = labelled(r.stdout)
    for label in ("Driver", "State", "Model", "Serial", "Registration", "Taxation", "Fiscal drive", "Documents",
                  "OFD exchange", "Shift", "Last document"):
        check(label in f, f"device lacks {label!r}:\n{r.stdout}")
    check(f["Driver"] == "emulator" and f["State"] in ("ready", "printing"), f"device: {r.stdout}")
    check(f["Model"] == "kkt-adapter emulator" and f["Taxation"] == "osn", f"device: {r.stdout}")
    check(re.fullmatch(rf"FN \d{{16}}, valid until {ISO}, \d+ days? left", f["Fiscal drive"]),
          f"fiscal drive: {r.stdout}")
    check(f["OFD exchange"] == "every document confirmed by the OFD", f"OFD exchange: {r.stdout}")

    r = kktctl("--json", "device")
    expect(r, EXIT_OK, "--json device")
    o = json.loads(r.stdout)
    status_http = daemon.request("GET", "/v1/kkt/device/status")[2]
    check(set(o) == set(status_http) and o["fn_number"] == status_http["fn_number"] and
          o["serial"] == status_http["serial"], f"--json device {o} is not GET /v1/kkt/device/status {status_http}")
    status = json.loads(kktctl("--json", "status").stdout)
    check(o["last_fiscal_document"] == status["LastFiscalDocument"], f"device and status disagree: {o} vs {status}")

    # The emulator's hook ages its documents unsent to the OFD: the days show in device and status.
    debug_hook("/v1/kkt/debug/device/settings", {"ofd_online": False})
    kktctl("--json", "submit", "--key=kktctl-unsent-1", receipt_file())
    debug_hook("/v1/kkt/debug/device/settings", {"unsent_age_days": 26})
    wait_until(lambda: re.fullmatch(r"\d+ documents? unsent, the oldest \(FD \d+\) 26 days old",
                                    labelled(kktctl("device").stdout).get("OFD exchange", "")),
               10, "26 days unsent in kktctl device")
    check("26 days ago" in labelled(kktctl("status").stdout).get("OFD exchange", ""), "status lacks the age")
    debug_hook("/v1/kkt/debug/device/settings", {"ofd_online": True})


# not running -----------------------------------------------------------------------------------------------

def test_nobody_owns_the_name_means_not_running():
    global daemon
    mon = Monitor()
    try:
        daemon.stop()
        mon.wait_line(lambda l: l.endswith(" DaemonStopped"), "DaemonStopped")
        for args in (("status",), ("--json", "status"), ("show", "x"), ("sync",), ("dlq", "list"),
                     ("submit", receipt_file()), ("shift",), ("shift", "close"), ("report", "x"),
                     ("device",), ("refund-check", "x"), ("receipt", "rejected")):
            r = kktctl(*args)
            expect(r, EXIT_NOT_RUNNING, f"kktctl {' '.join(args)} without the daemon")
            expect_message(r, "not running")

        # The monitor goes on following and sees the daemon come back.
        daemon.start()
        mon.wait_line(lambda l: l.endswith(" DaemonStarted"), "DaemonStarted")
        expect(kktctl("status"), EXIT_OK, "status after the restart")
    finally:
        status = mon.stop()
    check(status == EXIT_OK, f"monitor exit {status}; stderr {mon.err!r}")


def test_a_bus_that_does_not_exist_means_not_running():
    missing = f"unix:path={os.path.join(tmp, 'no-such-bus')}"
    for args in (("status",), ("monitor",), ("submit", receipt_file())):
        r = kktctl(*args, addr=missing)
        expect(r, EXIT_NOT_RUNNING, f"kktctl {' '.join(args)} on a missing bus")
        expect_message(r, "not running", "no-such-bus")


def test_access_denied_by_the_bus_names_the_group():
    with DaemonOnBus(daemon_config(), name="kktctl-denied", record=None,
                     bus_config=DENYING_BUS_CONFIG) as setup:
        addr = setup.address
        r = kktctl("submit", "--key=kktctl-denied-1", receipt_file(), addr=addr)
        expect(r, EXIT_ACCESS, "submit refused by the bus policy")
        expect_message(r, "permission denied", "kkt-pos")
        r = kktctl("sync", addr=addr)
        expect(r, EXIT_ACCESS, "sync refused by the bus policy")
        expect_message(r, "permission denied", "kkt-admin")
        check("kkt-pos" not in r.stderr, f"sync names the wrong group: {r.stderr!r}")
        r = kktctl("shift", "close", addr=addr)
        expect(r, EXIT_ACCESS, "shift close refused by the bus policy")
        expect_message(r, "close the shift", "permission denied", "kkt-pos")
        r = kktctl("receipt", "retry", "some-id", addr=addr)
        expect(r, EXIT_ACCESS, "receipt retry refused by the bus policy")
        expect_message(r, "retry the print", "permission denied", "kkt-admin")
        check("kkt-pos" not in r.stderr, f"receipt retry names the wrong group: {r.stderr!r}")
        r = kktctl("breaker", "reset", addr=addr)
        expect(r, EXIT_ACCESS, "breaker reset refused by the bus policy")
        expect_message(r, "reset the circuit breaker", "permission denied", "kkt-admin")


def test_monitor_exits_5_when_the_bus_goes_away():
    bus2 = dbusclient.PrivateBus(tmp, "bus2").start()
    try:
        mon = Monitor(addr=bus2.address)
        check(b"not running yet" in mon.err, f"monitor did not say the daemon is not running: {mon.err!r}")
        bus2.stop()
        mon.proc.wait(timeout=20)
        mon.stop()
        check(mon.proc.returncode == EXIT_NOT_RUNNING, f"monitor exit {mon.proc.returncode}, {mon.err!r}")
        check(b"Lost the connection" in mon.err, f"no message: {mon.err!r}")
    finally:
        bus2.stop()


TESTS = [
    test_status_is_the_default_command_and_shows_every_field,
    test_status_json_has_every_property_of_the_interface,
    test_status_text_and_json_agree,
    test_submit_file_with_a_generated_key,
    test_submit_stdin_with_a_key_replays_the_same_receipt,
    test_submit_invalid_receipt_is_refused,
    test_submit_unreadable_file_is_a_usage_error,
    test_show_is_text_for_people_and_json_with_json,
    test_show_unknown_id_is_not_found,
    test_sync_starts_a_round_and_prints_nothing,
    test_dlq_list_when_empty,
    test_dlq_retry_and_resolve_of_an_unknown_id,
    test_breaker_reset_closes_the_open_breaker_and_sends_at_once,
    test_times_are_local_and_utc_with_utc,
    test_no_pager_is_accepted_and_changes_nothing,
    test_usage_errors,
    test_help_and_version,
    test_monitor_prints_receipt_state_changes_and_exits_0_on_sigint,
    test_monitor_json_is_one_object_per_line_and_exits_0_on_sigterm,
    test_monitor_shows_only_what_changed,
    test_shift_shows_the_open_shift_and_report_x_its_figures,
    test_shift_close_prints_the_z_report_and_shift_open_opens_the_next,
    test_submit_when_the_shift_reaches_24_hours_exits_10_until_it_is_closed,
    test_refund_check_exits_0_once_the_ofd_acknowledged_the_original_and_9_before,
    test_a_resolved_dead_letter_is_final_refused_not_try_again,
    test_receipt_rejected_retry_and_cancel,
    test_device_shows_what_the_register_reports,
    test_nobody_owns_the_name_means_not_running,
    test_a_bus_that_does_not_exist_means_not_running,
    test_access_denied_by_the_bus_names_the_group,
    test_monitor_exits_5_when_the_bus_goes_away,
]


def daemon_config(ofd=None):
    # The OFD on a closed port unless given: a receipt is never acknowledged by chance.
    return (f"[Heartbeat]\nURL=http://127.0.0.1:{closed_port()}/api/v1/kkt/heartbeat\nInterval=1s\n"
            f"[Buffer]\nCapacity={CAPACITY}\n"
            f"[OFD]\nURL={ofd or f'http://127.0.0.1:{closed_port()}'}\n")


def main():
    global tmp, address, daemon
    if not shutil.which("dbus-daemon"):
        sys.stderr.write("dbus-daemon not found, skipping\n")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="kktctl-")
    status = 1
    try:
        # Started once the daemon owns its name (READY=1 may come before).
        with DaemonOnBus(daemon_config(), name="kktctl", record=None) as setup:
            address, daemon = setup.address, setup.daemon
            status = run_all(TESTS, stop_at_failure=True, exit=False)
            if status:
                sys.stderr.write("---- daemon log ----\n" + daemon.log_text() + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
