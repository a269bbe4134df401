#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Defence in depth: on a bus whose policy lets everyone call everything, kkt-adapterd itself still refuses
receipts and admin methods to callers that are neither root nor in kkt-pos/kkt-admin, while everyone may
read properties and introspect. Group membership is what the bus vouches for (UnixGroupIDs: the groups the
caller's process had when it connected), never read from /proc and never taken from the user database
alone. The groups kkt-pos and kkt-admin exist only in a private /etc/group bind-mounted in the daemon's own
mount namespace. SubmitReceipt() has the size limit of HTTP."""

import grp
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import Daemon, check, run_tests  # noqa: E402

NAME, PATH, IFACE = "org.opticserp.KktAdapter1", "/org/opticserp/KktAdapter1", "org.opticserp.KktAdapter1"
RECEIPT = ('{"pos_id":"POS-1","type":"sale","items":[{"name":"Frame","price":10.00,"quantity":1,'
           '"total":10.00,"vat_rate":22}],"payments":[{"type":"cash","amount":10.00}]}')

OPEN_POLICY = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

if os.geteuid() != 0 or not all(shutil.which(t) for t in ("dbus-daemon", "busctl", "setpriv", "unshare")):
    print("needs root, dbus-daemon, busctl, setpriv and unshare", file=sys.stderr)
    sys.exit(77)

tmp = tempfile.mkdtemp(prefix="kkt-access-")
os.chmod(tmp, 0o755)  # the unprivileged caller must reach the socket
bus_path = os.path.join(tmp, "bus")
address = f"unix:path={bus_path}"
with open(os.path.join(tmp, "bus.conf"), "w") as f:
    f.write(OPEN_POLICY.format(path=bus_path))
bus = subprocess.Popen(["dbus-daemon", f"--config-file={tmp}/bus.conf", "--nofork", "--nopidfile"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):
    if os.path.exists(bus_path):
        break
    time.sleep(0.05)
os.chmod(bus_path, 0o666)

CONFIG = ("[Heartbeat]\nURL=http://127.0.0.1:9/hb\n[OFD]\nURL=http://127.0.0.1:9\n"
          "[Device]\nPrintLatencyMin=0\nPrintLatencyMax=0\n")


def busctl(*args, user=None, group="nogroup", groups=None):
    cmd = ["busctl", f"--address={address}", *args]
    if user:
        extra = [f"--groups={','.join(str(g) for g in groups)}"] if groups else ["--clear-groups"]
        cmd = ["setpriv", f"--reuid={user}", f"--regid={group}", *extra] + cmd
    # busctl shows only "Access denied" for that error name; its debug log has the daemon's own message.
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="debug")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)


def free_gid(start):
    gid = start
    while True:
        try:
            grp.getgrgid(gid)
            gid += 1
        except KeyError:
            return gid


POS_GID = free_gid(47110)
ADMIN_GID = free_gid(POS_GID + 1)
GROUP_FILE = os.path.join(tmp, "group")
with open("/etc/group") as f:
    system_groups = f.read()
with open(GROUP_FILE, "w") as f:
    # nobody is a cashier and bin an administrator, in this user database only.
    f.write(system_groups.rstrip("\n") + f"\nkkt-pos:x:{POS_GID}:nobody\nkkt-admin:x:{ADMIN_GID}:bin\n")
os.chmod(GROUP_FILE, 0o644)


def with_daemon(fn, config=CONFIG):
    def run():
        with Daemon(config, args=[f"--bus={address}"], private_files={"/etc/group": GROUP_FILE}) as d:
            d.start()
            for _ in range(100):
                if busctl("status", NAME).returncode == 0:
                    break
                time.sleep(0.05)
            fn(d)
            check(d.stop() == 0, "exit code is not 0")
    run.__name__ = fn.__name__
    return run


@with_daemon
def test_unprivileged_caller_cannot_submit_even_if_the_bus_allows_it(d):
    r = busctl("call", NAME, PATH, IFACE, "SubmitReceipt", "ss", "nobody-1", RECEIPT, user="nobody")
    check(r.returncode != 0, f"nobody submitted a receipt: {r.stdout}")
    check("Only root and members of kkt-pos or kkt-admin" in r.stderr, r.stderr)
    status, _, body = d.request("GET", "/v1/kkt/buffer/status")
    check(status == 200 and body["total_receipts"] == 0, f"something was stored: {body}")


@with_daemon
def test_unprivileged_caller_cannot_read_receipts_or_administer(d):
    r = busctl("call", NAME, PATH, IFACE, "SubmitReceipt", "ss", "root-1", RECEIPT)
    check(r.returncode == 0, f"root could not submit: {r.stderr}")
    receipt_id = r.stdout.split('"')[1]
    r = busctl("call", NAME, PATH, IFACE, "GetReceipt", "s", receipt_id, user="nobody")
    check(r.returncode != 0 and "Only root and members of kkt-pos" in r.stderr, f"GetReceipt: {r.stderr}")
    for member in ("SyncNow", "ResetCircuitBreaker"):
        r = busctl("call", NAME, PATH, IFACE, member, user="nobody")
        check(r.returncode != 0 and "Only root and members of kkt-admin" in r.stderr, f"{member}: {r.stderr}")


@with_daemon
def test_everyone_may_read_properties_and_introspect(d):
    r = busctl("get-property", NAME, PATH, IFACE, "Pending", user="nobody")
    check(r.returncode == 0 and r.stdout.strip() == "t 0", f"get-property as nobody: {r.stdout} {r.stderr}")
    r = busctl("introspect", NAME, PATH, user="nobody")
    check(r.returncode == 0 and "SubmitReceipt" in r.stdout, f"introspect as nobody: {r.stderr}")


@with_daemon
def test_root_may_call_everything(d):
    r = busctl("call", NAME, PATH, IFACE, "SubmitReceipt", "ss", "root-2", RECEIPT)
    check(r.returncode == 0 and r.stdout.startswith("sss "), f"root submit: {r.stdout} {r.stderr}")


def bus_sends_groups():
    """Whether this bus vouches for its clients' groups (UnixGroupIDs in GetConnectionCredentials)."""
    r = busctl("call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
               "GetConnectionCredentials", "s", NAME)
    check(r.returncode == 0, f"GetConnectionCredentials: {r.stderr}")
    return "UnixGroupIDs" in r.stdout


@with_daemon
def test_group_membership_is_what_the_bus_vouches_for(d):
    if not bus_sends_groups():
        # Then only root and the daemon's own user pass the daemon's check; the bus policy still applies.
        r = busctl("call", NAME, PATH, IFACE, "SubmitReceipt", "ss", "no-groups-1", RECEIPT, user="daemon",
                   group="daemon", groups=[POS_GID])
        check(r.returncode != 0 and "does not say which groups" in r.stderr, r.stderr)
        return

    # A process that carries kkt-pos's gid (the bus saw it when the process connected) may submit, though
    # the user database does not list its user; kkt-pos is not kkt-admin.
    r = busctl("call", NAME, PATH, IFACE, "SubmitReceipt", "ss", "pos-1", RECEIPT, user="daemon",
               group="daemon", groups=[POS_GID])
    check(r.returncode == 0, f"a process in kkt-pos: {r.stderr}")
    r = busctl("call", NAME, PATH, IFACE, "SyncNow", user="daemon", group="daemon", groups=[POS_GID])
    check(r.returncode != 0 and "Only root and members of kkt-admin" in r.stderr, f"SyncNow as kkt-pos: {r.stderr}")
    r = busctl("call", NAME, PATH, IFACE, "SyncNow", user="daemon", group="daemon", groups=[ADMIN_GID])
    check(r.returncode == 0, f"SyncNow by a process in kkt-admin: {r.stderr}")
    r = busctl("call", NAME, PATH, IFACE, "SubmitReceipt", "ss", "admin-1", RECEIPT, user="daemon",
               group="daemon", groups=[ADMIN_GID])
    check(r.returncode == 0, f"kkt-admin may submit too: {r.stderr}")

    # The user database alone does not count: nobody and bin are listed there, their processes here do not
    # carry the groups (as after "usermod -a -G" without logging in again).
    r = busctl("call", NAME, PATH, IFACE, "SubmitReceipt", "ss", "db-only-1", RECEIPT, user="nobody")
    check(r.returncode != 0 and "Only root and members of kkt-pos or kkt-admin" in r.stderr,
          f"a user database member without the group: {r.stderr}")
    check("org.opticserp.KktAdapter1.Error.AccessDenied" in r.stderr, f"error name: {r.stderr}")
    r = busctl("call", NAME, PATH, IFACE, "SyncNow", user="bin", group="bin")
    check(r.returncode != 0 and "Only root and members of kkt-admin" in r.stderr, f"SyncNow as bin: {r.stderr}")

    status, _, answer = d.request("GET", "/v1/kkt/buffer/status")
    check(status == 200 and answer["total_receipts"] == 2, f"stored: {answer}")


LATE_GROUPS = """
import os, sys
sys.path.insert(0, sys.argv[1])
import dbusclient
c = dbusclient.Connection(sys.argv[2])
os.setgroups([int(sys.argv[3])])  # after connecting: /proc now says kkt-pos, the bus saw no group
try:
    c.call(sys.argv[4], sys.argv[5], sys.argv[4], "SubmitReceipt", "ss", ["late-groups-1", sys.argv[6]])
    print("allowed")
except dbusclient.DBusError as e:
    print("refused", e.name, e.message)
"""


@with_daemon
def test_groups_gained_after_connecting_do_not_count(d):
    # /proc/PID/status says what the process is now, the bus what it was when it connected (and whom it
    # authenticated). A process without kkt-pos connects, then takes the group (CAP_SETGID, kept for that):
    # reading /proc would let it in.
    if not bus_sends_groups():
        return
    lib = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
    r = subprocess.run(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups", "--inh-caps=+setgid",
                        "--ambient-caps=+setgid", sys.executable, "-c", LATE_GROUPS, lib, address, str(POS_GID),
                        NAME, PATH, RECEIPT], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"the client failed: {r.stderr}")
    check(r.stdout.startswith("refused org.opticserp.KktAdapter1.Error.AccessDenied"),
          f"a group taken after connecting was accepted: {r.stdout}")


def test_submit_receipt_over_max_body_size_is_refused_with_a_named_error():
    config = CONFIG + "[HTTP]\nMaxBodySize=1K\n"

    def body(d):
        big = RECEIPT.replace('"name":"Frame"', '"name":"Frame","comment":"' + "x" * 1100 + '"')
        check(len(big.encode()) > 1024, "the receipt is not over the limit")
        r = busctl("call", NAME, PATH, IFACE, "SubmitReceipt", "ss", "big-1", big)
        check(r.returncode != 0 and "org.opticserp.KktAdapter1.Error.ReceiptTooLarge" in r.stderr and
              "MaxBodySize=" in r.stderr, f"SubmitReceipt over the limit: {r.stdout} {r.stderr}")
        status, _, answer = d.request("POST", "/v1/kkt/receipt", big, {"Idempotency-Key": "big-2"})
        check(status == 413, f"the same over HTTP: {status} {answer}")
        status, _, buffer = d.request("GET", "/v1/kkt/buffer/status")
        check(status == 200 and buffer["total_receipts"] == 0, f"something was stored: {buffer}")
        # At the limit it is taken (and judged as a receipt).
        r = busctl("call", NAME, PATH, IFACE, "SubmitReceipt", "ss", "small-1", RECEIPT)
        check(r.returncode == 0, f"a receipt under the limit: {r.stderr}")
    body.__name__ = "test_submit_receipt_over_max_body_size_is_refused_with_a_named_error"
    with_daemon(body, config)()


try:
    run_tests([
        test_unprivileged_caller_cannot_submit_even_if_the_bus_allows_it,
        test_unprivileged_caller_cannot_read_receipts_or_administer,
        test_everyone_may_read_properties_and_introspect,
        test_root_may_call_everything,
        test_group_membership_is_what_the_bus_vouches_for,
        test_groups_gained_after_connecting_do_not_count,
        test_submit_receipt_over_max_body_size_is_refused_with_a_named_error,
    ])
finally:
    bus.terminate()
    bus.wait()
    shutil.rmtree(tmp, ignore_errors=True)
