#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Holds dbus/org.opticserp.KktAdapter1.conf to what it promises, enforced by a real dbus-daemon.

A system-type dbus-daemon (EXTERNAL auth, the system bus's deny-by-default policy) listens on a socket in a
temporary directory and includes a copy of our policy; busctl runs through setpriv as root, as an
unprivileged user (nobody), and as nobody with the supplementary group that stands for kkt-pos or kkt-admin.
The copy differs from the file only in the group and user names, and only when kkt-pos, kkt-admin or
kkt-adapter do not exist here: the test never edits /etc, so it maps each missing one to an existing group
without members (a user other than root and nobody for kkt-adapter). dbus-daemon learns a client's groups
from the socket (SO_PEERGROUPS), not from /etc/group, so setpriv --groups is enough.

Two phases, because dbus-daemon answers "ServiceUnknown" to a call for a name that has no owner and no
activation file before it looks at the policy:
  A. Our activation file is in the bus's service directory and nobody owns the name: a call the policy
     denies fails with AccessDenied; a call it allows starts activation (Exec=/bin/false, so it fails with
     Spawn.ChildExited). Name ownership is checked here too.
  B. A stand-in service (this script, as root, speaking the D-Bus wire protocol over the socket with the
     standard library only) owns the name: allowed calls reach it and get its answer, denied ones get
     AccessDenied from the bus and never reach it.
The error name comes from busctl's debug log (SYSTEMD_LOG_LEVEL=debug), with its message as a fallback.
Exit 77 (skipped) when not root or when dbus-daemon, busctl or setpriv are missing.
"""

import grp
import os
import pwd
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import dbusclient  # noqa: E402
from kkttest import TestFailure, check  # noqa: E402

# The files under test: the arguments POLICY ACTIVATION-FILE INTERFACE-XML (meson passes its files() objects),
# else $KKT_DBUS_POLICY, $KKT_DBUS_SERVICE, $KKT_DBUS_INTERFACE, else the dbus/ directory of this tree.
HERE = os.path.dirname(os.path.abspath(__file__))
DBUS_DIR = os.path.join(HERE, "..", "dbus")
POLICY, ACTIVATION, INTERFACE_XML = sys.argv[1:4] if len(sys.argv) >= 4 else (
    os.environ.get("KKT_DBUS_POLICY", os.path.join(DBUS_DIR, "org.opticserp.KktAdapter1.conf")),
    os.environ.get("KKT_DBUS_SERVICE", os.path.join(DBUS_DIR, "org.opticserp.KktAdapter1.service")),
    os.environ.get("KKT_DBUS_INTERFACE", os.path.join(DBUS_DIR, "org.opticserp.KktAdapter1.xml")))

NAME = "org.opticserp.KktAdapter1"
PATH = "/org/opticserp/KktAdapter1"
IFACE = "org.opticserp.KktAdapter1"
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"

# The system bus's own default policy (dbus' system.conf), which our file punches holes into.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{services}</servicedir>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"""


def skip(why):
    sys.stderr.write(f"SKIP: {why}\n")
    sys.exit(77)


# ---- the stand-in service -------------------------------------------------------------------------------

class StandIn:
    """Owns the name as root and answers every method call, so that what the bus lets through is seen."""

    def __init__(self, socket_path):
        try:
            self.conn = dbusclient.Connection(socket_path)
            reply = self.conn.request_name(NAME, 4)  # DO_NOT_QUEUE
        except (dbusclient.DBusError, dbusclient.ConnectionClosed) as e:
            raise TestFailure(f"stand-in: cannot own {NAME}: {e}")
        if reply != 1:
            raise TestFailure(f"stand-in: RequestName answered {reply}, not 1 (primary owner)")
        with open(INTERFACE_XML) as f:
            self.xml = f.read()
        self.received = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def answer(self, iface, member):
        if (iface, member) == ("org.freedesktop.DBus.Introspectable", "Introspect"):
            return "s", [self.xml]
        if (iface, member) == ("org.freedesktop.DBus.Properties", "Get"):
            return "v", [("s", "stand-in")]
        if (iface, member) == ("org.freedesktop.DBus.Properties", "GetAll"):
            return "a{sv}", [{}]
        if (iface, member) == ("org.freedesktop.DBus.Peer", "Ping"):
            return "", []
        return "s", [f"reached {iface}.{member}"]

    def serve(self):
        while True:
            try:
                m = self.conn.receive()
            except (OSError, dbusclient.ConnectionClosed):
                return
            if m is None:
                return
            if m.type != dbusclient.METHOD_CALL:
                continue
            with self.lock:
                self.received.append((m.interface, m.member))
            if m.flags & dbusclient.NO_REPLY_EXPECTED:
                continue
            sig, body = self.answer(m.interface, m.member)
            try:
                self.conn.reply(m, sig, body)
            except OSError:
                return

    def take_received(self):
        with self.lock:
            r, self.received = self.received, []
        return r

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(timeout=5)
        self.conn.sock.close()


# ---- who calls ----------------------------------------------------------------------------------------

def existing_group(name, taken):
    """The real group if it exists here, else an existing group that has no members, is nobody's primary
    group and is not root's or nogroup."""
    try:
        return grp.getgrnam(name)
    except KeyError:
        pass
    primary = {p.pw_gid for p in pwd.getpwall()}
    for g in sorted(grp.getgrall(), key=lambda g: g.gr_gid):
        if g.gr_gid == 0 or g.gr_mem or g.gr_gid in primary or g.gr_gid in taken or g.gr_name == "nogroup":
            continue
        return g
    skip(f"no group without members to stand in for {name}")


def existing_user(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    nobody = pwd.getpwnam("nobody").pw_uid
    for p in sorted(pwd.getpwall(), key=lambda p: p.pw_uid):
        if p.pw_uid not in (0, nobody):
            return p
    skip(f"no user to stand in for {name}")


class Subject:
    def __init__(self, label, argv_prefix):
        self.label = label
        self.prefix = argv_prefix


def subjects(pos, admin, service_user):
    nobody = pwd.getpwnam("nobody")
    base = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}"]
    return {
        "nobody": Subject("nobody", base + ["--clear-groups"]),
        "pos": Subject("nobody+kkt-pos", base + [f"--groups={pos.gr_gid}"]),
        "admin": Subject("nobody+kkt-admin", base + [f"--groups={admin.gr_gid}"]),
        "root": Subject("root", []),
        "service": Subject("kkt-adapter", ["setpriv", f"--reuid={service_user.pw_uid}",
                                           f"--regid={service_user.pw_gid}", "--clear-groups"]),
    }


def busctl(address, subject, args):
    """Returns (ok, error_name or None, stdout, stderr)."""
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="debug", SYSTEMD_PAGER="cat", LANG="C.UTF-8")
    cmd = subject.prefix + ["busctl", f"--address={address}", "--no-pager", "--timeout=10"] + args
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=30)
    if p.returncode == 0:
        return True, None, p.stdout, p.stderr
    name = None
    for line in p.stderr.splitlines():
        m = re.match(r"Got message type=error .* error-name=(\S+)", line)
        if m:
            name = m.group(1)
    if name is None and re.search(r"Access denied|Rejected send message|not allowed to own", p.stderr):
        name = ACCESS_DENIED
    return False, name, p.stdout, p.stderr


def call_args(iface, member, sig="", *args):
    return ["call", NAME, PATH, iface, member] + ([sig] + list(args) if sig else [])


P = "org.freedesktop.DBus.Properties"
CALLS = {
    # what: (busctl arguments, who may)
    "Introspect": (call_args("org.freedesktop.DBus.Introspectable", "Introspect"),
                   {"nobody", "pos", "admin", "root"}),
    "Ping": (call_args("org.freedesktop.DBus.Peer", "Ping"), {"nobody", "pos", "admin", "root"}),
    "Get": (call_args(P, "Get", "ss", IFACE, "State"), {"nobody", "pos", "admin", "root"}),
    "GetAll": (call_args(P, "GetAll", "s", IFACE), {"nobody", "pos", "admin", "root"}),
    "Set": (call_args(P, "Set", "ssv", IFACE, "State", "s", "online"), {"root"}),
    "SubmitReceipt": (call_args(IFACE, "SubmitReceipt", "ss", "key-1", "{}"), {"pos", "admin", "root"}),
    "GetReceipt": (call_args(IFACE, "GetReceipt", "s", "r-1"), {"pos", "admin", "root"}),
    "SyncNow": (call_args(IFACE, "SyncNow"), {"admin", "root"}),
    "RetryDeadLetter": (call_args(IFACE, "RetryDeadLetter", "s", "r-1"), {"admin", "root"}),
    "ResolveDeadLetter": (call_args(IFACE, "ResolveDeadLetter", "ss", "r-1", "done"), {"admin", "root"}),
    "ResetCircuitBreaker": (call_args(IFACE, "ResetCircuitBreaker"), {"admin", "root"}),
    # The fiscal day: the cashier's point of sale runs the shift and asks about refunds ...
    "OpenShift": (call_args(IFACE, "OpenShift"), {"pos", "admin", "root"}),
    "PrintXReport": (call_args(IFACE, "PrintXReport"), {"pos", "admin", "root"}),
    "CloseShift": (call_args(IFACE, "CloseShift"), {"pos", "admin", "root"}),
    "CheckRefund": (call_args(IFACE, "CheckRefund", "s", "r-1"), {"pos", "admin", "root"}),
    # ... and only an administrator deals with the receipts the register rejected.
    "RetryPrint": (call_args(IFACE, "RetryPrint", "s", "r-1"), {"admin", "root"}),
    "CancelReceipt": (call_args(IFACE, "CancelReceipt", "ss", "r-1", "sold again"), {"admin", "root"}),
    "ListRejected": (call_args(IFACE, "ListRejected"), {"admin", "root"}),
    # The register's and the shift's state as JSON: the same facts as the properties, for everyone.
    "GetDeviceStatus": (call_args(IFACE, "GetDeviceStatus"), {"nobody", "pos", "admin", "root"}),
    "GetShift": (call_args(IFACE, "GetShift"), {"nobody", "pos", "admin", "root"}),
    # Another interface on our name: not opened to anyone but root.
    "GetManagedObjects": (call_args("org.freedesktop.DBus.ObjectManager", "GetManagedObjects"), {"root"}),
}
CALLERS = ("nobody", "pos", "admin", "root")


# ---- the bus ------------------------------------------------------------------------------------------

class Bus:
    def __init__(self, tmp, pos, admin, service_user):
        self.tmp = tmp
        with open(POLICY) as f:
            policy = f.read()
        for attr, real, mapped in (("group", "kkt-pos", pos.gr_name), ("group", "kkt-admin", admin.gr_name),
                                   ("user", "kkt-adapter", service_user.pw_name)):
            needle = f'{attr}="{real}"'
            if policy.count(needle) != 1:
                raise TestFailure(f"the policy should name {needle} exactly once, "
                                  f"not {policy.count(needle)} times")
            policy = policy.replace(needle, f'{attr}="{mapped}"')
        self.policy_path = os.path.join(tmp, "policy.conf")
        with open(self.policy_path, "w") as f:
            f.write(policy)

        services = os.path.join(tmp, "services")
        os.mkdir(services)
        shutil.copy(ACTIVATION, os.path.join(services, NAME + ".service"))
        self.socket_path = os.path.join(tmp, "system_bus_socket")
        config = os.path.join(tmp, "bus.conf")
        with open(config, "w") as f:
            f.write(BUS_CONFIG.format(socket=self.socket_path, services=services, policy=self.policy_path))

        self.log_path = os.path.join(tmp, "dbus-daemon.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("unix:"):
            raise TestFailure(f"dbus-daemon did not start: {line!r}\n{self.log_text()}")
        self.address = line

    def log_text(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


# ---- the tests ----------------------------------------------------------------------------------------

def test_policy_loads_without_unknown_names(bus, who):
    log = bus.log_text()
    check("Unknown" not in log and "rror in file" not in log,
          f"dbus-daemon complained about the policy:\n{log}")


def test_activation_file_is_read(bus, who):
    args = ["call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
            "ListActivatableNames"]
    ok, err, out, _ = busctl(bus.address, who["root"], args)
    check(ok and f'"{NAME}"' in out, f"{NAME} is not activatable: {err} {out}")


def test_only_root_and_service_user_may_own_the_name(bus, who):
    args = ["call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName",
            "su", NAME, "0"]
    for key in ("root", "service"):
        ok, err, out, _ = busctl(bus.address, who[key], args)
        check(ok and out.strip() == "u 1", f"{who[key].label} could not own {NAME}: {err} {out}")
    for key in ("nobody", "pos", "admin"):
        ok, err, out, _ = busctl(bus.address, who[key], args)
        check(not ok and err == ACCESS_DENIED, f"{who[key].label} owning {NAME}: expected AccessDenied, got "
              f"{'success ' + out if ok else err}")


def test_policy_decides_before_activation(bus, who):
    for what, (args, allowed) in CALLS.items():
        for key in CALLERS:
            ok, err, out, stderr = busctl(bus.address, who[key], args)
            check(not ok, f"{what} as {who[key].label} succeeded with nobody owning the name: {out}")
            if key in allowed:
                check(err is not None and err.startswith("org.freedesktop.DBus.Error.Spawn."),
                      f"{what} as {who[key].label} should pass the policy and try activation, got {err}: "
                      f"{stderr[-400:]}")
            else:
                check(err == ACCESS_DENIED, f"{what} as {who[key].label}: expected AccessDenied, got {err}")


def expected_output(what):
    return {
        "Introspect": "SubmitReceipt",
        "Ping": "",
        "Get": 'v s "stand-in"',
        "GetAll": "a{sv} 0",
    }.get(what, '"reached ')


def test_allowed_calls_reach_the_service_and_denied_ones_do_not(bus, who, stand_in):
    for what, (args, allowed) in CALLS.items():
        for key in CALLERS:
            stand_in.take_received()
            ok, err, out, stderr = busctl(bus.address, who[key], args)
            received = [m for _, m in stand_in.take_received()]
            if key in allowed:
                check(ok, f"{what} as {who[key].label} was refused: {err}: {stderr[-400:]}")
                check(expected_output(what) in out, f"{what} as {who[key].label}: unexpected answer {out!r}")
                check(args[4] in received,
                      f"{what} as {who[key].label} did not reach the service: {received}")
            else:
                check(not ok and err == ACCESS_DENIED,
                      f"{what} as {who[key].label}: expected AccessDenied, got {'success' if ok else err}")
                check(args[4] not in received, f"{what} as {who[key].label} reached the service")


def test_busctl_introspect_and_get_property_work_for_everyone(bus, who, stand_in):
    ok, err, out, stderr = busctl(bus.address, who["nobody"], ["introspect", NAME, PATH, IFACE])
    check(ok, f"busctl introspect as nobody failed: {err}: {stderr[-400:]}")
    for member in ("SubmitReceipt", "ResetCircuitBreaker", "State", "DeadLettered", "CloseShift",
                   "CheckRefund", "ListRejected", "ShiftExpiresUSec", "PrintRejected"):
        check(member in out, f"busctl introspect does not show {member}:\n{out}")
    ok, err, out, _ = busctl(bus.address, who["nobody"], ["get-property", NAME, PATH, IFACE, "State"])
    check(ok and out.strip() == 's "stand-in"', f"busctl get-property as nobody: {err} {out!r}")
    ok, err, _, _ = busctl(bus.address, who["pos"], ["set-property", NAME, PATH, IFACE, "State", "s", "x"])
    check(not ok and err == ACCESS_DENIED,
          f"busctl set-property as kkt-pos: expected AccessDenied, got {err}")


def main():
    if os.geteuid() != 0:
        skip("needs root, to run busctl as other users with setpriv")
    for tool in ("dbus-daemon", "busctl", "setpriv"):
        if not shutil.which(tool):
            skip(f"{tool} is not installed")
    for path in (POLICY, ACTIVATION, INTERFACE_XML):
        if not os.path.exists(path):
            raise TestFailure(f"{path} is missing")

    pos = existing_group("kkt-pos", set())
    admin = existing_group("kkt-admin", {pos.gr_gid})
    service_user = existing_user("kkt-adapter")
    who = subjects(pos, admin, service_user)
    sys.stderr.write(f"kkt-pos -> {pos.gr_name} ({pos.gr_gid}), kkt-admin -> {admin.gr_name} "
                     f"({admin.gr_gid}), kkt-adapter -> {service_user.pw_name} ({service_user.pw_uid})\n")

    tmp = tempfile.mkdtemp(prefix="kkt-dbus-policy-")
    os.chmod(tmp, 0o755)  # the socket must be reachable for nobody
    bus = stand_in = None
    try:
        bus = Bus(tmp, pos, admin, service_user)
        # Phase A: nobody owns the name, the activation file is there.
        for test in (test_policy_loads_without_unknown_names, test_activation_file_is_read,
                     test_only_root_and_service_user_may_own_the_name,
                     test_policy_decides_before_activation):
            sys.stderr.write(f"== {test.__name__}\n")
            test(bus, who)

        # Phase B: the stand-in owns the name.
        stand_in = StandIn(bus.socket_path)
        for test in (test_allowed_calls_reach_the_service_and_denied_ones_do_not,
                     test_busctl_introspect_and_get_property_work_for_everyone):
            sys.stderr.write(f"== {test.__name__}\n")
            test(bus, who, stand_in)
    except TestFailure as e:
        sys.stderr.write(f"FAIL: {e}\n")
        if bus:
            sys.stderr.write("---- dbus-daemon log ----\n" + bus.log_text()[-4000:] + "\n")
        return 1
    finally:
        if stand_in:
            stand_in.close()
        if bus:
            bus.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
