#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The command line and a bad configuration: --help, --version, --dump-config, and a start that fails with
one message naming file, line, key and the problem, without READY=1."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import DAEMON, Daemon, TestFailure, check, run_tests  # noqa: E402


def run(*args, env=None):
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    e.update(env or {})
    return subprocess.run([DAEMON, *args], capture_output=True, text=True, timeout=30, env=e)


def test_help_and_version():
    r = run("--help")
    check(r.returncode == 0, f"--help exit {r.returncode}")
    for opt in ("--config=", "--bus=", "--log-level=", "--dump-config", "--version"):
        check(opt in r.stdout, f"--help does not mention {opt}")
    r = run("--version")
    check(r.returncode == 0 and r.stdout.startswith("kkt-adapter "), f"--version: {r.stdout!r}")


def test_unknown_option_fails():
    r = run("--frobnicate")
    check(r.returncode != 0, "an unknown option was accepted")
    r = run("extra-argument")
    check(r.returncode != 0 and "takes no arguments" in r.stderr, f"positional argument: {r.stderr!r}")


def test_dump_config_shows_effective_values(tmp="/tmp"):
    with Daemon("[OFD]\nTimeout=3s\n") as d:
        r = run(f"--config={d.config_path}", "--dump-config", env={"HEARTBEAT_INTERVAL": "45"})
        check(r.returncode == 0, f"--dump-config exit {r.returncode}: {r.stderr}")
        out = r.stdout
        for fragment in ("[OFD]\nURL=http://localhost:9000\nTimeout=3s\n", "[Heartbeat]\n", "Interval=45s\n",
                         "[HTTP]\nListen=127.0.0.1:8000\n", "[Buffer]\n", "Capacity=200\n"):
            check(fragment in out, f"dump lacks {fragment!r}:\n{out}")


def expect_start_failure(config, fragment, env=None):
    with Daemon(config, env=env) as d:
        d.start(wait_ready=False)
        try:
            rc = d.proc.wait(timeout=20)
        except Exception:
            raise TestFailure("daemon kept running with a bad configuration")
        log = d.log_text()
        check(rc != 0, f"bad configuration: exit code {rc}")
        check(not any(m.get("READY") == "1" for _, m in d.read_notify()), "READY=1 sent with a bad configuration")
        expected = fragment.replace("{path}", d.config_path)
        check(expected in log, f"message {expected!r} not in:\n{log}")
        check(len([line for line in log.splitlines() if line.strip()]) == 1,
              f"expected one message, got:\n{log}")


def test_bad_value_fails_the_start():
    expect_start_failure("[Heartbeat]\nInterval=5min\nTimeout=never\n",
                         "{path}:3: [Heartbeat] Timeout=never: not a time span")


def test_unknown_key_fails_the_start():
    expect_start_failure("[HTTP]\nListen=127.0.0.1:8000\nMaxBody=1M\n", "{path}:3: [HTTP] MaxBody=1M: unknown key")


def test_bad_environment_fails_the_start():
    expect_start_failure("", "environment: OFD_BASE_URL=ofd.local: not an http:// or https:// URL",
                         env={"OFD_BASE_URL": "ofd.local"})


def test_missing_config_file_fails_the_start():
    with Daemon("") as d:
        os.unlink(d.config_path)
        d.start(wait_ready=False)
        check(d.proc.wait(timeout=20) != 0, "started without its configuration file")
        check("cannot read: No such file or directory" in d.log_text(), d.log_text())


run_tests([
    test_help_and_version,
    test_unknown_option_fails,
    test_dump_config_shows_effective_values,
    test_bad_value_fails_the_start,
    test_unknown_key_fails_the_start,
    test_bad_environment_fails_the_start,
    test_missing_config_file_fails_the_start,
])
