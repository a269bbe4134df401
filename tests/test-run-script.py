#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The README's "run" command, tools/run.sh, on this build: it serves on the port it was given, a receipt
comes back printed and reaches the OFD stand-in, the heartbeat goes online, kktctl reads the state on its
private bus, and stopping the script stops everything it started. A second run on the same run directory is
refused while the first is live; a stand-in or daemon that cannot start is reported, with the stand-in's
log, and no banner is printed."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import shutil
import json
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import check, closed_port, run_tests, sample_receipt, wait_until  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("KKT_BUILD_DIR")

if not BUILD or not all(shutil.which(t) for t in ("systemd-socket-activate", "dbus-daemon", "curl")):
    print("needs KKT_BUILD_DIR, systemd-socket-activate, dbus-daemon and curl", file=sys.stderr)
    sys.exit(77)


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                                 headers=dict(headers or {}, **({"Content-Type": "application/json"} if body else {})))
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except OSError:
        return None, None


def run_env(run_dir, port, upstream):
    return dict(os.environ, KKT_SKIP_BUILD="1", KKT_BUILD_DIR=BUILD, KKT_RUN_DIR=run_dir,
                KKT_PORT=str(port), KKT_UPSTREAM_PORT=str(upstream))


def run_script(run_dir, port, upstream, log):
    return subprocess.Popen(["bash", os.path.join(TOP, "tools", "run.sh")], env=run_env(run_dir, port, upstream),
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def run_script_to_end(run_dir, port, upstream, timeout=60):
    """A run that is expected to give up: its exit status and everything it printed."""
    r = subprocess.run(["bash", os.path.join(TOP, "tools", "run.sh")], env=run_env(run_dir, port, upstream),
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def listening_port():
    """A loopback socket that listens (and never accepts): its port is taken."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


def test_run_script_serves_prints_syncs_and_stops_cleanly():
    run_dir = tempfile.mkdtemp(prefix="kkt-run-")
    port, upstream = closed_port(), closed_port()
    log = open(os.path.join(run_dir, "run.log"), "w+")
    script = run_script(run_dir, port, upstream, log)
    base = f"http://127.0.0.1:{port}"
    try:
        def banner():
            log.seek(0)
            return "Logs follow" in log.read()  # the banner's last line: all of it is out
        wait_until(banner, 60, "the run script's banner")
        log.seek(0)
        text = log.read()
        check(f"127.0.0.1:{port}" in text and "curl" in text and "busctl" in text and "kktctl" in text,
              f"the banner does not say how to reach it:\n{text}")

        status, answer = http("POST", f"{base}/v1/kkt/receipt", sample_receipt(), {"Idempotency-Key": "run-1"})
        check(status == 200 and answer["status"] == "printed" and answer["fiscal_doc"],
              f"first receipt: {status} {answer}")
        rid = answer["receipt_id"]

        def synced():
            s, r = http("GET", f"{base}/v1/kkt/receipt/{rid}")
            return s == 200 and r["status"] == "synced"
        wait_until(synced, 30, "the receipt to reach the OFD stand-in")

        def online():
            s, r = http("GET", f"{base}/v1/kkt/heartbeat/status")
            return s == 200 and r["state"] == "online"
        wait_until(online, 30, "the heartbeat to go online")

        # The administrative paths: closed without the token run.sh made, open with it.
        status, _ = http("POST", f"{base}/v1/kkt/buffer/sync")
        check(status == 401, f"sync without the admin token: {status}")
        with open(os.path.join(run_dir, "credentials", "admin-token")) as f:
            token = f.read().strip()
        check("credentials/admin-token" in text, "the banner does not say where the admin token is")
        status, answer = http("POST", f"{base}/v1/kkt/buffer/sync", headers={"Authorization": f"Bearer {token}"})
        check(status == 202, f"sync with the admin token: {status} {answer}")

        r = subprocess.run([os.path.join(BUILD, "src", "kktctl", "kktctl"),
                            f"--address=unix:path={run_dir}/bus", "status"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0 and "online" in r.stdout and "1 synced" in r.stdout,
              f"kktctl status: {r.returncode} {r.stdout} {r.stderr}")

        # A second run on the same run directory is refused and says how to stop the first; the first
        # goes on serving, its bus socket untouched.
        status, text = run_script_to_end(run_dir, closed_port(), closed_port())
        check(status != 0 and "another run is live" in text and f"kill {script.pid}" in text and
              "Logs follow" not in text, f"a second run on {run_dir}: exit {status}\n{text}")
        check(http("GET", f"{base}/v1/kkt/buffer/status")[0] == 200, "the first run stopped serving")
        r = subprocess.run([os.path.join(BUILD, "src", "kktctl", "kktctl"),
                            f"--address=unix:path={run_dir}/bus", "status"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, f"the first run's bus is gone after the second run: {r.stderr}")
    finally:
        script.send_signal(signal.SIGTERM)
        try:
            script.wait(timeout=30)
        except subprocess.TimeoutExpired:
            script.kill()
            script.wait()
        log.close()
    # Everything the script started is gone: nobody serves on its ports any more.
    wait_until(lambda: http("GET", f"{base}/")[0] is None, 20, "the daemon to stop with the script")
    wait_until(lambda: http("GET", f"http://127.0.0.1:{upstream}/_control/state")[0] is None, 20,
               "the OFD stand-in to stop with the script")
    shutil.rmtree(run_dir, ignore_errors=True)


def run_with_a_port_taken(which):
    """A run whose daemon ("daemon") or stand-in ("upstream") finds its port taken: (exit status, output,
    daemon port, stand-in port). The run directory is removed afterwards."""
    run_dir = tempfile.mkdtemp(prefix="kkt-run-")
    taken, busy = listening_port()
    port, upstream = (busy, closed_port()) if which == "daemon" else (closed_port(), busy)
    try:
        status, text = run_script_to_end(run_dir, port, upstream)
        check(not os.path.exists(os.path.join(run_dir, "run.pid")), "run.pid left behind")
    finally:
        taken.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    check(status != 0 and "Logs follow" not in text, f"{which}'s port taken: exit {status}\n{text}")
    return status, text, port, upstream


def test_a_stand_in_that_cannot_start_is_shown_with_its_log_and_no_banner():
    status, text, port, _ = run_with_a_port_taken("upstream")
    check("stand-in (tests/fake-upstream.py) did not start" in text and "Address already in use" in text,
          f"a stand-in on a taken port: exit {status}\n{text}")
    check(http("GET", f"http://127.0.0.1:{port}/")[0] is None, "the daemon was started all the same")


def test_a_daemon_that_cannot_listen_is_reported_and_no_banner():
    status, text, _, upstream = run_with_a_port_taken("daemon")
    check("kkt-adapterd exited" in text, f"the daemon's port taken: exit {status}\n{text}")
    # What the script started went with it: the stand-in is gone.
    wait_until(lambda: http("GET", f"http://127.0.0.1:{upstream}/_control/state")[0] is None, 20,
               "the OFD stand-in to stop with the script")


run_tests([test_run_script_serves_prints_syncs_and_stops_cleanly,
           test_a_stand_in_that_cannot_start_is_shown_with_its_log_and_no_banner,
           test_a_daemon_that_cannot_listen_is_reported_and_no_banner])
