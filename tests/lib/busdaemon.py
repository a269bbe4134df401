# SPDX-License-Identifier: MIT
"""kkt-adapterd on a private D-Bus, set up the one way the D-Bus tests share: the bus, a recorder of the
daemon's signals started before the daemon (so none is missed), the daemon started with --bus=, and a
connection for calls once the daemon owns its name. Python's standard library only."""

import shutil
import sys
import tempfile

import dbusclient
from kkttest import Daemon, check

NAME = "org.opticserp.KktAdapter1"
PATH = "/org/opticserp/KktAdapter1"
IFACE = "org.opticserp.KktAdapter1"


class DaemonOnBus:
    """config: the daemon's configuration; name: its temporary directory's prefix. bus: None (the default)
    starts a bus of its own, a started dbusclient.PrivateBus is shared (and left running), False means no
    bus at all (no recorder, no connection). record: the match rule of the signal recorder (the default:
    every signal of our object), or None for none. bus_config: the own bus's configuration (see
    dbusclient.PrivateBus), default a session bus that allows everything.
    helpers: what else the test started for it (fake upstreams), stopped after the daemon. start=False
    leaves the daemon to start(). close() undoes everything in reverse order; a with-block left by an
    exception first prints the tail of the daemon's log."""

    def __init__(self, config="", name="kkt-bus", bus=None, record=f"type='signal',path='{PATH}'",
                 bus_config=None, helpers=(), start=True, **daemon_args):
        self.tmp = tempfile.mkdtemp(prefix=f"{name}-")
        self.helpers = list(helpers)
        self.own_bus = bus is None
        self.bus = self.recorder = self.daemon = self.conn = None
        try:
            self.bus = dbusclient.PrivateBus(self.tmp, config=bus_config).start() if self.own_bus else bus
            if self.bus and record:
                self.recorder = dbusclient.SignalRecorder(self.bus.address, record)
            args = [f"--bus={self.bus.address}"] if self.bus else []
            self.daemon = Daemon(config, args=args, name=name, **daemon_args)
            if start:
                self.start()
        except BaseException:
            self.close()
            raise

    @property
    def address(self):
        return self.bus.address

    def start(self):
        """Starts the daemon (again) and waits until it owns its name."""
        self.daemon.start()
        if not self.bus:
            return
        check(dbusclient.wait_for_name(self.bus.address, NAME, timeout=10),
              f"the daemon did not take {NAME} on the bus; log:\n{self.daemon.log_text()}")
        if self.conn is None:
            self.conn = dbusclient.Connection(self.bus.address)

    def call(self, member, sig="", *args, timeout=None):
        return self.conn.call(NAME, PATH, IFACE, member, sig, args, timeout=timeout)

    def get(self, prop, timeout=None):
        return self.conn.get_property(NAME, PATH, IFACE, prop, timeout=timeout)

    def close(self):
        if self.conn:
            self.conn.close()
        if self.daemon:
            self.daemon.cleanup()
        if self.recorder:
            self.recorder.close()
        for helper in reversed(self.helpers):
            helper.stop()
        if self.bus and self.own_bus:
            self.bus.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.daemon:
            sys.stderr.write("---- daemon log (tail) ----\n" + self.daemon.log_text()[-6000:] + "\n")
        self.close()
