# SPDX-License-Identifier: MIT
"""A small D-Bus client speaking the wire protocol over a unix socket, Python's standard library only, so the
tests run on a bare Debian machine without python3-dbus or GLib.

What it covers: EXTERNAL authentication, Hello, method calls with their replies and errors, answering calls
(a stand-in service), AddMatch and signals, and marshalling of every D-Bus type except unix fds: basic
types, strings, object paths, signatures, variants (given and returned as (signature, value) pairs), arrays
(lists; a{..} as dicts) and structs (tuples). Both byte orders are read; little-endian is written.

One Connection belongs to one thread. Messages that arrive while a call waits for its reply (signals,
calls to a service) are queued and returned by receive() afterwards, so nothing is lost.
"""

import collections
import os
import select
import socket
import struct
import subprocess
import threading
import time

METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_REPLY_EXPECTED = 0x1
(F_PATH, F_INTERFACE, F_MEMBER, F_ERROR_NAME, F_REPLY_SERIAL, F_DESTINATION, F_SENDER,
 F_SIGNATURE) = range(1, 9)
FIELD_TYPES = {F_PATH: "o", F_INTERFACE: "s", F_MEMBER: "s", F_ERROR_NAME: "s", F_REPLY_SERIAL: "u",
               F_DESTINATION: "s", F_SENDER: "s", F_SIGNATURE: "g"}

BUS_NAME = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"
PROPERTIES = "org.freedesktop.DBus.Properties"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"

# type code -> (alignment, struct format); strings, containers and variants are handled apart
FIXED = {"y": (1, "B"), "b": (4, "I"), "n": (2, "h"), "q": (2, "H"), "i": (4, "i"), "u": (4, "I"),
         "x": (8, "q"), "t": (8, "Q"), "d": (8, "d"), "h": (4, "I")}
ALIGN = {"s": 4, "o": 4, "g": 1, "v": 1, "a": 4, "(": 8, "{": 8}


class DBusError(Exception):
    """An error reply: name is the D-Bus error name."""

    def __init__(self, name, message=""):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class ConnectionClosed(Exception):
    pass


def alignment(sig):
    return FIXED[sig[0]][0] if sig[0] in FIXED else ALIGN[sig[0]]


def complete_type_end(sig, i):
    """The index just past the single complete type starting at sig[i]."""
    c = sig[i]
    if c == "a":
        return complete_type_end(sig, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        j = i + 1
        while sig[j] != close:
            j = complete_type_end(sig, j)
        return j + 1
    if c in FIXED or c in "sogv":
        return i + 1
    raise ValueError(f"bad signature {sig!r} at {i}")


def split_signature(sig):
    out, i = [], 0
    while i < len(sig):
        j = complete_type_end(sig, i)
        out.append(sig[i:j])
        i = j
    return out


class Writer:
    def __init__(self):
        self.b = bytearray()

    def align(self, n):
        self.b += b"\0" * (-len(self.b) % n)

    def fixed(self, code, v):
        a, fmt = FIXED[code]
        self.align(a)
        self.b += struct.pack("<" + fmt, int(bool(v)) if code == "b" else v)

    def value(self, sig, v):
        c = sig[0]
        if c in FIXED:
            self.fixed(c, v)
        elif c in "so":
            data = v.encode()
            self.fixed("u", len(data))
            self.b += data + b"\0"
        elif c == "g":
            data = v.encode()
            self.b += bytes([len(data)]) + data + b"\0"
        elif c == "v":
            inner, val = v
            self.value("g", inner)
            self.value(inner, val)
        elif c == "a":
            elem = sig[1:]
            self.fixed("u", 0)
            len_pos = len(self.b) - 4
            self.align(alignment(elem))
            start = len(self.b)
            items = v.items() if elem[0] == "{" else v
            for item in items:
                self.value(elem, item)
            struct.pack_into("<I", self.b, len_pos, len(self.b) - start)
        elif c in "({":
            self.align(8)
            for s, item in zip(split_signature(sig[1:-1]), v):
                self.value(s, item)
        else:
            raise ValueError(f"cannot write {sig!r}")


class Reader:
    def __init__(self, data, pos=0, endian="<"):
        self.d, self.p, self.e = data, pos, endian

    def align(self, n):
        self.p += -self.p % n

    def fixed(self, code):
        a, fmt = FIXED[code]
        self.align(a)
        v = struct.unpack_from(self.e + fmt, self.d, self.p)[0]
        self.p += struct.calcsize(fmt)
        return bool(v) if code == "b" else v

    def value(self, sig):
        c = sig[0]
        if c in FIXED:
            return self.fixed(c)
        if c in "so":
            n = self.fixed("u")
            s = self.d[self.p:self.p + n].decode()
            self.p += n + 1
            return s
        if c == "g":
            n = self.d[self.p]
            s = self.d[self.p + 1:self.p + 1 + n].decode()
            self.p += n + 2
            return s
        if c == "v":
            inner = self.value("g")
            return inner, self.value(inner)
        if c == "a":
            elem = sig[1:]
            n = self.fixed("u")
            self.align(alignment(elem))
            end = self.p + n
            items = []
            while self.p < end:
                items.append(self.value(elem))
            return dict(items) if elem[0] == "{" else items
        if c in "({":
            self.align(8)
            return tuple(self.value(s) for s in split_signature(sig[1:-1]))
        raise ValueError(f"cannot read {sig!r}")

    def values(self, sig):
        return [self.value(s) for s in split_signature(sig)]


class Message:
    def __init__(self, msg_type, flags, serial, fields, signature, body):
        self.type, self.flags, self.serial = msg_type, flags, serial
        self.fields, self.signature, self.body = fields, signature, body

    path = property(lambda self: self.fields.get(F_PATH))
    interface = property(lambda self: self.fields.get(F_INTERFACE))
    member = property(lambda self: self.fields.get(F_MEMBER))
    error_name = property(lambda self: self.fields.get(F_ERROR_NAME))
    reply_serial = property(lambda self: self.fields.get(F_REPLY_SERIAL))
    sender = property(lambda self: self.fields.get(F_SENDER))
    destination = property(lambda self: self.fields.get(F_DESTINATION))

    def __repr__(self):
        kind = {METHOD_CALL: "call", METHOD_RETURN: "return", ERROR: "error",
                SIGNAL: "signal"}.get(self.type)
        return (f"<{kind} {self.interface}.{self.member} path={self.path} error={self.error_name} "
                f"sig={self.signature!r} body={self.body!r}>")


def marshal(msg_type, serial, fields, body_sig="", body=(), flags=0):
    """fields: {code: value}; body: the values of body_sig's complete types, as a list."""
    bw = Writer()
    for sig, v in zip(split_signature(body_sig), body):
        bw.value(sig, v)
    if body_sig:
        fields = {**fields, F_SIGNATURE: body_sig}

    h = Writer()
    h.b += b"l" + bytes([msg_type, flags, 1])
    h.fixed("u", len(bw.b))
    h.fixed("u", serial)
    h.value("a(yv)", [(code, (FIELD_TYPES[code], v)) for code, v in fields.items()])
    h.align(8)
    return bytes(h.b + bw.b)


def address_to_path(address):
    """The socket of a unix:path= (or unix:abstract=) address, or the path itself."""
    if not address.startswith("unix:"):
        return address
    for part in address[5:].split(","):
        k, _, v = part.partition("=")
        if k == "path":
            return v
        if k == "abstract":
            return "\0" + v
    raise ValueError(f"unsupported D-Bus address {address!r}")


class Connection:
    """A client connection to a bus: EXTERNAL auth as the effective uid, then Hello."""

    def __init__(self, address, timeout=10):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address_to_path(address))
        self.buf = b""
        self.serial = 0
        self.queue = collections.deque()
        self.replies = {}
        self.sock.sendall(b"\0AUTH EXTERNAL " + str(os.geteuid()).encode().hex().encode() + b"\r\n")
        line = self._line()
        if not line.startswith(b"OK "):
            raise ConnectionClosed(f"authentication failed: {line!r}")
        self.sock.sendall(b"BEGIN\r\n")
        self.unique_name = self.call(BUS_NAME, BUS_PATH, BUS_NAME, "Hello")[0]

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _recv_more(self, deadline):
        """Reads what is there; False when the deadline passed first. Raises ConnectionClosed at EOF."""
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        ready, _, _ = select.select([self.sock], [], [], left)
        if not ready:
            return False
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise ConnectionClosed(str(e))
        if not chunk:
            raise ConnectionClosed("the bus closed the connection")
        self.buf += chunk
        return True

    def _line(self):
        deadline = time.monotonic() + self.timeout
        while b"\r\n" not in self.buf:
            if not self._recv_more(deadline):
                raise ConnectionClosed("no answer during authentication")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _parse_one(self):
        """One complete message from the buffer, or None when more bytes are needed."""
        if len(self.buf) < 16:
            return None
        endian = {b"l": "<", b"B": ">"}[self.buf[0:1]]
        msg_type, flags = self.buf[1], self.buf[2]
        body_len, serial, fields_len = struct.unpack_from(endian + "III", self.buf, 4)
        header_len = 16 + fields_len + (-(16 + fields_len) % 8)
        if len(self.buf) < header_len + body_len:
            return None
        data, self.buf = self.buf[:header_len + body_len], self.buf[header_len + body_len:]
        fields = {code: v for code, (_, v) in Reader(data, 12, endian).value("a(yv)")}
        sig = fields.get(F_SIGNATURE, "")
        body = Reader(data, header_len, endian).values(sig) if sig else []
        return Message(msg_type, flags, serial, fields, sig, body)

    def _read_message(self, deadline):
        while True:
            m = self._parse_one()
            if m is not None:
                return m
            if not self._recv_more(deadline):
                return None

    def receive(self, timeout=None):
        """The next message not consumed by a call; None when timeout (seconds; None: wait) passes first."""
        if self.queue:
            return self.queue.popleft()
        return self._read_message(None if timeout is None else time.monotonic() + timeout)

    def next_serial(self):
        self.serial += 1
        return self.serial

    def send(self, data):
        self.sock.sendall(data)

    def send_call(self, dest, path, iface, member, sig="", args=()):
        """Sends a method call without waiting; returns its serial for wait_reply()."""
        serial = self.next_serial()
        fields = {F_PATH: path, F_MEMBER: member}
        if iface:
            fields[F_INTERFACE] = iface
        if dest:
            fields[F_DESTINATION] = dest
        self.send(marshal(METHOD_CALL, serial, fields, sig, list(args)))
        return serial

    def wait_reply(self, serial, timeout=None):
        """The reply's values as a list; raises DBusError for an error reply. Replies to other calls sent
        with send_call() are kept for their own wait_reply()."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while serial not in self.replies:
            m = self._read_message(deadline)
            if m is None:
                raise DBusError("org.freedesktop.DBus.Error.Timeout", "no reply (test client)")
            if m.type in (METHOD_RETURN, ERROR):
                self.replies[m.reply_serial] = m
            else:
                self.queue.append(m)
        m = self.replies.pop(serial)
        if m.type == ERROR:
            raise DBusError(m.error_name, m.body[0] if m.body and isinstance(m.body[0], str) else "")
        return m.body

    def call(self, dest, path, iface, member, sig="", args=(), timeout=None):
        """Returns the reply's values as a list; raises DBusError for an error reply."""
        return self.wait_reply(self.send_call(dest, path, iface, member, sig, args), timeout)

    def reply(self, call, sig="", body=()):
        self.send(marshal(METHOD_RETURN, self.next_serial(), {F_REPLY_SERIAL: call.serial,
                                                               F_DESTINATION: call.sender}, sig, list(body)))

    def reply_error(self, call, name, message):
        self.send(marshal(ERROR, self.next_serial(), {F_REPLY_SERIAL: call.serial,
                                                      F_DESTINATION: call.sender, F_ERROR_NAME: name},
                          "s", [message]))

    # conveniences ------------------------------------------------------------------------------------------
    def add_match(self, rule):
        self.call(BUS_NAME, BUS_PATH, BUS_NAME, "AddMatch", "s", [rule])

    def request_name(self, name, flags=0):
        return self.call(BUS_NAME, BUS_PATH, BUS_NAME, "RequestName", "su", [name, flags])[0]

    def name_owner(self, name):
        """The unique name owning name, or None."""
        try:
            return self.call(BUS_NAME, BUS_PATH, BUS_NAME, "GetNameOwner", "s", [name])[0]
        except DBusError as e:
            if e.name == "org.freedesktop.DBus.Error.NameHasNoOwner":
                return None
            raise

    def get_property(self, dest, path, iface, name, timeout=None):
        """The property's value, unwrapped from its variant."""
        return self.call(dest, path, PROPERTIES, "Get", "ss", [iface, name], timeout=timeout)[0][1]

    def get_all(self, dest, path, iface):
        return {k: v for k, (_, v) in self.call(dest, path, PROPERTIES, "GetAll", "s", [iface])[0].items()}

    def introspect(self, dest, path):
        return self.call(dest, path, INTROSPECTABLE, "Introspect")[0]


class SignalRecorder:
    """Records, on a connection and thread of its own, every signal matching rule, stamped on arrival with
    time.monotonic(). Stops quietly when the bus goes away."""

    def __init__(self, address, rule):
        self.conn = Connection(address)
        self.conn.add_match(rule)
        self.lock = threading.Lock()
        self.signals = []  # (monotonic seconds, Message)
        self.closing = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.closing:
            try:
                m = self.conn.receive(timeout=0.1)
            except (ConnectionClosed, OSError):
                return
            if m is not None and m.type == SIGNAL:
                with self.lock:
                    self.signals.append((time.monotonic(), m))

    def taken(self):
        with self.lock:
            return list(self.signals)

    def wait_for(self, predicate, timeout):
        """The first recorded signal for which predicate(message) holds, waiting up to timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for _, m in self.taken():
                if predicate(m):
                    return m
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def close(self):
        self.closing = True
        self.thread.join(timeout=5)
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PrivateBus:
    """A dbus-daemon of the session type (its policy allows everything) on a socket in directory, started
    and stopped by the test. config: the text of a configuration file of its own instead, in which {path}
    stands for the socket's path (its <listen>)."""

    def __init__(self, directory, name="bus", config=None):
        self.socket_path = os.path.join(directory, name)
        self.address = f"unix:path={self.socket_path}"
        self.log_path = os.path.join(directory, name + ".log")
        self.config_path = None
        if config is not None:
            self.config_path = os.path.join(directory, name + ".conf")
            with open(self.config_path, "w") as f:
                f.write(config.format(path=self.socket_path))
        self.proc = None

    def start(self, timeout=10):
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self.log = open(self.log_path, "a")
        how = ([f"--config-file={self.config_path}"] if self.config_path
               else ["--session", f"--address={self.address}"])
        self.proc = subprocess.Popen(["dbus-daemon", *how, "--nofork", "--print-address=1"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("unix:"):
            self.stop()
            raise ConnectionClosed(f"dbus-daemon did not start: {line!r}")
        return self

    def kill(self):
        """Gone at once, as a crashed bus would be; start() brings it back on the same address."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
        self._reap()

    def _reap(self):
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
        self.proc = None

    def log_text(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def wait_for_name(address, name, timeout=10):
    """The unique name of name's owner once it has one; None if it still has none after timeout seconds.
    Reconnects as needed, so it also works while the bus itself is (re)starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with Connection(address, timeout=max(1, min(5, deadline - time.monotonic()))) as c:
                while True:
                    owner = c.name_owner(name)
                    if owner or time.monotonic() > deadline:
                        return owner
                    time.sleep(0.02)
        except (OSError, ConnectionClosed):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
