#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The daemon's journal entries as journald would receive them (the native protocol): every entry about a
receipt carries RECEIPT_ID= and RECEIPT_STATUS= with a status clients know, the operator events carry their
MESSAGE_ID=, every MESSAGE_ID has a catalog entry, and one receipt's history reads in order by its id. The
forwarding examples of contrib/journal/ are checked against the same fields: the Promtail scrape keeps
MESSAGE_ID, PRIORITY and the receipt id; systemd-journal-upload and -remote use keys their versions know.

No journald runs here: the test re-runs itself in a private mount namespace (unshare) with a tmpfs over
/run/systemd and binds /run/systemd/journal/socket itself; the daemon logs natively because JOURNAL_STREAM
names its stderr. Skipped (77) when no mount namespace can be had.
"""

import array
import configparser
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from kkttest import (DOWN, Daemon, FakeOfd, TestFailure, call, check, ini, run_tests,  # noqa: E402
                     sample_receipt, wait_until)

import yaml  # noqa: E402  (python3-yaml)

SOURCE = os.path.dirname(HERE)
CONTRIB = os.path.join(SOURCE, "contrib", "journal")
STATUSES = {"buffered", "printed", "print_failed", "print_rejected", "cancelled", "synced", "dead_letter"}
RECEIPT_EVENTS = ("MESSAGE_ID_PRINT_REJECTED", "MESSAGE_ID_DEAD_LETTERED", "MESSAGE_ID_SHIFT_EXPIRING")


def log(msg):
    sys.stderr.write(f"   {msg}\n")
    sys.stderr.flush()


def message_ids():
    with open(os.path.join(SOURCE, "src", "adapter", "message-ids.h")) as f:
        return dict(re.findall(r'#define\s+(MESSAGE_ID_\w+)\s+"([0-9a-f]{32})"', f.read()))


def catalog_ids():
    with open(os.path.join(SOURCE, "man", "kkt-adapter.catalog")) as f:
        return set(re.findall(r"^-- ([0-9a-f]{32})$", f.read(), re.M))


# ---- a journal socket of our own ---------------------------------------------------------------------------

def parse_native(data):
    """One datagram of the journal's native protocol: KEY=value lines, or KEY, a little-endian 64-bit size,
    the value and a line feed for values with line feeds in them."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, _, v = line.partition(b"=")
            fields[k.decode()] = v.decode(errors="replace")
            i = nl + 1
        else:
            size = struct.unpack("<Q", data[nl + 1:nl + 9])[0]
            fields[line.decode()] = data[nl + 9:nl + 9 + size].decode(errors="replace")
            i = nl + 9 + size + 1
    return fields


class Journal:
    """Binds /run/systemd/journal/socket (in our mount namespace) and keeps every entry sent to it."""

    PATH = "/run/systemd/journal/socket"

    def __init__(self):
        os.makedirs(os.path.dirname(self.PATH), exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(self.PATH)
        self.sock.settimeout(0.1)
        self.entries = []
        self.lock = threading.Lock()
        self.closing = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        fds = array.array("i")
        while not self.closing:
            try:
                data, anc, _, _ = self.sock.recvmsg(256 * 1024, socket.CMSG_SPACE(fds.itemsize))
            except socket.timeout:
                continue
            except OSError:
                return
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    # A large entry comes as a sealed memfd.
                    fd = array.array("i", payload[:fds.itemsize])[0]
                    with os.fdopen(fd, "rb") as f:
                        data = f.read()
            entry = parse_native(data)
            with self.lock:
                self.entries.append(entry)

    def taken(self):
        with self.lock:
            return list(self.entries)

    def close(self):
        self.closing = True
        self.thread.join()
        self.sock.close()


JOURNAL = None


def journal_daemon(config, name):
    """A Daemon whose stderr is named by JOURNAL_STREAM, so it logs to our socket."""
    d = Daemon(config, name=name)
    open(d.log_path, "ab").close()
    st = os.stat(d.log_path)
    d.extra_env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    return d


def config(ofd_url, **sections):
    return ini({
        "Heartbeat": {"URL": f"http://127.0.0.1:{DOWN}/hb", "Interval": "1h"},
        "OFD": {"URL": ofd_url, "Timeout": "2s"},
        "Sync": {"Interval": "200ms", "InitialBackoff": "100ms", "MaxBackoff": "200ms", "FailureThreshold": "1000"},
        "Device": {"PrintLatencyMin": "0", "PrintLatencyMax": "0"},
        "Bus": {"Address": "none"},
    }, sections)


def post(d, key):
    status, _, answer = d.post_receipt(sample_receipt(), key)
    check(status == 200, f"POST {key} answered {status}: {answer}")
    return answer


def receipt_status(d, rid):
    return call(d, "GET", f"/v1/kkt/receipt/{rid}")["status"]


def entries_of(rid):
    return [e for e in JOURNAL.taken() if e.get("RECEIPT_ID") == rid]


def wait_entry(what, predicate, timeout=15):
    return wait_until(lambda: next((e for e in JOURNAL.taken() if predicate(e)), None), timeout, what)


# ---- the tests ---------------------------------------------------------------------------------------------

def test_receipt_events_carry_id_status_and_message_id_with_a_catalog_entry():
    ids = message_ids()
    catalog = catalog_ids()
    fake = FakeOfd().start()
    try:
        d = journal_daemon(config(fake.url), "kkt-journal")
        with d:
            d.start()
            wait_entry("the started entry", lambda e: e.get("MESSAGE_ID") == ids["MESSAGE_ID_STARTED"])

            # Rejected by the register: set aside.
            fault(d, "rejected", 1)
            rejected = post(d, "j-rejected")["receipt_id"]
            # A passing fault: retried, printed.
            fault(d, "paper-out", 1)
            failed = post(d, "j-failed")["receipt_id"]
            wait_until(lambda: receipt_status(d, failed) == "synced", 15, "the retried receipt synced")

            # The OFD refuses one for good, then it is retried from the DLQ; another is resolved there.
            fake.mode("status", status=422)
            dead = post(d, "j-dead")["receipt_id"]
            wait_until(lambda: receipt_status(d, dead) == "dead_letter", 15, "a dead letter")
            dead2 = post(d, "j-dead-2")["receipt_id"]
            wait_until(lambda: receipt_status(d, dead2) == "dead_letter", 15, "a second dead letter")
            fake.mode("accept")
            call(d, "POST", f"/v1/kkt/dlq/{dead}/retry")
            wait_until(lambda: receipt_status(d, dead) == "synced", 15, "the dead letter retried and synced")
            call(d, "POST", f"/v1/kkt/dlq/{dead2}/resolve", {"note": "sent by hand", "resolved_by": "admin"})

            # The OFD fails once: the send is retried.
            fake.mode("fail_next", count=1)
            retried = post(d, "j-retried")["receipt_id"]
            wait_until(lambda: receipt_status(d, retried) == "synced", 15, "the receipt synced on a retry")

            # A receipt held back because the shift reaches 24 hours.
            fault(d, "paper-out")
            held = post(d, "j-held")["receipt_id"]
            settings(d, shift_age_seconds=24 * 3600 - 60)
            fault(d, "none")
            wait_entry("the shift guard's entry", lambda e: e.get("MESSAGE_ID") == ids["MESSAGE_ID_SHIFT_EXPIRING"]
                       and e.get("RECEIPT_ID") == held)
            d.stop_clean()
    finally:
        fake.stop()

    entries = JOURNAL.taken()
    log(f"{len(entries)} journal entries")
    if os.environ.get("KKT_TEST_JOURNAL_DUMP"):
        for e in entries:
            log(json.dumps({k: v for k, v in e.items() if not k.startswith("CODE_")}))
    check(entries, "nothing reached the journal socket")
    for e in entries:
        check(e.get("MESSAGE") and e.get("PRIORITY", "").isdigit() and e.get("SYSLOG_IDENTIFIER") == "kkt-adapterd",
              f"an entry without MESSAGE, PRIORITY or SYSLOG_IDENTIFIER: {e}")
        if "MESSAGE_ID" in e:
            check(e["MESSAGE_ID"] in catalog, f"MESSAGE_ID {e['MESSAGE_ID']} has no catalog entry: {e['MESSAGE']}")
        if "RECEIPT_ID" in e:
            check(e.get("RECEIPT_STATUS") in STATUSES, f"an entry about a receipt without a known RECEIPT_STATUS: {e}")
            check(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", e["RECEIPT_ID"]),
                  f"RECEIPT_ID is not a receipt id: {e}")
            check(e["RECEIPT_ID"] in e["MESSAGE"], f"the message does not name its receipt: {e}")
        if "RECEIPT_STATUS" in e:
            check("RECEIPT_ID" in e, f"RECEIPT_STATUS without RECEIPT_ID: {e}")
        if e.get("MESSAGE_ID") in {ids[n] for n in RECEIPT_EVENTS}:
            check("RECEIPT_ID" in e, f"a receipt event without RECEIPT_ID: {e}")

    def has(rid, status, mid=None):
        return any(e.get("RECEIPT_STATUS") == status and (mid is None or e.get("MESSAGE_ID") == ids[mid])
                   for e in entries_of(rid))

    check(has(rejected, "print_rejected", "MESSAGE_ID_PRINT_REJECTED"), "the rejection's entry")
    check(has(failed, "print_failed", "MESSAGE_ID_DEVICE_FAULT"), "the register fault of the failed print")
    check(has(failed, "print_failed"), "the failed print's entry")
    check(has(dead, "dead_letter", "MESSAGE_ID_DEAD_LETTERED"), "the dead letter's entry")
    check(has(held, "print_failed", "MESSAGE_ID_SHIFT_EXPIRING"), "the shift guard's entry")
    check(has(retried, "printed"), "the failed send's entry")
    check(has(dead2, "dead_letter") and any("resolved" in e["MESSAGE"] for e in entries_of(dead2)),
          "the resolution's entry")
    # One receipt's history, in order: what `journalctl RECEIPT_ID=` and Loki's `| json | RECEIPT_ID=` show.
    history = [e["RECEIPT_STATUS"] for e in entries_of(dead)]
    check(history == ["printed", "dead_letter", "printed"], f"the dead letter's history (send failed, "
          f"dead-lettered, retried): {history}")


def fault(d, name, count=0):
    call(d, "POST", "/v1/kkt/debug/device/fault", {"fault": name, "count": count})


def settings(d, **kw):
    return call(d, "POST", "/v1/kkt/debug/device/settings", kw)


def test_promtail_scrape_keeps_message_id_priority_and_the_receipt_id():
    with open(os.path.join(CONTRIB, "promtail-kkt-adapter.yml")) as f:
        doc = yaml.safe_load(f)
    check(doc["server"].get("http_listen_address") == "127.0.0.1", "Promtail's own server on loopback")
    (scrape,) = [s for s in doc["scrape_configs"] if "journal" in s]
    j = scrape["journal"]
    check(j.get("json") is True, "json: true keeps every journal field (RECEIPT_ID) in the line")
    check("_SYSTEMD_UNIT=kkt-adapter.service" in j.get("matches", "").split(), f"matches: {j.get('matches')}")
    check(j["labels"].get("job") == "kkt-adapter", "job label")
    relabel = {c["source_labels"][0]: c["target_label"] for c in scrape["relabel_configs"]}
    for source in ("__journal_message_id", "__journal_priority", "__journal_receipt_status"):
        check(source in relabel, f"{source} is not kept as a label")
    check("__journal_receipt_id" not in relabel, "the receipt id as a label: one stream per receipt")
    # Every field the scrape reads is one the daemon writes (leading _: journald's own; _keyword: Promtail's).
    seen = set().union(*(e.keys() for e in JOURNAL.taken())) if JOURNAL.taken() else set()
    check(seen, "no journal entries to compare with")
    for source in relabel:
        field = source[len("__journal_"):]
        if field.startswith("_") or field.endswith("_keyword"):
            continue
        check(field.upper() in seen, f"Promtail reads {source}, but the daemon writes no {field.upper()}=")


def test_journal_upload_and_remote_examples_use_known_keys():
    upload = configparser.ConfigParser(interpolation=None)
    upload.optionxform = str
    upload.read(os.path.join(CONTRIB, "journal-upload.conf"))
    remote = configparser.ConfigParser(interpolation=None)
    remote.optionxform = str
    remote.read(os.path.join(CONTRIB, "journal-remote.conf"))
    # journal-upload.conf(5) and journal-remote.conf(5) of systemd 252.
    check(upload.sections() == ["Upload"] and set(upload["Upload"]) <= {
        "URL", "ServerKeyFile", "ServerCertificateFile", "TrustedCertificateFile", "NetworkTimeoutSec"},
        f"journal-upload.conf: {upload.sections()} {dict(upload.items('Upload')) if upload.has_section('Upload') else ''}")
    check(remote.sections() == ["Remote"] and set(remote["Remote"]) <= {
        "Seal", "SplitMode", "ServerKeyFile", "ServerCertificateFile", "TrustedCertificateFile", "MaxUse",
        "KeepFree", "MaxFileSize", "MaxFiles"}, f"journal-remote.conf: {remote.sections()}")
    url = upload["Upload"]["URL"]
    check(re.fullmatch(r"https://[a-z0-9.-]+:19532", url), f"upload URL {url}: HTTPS to journal-remote's port")
    check(remote["Remote"]["SplitMode"] == "host", "one journal per desk on the collector")
    for c, s in ((upload, "Upload"), (remote, "Remote")):
        for k in ("ServerKeyFile", "ServerCertificateFile", "TrustedCertificateFile"):
            check(c[s].get(k, "").startswith("/"), f"[{s}] {k}=: both ends authenticate")
    for tool in ("systemd-journal-upload", "systemd-journal-remote"):
        path = shutil.which(tool) or next((p for p in (f"/lib/systemd/{tool}", f"/usr/lib/systemd/{tool}")
                                          if os.path.exists(p)), None)
        if path:
            # Present (package systemd-journal-remote): it reads the same keys; run only for --version.
            r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
            check(r.returncode == 0, f"{tool} --version: {r.stderr}")


def in_namespace():
    global JOURNAL
    target = "/run/systemd" if os.path.isdir("/run/systemd") else "/run"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=8m", "kkt-test-journal", target],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"cannot mount a tmpfs over {target} in the namespace ({r.stderr.strip()}): skipped\n")
        sys.exit(77)
    JOURNAL = Journal()
    try:
        run_tests([
            test_receipt_events_carry_id_status_and_message_id_with_a_catalog_entry,
            test_promtail_scrape_keeps_message_id_priority_and_the_receipt_id,
            test_journal_upload_and_remote_examples_use_known_keys,
        ])
    finally:
        JOURNAL.close()


if __name__ == "__main__":
    if os.environ.get("KKT_TEST_JOURNAL_NS") == "1":
        in_namespace()
    unshare = shutil.which("unshare")
    args = [unshare, "--mount", "--propagation", "private"] if unshare else None
    if args and os.geteuid() != 0:
        args[1:1] = ["--user", "--map-root-user"]
    if not args or subprocess.run(args + ["true"], capture_output=True).returncode != 0:
        sys.stderr.write("no private mount namespace (unshare --mount): skipped\n")
        sys.exit(77)
    r = subprocess.run(args + [sys.executable, os.path.abspath(__file__)],
                       env=dict(os.environ, KKT_TEST_JOURNAL_NS="1"))
    sys.exit(r.returncode)
