#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""kill -9 of the daemon and of the fake ATOL web server at random moments, many times (issue 12: at least 20
runs, each checked for exactly one fiscal document per acknowledged receipt).

Each run is tests/test-atol.py's crash_run(): the real kkt-adapterd with [Device] Driver=atol-web against
tests/fake-atol.py (its fiscal memory persistent across its restarts), eight receipts posted with
Idempotency-Keys while the daemon, the fake or both are killed -9 at a random moment within the first 2.5 s
and restarted; the POS repeats every receipt not acknowledged (same key, same body); at the end each must be
printed and the fake's journal must hold exactly one document for each receipt and none for anything else.
Every run is bounded (120 s), and so is the whole (--max-seconds).

    bench/atol-crash.py --daemon build/src/adapter/kkt-adapterd [--runs 24] [--seed N] [--max-seconds 1800]
"""

import argparse
import importlib.util
import os
import random
import sys
import time

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", default=os.environ.get("KKT_ADAPTERD", "build/src/adapter/kkt-adapterd"))
    ap.add_argument("--runs", type=int, default=24)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--max-seconds", type=float, default=1800)
    a = ap.parse_args()

    os.environ["KKT_ADAPTERD"] = os.path.abspath(a.daemon)
    spec = importlib.util.spec_from_file_location("test_atol", os.path.join(HERE, "..", "tests", "test-atol.py"))
    t = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(t)

    rng = random.Random(a.seed)
    start = time.monotonic()
    sys.stderr.write(f"atol-crash: {a.runs} runs, seed {a.seed}\n")
    done = 0
    for i in range(a.runs):
        if time.monotonic() - start > a.max_seconds:
            sys.stderr.write(f"atol-crash: stopped after {done} runs, --max-seconds reached\n")
            break
        try:
            t.crash_run(i, rng)
        except t.TestFailure as e:
            sys.stderr.write(f"FAIL run {i} (seed {a.seed}): {e}\n")
            return 1
        done += 1
    sys.stderr.write(f"atol-crash: {done} runs in {time.monotonic() - start:.0f} s, one document per receipt in "
                     f"every run\n")
    return 0 if done >= min(a.runs, 20) else 1


if __name__ == "__main__":
    sys.exit(main())
