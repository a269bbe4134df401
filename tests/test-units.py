#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The systemd units as shipped: `systemd-analyze verify` says nothing about them, `systemd-analyze security`
scores the service at most 1.5, the sysusers.d file declares the user and groups, `meson install --destdir`
puts every file where systemd, D-Bus and man look for it, and the daemon started exactly as the units would
start it gets ready, serves, pings the watchdog, reloads with ExecReload= and stops cleanly.

Never starts a systemd manager: the units are checked offline and the daemon is started the way
tests/lib/kkttest.py does (socket as fd 3, NOTIFY_SOCKET, WATCHDOG_USEC, STATE_DIRECTORY...), with everything
else taken from the unit files.
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import kkttest  # noqa: E402
from kkttest import Daemon, Skip, TestFailure, check, run_all  # noqa: E402

DAEMON = os.environ.get("KKT_ADAPTERD")
SERVICE_UNIT = os.environ.get("KKT_SERVICE_UNIT")
SOCKET_UNIT = os.environ.get("KKT_SOCKET_UNIT")
SYSUSERS = os.environ.get("KKT_SYSUSERS")
SOURCE_ROOT = os.environ.get("KKT_SOURCE_ROOT")
BUILD_ROOT = os.environ.get("KKT_BUILD_ROOT")
MESON = os.environ.get("KKT_MESON")

MAX_EXPOSURE = 1.5


# unit files ------------------------------------------------------------------------------------------------

def parse_unit(path):
    """Parses a unit file as systemd does: sections, comments, backslash continuations; a key may repeat and
    an empty assignment clears its list. Returns {section: {key: [values]}}."""
    units = {}
    section = None
    pending = ""
    with open(path) as f:
        lines = f.read().splitlines()
    for raw in lines:
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = units.setdefault(line[1:-1], {})
            continue
        check(section is not None, f"{path}: assignment outside a section: {line}")
        key, sep, value = line.partition("=")
        check(sep == "=", f"{path}: not an assignment: {line}")
        values = section.setdefault(key.strip(), [])
        value = value.strip()
        if value:
            values.append(value)
        else:
            values.clear()
    return units


def one(unit, section, key):
    values = unit.get(section, {}).get(key, [])
    check(len(values) == 1, f"[{section}] {key}= is set {len(values)} times, expected once: {values}")
    return values[0]


TIME_UNITS = [("usec", 1), ("us", 1), ("msec", 1000), ("ms", 1000), ("seconds", 10**6), ("second", 10**6),
              ("sec", 10**6), ("s", 10**6), ("minutes", 60 * 10**6), ("minute", 60 * 10**6),
              ("min", 60 * 10**6), ("hours", 3600 * 10**6), ("hour", 3600 * 10**6), ("h", 3600 * 10**6),
              ("days", 86400 * 10**6), ("day", 86400 * 10**6), ("d", 86400 * 10**6)]


def parse_timespan_usec(text):
    """systemd's time span syntax ("30s", "1min 30s", "500ms", a bare number is seconds)."""
    total = 0
    rest = text.strip()
    check(rest, "empty time span")
    while rest:
        m = re.match(r"(\d+(?:\.\d+)?)\s*([a-z]*)\s*", rest)
        check(m is not None, f"bad time span {text!r}")
        number, suffix = float(m.group(1)), m.group(2)
        factor = 10**6 if not suffix else dict(TIME_UNITS).get(suffix)
        check(factor is not None, f"unknown time unit in {text!r}")
        total += int(number * factor)
        rest = rest[m.end():]
    return total


def copy_units(tmp):
    """The shipped units in a temporary directory, the service's ExecStart= binary replaced by the built one
    (systemd-analyze verify insists that it exists) and nothing else changed."""
    check(DAEMON and os.access(DAEMON, os.X_OK), f"KKT_ADAPTERD={DAEMON!r} is not an executable")
    with open(SERVICE_UNIT) as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    starts = [i for i, l in enumerate(lines) if l.startswith("ExecStart=")]
    check(len(starts) == 1, f"expected one ExecStart= line, found {len(starts)}")
    argv = shlex.split(lines[starts[0]][len("ExecStart="):])
    check(os.path.basename(argv[0]) == "kkt-adapterd", f"ExecStart= does not run kkt-adapterd: {argv}")
    lines[starts[0]] = "ExecStart=" + " ".join(shlex.quote(a) for a in [DAEMON] + argv[1:]) + "\n"
    service = os.path.join(tmp, "kkt-adapter.service")
    with open(service, "w") as f:
        f.write("".join(lines))
    sock = os.path.join(tmp, "kkt-adapter.socket")
    shutil.copyfile(SOCKET_UNIT, sock)
    return service, sock


def run(cmd, **kw):
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=120, **kw)


def need_tool(name):
    path = shutil.which(name)
    if not path:
        raise Skip(f"{name} is not installed (tools/install-deps.sh installs it)")
    return path


# verify and security ---------------------------------------------------------------------------------------

def verify(service, sock):
    need_tool("systemd-analyze")
    r = run(["systemd-analyze", "verify", "--man=no", service, sock])
    return r.returncode, r.stderr


def test_units_verify_without_any_output():
    with tempfile.TemporaryDirectory(prefix="kkt-units-") as tmp:
        service, sock = copy_units(tmp)
        rc, err = verify(service, sock)
        check(rc == 0, f"systemd-analyze verify exited {rc}:\n{err}")
        check(err.strip() == "", f"systemd-analyze verify complained:\n{err}")


def test_verify_reports_a_broken_unit():
    """The check above is only worth something if verify speaks up here: a misspelt setting must show."""
    with tempfile.TemporaryDirectory(prefix="kkt-units-") as tmp:
        service, sock = copy_units(tmp)
        with open(service, "a") as f:
            f.write("\n[Service]\nRestrictAdressFamilies=AF_UNIX\n")
        rc, err = verify(service, sock)
        check("RestrictAdressFamilies" in err,
              f"verify said nothing about an unknown setting (rc {rc}): {err!r}")


def exposure(service, threshold):
    need_tool("systemd-analyze")
    r = run(["systemd-analyze", "security", "--offline=true", f"--threshold={threshold}", service])
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    check(m is not None,
          f"no overall exposure level in the output (rc {r.returncode}):\n{r.stdout}\n{r.stderr}")
    return float(m.group(1)), r.returncode, r.stderr


def test_service_exposure_is_at_most_1_5():
    with tempfile.TemporaryDirectory(prefix="kkt-units-") as tmp:
        service, _ = copy_units(tmp)
        score, rc, err = exposure(service, int(MAX_EXPOSURE * 10))
        sys.stderr.write(f"   exposure level {score}\n")
        check(score <= MAX_EXPOSURE, f"exposure level {score} is above {MAX_EXPOSURE}")
        check(rc == 0, f"systemd-analyze security --threshold={int(MAX_EXPOSURE * 10)} exited {rc}: {err}")
        check(err.strip() == "", f"systemd-analyze security complained:\n{err}")


def test_exposure_rises_without_the_sandbox():
    """Guards the parsing above: the same unit without its sandbox must score far worse."""
    with tempfile.TemporaryDirectory(prefix="kkt-units-") as tmp:
        service, _ = copy_units(tmp)
        with open(service) as f:
            kept = [l for l in f if not re.match(r"(Protect|Private|Restrict|SystemCall|Capability)", l)]
        with open(service, "w") as f:
            f.writelines(kept)
        score, rc, _ = exposure(service, int(MAX_EXPOSURE * 10))
        check(score > 5.0, f"an unsandboxed copy still scores {score}")
        check(rc != 0, "systemd-analyze security passed the threshold for an unsandboxed copy")


# what the units promise ------------------------------------------------------------------------------------

def test_service_keeps_what_the_daemon_needs():
    u = parse_unit(SERVICE_UNIT)
    s = "Service"
    check(one(u, s, "Type") == "notify", "Type= is not notify")
    check(one(u, s, "NotifyAccess") == "main", "NotifyAccess= is not main")
    check(one(u, s, "BusName") == "org.opticserp.KktAdapter1", "BusName= is wrong")
    check(one(u, s, "User") == "kkt-adapter", "User= is not kkt-adapter")
    check(one(u, s, "StateDirectory") == "kkt-adapter", "StateDirectory= is not kkt-adapter")
    check(one(u, s, "ConfigurationDirectory") == "kkt-adapter", "ConfigurationDirectory= is not kkt-adapter")
    check(one(u, s, "Restart") == "on-failure", "Restart= is not on-failure")
    check(parse_timespan_usec(one(u, s, "WatchdogSec")) > 0, "no watchdog")
    check(parse_timespan_usec(one(u, s, "TimeoutStopSec")) >= 20 * 10**6,
          "TimeoutStopSec= leaves too little time to finish a print and an upload")
    check("-HUP" in one(u, s, "ExecReload").split(), "ExecReload= does not send SIGHUP")
    families = sorted(" ".join(u[s]["RestrictAddressFamilies"]).split())
    check(families == ["AF_INET", "AF_INET6", "AF_UNIX"],
          f"RestrictAddressFamilies= must be exactly AF_UNIX (journal, notify, bus) and AF_INET/AF_INET6 "
          f"(listener, upstreams): {families}")
    for key in ("PrivateNetwork", "IPAddressDeny", "ReadOnlyPaths", "InaccessiblePaths"):
        check(key not in u[s], f"{key}= would cut the daemon off from its upstreams or its state")
    check(one(u, s, "ProtectSystem") == "strict", "ProtectSystem= is not strict")
    check("kkt-adapter.socket" in " ".join(u["Unit"].get("Requires", [])), "does not require the socket")
    check("kkt-adapter.socket" in " ".join(u["Unit"].get("After", [])), "not ordered after the socket")
    docs = " ".join(u["Unit"].get("Documentation", [])).split()
    check("man:kkt-adapterd(8)" in docs and "man:kkt-adapter.conf(5)" in docs, f"Documentation= {docs}")
    # Every loaded credential has a fallback, or systemd 252 refuses to start without the file.
    loads = {v.split(":", 1)[0] for v in u[s].get("LoadCredential", [])}
    sets = {v.split(":", 1)[0] for v in u[s].get("SetCredential", [])}
    check(loads == {"ofd-token", "heartbeat-token", "atol-web-auth", "pos-token", "admin-token", "tls-certificate",
                    "tls-key"}, f"LoadCredential= ids {loads}")
    check(loads <= sets, f"credentials without a SetCredential= fallback: {loads - sets}")


def test_socket_listens_on_loopback_port_8000_named_http():
    u = parse_unit(SOCKET_UNIT)
    check(u["Socket"]["ListenStream"] == ["127.0.0.1:8000"], f"ListenStream= {u['Socket']['ListenStream']}")
    check(one(u, "Socket", "Accept") == "no", "Accept= is not no")
    check(one(u, "Socket", "FileDescriptorName") == "http", "FileDescriptorName= is not http")
    check(one(u, "Install", "WantedBy") == "sockets.target", "not wanted by sockets.target")
    check("man:kkt-adapterd(8)" in one(u, "Unit", "Documentation"), "no Documentation=")


LAN_DROPIN = os.path.join(SOURCE_ROOT or "", "units", "kkt-adapter-lan.socket.conf")


def test_lan_dropin_verifies_keeps_loopback_and_adds_the_lan_address():
    """The example for the LAN: as a drop-in of the socket it verifies cleanly, keeps 127.0.0.1:8000 for the
    desk's POS, adds a LAN address bound even before the interface is up, and names the credentials the
    service loads (the daemon refuses that address without TLS and a POS token)."""
    with open(LAN_DROPIN) as f:
        text = f.read()
    lines = [l for l in text.splitlines() if l.startswith("ListenStream=")]
    check(lines and lines[0] == "ListenStream=", "the drop-in does not reset the socket's ListenStream= first")
    u = parse_unit(LAN_DROPIN)
    listen = u["Socket"]["ListenStream"]
    check(listen[0] == "127.0.0.1:8000" and len(listen) == 2 and not listen[1].startswith("127."),
          f"ListenStream= {listen}")
    check(one(u, "Socket", "FreeBind") == "yes", "FreeBind= is not yes")
    service = parse_unit(SERVICE_UNIT)
    loads = {v.split(":", 1)[0]: v.split(":", 1)[1] for v in service["Service"].get("LoadCredential", [])}
    for cred in ("tls-certificate", "tls-key", "pos-token", "admin-token"):
        check(loads.get(cred, "") in text, f"the drop-in does not say where {cred} goes ({loads.get(cred)})")
    with tempfile.TemporaryDirectory(prefix="kkt-units-") as tmp:
        service_path, sock = copy_units(tmp)
        os.mkdir(sock + ".d")
        shutil.copyfile(LAN_DROPIN, os.path.join(sock + ".d", "50-lan.conf"))
        rc, err = verify(service_path, sock)
        check(rc == 0 and err.strip() == "", f"systemd-analyze verify with the drop-in (rc {rc}):\n{err}")
        # verify reads the drop-in at all: a misspelt key in it must show.
        with open(os.path.join(sock + ".d", "50-lan.conf"), "a") as f:
            f.write("ListenStreem=1\n")
        rc, err = verify(service_path, sock)
        check("ListenStreem" in err, f"verify did not read the drop-in: {err!r}")


def test_sysusers_creates_the_user_and_both_groups():
    tool = need_tool("systemd-sysusers")
    with tempfile.TemporaryDirectory(prefix="kkt-sysusers-") as root:
        # --dry-run with a private --root: nothing is written, not even there.
        r = run([tool, "--dry-run", f"--root={root}", os.path.abspath(SYSUSERS)])
        out = r.stdout + r.stderr
        check(r.returncode == 0, f"systemd-sysusers exited {r.returncode}:\n{out}")
        check(os.listdir(root) == [], f"systemd-sysusers --dry-run wrote into {root}: {os.listdir(root)}")
    for line in out.splitlines():
        check(not re.search(r"fail|ignor|invalid|warn", line, re.I), f"systemd-sysusers: {line}")
    check(re.search(r"Creating user '?kkt-adapter'?", out), f"no user kkt-adapter:\n{out}")
    for group in ("kkt-pos", "kkt-admin", "kkt-adapter"):
        check(re.search(rf"Creating group '?{group}'?", out), f"no group {group}:\n{out}")


# the install tree ------------------------------------------------------------------------------------------

def build_options():
    with open(os.path.join(BUILD_ROOT, "meson-info", "intro-buildoptions.json")) as f:
        return {o["name"]: o["value"] for o in json.load(f)}


def pkgconfig_dir(variable, prefix, fallback):
    if shutil.which("pkg-config"):
        r = run(["pkg-config", f"--define-variable=prefix={prefix}", f"--variable={variable}", "systemd"])
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    return os.path.join(prefix, fallback)


def test_install_puts_every_file_in_place():
    if not MESON or not BUILD_ROOT:
        raise Skip("meson or the build directory is unknown (KKT_MESON, KKT_BUILD_ROOT)")
    opts = build_options()
    prefix = opts["prefix"]

    def under(d):
        return os.path.join(prefix, d)

    with tempfile.TemporaryDirectory(prefix="kkt-install-") as dest:
        r = run([MESON, "install", "-C", BUILD_ROOT, "--no-rebuild", "--quiet", "--destdir", dest])
        check(r.returncode == 0, f"meson install failed:\n{r.stdout}\n{r.stderr}")
        tree = sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs)
        sys.stderr.write("   installed:\n" + "".join(f"     /{p}\n" for p in tree))

        def installed(path):
            full = dest + path
            check(os.path.isfile(full), f"{path} is not installed")
            return full

        unitdir = pkgconfig_dir("systemdsystemunitdir", prefix, "lib/systemd/system")
        daemon = under(opts["sbindir"]) + "/kkt-adapterd"
        check(os.access(installed(daemon), os.X_OK), f"{daemon} is not executable")
        service = parse_unit(installed(unitdir + "/kkt-adapter.service"))
        exec_start = shlex.split(one(service, "Service", "ExecStart"))
        check(exec_start[0] == daemon,
              f"the installed service runs {exec_start[0]}, the daemon is at {daemon}")
        with open(installed(unitdir + "/kkt-adapter.socket")) as a, open(SOCKET_UNIT) as b:
            check(a.read() == b.read(), "the installed socket unit differs from the source")

        sysusers = pkgconfig_dir("sysusersdir", prefix, "lib/sysusers.d") + "/kkt-adapter.conf"
        with open(installed(sysusers)) as a, open(SYSUSERS) as b:
            check(a.read() == b.read(), "the installed sysusers.d file differs from the source")

        catalog = pkgconfig_dir("catalogdir", prefix, "lib/systemd/catalog") + "/kkt-adapter.catalog"
        installed(catalog)

        example = os.path.join(under(opts["datadir"]), "doc", "kkt-adapter", "examples", "kkt-adapter.socket.d",
                               "50-lan.conf")
        with open(installed(example)) as a, open(LAN_DROPIN) as b:
            check(a.read() == b.read(), "the installed LAN example differs from the source")
        check(not [p for p in tree if "/systemd/system/kkt-adapter.socket.d/" in p],
              "a socket drop-in is installed where systemd would apply it")

        config = os.path.join(under(opts["sysconfdir"]), "kkt-adapter", "kkt-adapter.conf")
        with open(installed(config)) as f:
            check("[Adapter]" in f.read(), f"{config} is not the example configuration")

        mandir = under(opts["mandir"])
        for page in ("man8/kkt-adapterd.8", "man1/kktctl.1", "man5/kkt-adapter.conf.5",
                     "man5/org.opticserp.KktAdapter1.5"):
            with open(installed(os.path.join(mandir, page))) as f:
                text = f.read()
            check(re.search(r"^\.TH ", text, re.M), f"{page} is not a rendered manual page")

        # The D-Bus files belong to another part of the tree; whichever exist must be installed where
        # dbus-daemon looks for them.
        dbus_src = os.path.join(SOURCE_ROOT, "dbus")
        where = {".conf": "dbus-1/system.d/", ".service": "dbus-1/system-services/",
                 ".xml": "dbus-1/interfaces/"}
        for name in sorted(os.listdir(dbus_src)):
            ext = os.path.splitext(name)[1]
            if ext not in where:
                continue
            hits = [p for p in tree if p.endswith(where[ext] + name)]
            check(hits, f"dbus/{name} is not installed under a .../{where[ext]} directory")


# the daemon as the units start it ------------------------------------------------------------------------

def unescape_c(value):
    return value.encode("latin-1").decode("unicode_escape").encode("latin-1")


def unit_environment(service, fake_root, tmp):
    """What systemd would put into the daemon's environment for this unit, with its directories in `tmp`
    and absolute paths it reads from looked up under `fake_root` instead of /."""
    s = service["Service"]
    env = {}
    for assignment in s.get("Environment", []):
        for word in shlex.split(assignment):
            k, _, v = word.partition("=")
            env[k] = v
    check("EnvironmentFile" not in s, "EnvironmentFile= is not emulated by this test")

    for key, var in (("StateDirectory", "STATE_DIRECTORY"),
                     ("ConfigurationDirectory", "CONFIGURATION_DIRECTORY")):
        if key in s:
            d = os.path.join(tmp, key, one(service, "Service", key))
            os.makedirs(d, mode=0o700)
            env[var] = d

    # LoadCredential=ID:PATH, with SetCredential=ID:VALUE as the fallback when PATH is missing (systemd 252
    # fails the start when there is neither).
    fallbacks = {}
    for v in s.get("SetCredential", []):
        cid, _, value = v.partition(":")
        fallbacks[cid] = unescape_c(value)
    creds = os.path.join(tmp, "credentials")
    os.mkdir(creds, 0o700)
    for v in s.get("LoadCredential", []):
        cid, _, path = v.partition(":")
        check(os.path.isabs(path), f"LoadCredential={v}: expected an absolute path")
        source = fake_root + path
        if os.path.exists(source):
            with open(source, "rb") as f:
                data = f.read()
        else:
            check(cid in fallbacks, f"LoadCredential={v}: the file is missing and there is no fallback")
            data = fallbacks[cid]
        fd = os.open(os.path.join(creds, cid), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        os.write(fd, data)
        os.close(fd)
    if s.get("LoadCredential"):
        env["CREDENTIALS_DIRECTORY"] = creds
    return env


def refused_url():
    """A loopback URL where nothing listens: bound, never listening, so connections are refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, f"http://127.0.0.1:{s.getsockname()[1]}"


def test_daemon_runs_as_the_units_start_it():
    with tempfile.TemporaryDirectory(prefix="kkt-units-") as tmp:
        service_path, socket_path = copy_units(tmp)
        service = parse_unit(service_path)
        sock = parse_unit(socket_path)

        # kkttest.Daemon passes one listening TCP socket on 127.0.0.1 (an ephemeral port instead of 8000)
        # as fd 3 named "http": exactly what this socket unit describes.
        check(sock["Socket"]["ListenStream"] == ["127.0.0.1:8000"], "the socket unit changed: adapt the test")
        check(one(sock, "Socket", "FileDescriptorName") == "http", "the socket unit changed: adapt the test")
        check(one(service, "Service", "Type") == "notify", "not Type=notify")

        argv = shlex.split(one(service, "Service", "ExecStart"))
        check(argv[0][0] not in "@-:+!", f"ExecStart= prefixes are not emulated: {argv[0]}")
        watchdog_usec = parse_timespan_usec(one(service, "Service", "WatchdogSec"))
        stop_timeout = parse_timespan_usec(one(service, "Service", "TimeoutStopSec")) / 1e6
        env = unit_environment(service, os.path.join(tmp, "root"), tmp)

        # The unit starts the daemon without --config (it reads /etc/kkt-adapter); the test adds its own file:
        # no D-Bus, and upstreams that refuse, so nothing outside the test is touched.
        closed, url = refused_url()
        config = f"[Bus]\nAddress=none\n[OFD]\nURL={url}\n[Heartbeat]\nURL={url}/heartbeat\n"
        kkttest.DAEMON = argv[0]
        try:
            with Daemon(config, env=env, watchdog_usec=watchdog_usec, args=argv[1:], name="kkt-unit") as d:
                started = time.monotonic()
                d.start(timeout=20)
                sys.stderr.write(f"   READY=1 after {time.monotonic() - started:.2f}s\n")
                _, _, m = d.wait_message("STATUS")
                check(m["STATUS"], "STATUS= is empty")

                status, _, body = d.request("GET", "/")
                check(status == 200, f"GET / answered {status}: {body}")
                version = subprocess.run([argv[0], "--version"], stdout=subprocess.PIPE, text=True,
                                         check=True).stdout.split()
                check(isinstance(body, dict) and body.get("name") == version[0]
                      and body.get("version") == version[1], f"GET / answered {body}, expected {version}")

                check(os.path.exists(os.path.join(env["STATE_DIRECTORY"], "buffer.db")),
                      "the buffer is not in $STATE_DIRECTORY")

                # ExecReload= as systemd runs it, with $MAINPID.
                i, _, _ = d.wait_message("READY", "1")
                reload_cmd = [a.replace("$MAINPID", str(d.proc.pid)).replace("${MAINPID}", str(d.proc.pid))
                              for a in shlex.split(one(service, "Service", "ExecReload"))]
                r = run(reload_cmd)
                check(r.returncode == 0, f"ExecReload= {reload_cmd} failed: {r.stderr}")
                j, _, m = d.wait_message("RELOADING", "1", after=i + 1)
                check("MONOTONIC_USEC" in m, "RELOADING=1 without MONOTONIC_USEC=")
                d.wait_message("READY", "1", after=j)

                # sd-event pings once when the watchdog is armed, then every half period or so: the second
                # ping must come within WatchdogSec= of the first, or systemd would kill the service.
                deadline = started + 2 * watchdog_usec / 1e6
                while True:
                    pings = [t for t, msg in d.read_notify() if msg.get("WATCHDOG") == "1"]
                    if len(pings) >= 2 or time.monotonic() > deadline or d.proc.poll() is not None:
                        break
                    time.sleep(0.1)
                check(len(pings) >= 2, f"{len(pings)} WATCHDOG=1 within {2 * watchdog_usec / 1e6:.0f}s")
                gap = pings[1] - pings[0]
                sys.stderr.write(f"   watchdog pings {gap:.1f}s apart "
                                 f"(WatchdogSec={watchdog_usec / 1e6:.0f}s)\n")
                check(gap < watchdog_usec / 1e6, f"watchdog pings {gap:.1f}s apart, WatchdogSec= is "
                      f"{watchdog_usec / 1e6:.0f}s")

                # systemctl stop: SIGTERM (KillSignal= default), then TimeoutStopSec= before SIGKILL.
                n = len(d.read_notify())
                d.signal(signal.SIGTERM)
                d.wait_message("STOPPING", "1", after=n, timeout=stop_timeout)
                try:
                    rc = d.proc.wait(timeout=stop_timeout)
                except subprocess.TimeoutExpired:
                    raise TestFailure(f"still running {stop_timeout:.0f}s (TimeoutStopSec=) after SIGTERM")
                check(rc == 0, f"exit status {rc} after SIGTERM")
        finally:
            closed.close()


TESTS = [
    test_units_verify_without_any_output,
    test_verify_reports_a_broken_unit,
    test_service_exposure_is_at_most_1_5,
    test_exposure_rises_without_the_sandbox,
    test_service_keeps_what_the_daemon_needs,
    test_socket_listens_on_loopback_port_8000_named_http,
    test_lan_dropin_verifies_keeps_loopback_and_adds_the_lan_address,
    test_sysusers_creates_the_user_and_both_groups,
    test_install_puts_every_file_in_place,
    test_daemon_runs_as_the_units_start_it,
]


def main():
    for var in ("KKT_ADAPTERD", "KKT_SERVICE_UNIT", "KKT_SOCKET_UNIT", "KKT_SYSUSERS", "KKT_SOURCE_ROOT"):
        if not os.environ.get(var):
            sys.stderr.write(f"{var} is not set; run this through meson test\n")
            sys.exit(77)
    run_all(TESTS)


main()
