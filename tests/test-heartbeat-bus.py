#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The heartbeat against a fake ERP, seen through every door at once: the D-Bus properties (busctl
get-property) and their PropertiesChanged signals on a private dbus-daemon, GET /v1/kkt/heartbeat/status and
/v1/kkt/buffer/status, STATUS= on the notify socket, and the log. Also what the ERP receives, that a hanging
ERP delays nothing else, and that a refused connection counts as a failure.

Short intervals come from the configuration ([Heartbeat] Interval=300ms); the thresholds are the defaults
(2 successes -> online, 3 failures -> offline). Exit 77 (skipped) without dbus-daemon or busctl.
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from busdaemon import DaemonOnBus  # noqa: E402
from kkttest import FakeErp, check, run_tests, wait_until  # noqa: E402

NAME = "org.opticserp.KktAdapter1"
PATH = "/org/opticserp/KktAdapter1"
IFACE = "org.opticserp.KktAdapter1"
SIGNALS = f"type='signal',path='{PATH}'"

RECEIPT = {"pos_id": "POS-1", "type": "sale",
           "items": [{"name": "Frame", "price": 1500.00, "quantity": 1, "total": 1500.00, "vat_rate": 22}],
           "payments": [{"type": "cash", "amount": 1500.00}]}


class Setup(DaemonOnBus):
    """A private bus, a fake ERP, a signal recorder on the bus (started before the daemon, so no signal is
    missed) and the daemon itself, all torn down in reverse order."""

    def __init__(self, config="", erp_mode="accept", interval="300ms", timeout="1s", start=True):
        self.erp = FakeErp().start()
        try:
            self.erp.mode(erp_mode)
        except BaseException:
            self.erp.stop()
            raise
        super().__init__(f"[Heartbeat]\nURL={self.erp.url}\nInterval={interval}\nTimeout={timeout}\n" + config,
                         name="kkt-hb-bus", record=SIGNALS, helpers=[self.erp], start=start)


def busctl_get(address, prop):
    """The property's value as busctl get-property prints it (JSON), the way an admin reads it."""
    p = subprocess.run(["busctl", f"--address={address}", "--json=short", "--timeout=10", "get-property",
                        NAME, PATH, IFACE, prop], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, SYSTEMD_PAGER="cat"))
    check(p.returncode == 0, f"busctl get-property {prop} failed: {p.stderr.strip()}")
    return json.loads(p.stdout)["data"]


def wait_state(s, state, timeout=10):
    return wait_until(lambda: busctl_get(s.bus.address, "State") == state, timeout, f"State={state}",
                      interval=0.05)


def changed_properties(recorder):
    """The changed-properties dicts of our PropertiesChanged signals, in arrival order, unwrapped."""
    out = []
    for _, m in recorder.taken():
        if m.member == "PropertiesChanged" and m.body[0] == IFACE:
            out.append({k: v for k, (_, v) in m.body[1].items()})
    return out


def network_in_status(messages):
    """The network state each STATUS= names, consecutive repeats folded."""
    seen = []
    for _, m in messages:
        found = re.search(r"network (\w+)", m.get("STATUS", ""))
        if found and (not seen or seen[-1] != found.group(1)):
            seen.append(found.group(1))
    return seen


def now_usec():
    return time.time_ns() // 1000


def check_doors_agree(s, state, result):
    """The same state through D-Bus (busctl), both HTTP endpoints, and the last STATUS= sent."""
    d = s.daemon
    check(busctl_get(s.bus.address, "State") == state, f"State is not {state}")
    check(busctl_get(s.bus.address, "LastHeartbeatResult") == result,
          f"LastHeartbeatResult is {busctl_get(s.bus.address, 'LastHeartbeatResult')!r}, not {result!r}")
    status, _, hb = d.request("GET", "/v1/kkt/heartbeat/status")
    check(status == 200, f"GET /v1/kkt/heartbeat/status answered {status}")
    check(hb["state"] == state and hb["running"] is True and hb["last_result"] == result,
          f"heartbeat/status does not say {state}/{result}: {hb}")
    status, _, buf = d.request("GET", "/v1/kkt/buffer/status")
    check(status == 200 and buf["network_status"] == state, f"buffer/status network_status: {buf}")
    wait_until(lambda: network_in_status(d.read_notify())[-1:] == [state], 5,
               f"STATUS= saying network {state}")
    return hb


def test_state_goes_unknown_online_offline_online_through_every_door():
    # The ERP hangs at first: the first beat cannot end before Timeout=1s, so "unknown" is there to read.
    with Setup(erp_mode="hang") as s:
        d = s.daemon
        check(busctl_get(s.bus.address, "State") == "unknown", "State does not start as unknown")
        check(busctl_get(s.bus.address, "LastHeartbeatUSec") == 0,
              "LastHeartbeatUSec is not 0 before a beat")
        check(busctl_get(s.bus.address, "LastHeartbeatResult") == "", "LastHeartbeatResult is not empty")
        _, _, hb = d.request("GET", "/v1/kkt/heartbeat/status")
        check(hb["state"] == "unknown" and hb["last_beat"] is None, f"heartbeat/status at start: {hb}")
        check(d.request("GET", "/v1/kkt/buffer/status")[2]["network_status"] == "unknown",
              "buffer/status network_status is not unknown at start")

        s.erp.mode("accept")
        before = now_usec()
        wait_state(s, "online")
        hb = check_doors_agree(s, "online", "ok")
        check(hb["consecutive_successes"] >= 2 and hb["consecutive_failures"] == 0,
              f"counts when online: {hb}")
        check(busctl_get(s.bus.address, "ConsecutiveFailures") == 0,
              "ConsecutiveFailures is not 0 when online")
        check(busctl_get(s.bus.address, "ConsecutiveSuccesses") >= 2,
              "ConsecutiveSuccesses below 2 when online")
        online_beat = busctl_get(s.bus.address, "LastHeartbeatUSec")
        check(before - 2_000_000 <= online_beat <= now_usec(),
              f"LastHeartbeatUSec={online_beat} is not a CLOCK_REALTIME time of the last seconds")

        s.erp.mode("fail")
        wait_state(s, "offline")
        hb = check_doors_agree(s, "offline", "http 500")
        check(hb["consecutive_failures"] >= 3 and hb["consecutive_successes"] == 0,
              f"counts when offline: {hb}")
        check(busctl_get(s.bus.address, "ConsecutiveSuccesses") == 0,
              "ConsecutiveSuccesses is not 0 offline")
        check(busctl_get(s.bus.address, "ConsecutiveFailures") >= 3, "ConsecutiveFailures below 3 offline")
        check(busctl_get(s.bus.address, "LastHeartbeatUSec") > online_beat, "LastHeartbeatUSec did not move")

        s.erp.mode("accept")
        wait_state(s, "online")
        check_doors_agree(s, "online", "ok")

        # The signals: State only in the changes, in order, each carrying the counts that crossed the
        # threshold; the counters themselves moved beat by beat in between.
        def state_changes():
            return [c for c in changed_properties(s.recorder) if "State" in c]

        changes = wait_until(lambda: len(state_changes()) >= 3 and state_changes(), 5,
                             "three PropertiesChanged with State")
        check([c["State"] for c in changes] == ["online", "offline", "online"],
              f"PropertiesChanged State sequence: {[c['State'] for c in changes]}")
        counts = [(c["ConsecutiveSuccesses"], c["ConsecutiveFailures"]) for c in changes]
        check(counts == [(2, 0), (0, 3), (2, 0)], f"counts carried with the State changes: {changes}")
        check([c["LastHeartbeatResult"] for c in changes] == ["ok", "http 500", "ok"],
              f"results carried with the State changes: {changes}")
        beats = [c for c in changed_properties(s.recorder) if "ConsecutiveFailures" in c]
        failures = [c["ConsecutiveFailures"] for c in beats]
        check(failures[failures.index(3) - 2:failures.index(3) + 1] == [1, 2, 3],
              f"ConsecutiveFailures did not count 1, 2, 3 beat by beat: {failures}")
        times = [c["LastHeartbeatUSec"] for c in beats]
        check(times == sorted(times) and len(set(times)) == len(times),
              "LastHeartbeatUSec in the signals does not increase beat by beat")

        check(network_in_status(d.read_notify()) == ["unknown", "online", "offline", "online"],
              f"STATUS= network sequence: {network_in_status(d.read_notify())}")
        d.stop_clean()


def test_log_has_one_line_per_state_change_not_one_per_beat():
    with Setup() as s:
        wait_state(s, "online")
        s.erp.mode("fail")
        wait_state(s, "offline")
        # About ten failing beats in a row.
        wait_until(lambda: s.get("ConsecutiveFailures") >= 10, 10, "ten failed beats", interval=0.05)
        s.erp.mode("accept")
        wait_state(s, "online")
        s.daemon.stop_clean()
        lines = s.daemon.log_text().splitlines()
        failed = [line for line in lines if "failed" in line]
        offline = [line for line in lines if "heartbeat is offline" in line]
        online = [line for line in lines if "heartbeat is online" in line]
        check(1 <= len(failed) <= 2,
              f"{len(failed)} 'failed' lines for >= 10 failed beats:\n" + "\n".join(failed))
        check(len(offline) == 1, f"{len(offline)} offline lines for one change:\n" + "\n".join(offline))
        check(len(online) == 2, f"{len(online)} online lines for two changes:\n" + "\n".join(online))
        check("http 500" in offline[0], f"the offline line does not say why: {offline[0]}")


ISO8601_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def latest_payload(erp, predicate=lambda p: True, timeout=5):
    return wait_until(lambda: next((b for b in reversed(erp.state()["bodies"]) if predicate(b)), None),
                      timeout, "a heartbeat payload at the fake ERP")


def check_payload(s, payload):
    for key in ("timestamp", "adapter_id", "buffer", "circuit_breaker"):
        check(key in payload, f"the payload has no {key}: {payload}")
    ts = payload["timestamp"]
    check(isinstance(ts, str) and ISO8601_UTC.match(ts), f"timestamp {ts!r} is not ISO 8601 UTC")
    when = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    age = abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds())
    check(age < 30, f"timestamp {ts} is {age:.0f} s away from now")
    check(payload["adapter_id"] == s.get("AdapterId") and payload["adapter_id"],
          f"adapter_id {payload['adapter_id']!r} is not the AdapterId property {s.get('AdapterId')!r}")
    b = payload["buffer"]
    check(isinstance(b, dict) and b.get("capacity") == s.get("Capacity")
          and b.get("pending") == s.get("Pending"), f"buffer status {b} does not match Capacity/Pending")
    check(payload["circuit_breaker"] in (None, "closed", "open", "half-open"),
          f"circuit_breaker {payload['circuit_breaker']!r}")


def test_payload_carries_timestamp_adapter_id_buffer_status_and_circuit_breaker():
    with Setup() as s:
        payload = latest_payload(s.erp)
        check_payload(s, payload)
        derived = payload["adapter_id"]
        check(s.erp.state()["last_content_type"] == "application/json", "payload is not sent as JSON")

        # The buffer status is the current one, not a snapshot from start-up.
        status, _, _ = s.daemon.request("POST", "/v1/kkt/receipt", RECEIPT,
                                        {"Idempotency-Key": "hb-payload-1"})
        check(status == 200, f"POST /v1/kkt/receipt answered {status}")
        payload = latest_payload(s.erp, lambda p: p["buffer"]["pending"] == 1)
        check_payload(s, payload)
        s.daemon.stop_clean()

    # [Adapter] Id= wins over the machine-derived id, on the bus and in the payload alike.
    with Setup("[Adapter]\nId=desk-7-busit\n") as s:
        check(s.get("AdapterId") == "desk-7-busit",
              f"AdapterId is {s.get('AdapterId')!r}, not from [Adapter] Id=")
        payload = latest_payload(s.erp)
        check_payload(s, payload)
        check(payload["adapter_id"] == "desk-7-busit" != derived,
              f"adapter_id {payload['adapter_id']!r} with [Adapter] Id=desk-7-busit (derived: {derived!r})")
        s.daemon.stop_clean()


def test_hanging_erp_delays_neither_http_nor_dbus_and_beats_never_overlap():
    with Setup(erp_mode="hang", timeout="2s") as s:
        started = time.monotonic()
        wait_until(lambda: s.erp.state()["in_flight"] == 1, 5, "a beat hanging at the fake ERP")
        http_times, bus_times = [], []
        for i in range(20):
            t = time.monotonic()
            status, _, body = s.daemon.request("GET", "/v1/kkt/buffer/status", timeout=5)
            http_times.append(time.monotonic() - t)
            check(status == 200 and "network_status" in body, f"buffer/status answered {status}: {body}")
            t = time.monotonic()
            state = s.get("State", timeout=5)
            bus_times.append(time.monotonic() - t)
            check(state in ("unknown", "offline"), f"State {state!r} while the ERP hangs")
            time.sleep(0.05)
        # Still hanging (a beat gives up after 2 s and the next one starts at once, so look twice).
        wait_until(lambda: s.erp.state()["in_flight"] == 1, 1, "a beat still hanging after the answers")
        sys.stderr.write(f"   while the ERP hangs: HTTP max {max(http_times) * 1000:.1f} ms, D-Bus Get max "
                         f"{max(bus_times) * 1000:.1f} ms\n")
        check(max(http_times) < 1.0, f"an HTTP answer took {max(http_times):.3f} s while the ERP hangs")
        check(max(bus_times) < 1.0, f"a D-Bus Get took {max(bus_times):.3f} s while the ERP hangs")

        # Each beat ends by its Timeout=2s before the next starts: three timeouts make it offline.
        wait_state(s, "offline", timeout=15)
        elapsed = time.monotonic() - started
        check(s.get("LastHeartbeatResult") == "timeout",
              f"LastHeartbeatResult {s.get('LastHeartbeatResult')!r}")
        erp = s.erp.state()
        # No beat starts before the previous one gave up after its 2 s Timeout. (The fake's own in_flight
        # count can briefly see two: its thread for the abandoned request may notice the close only after
        # the next beat arrived on a loaded machine; the spacing of the arrivals is what the daemon did.)
        gaps = [b - a for a, b in zip(erp["arrivals"], erp["arrivals"][1:])]
        check(gaps and min(gaps) >= 2.0 - 0.25, f"beats overlapped: arrivals {gaps} s apart with Timeout=2s")
        check(erp["hung"] <= elapsed / 2 + 2, f"{erp['hung']} beats in {elapsed:.1f} s with Timeout=2s")
        s.daemon.stop_clean()


def test_refused_connection_counts_as_failure_and_goes_offline():
    with Setup() as s:
        wait_state(s, "online")
        s.erp.stop()
        wait_state(s, "offline")
        check(s.get("LastHeartbeatResult") == "connection refused",
              f"LastHeartbeatResult {s.get('LastHeartbeatResult')!r} with the ERP stopped")
        check(s.get("ConsecutiveFailures") >= 3 and s.get("ConsecutiveSuccesses") == 0,
              "counts after refused connections")
        _, _, hb = s.daemon.request("GET", "/v1/kkt/heartbeat/status")
        check(hb["state"] == "offline" and hb["last_result"] == "connection refused",
              f"heartbeat/status: {hb}")
        s.daemon.stop_clean()


if __name__ == "__main__":
    for tool in ("dbus-daemon", "busctl"):
        if not shutil.which(tool):
            sys.stderr.write(f"SKIP: {tool} is not installed\n")
            sys.exit(77)
    run_tests([
        test_state_goes_unknown_online_offline_online_through_every_door,
        test_log_has_one_line_per_state_change_not_one_per_beat,
        test_payload_carries_timestamp_adapter_id_buffer_status_and_circuit_breaker,
        test_hanging_erp_delays_neither_http_nor_dbus_and_beats_never_overlap,
        test_refused_connection_counts_as_failure_and_goes_offline,
    ])
