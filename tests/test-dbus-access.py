#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Defence in depth: on a bus whose policy lets everyone call everything, kkt-adapterd itself still refuses
receipts and admin methods to callers that are neither root nor in kkt-pos/kkt-admin, while everyone may
read properties and introspect."""

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

if os.geteuid() != 0 or not all(shutil.which(t) for t in ("dbus-daemon", "busctl", "setpriv")):
    print("needs root, dbus-daemon, busctl and setpriv", file=sys.stderr)
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


def busctl(*args, user=None):
    cmd = ["busctl", f"--address={address}", *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"] + cmd
    # busctl shows only "Access denied" for that error name; its debug log has the daemon's own message.
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="debug")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)


def with_daemon(fn):
    def run():
        with Daemon(CONFIG, args=[f"--bus={address}"]) as d:
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


try:
    run_tests([
        test_unprivileged_caller_cannot_submit_even_if_the_bus_allows_it,
        test_unprivileged_caller_cannot_read_receipts_or_administer,
        test_everyone_may_read_properties_and_introspect,
        test_root_may_call_everything,
    ])
finally:
    bus.terminate()
    bus.wait()
    shutil.rmtree(tmp, ignore_errors=True)
