#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The loop pings the watchdog (WATCHDOG=1 well within WATCHDOG_USEC), and a stalled loop stops the pings:
the debug hook KKT_ADAPTER_DEBUG_STALL blocks the loop, which is what systemd would then restart."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import Daemon, check, run_tests  # noqa: E402

BASE = "[Bus]\nAddress=none\n"
WATCHDOG_USEC = 1_000_000


def pings(d):
    return [t for t, m in d.read_notify() if m.get("WATCHDOG") == "1"]


def test_watchdog_pings_within_the_interval():
    with Daemon(BASE, watchdog_usec=WATCHDOG_USEC) as d:
        d.start()
        time.sleep(3.2)
        p = pings(d)
        check(len(p) >= 4, f"only {len(p)} WATCHDOG=1 in 3.2 s with WATCHDOG_USEC=1s")
        gaps = [b - a for a, b in zip(p, p[1:])]
        # sd-event pings at about half the interval; a gap as long as the whole interval would be a miss.
        check(max(gaps) < WATCHDOG_USEC / 1e6, f"a gap between pings reached the watchdog interval: {gaps}")
        check(d.stop() == 0, "exit code is not 0")


def test_no_watchdog_pings_without_watchdog_usec():
    with Daemon(BASE) as d:
        d.start()
        time.sleep(1.0)
        check(pings(d) == [], "WATCHDOG=1 sent although the watchdog is not enabled")
        check(d.stop() == 0, "exit code is not 0")


def test_stalled_loop_stops_the_pings():
    stall_after, stall_for = 1.5, 3.0
    with Daemon(BASE, watchdog_usec=WATCHDOG_USEC,
                env={"KKT_ADAPTER_DEBUG_STALL": f"{stall_after}s:{stall_for}s"}) as d:
        d.start()
        started = time.monotonic()
        time.sleep(stall_after + stall_for + 1.5)
        p = pings(d)
        gaps = [(b - a, a - started) for a, b in zip(p, p[1:])]
        longest = max(g for g, _ in gaps)
        # While the loop is blocked no ping can go out: the gap spans the stall, far beyond the interval.
        check(longest >= stall_for - 0.5, f"pings did not stop during the stall: gaps {gaps}")
        check(longest > WATCHDOG_USEC / 1e6, "the stall stayed within the watchdog interval")
        after = [t for t in p if t - started > stall_after + stall_for + 0.2]
        check(len(after) >= 1, "pings did not resume after the stall")
        check("stalling the event loop" in d.log_text(), "the stall hook did not announce itself")
        check(d.stop() == 0, "exit code is not 0")


run_tests([
    test_watchdog_pings_within_the_interval,
    test_no_watchdog_pings_without_watchdog_usec,
    test_stalled_loop_stops_the_pings,
])
