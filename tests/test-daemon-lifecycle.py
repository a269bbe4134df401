#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The service's life cycle towards systemd: READY=1 with STATUS=, reload on SIGHUP (RELOADING=1 with
MONOTONIC_USEC=, then READY=1), a bad reload keeps the running configuration, SIGTERM gives STOPPING=1 and
exit 0."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import Daemon, check, run_tests  # noqa: E402

BASE = "[Bus]\nAddress=none\n"


def test_ready_and_status_are_sent():
    with Daemon(BASE) as d:
        d.start()
        _, _, m = d.wait_message("STATUS")
        check(m["STATUS"], "STATUS= is empty")
        check(d.proc.poll() is None, "daemon exited after READY=1")
        check(d.stop() == 0, "exit code after SIGTERM is not 0")


def test_sigterm_sends_stopping_and_exits_zero():
    with Daemon(BASE) as d:
        d.start()
        d.signal(signal.SIGTERM)
        d.wait_message("STOPPING", "1")
        rc = d.proc.wait(timeout=20)
        check(rc == 0, f"exit code {rc}")
        check("Stopping" in d.log_text(), "no stopping message in the log")


def test_sigint_stops_gracefully_too():
    with Daemon(BASE) as d:
        d.start()
        d.signal(signal.SIGINT)
        d.wait_message("STOPPING", "1")
        check(d.proc.wait(timeout=20) == 0, "exit code after SIGINT is not 0")


def test_sighup_reloads_with_reloading_then_ready():
    with Daemon(BASE) as d:
        i, _, _ = d.start().wait_message("READY", "1")
        before = time.monotonic_ns() // 1000
        d.write_config(BASE + "[Adapter]\nLogLevel=debug\n")
        d.signal(signal.SIGHUP)
        j, _, m = d.wait_message("RELOADING", "1", after=i + 1)
        usec = int(m["MONOTONIC_USEC"])
        check(usec >= before, f"MONOTONIC_USEC={usec} is before the reload was asked for ({before})")
        d.wait_message("READY", "1", after=j)
        check("Configuration reloaded" in d.log_text(), "no reload message")
        check(d.stop() == 0, "exit code after reload and SIGTERM is not 0")


def test_bad_reload_keeps_running_configuration():
    with Daemon(BASE) as d:
        i, _, _ = d.start().wait_message("READY", "1")
        d.write_config(BASE + "[Sync]\nBatchSize=lots\n")
        d.signal(signal.SIGHUP)
        j, _, _ = d.wait_message("RELOADING", "1", after=i + 1)
        d.wait_message("READY", "1", after=j)
        log = d.log_text()
        check("Reload failed, keeping the running configuration" in log, "no reload failure message:\n" + log)
        check(f"{d.config_path}:4: [Sync] BatchSize=lots: not a non-negative integer" in log,
              "reload failure does not name file, line and key:\n" + log)
        check(d.proc.poll() is None, "daemon exited after a bad reload")
        check(d.stop() == 0, "exit code is not 0")


def test_stop_during_reload_burst_is_clean():
    with Daemon(BASE) as d:
        d.start()
        for _ in range(5):
            d.signal(signal.SIGHUP)
        d.signal(signal.SIGTERM)
        check(d.proc.wait(timeout=20) == 0, "exit code is not 0")


def test_second_daemon_on_the_same_buffer_refuses_to_start():
    with Daemon(BASE) as first:
        first.start()
        with Daemon(BASE, env={"STATE_DIRECTORY": first.state_dir}) as second:
            second.start(wait_ready=False)
            rc = second.proc.wait(timeout=20)
            check(rc != 0, "a second daemon started on a buffer that is in use")
            check("Another kkt-adapterd already uses" in second.log_text(), second.log_text())
            check(not any(m.get("READY") == "1" for _, m in second.read_notify()), "the second one sent READY=1")
        check(first.proc.poll() is None, "the first daemon died")
        check(first.stop() == 0, "exit code of the first is not 0")


run_tests([
    test_second_daemon_on_the_same_buffer_refuses_to_start,
    test_ready_and_status_are_sent,
    test_sigterm_sends_stopping_and_exits_zero,
    test_sigint_stops_gracefully_too,
    test_sighup_reloads_with_reloading_then_ready,
    test_bad_reload_keeps_running_configuration,
    test_stop_during_reload_burst_is_clean,
])
