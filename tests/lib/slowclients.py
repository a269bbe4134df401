# SPDX-License-Identifier: MIT
"""Slow and idle HTTP clients against one loopback port, for tests/test-http-slowloris.py and
bench/slowloris.py. Python's standard library only.

A Swarm keeps `slow` slowloris connections (a request line, then one header line every `interval` seconds,
never the blank line that ends the headers) and `idle` connections (connected, nothing sent) open against
127.0.0.1:port from one background thread. Their source addresses go round the given loopback addresses
(127.0.0.2, 127.0.0.3, ...: all of 127.0.0.0/8 is local), so that a per-address limit can be kept or
broken on purpose. A connection the server closes is counted and, with `reconnect`, opened again (as a
slowloris tool does), at most `max_rate` connections a second. Everything stops by itself after `lifetime`
seconds or at stop(), whichever comes first.
"""

import collections
import errno
import selectors
import socket
import threading
import time

SLOW, IDLE = "slow", "idle"


class _Conn:
    __slots__ = ("sock", "kind", "source", "connected", "closed", "next_send", "opened", "answered")

    def __init__(self, sock, kind, source, now):
        self.sock, self.kind, self.source = sock, kind, source
        self.connected = False
        self.closed = False
        self.next_send = now
        self.opened = now
        self.answered = False


class Swarm:
    def __init__(self, port, slow=0, idle=0, sources=("127.0.0.2",), interval=5.0, reconnect=True,
                 max_rate=2000.0, lifetime=120.0, host="127.0.0.1"):
        self.port, self.host = port, host
        self.want = {SLOW: slow, IDLE: idle}
        self.sources = list(sources)
        self.interval = interval
        self.reconnect = reconnect
        self.max_rate = max_rate
        self.lifetime = lifetime
        self.lock = threading.Lock()
        self.stats = {"opened": 0, "connected": 0, "closed_by_server": 0, "answered": 0, "connect_failed": 0}
        self.lifetimes = []  # seconds from connect to the server's close, of connections the server closed
        self._open = {SLOW: 0, IDLE: 0}
        self._connected = {SLOW: 0, IDLE: 0}
        self._stop = threading.Event()
        self._thread = None
        self._next_source = 0
        self._due = collections.deque()  # slow connections in the order of their next header line

    # public ------------------------------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True, name="swarm")
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(30)

    def connected(self):
        """Connections established and not yet closed, by kind."""
        with self.lock:
            return dict(self._connected)

    def snapshot(self):
        with self.lock:
            s = dict(self.stats)
            s.update({f"open_{k}": v for k, v in self._connected.items()})
            return s

    def wait_connected(self, n, timeout):
        """Waits until at least n connections are established in total (they may be closed again later)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.stats["connected"] >= n:
                    return True
            time.sleep(0.05)
        return False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # the loop ----------------------------------------------------------------------------------------------
    def _source(self):
        s = self.sources[self._next_source % len(self.sources)]
        self._next_source += 1
        return s

    def _open_one(self, sel, kind, now):
        src = self._source()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setblocking(False)
            s.bind((src, 0))
            err = s.connect_ex((self.host, self.port))
        except OSError:
            s.close()
            with self.lock:
                self.stats["connect_failed"] += 1
            return False
        if err not in (0, errno.EINPROGRESS):
            s.close()
            with self.lock:
                self.stats["connect_failed"] += 1
            return False
        c = _Conn(s, kind, src, now)
        sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ, c)
        with self.lock:
            self.stats["opened"] += 1
            self._open[kind] += 1
        return True

    def _close(self, sel, c, by_server, now):
        c.closed = True
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        with self.lock:
            self._open[c.kind] -= 1
            if c.connected:
                self._connected[c.kind] -= 1
            if by_server:
                self.stats["closed_by_server"] += 1
                if c.connected:
                    self.lifetimes.append(now - c.opened)
            if c.answered:
                self.stats["answered"] += 1

    def _run(self):
        sel = selectors.DefaultSelector()
        end = time.monotonic() + self.lifetime
        budget, budget_t = 0.0, time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= end:
                    break
                # top up, within the connection rate
                budget = min(self.max_rate, budget + (now - budget_t) * self.max_rate)
                budget_t = now
                for kind in (SLOW, IDLE):
                    while budget >= 1 and self._open[kind] < self.want[kind]:
                        if not self.reconnect and self.stats["opened"] >= sum(self.want.values()):
                            break
                        if not self._open_one(sel, kind, now):
                            break
                        budget -= 1
                timeout = 0.05
                for key, events in sel.select(timeout):
                    c = key.data
                    now = time.monotonic()
                    if not c.connected and events & selectors.EVENT_WRITE:
                        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            with self.lock:
                                self.stats["connect_failed"] += 1
                            self._close(sel, c, False, now)
                            continue
                        c.connected = True
                        c.opened = now
                        with self.lock:
                            self.stats["connected"] += 1
                            self._connected[c.kind] += 1
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                        if c.kind == SLOW:
                            self._send(sel, c, b"GET /v1/health HTTP/1.1\r\nHost: kkt\r\n", now)
                            self._due.append(c)
                        continue
                    if events & selectors.EVENT_READ:
                        try:
                            data = c.sock.recv(4096)
                        except OSError:
                            data = b""
                        if data:
                            c.answered = True  # an answer (a 503, a 408) is read and dropped
                            continue
                        self._close(sel, c, True, now)
                # the slow ones' next header line; all wait the same interval, so the queue stays in order
                now = time.monotonic()
                while self._due and (self._due[0].closed or self._due[0].next_send <= now):
                    c = self._due.popleft()
                    if c.closed:
                        continue
                    self._send(sel, c, b"X-Slow: %d\r\n" % int(now * 1000), now)
                    if not c.closed:
                        self._due.append(c)
        finally:
            for key in list(sel.get_map().values()):
                key.data.sock.close()
            sel.close()
            with self.lock:
                self._open = {SLOW: 0, IDLE: 0}
                self._connected = {SLOW: 0, IDLE: 0}

    def _send(self, sel, c, data, now):
        c.next_send = now + self.interval
        try:
            c.sock.send(data)
        except BlockingIOError:
            pass
        except OSError:
            self._close(sel, c, True, now)
