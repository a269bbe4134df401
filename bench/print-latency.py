#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The prototype's print target, measured: "print P95 <= 7 s including the register, 50 receipts in a row".

Starts the real kkt-adapterd (as the integration tests do: socket activation, a temporary state directory,
the emulated register with its default 200-500 ms print latency, upstreams down, no bus), then:

  sequential  50 receipts posted one after another, each once the previous one was answered;
  concurrent  50 receipts posted at the same moment by 50 clients. The register prints one document at a
              time, so they queue behind each other: this shows what the queue does to the tail.

End-to-end latency is from sending the POST until the receipt is printed: the answer itself when it says
"printed" (the answer waits for the print up to [Device] ResponseTimeout=, 7 s by default), otherwise the
moment GET /v1/kkt/receipt/{id} first shows it printed (polled every 20 ms). The answer latency is reported
apart. Not a meson test: run it by hand, e.g.

    bench/print-latency.py --daemon build/src/adapter/kkt-adapterd [--count 50] [--latency 200ms:500ms]
"""

import argparse
import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def receipt(i):
    price = 1000 + i  # rubles, so every receipt has its own total
    return ('{"pos_id": "bench-%d", "type": "sale", "items": [{"name": "Lens", "price": %d.50, "quantity": 1, '
            '"total": %d.50, "vat_rate": 22}], "payments": [{"type": "card", "amount": %d.50}]}'
            % (i % 4, price, price, price))


def percentile(values, p):
    """Nearest-rank percentile: the smallest value with at least p % of the values at or below it."""
    s = sorted(values)
    k = max(0, -(-len(s) * p // 100) - 1)
    return s[int(k)]


class Run:
    def __init__(self, daemon, prefix):
        self.d = daemon
        self.prefix = prefix
        self.lock = threading.Lock()
        self.results = {}  # i -> dict(sent, answered, status, rid, printed)

    def post(self, i):
        sent = time.monotonic()
        status, _, answer = self.d.post_receipt(receipt(i), f"{self.prefix}-{i}", timeout=120)
        answered = time.monotonic()
        if status != 200:
            raise RuntimeError(f"POST {i} answered {status}: {answer}")
        r = {"sent": sent, "answered": answered, "status": answer["status"], "rid": answer["receipt_id"],
             "printed": answered if answer["status"] == "printed" else None,
             "fd": answer["fiscal_doc"]["fiscal_document_number"] if answer["fiscal_doc"] else None}
        with self.lock:
            self.results[i] = r

    def wait_printed(self, timeout):
        """Polls GET for every receipt not answered "printed" until it is."""
        deadline = time.monotonic() + timeout
        while True:
            waiting = [r for r in self.results.values() if r["printed"] is None]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(waiting)} receipts not printed within {timeout} s")
            for r in waiting:
                status, _, doc = self.d.request("GET", f"/v1/kkt/receipt/{r['rid']}")
                if status == 200 and doc["print_status"] == "printed":
                    r["printed"] = time.monotonic()
                    r["fd"] = doc["fiscal_doc"]["fiscal_document_number"]
            time.sleep(0.02)

    def report(self, title):
        rs = list(self.results.values())
        answer = [r["answered"] - r["sent"] for r in rs]
        e2e = [r["printed"] - r["sent"] for r in rs]
        statuses = {}
        for r in rs:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        fds = sorted(r["fd"] for r in rs)
        wall = max(r["printed"] for r in rs) - min(r["sent"] for r in rs)
        print(f"{title}: {len(rs)} receipts in {wall:.2f} s; answers {statuses}")
        print("  %-22s p50 %6.3f s   p95 %6.3f s   max %6.3f s"
              % ("end-to-end (printed)", percentile(e2e, 50), percentile(e2e, 95), max(e2e)))
        print("  %-22s p50 %6.3f s   p95 %6.3f s   max %6.3f s"
              % ("answer", percentile(answer, 50), percentile(answer, 95), max(answer)))
        consecutive = fds == list(range(fds[0], fds[0] + len(fds)))
        # The register prints in HLC order: sorted by HLC, the fiscal document numbers rise.
        by_hlc = sorted((self.d.request("GET", f"/v1/kkt/receipt/{r['rid']}")[2]["hlc"], r["fd"]) for r in rs)
        in_order = [fd for _, fd in by_hlc] == fds
        consecutive = consecutive and in_order
        print(f"  fiscal documents {fds[0]}..{fds[-1]}, {'consecutive' if consecutive else 'NOT consecutive'}, "
              f"{'in HLC order' if in_order else 'NOT in HLC order'}")
        p95 = percentile(e2e, 95)
        print(f"  target print P95 <= 7 s: {'met' if p95 <= 7 else 'NOT met'} ({p95:.2f} s)")
        return p95, consecutive


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--daemon", help="kkt-adapterd to run (default: $KKT_ADAPTERD, else the build tree's)")
    ap.add_argument("--count", type=int, default=50, help="receipts per run (default 50)")
    ap.add_argument("--latency", help="MIN:MAX print latency of the emulated register (default: its own, "
                    "200ms:500ms)")
    args = ap.parse_args()
    if not 1 <= args.count <= 200:
        ap.error("--count must be 1..200 (the buffer's default capacity)")

    daemon = args.daemon or os.environ.get("KKT_ADAPTERD") or os.path.join(HERE, "..", "build", "src", "adapter",
                                                                           "kkt-adapterd")
    os.environ["KKT_ADAPTERD"] = os.path.abspath(daemon)
    import kkttest  # noqa: E402 (reads KKT_ADAPTERD when imported)

    down = closed_port()
    config = (f"[Bus]\nAddress=none\n[Heartbeat]\nURL=http://127.0.0.1:{down}/hb\nInterval=1h\n"
              f"[OFD]\nURL=http://127.0.0.1:{down}/\n[Buffer]\nCapacity=1000\n")
    if args.latency:
        lo, _, hi = args.latency.partition(":")
        config += f"[Device]\nPrintLatencyMin={lo}\nPrintLatencyMax={hi or lo}\n"

    ok = True
    with kkttest.Daemon(config, name="kkt-bench-print") as d:
        d.start()
        print(f"kkt-adapterd {kkttest.DAEMON}; register latency "
              f"{args.latency or '200ms:500ms (default)'}; ResponseTimeout 7 s (default)")

        seq = Run(d, "seq")
        for i in range(args.count):
            seq.post(i)
        seq.wait_printed(120)
        p95, consecutive = seq.report(f"sequential ({args.count} one after another)")
        ok = ok and p95 <= 7 and consecutive

        conc = Run(d, "conc")
        threads = [threading.Thread(target=conc.post, args=(i,)) for i in range(args.count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
        if len(conc.results) != args.count:
            raise RuntimeError(f"only {len(conc.results)} of {args.count} concurrent POSTs were answered")
        conc.wait_printed(150)
        _, consecutive = conc.report(f"concurrent ({args.count} at once, queued at one register)")
        ok = ok and consecutive
        d.stop_clean()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
