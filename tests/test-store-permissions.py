#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The daemon started as a user that may not write its state directory or buffer: it exits with one
message that says Permission denied (EACCES), names the directory or file and its owner, and the owner it
needs, instead of "No such file or directory" or "Read-only file system". Runs kkt-adapterd as nobody with
setpriv on a state directory root owns; needs root (skipped otherwise)."""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import DAEMON, check, run_tests  # noqa: E402

NOBODY = 65534

if os.geteuid() != 0 or not shutil.which("setpriv"):
    print("needs root and setpriv", file=sys.stderr)
    sys.exit(77)


class StateDir:
    """A temporary directory (root's, 0755) with a configuration nobody may read and a state directory."""

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="kkt-perm-")
        os.chmod(self.tmp, 0o755)
        self.state = os.path.join(self.tmp, "state")
        os.mkdir(self.state, 0o755)
        self.buffer = os.path.join(self.state, "buffer.db")
        self.config = os.path.join(self.tmp, "kkt-adapter.conf")
        # The store is opened before anything listens: the address is never bound in these tests.
        with open(self.config, "w") as f:
            f.write(f"[HTTP]\nListen=127.0.0.1:1\n[Buffer]\nPath={self.buffer}\n")
        os.chmod(self.config, 0o644)
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_as_nobody(self):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            DAEMON, f"--config={self.config}", "--bus=none"],
                           capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
        sys.stderr.write(f"   exit {r.returncode}: {r.stderr.strip()}\n")
        return r


def check_permission_message(r, bad_path, owner):
    check(r.returncode != 0, "the daemon started")
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    check(len(lines) == 1, f"expected one message, got:\n{r.stderr}")
    msg = lines[0]
    for fragment in ("Permission denied", "EACCES", f"{bad_path} is owned by {owner}", "must be owned by nobody",
                     "uid 65534"):
        check(fragment in msg, f"{fragment!r} not in {msg!r}")
    for wrong in ("No such file or directory", "Read-only file system"):
        check(wrong not in msg, f"{wrong!r} in {msg!r}")


def test_state_directory_owned_by_root():
    with StateDir() as d:
        check_permission_message(d.start_as_nobody(), d.state, "root:root")
        check(not os.path.exists(d.buffer), "a buffer was created")


def test_buffer_file_owned_by_root():
    with StateDir() as d:
        os.chown(d.state, NOBODY, NOBODY)
        with open(d.buffer, "wb"):  # an empty file is a valid, empty database
            pass
        os.chmod(d.buffer, 0o644)
        check_permission_message(d.start_as_nobody(), d.buffer, "root:root")


run_tests([test_state_directory_owned_by_root, test_buffer_file_owned_by_root])
