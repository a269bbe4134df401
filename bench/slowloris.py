#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Slow and idle clients against a legitimate one: how many the legitimate client tolerates, and its latency.

Starts the real kkt-adapterd (socket activation with a listener of systemd's default backlog, a temporary
state directory, upstreams down, no bus, the emulated register without print latency, answers once durable:
ResponseTimeout=0), then for each attack size of --attacks ("SLOW+IDLE", e.g. 1000+1000):

  - opens SLOW slowloris connections (a request line, then one header line every --interval s, never the end
    of the headers) and IDLE connections (nothing sent), reconnecting each one the server closes, at most
    --rate connections a second, from --sources loopback addresses 127.0.0.2, 127.0.0.3, ... (round robin;
    --sources 0: all from 127.0.0.1, the legitimate client's own address);
  - after --settle s, posts receipts one after another for --seconds s from 127.0.0.1, each on a new
    connection (as a POS that calls curl per receipt), with a 30 s timeout per receipt;
  - reports the legitimate client's p50/p95/p99/max, its failures (anything but a 200, or no answer), and
    what the attackers saw (connections the server closed, how long they lived).

Attack size 0+0 is the baseline. Every phase stops by itself; the whole run is bounded by the sizes and
--seconds. Raises its own RLIMIT_NOFILE soft limit to the hard limit (the swarm needs one fd a connection).
Not a meson test: run it by hand on a quiet machine, e.g.

    bench/slowloris.py --daemon build/src/adapter/kkt-adapterd --attacks 0+0,300+0,1000+1000
"""

import argparse
import http.client
import os
import resource
import socket
import statistics
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def receipt(i):
    rubles = 100 + i % 900
    return ('{"pos_id": "bench-%d", "type": "sale", "items": [{"name": "Lens", "price": %d.50, "quantity": 1, '
            '"total": %d.50, "vat_rate": 22}], "payments": [{"type": "%s", "amount": %d.50}]}'
            % (i % 4, rubles, rubles, "cash" if i % 2 else "card", rubles))


def percentile(values, p):
    s = sorted(values)
    k = max(0, -(-len(s) * p // 100) - 1)
    return s[int(k)]


def post_one(port, i, timeout=30):
    """(status or None, seconds, error text)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", "/v1/kkt/receipt", body=receipt(i).encode(),
                  headers={"Content-Type": "application/json", "Idempotency-Key": f"slow-bench-{i}"})
        r = c.getresponse()
        r.read()
        return r.status, time.monotonic() - t0, ""
    except (OSError, http.client.HTTPException) as e:
        return None, time.monotonic() - t0, f"{type(e).__name__}: {e}"
    finally:
        c.close()


def legit_client(port, start, seconds):
    latencies, failures = [], []
    end = time.monotonic() + seconds
    i = start
    while time.monotonic() < end:
        status, took, err = post_one(port, i)
        if status == 200:
            latencies.append(took)
        else:
            failures.append((i, status, err, round(took, 3)))
        i += 1
    return latencies, failures, i


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ms(v):
    return "-" if v is None else f"{v * 1000:.1f} ms"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--daemon", default=os.path.join(HERE, "..", "build", "src", "adapter", "kkt-adapterd"))
    p.add_argument("--attacks", default="0+0,300+0,400+0,2000+0,0+2000,1000+1000",
                   help="comma-separated SLOW+IDLE sizes")
    p.add_argument("--seconds", type=float, default=20, help="how long the legitimate client posts, per size")
    p.add_argument("--settle", type=float, default=5, help="seconds between starting an attack and measuring")
    p.add_argument("--interval", type=float, default=5, help="seconds between a slow client's header lines")
    p.add_argument("--sources", type=int, default=40,
                   help="loopback source addresses of the attackers; 0: 127.0.0.1, the legitimate client's own")
    p.add_argument("--rate", type=float, default=2000, help="attacker connections opened per second, at most")
    p.add_argument("--http", default="", help="extra [HTTP] lines, e.g. 'MaxConnections=512'")
    a = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    os.environ["KKT_ADAPTERD"] = os.path.abspath(a.daemon)
    from kkttest import Daemon  # noqa: E402
    from slowclients import Swarm  # noqa: E402

    down = closed_port()
    config = (f"[Heartbeat]\nURL=http://127.0.0.1:{down}/hb\nInterval=1h\n[OFD]\nURL=http://127.0.0.1:{down}/\n"
              "[Bus]\nAddress=none\n[Buffer]\nCapacity=10000000\n"
              "[Device]\nPrintLatencyMin=0\nPrintLatencyMax=0\nResponseTimeout=0\n"
              "[HTTP]\n" + a.http.replace("\\n", "\n") + "\n")
    sources = [f"127.0.0.{2 + k}" for k in range(a.sources)] if a.sources else ["127.0.0.1"]
    rows = []
    with Daemon(config, name="kkt-slowbench") as d:
        # As kkt-adapter.socket listens: systemd's default backlog (SOMAXCONN), not kkttest's 128.
        d.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        d.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        d.listener.bind(("127.0.0.1", 0))
        d.listener.listen(socket.SOMAXCONN)
        d.port = d.listener.getsockname()[1]
        d.start()
        n = 0
        for size in a.attacks.split(","):
            slow, idle = (int(x) for x in size.split("+"))
            swarm = Swarm(d.port, slow=slow, idle=idle, sources=sources, interval=a.interval,
                          max_rate=a.rate, lifetime=a.settle + a.seconds + 30)
            with swarm:
                if slow + idle:
                    swarm.wait_connected(min(slow + idle, 256), 30)
                    time.sleep(a.settle)
                before = swarm.snapshot()
                t0 = time.monotonic()
                lat, fails, n = legit_client(d.port, n, a.seconds)
                took = time.monotonic() - t0
                after = swarm.snapshot()
                lifetimes = list(swarm.lifetimes)
                rss = rss_mib(d.proc.pid)
            row = {
                "attack": f"{slow}+{idle}", "posted": len(lat) + len(fails), "failed": len(fails),
                "rate": (len(lat) + len(fails)) / took,
                "p50": percentile(lat, 50) if lat else None, "p95": percentile(lat, 95) if lat else None,
                "p99": percentile(lat, 99) if lat else None, "max": max(lat) if lat else None,
                "attacker_open": after["open_slow"] + after["open_idle"],
                "closed_by_server": after["closed_by_server"] - before["closed_by_server"],
                "median_life": statistics.median(lifetimes) if lifetimes else None,
                "rss": rss,
                "examples": fails[:3],
            }
            rows.append(row)
            life = "-" if row["median_life"] is None else f"{row['median_life']:.1f} s"
            print(f"{row['attack']:>10s}: {row['posted']} posted ({row['rate']:.0f}/s), {row['failed']} failed; "
                  f"p50 {ms(row['p50'])} p95 {ms(row['p95'])} p99 {ms(row['p99'])} max {ms(row['max'])}; "
                  f"attackers connected {row['attacker_open']}, closed by the server "
                  f"{row['closed_by_server']} during the run, median life {life}; daemon RSS {rss:.1f} MiB",
                  flush=True)
            if fails:
                print(f"            e.g. {fails[:3]}", flush=True)
            time.sleep(1)
        d.stop_clean(timeout=60)
    print("\n| slow + idle | receipts | failed | p50 | p95 | p99 | max | attackers closed by the server | daemon RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['attack']} | {r['posted']} | {r['failed']} | {ms(r['p50'])} | {ms(r['p95'])} | {ms(r['p99'])} "
              f"| {ms(r['max'])} | {r['closed_by_server']} | {r['rss']:.1f} MiB |")
    bad = [r for r in rows if r["failed"] or (r["p99"] or 99) > 1.0]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
