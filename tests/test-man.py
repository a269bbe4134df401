#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The manual pages, the example configuration and the journal catalog say what the code does:
- every man/*.scd renders with scdoc and then with groff/man without a single warning;
- kkt-adapter.conf(5) documents every key of src/adapter/conf.c's table with its default, range and
  environment variable, and nothing that is not in the table; conf/kkt-adapter.conf lists every key with its
  default, and uncommented it loads to exactly the built-in defaults;
- kkt-adapterd(8) documents every command-line option and every environment variable the daemon reads;
- org.opticserp.KktAdapter1(5) matches dbus/org.opticserp.KktAdapter1.xml member for member and names every
  D-Bus error the daemon can return;
- kkt-adapterd(8) METRICS lists every metric family src/adapter/metrics.c renders, with its type, and
  nothing else;
- man/kkt-adapter.catalog has a well-formed entry for every MESSAGE_ID of src/adapter/message-ids.h that the
  daemon logs, and none for an id it defines but never logs (the catalog would explain an event that never
  happens).
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import Skip, TestFailure, check, run_all  # noqa: E402

SOURCE_ROOT = os.environ.get("KKT_SOURCE_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAEMON = os.environ.get("KKT_ADAPTERD")
MAN = os.path.join(SOURCE_ROOT, "man")

UINT64_MAX = 2**64 - 1


def src(*parts):
    return os.path.join(SOURCE_ROOT, *parts)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def run(cmd, stdin=None, env=None):
    return subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=60, env=env)


def need_tool(name):
    path = shutil.which(name)
    if not path:
        raise Skip(f"{name} is not installed (tools/install-deps.sh installs it)")
    return path


# rendering -------------------------------------------------------------------------------------------------

def scd_pages():
    pages = sorted(glob.glob(os.path.join(MAN, "*.scd")))
    check(pages, f"no .scd pages in {MAN}")
    return pages


def scdoc(path):
    need_tool("scdoc")
    r = run(["scdoc"], stdin=read(path))
    check(r.returncode == 0, f"scdoc failed on {os.path.basename(path)}: {r.stderr}")
    check(r.stderr == "", f"scdoc warned on {os.path.basename(path)}: {r.stderr}")
    return r.stdout


_text_cache = {}


def plain_text(page):
    """The page as plain ASCII text, lines long enough that no entry wraps."""
    if page not in _text_cache:
        need_tool("groff")
        with tempfile.NamedTemporaryFile("w", suffix=".roff") as f:
            f.write(scdoc(os.path.join(MAN, page + ".scd")))
            f.flush()
            r = run(["groff", "-man", "-Tascii", "-rLL=400n", "-P-cbou", f.name])
        check(r.returncode == 0 and r.stderr == "", f"groff failed on {page}: {r.stderr}")
        _text_cache[page] = r.stdout
    return _text_cache[page]


def test_pages_render_without_warnings():
    groff = shutil.which("groff")
    man = shutil.which("man")
    if not groff and not man:
        raise Skip("neither groff nor man is installed")
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80", LC_ALL="C.UTF-8")
    for path in scd_pages():
        name = os.path.basename(path)[:-len(".scd")]
        title, section = name.rsplit(".", 1)
        roff = scdoc(path)
        check(re.search(rf'^\.TH "{re.escape(title)}" "{section}"', roff, re.M),
              f"{name}: the title line does not name {title}({section}); first line of the .scd is wrong")
        with tempfile.TemporaryDirectory(prefix="kkt-man-") as tmp:
            out = os.path.join(tmp, name)
            with open(out, "w") as f:
                f.write(roff)
            if groff:
                # As man(1) renders it: through preconv (-k), so the Russian names of the fiscal
                # attributes in kkt-adapter-receipt(7) are characters, not invalid input.
                r = run([groff, "-k", "-Tutf8", "-man", "-ww", "-z", out])
                check(r.returncode == 0 and r.stderr == "", f"groff -ww warns about {name}:\n{r.stderr}")
            if man:
                r = run([man, "--warnings", "-l", out], env=env)
                check(r.returncode == 0 and r.stderr == "", f"man --warnings warns about {name}:\n{r.stderr}")
                check(re.search(r"^NAME$", r.stdout, re.M), f"{name} renders without a NAME section")
            if shutil.which("lexgrog"):
                # What mandb/whatis will read: the NAME section must parse as "name - description".
                r = run(["lexgrog", out])
                check(r.returncode == 0 and f'"{title} - ' in r.stdout,
                      f"lexgrog cannot parse NAME of {name}: {r.stdout}{r.stderr}")


# the configuration table ---------------------------------------------------------------------------------

USEC = {"USEC_PER_MSEC": 1000, "USEC_PER_SEC": 10**6, "USEC_PER_MINUTE": 60 * 10**6,
        "USEC_PER_HOUR": 3600 * 10**6, "USEC_PER_DAY": 86400 * 10**6, "USEC_PER_WEEK": 7 * 86400 * 10**6,
        "USEC_INFINITY": UINT64_MAX, "UINT64_MAX": UINT64_MAX}


def c_value(expr):
    """Evaluates the constant expressions of the table (10 * USEC_PER_MINUTE, 64ULL << 20, ...)."""
    e = expr
    for name, value in USEC.items():
        e = re.sub(rf"\b{name}\b", str(value), e)
    e = re.sub(r"\b(\d+)(?:ULL|UL|LL|U|L)\b", r"\1", e)
    check(re.fullmatch(r"[\d\s*+\-()<>]+", e), f"cannot evaluate {expr!r} from conf.c")
    return eval(e, {"__builtins__": {}})  # only digits and operators, checked above


def config_table():
    """[(section, key, type, default or None, min, max, env)] from conf.c's config_items[]."""
    text = read(src("src", "adapter", "conf.c"))
    m = re.search(r"config_items\[\]\s*=\s*\{(.*?)\n\};", text, re.S)
    check(m, "config_items[] not found in src/adapter/conf.c")
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    items = []
    for e in re.finditer(r'\{\s*"(\w+)",\s*"(\w+)",\s*(CONFIG_\w+),\s*C\(\w+\),\s*(NULL|"[^"]*")\s*,(.*?)\}',
                         body, re.S):
        section, key, ctype, default, rest = e.groups()
        fields = [f.strip() for f in rest.split(",")]
        if fields[0] == "NOLIMIT":
            lo = hi = None
            env = fields[1]
        else:
            lo, hi, env = c_value(fields[0]), c_value(fields[1]), fields[2]
        items.append((section, key, ctype, None if default == "NULL" else default.strip('"'), lo, hi,
                      None if env == "NULL" else env.strip('"')))
    expected = body.count('{ "')
    check(len(items) == expected, f"parsed {len(items)} of {expected} entries of config_items[]")
    return items


TIME_UNITS = {"us": 1, "usec": 1, "ms": 1000, "msec": 1000, "s": 10**6, "sec": 10**6, "min": 60 * 10**6,
              "h": 3600 * 10**6, "d": 86400 * 10**6, "w": 7 * 86400 * 10**6}


def timespan(text):
    if text == "infinity":
        return UINT64_MAX
    total, rest = 0, text
    while rest:
        m = re.match(r"(\d+)\s*([a-z]*)\s*", rest)
        check(m is not None and (m.group(2) == "" or m.group(2) in TIME_UNITS), f"not a time span: {text!r}")
        total += int(m.group(1)) * (TIME_UNITS[m.group(2)] if m.group(2) else 10**6)
        rest = rest[m.end():]
    return total


def size(text):
    m = re.fullmatch(r"(\d+)([KMGT]?)", text)
    check(m, f"not a size: {text!r}")
    return int(m.group(1)) * 1024 ** " KMGT".index(m.group(2) or " ")


def value_of(ctype, text):
    if ctype == "CONFIG_TIMESPAN":
        return timespan(text)
    if ctype == "CONFIG_SIZE":
        return size(text)
    if ctype == "CONFIG_UNSIGNED":
        return int(text)
    return text


def conf_page_entries():
    """{(section, key): entry text} from the rendered kkt-adapter.conf(5)."""
    entries = {}
    section = key = None
    for line in plain_text("kkt-adapter.conf.5").splitlines():
        m = re.fullmatch(r"\[(\w+)\] SECTION", line)
        if m:
            section, key = m.group(1), None
            continue
        if re.match(r"^\S", line):  # any other heading ends the key list
            section = key = None
            continue
        m = re.fullmatch(r" {7}(\w+)=", line)
        if m and section:
            key = m.group(1)
            check((section, key) not in entries, f"[{section}] {key}= is documented twice")
            entries[(section, key)] = ""
            continue
        if section and key:
            entries[(section, key)] += line.strip() + " "
    check(entries, "no [Section] SECTION with Key= entries found in kkt-adapter.conf(5)")
    return entries


def test_conf_page_documents_every_key_with_default_and_range():
    table = config_table()
    entries = conf_page_entries()
    known = {(s, k) for s, k, *_ in table}
    for extra in sorted(set(entries) - known):
        raise TestFailure(f"kkt-adapter.conf(5) documents [{extra[0]}] {extra[1]}=, "
                          "which conf.c does not have")
    for section, key, ctype, default, lo, hi, env in table:
        what = f"[{section}] {key}="
        check((section, key) in entries, f"{what} is in conf.c but not in kkt-adapter.conf(5)")
        text = entries[(section, key)]
        m = re.search(r"Default: (\S+?)\.(?:\s|$)", text)
        check(m, f"{what}: no 'Default: ...' in its entry: {text}")
        if default is None:
            check(m.group(1) == "unset", f"{what}: conf.c has no default, the page says {m.group(1)}")
        else:
            check(value_of(ctype, m.group(1)) == value_of(ctype, default),
                  f"{what}: the page says the default is {m.group(1)}, conf.c says {default}")
        if ctype == "CONFIG_STRING":
            m = re.search(r"Length: (\d+) to (\d+) characters\.", text)
            check(m and (int(m.group(1)), int(m.group(2))) == (lo, hi),
                  f"{what}: conf.c allows {lo} to {hi} characters, the page says {m and m.group(0)}")
        elif lo is None:
            check("Range:" not in text, f"{what}: conf.c sets no range, the page states one: {text}")
        else:
            m = re.search(r"Range: (\S+) to (\S+?)\.(?:\s|$)", text)
            check(m, f"{what}: conf.c limits it to {lo}..{hi}, the page states no 'Range: A to B.'")
            got = (value_of(ctype, m.group(1)), value_of(ctype, m.group(2)))
            check(got == (lo, hi),
                  f"{what}: the page says {m.group(1)} to {m.group(2)} = {got}, conf.c {lo}..{hi}")
        if env:
            check(re.search(rf"Environment: {env} overrides it", text),
                  f"{what}: the page does not say that {env} overrides it")


def example_config():
    """{(section, key): value} of the commented-out keys in conf/kkt-adapter.conf."""
    found, section = {}, None
    for line in read(src("conf", "kkt-adapter.conf")).splitlines():
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            section = m.group(1)
            continue
        m = re.fullmatch(r"#(\w+)=(.*)", line)
        if m:
            check(section, f"#{m.group(1)}= before any section in conf/kkt-adapter.conf")
            check((section, m.group(1)) not in found, f"[{section}] {m.group(1)}= listed twice")
            found[(section, m.group(1))] = m.group(2)
            continue
        check(not line or line.startswith("# ") or line == "#",
              f"conf/kkt-adapter.conf: an uncommented setting or odd line: {line!r}")
    return found


def test_example_config_lists_every_key_with_its_default():
    table = config_table()
    example = example_config()
    check(set(example) == {(s, k) for s, k, *_ in table},
          f"conf/kkt-adapter.conf and conf.c differ: only in the file "
          f"{sorted(set(example) - {(s, k) for s, k, *_ in table})}, only in conf.c "
          f"{sorted({(s, k) for s, k, *_ in table} - set(example))}")
    for section, key, _, default, *_ in table:
        check(example[(section, key)] == (default or ""),
              f"conf/kkt-adapter.conf: #{key}={example[(section, key)]} in [{section}], "
              f"conf.c says {default!r}")


def test_example_config_uncommented_loads_to_the_defaults():
    if not DAEMON:
        raise Skip("KKT_ADAPTERD is not set")
    with tempfile.TemporaryDirectory(prefix="kkt-conf-") as tmp:
        full = os.path.join(tmp, "full.conf")
        empty = os.path.join(tmp, "empty.conf")
        with open(full, "w") as f:
            f.write(re.sub(r"^#(\w+=)", r"\1", read(src("conf", "kkt-adapter.conf")), flags=re.M))
        open(empty, "w").close()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STATE_DIRECTORY": tmp}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        dumps = []
        for path in (full, empty):
            r = run([DAEMON, f"--config={path}", "--dump-config"], env=env)
            check(r.returncode == 0, f"kkt-adapterd --config={os.path.basename(path)} --dump-config failed:\n"
                  f"{r.stderr}")
            dumps.append(r.stdout)
        check(dumps[0] == dumps[1], "the example with every key uncommented is not the built-in defaults:\n"
              + "".join(f"  example {a!r} vs default {b!r}\n"
                        for a, b in zip(dumps[0].splitlines(), dumps[1].splitlines()) if a != b))


# the daemon's page -----------------------------------------------------------------------------------------

def long_options(c_file):
    text = read(c_file)
    m = re.search(r"struct option options\[\]\s*=\s*\{(.*?)\};", text, re.S)
    check(m, f"no options[] table in {c_file}")
    return re.findall(r'\{\s*"([\w-]+)",', m.group(1))


def section_text(page, heading):
    text = plain_text(page)
    m = re.search(rf"^{heading}\n(.*?)(?=^\S|\Z)", text, re.M | re.S)
    check(m, f"{page} has no {heading} section")
    return m.group(1)


def test_daemon_page_documents_every_option():
    options = section_text("kkt-adapterd.8", "OPTIONS")
    for name in long_options(src("src", "adapter", "main.c")):
        check(re.search(rf"--{re.escape(name)}\b", options), f"kkt-adapterd(8) OPTIONS lacks --{name}")


def test_kktctl_page_documents_every_option():
    sources = glob.glob(src("src", "kktctl", "*.c"))
    tables = [f for f in sources if re.search(r"struct option options\[\]", read(f))]
    if not tables:
        raise Skip("src/kktctl has no options table yet")
    options = section_text("kktctl.1", "OPTIONS") + section_text("kktctl.1", "COMMANDS")
    for f in tables:
        for name in long_options(f):
            check(re.search(rf"--{re.escape(name)}\b", options), f"kktctl(1) lacks --{name}")


def test_daemon_page_documents_every_environment_variable():
    environment = section_text("kkt-adapterd.8", "ENVIRONMENT")
    names = set()
    for f in glob.glob(src("src", "*", "*.c")):
        if os.sep + "kktctl" + os.sep in f:
            continue
        names |= set(re.findall(r'getenv\("(\w+)"\)', read(f)))
    names |= {env for *_, env in config_table() if env}
    # What sd-daemon reads on our behalf.
    names |= {"NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}
    for name in sorted(names):
        check(re.search(rf"\b{name}\b", environment), f"kkt-adapterd(8) ENVIRONMENT lacks {name}")


def rendered_metric_families():
    """{name: type} of the families src/adapter/metrics.c writes: family(f, NAME, TYPE, ...), and the
    helpers that name their type (gauge_u64, gauge_seconds: gauges; counter; histogram)."""
    text = read(src("src", "adapter", "metrics.c"))
    families = dict(re.findall(r'\bfamily\(\s*f,\s*"(kkt_\w+)",\s*"(\w+)"', text))
    for helper, kind in (("gauge_u64", "gauge"), ("gauge_seconds", "gauge"), ("counter", "counter"),
                         ("histogram", "histogram")):
        families.update({n: kind for n in re.findall(rf'\b{helper}\(\s*f,\s*"(kkt_\w+)"', text)})
    check(len(families) > 30, f"found only {len(families)} metric families in src/adapter/metrics.c")
    return families


def test_daemon_page_lists_every_metric_with_its_type():
    metrics = section_text("kkt-adapterd.8", "METRICS")
    families = rendered_metric_families()
    documented = {}
    for names, kind in re.findall(r"^ {7}(kkt_\S.*?) \((gauge|counter|histogram)s?\)$", metrics, re.M):
        for name in re.findall(r"(kkt_\w+)", names):
            documented[name] = kind
    for name, kind in sorted(families.items()):
        check(name in documented, f"kkt-adapterd(8) METRICS lacks {name}")
        check(documented[name] == kind, f"kkt-adapterd(8) METRICS says {name} is a {documented[name]}, "
              f"metrics.c renders a {kind}")
    stray = set(documented) - set(families)
    check(not stray, f"kkt-adapterd(8) METRICS lists metrics the daemon does not export: {sorted(stray)}")


# the D-Bus page --------------------------------------------------------------------------------------------

def interface_block():
    text = plain_text("org.opticserp.KktAdapter1.5")
    m = re.search(r"node /org/opticserp/KktAdapter1 \{(.*?)\n\s*\};\s*\n\s*\};", text, re.S)
    check(m, "org.opticserp.KktAdapter1(5) has no node { interface { ... }; }; block")
    block = " ".join(m.group(1).split())
    parts = re.split(r"\b(methods|signals|properties):", block)
    got = {"methods": {}, "signals": {}, "properties": {}}
    for kind, body in zip(parts[1::2], parts[2::2]):
        if kind == "properties":
            for p in re.finditer(r"(@org\.freedesktop\.DBus\.Property\.EmitsChangedSignal\(\"(\w+)\"\) )?"
                                 r"(readonly|readwrite) (\S+) (\w+) =", body):
                got[kind][p.group(5)] = (p.group(4), p.group(3), p.group(2) or "true")
        else:
            for mm in re.finditer(r"(\w+)\(([^)]*)\);", body):
                args = [tuple(a.split()) for a in mm.group(2).split(",") if a.strip()]
                got[kind][mm.group(1)] = args
    return got


def test_dbus_page_matches_the_introspection_xml():
    xml_path = src("dbus", "org.opticserp.KktAdapter1.xml")
    if not os.path.exists(xml_path):
        raise Skip("dbus/org.opticserp.KktAdapter1.xml does not exist yet")
    iface = ET.parse(xml_path).getroot().find("interface[@name='org.opticserp.KktAdapter1']")
    check(iface is not None, "the XML has no interface org.opticserp.KktAdapter1")
    want = {"methods": {}, "signals": {}, "properties": {}}
    for m in iface.findall("method"):
        want["methods"][m.get("name")] = [(a.get("direction", "in"), a.get("type"), a.get("name"))
                                          for a in m.findall("arg")]
    for s in iface.findall("signal"):
        want["signals"][s.get("name")] = [(a.get("type"), a.get("name")) for a in s.findall("arg")]
    for p in iface.findall("property"):
        emits = "true"
        for a in p.findall("annotation"):
            if a.get("name") == "org.freedesktop.DBus.Property.EmitsChangedSignal":
                emits = a.get("value")
        access = {"read": "readonly", "readwrite": "readwrite"}.get(p.get("access"), p.get("access"))
        want["properties"][p.get("name")] = (p.get("type"), access, emits)
    got = interface_block()
    for kind in want:
        check(list(got[kind]) == list(want[kind]),
              f"{kind} differ (names or order): the page has {list(got[kind])}, the XML {list(want[kind])}")
        for name, sig in want[kind].items():
            check(got[kind][name] == sig,
                  f"{kind[:-1]} {name}: the page says {got[kind][name]}, the XML {sig}")
    text = plain_text("org.opticserp.KktAdapter1.5")
    for kind in want:
        for name in want[kind]:
            check(len(re.findall(rf"\b{name}\b", text)) >= 2, f"{name} is listed but never described")


def test_dbus_page_names_every_error_the_daemon_returns():
    names = {"InvalidReceipt", "BufferFull", "NotFound", "Conflict", "KeyMismatch", "AccessDenied",
             "NotSupported", "DiskFull", "Unavailable"}
    for f in glob.glob(src("src", "*", "*.[ch]")):
        text = read(f)
        names |= set(re.findall(r'"org\.opticserp\.KktAdapter1\.Error\.(\w+)"', text))
        # intake.c maps its errors to the last part of the name.
        m = re.search(r"intake_error_to_bus_error\(IntakeError e\) \{(.*?)\n\}", text, re.S)
        if m:
            names |= set(re.findall(r'"(\w+)"', m.group(1)))
    errors = section_text("org.opticserp.KktAdapter1.5", "ERRORS")
    for name in sorted(names):
        check(re.search(rf"^ {{7}}org\.opticserp\.KktAdapter1\.Error\.{name}$", errors, re.M),
              f"org.opticserp.KktAdapter1(5) ERRORS lacks org.opticserp.KktAdapter1.Error.{name}")


# the journal catalog ---------------------------------------------------------------------------------------

def message_ids():
    text = read(src("src", "adapter", "message-ids.h"))
    ids = dict(re.findall(r'#define\s+(MESSAGE_ID_\w+)\s+"([0-9a-fA-F]+)"', text))
    check(ids, "no MESSAGE_ID_ defines in src/adapter/message-ids.h")
    for name, value in ids.items():
        check(re.fullmatch(r"[0-9a-f]{32}", value), f"{name}={value} is not 32 lowercase hex digits")
    check(len(set(ids.values())) == len(ids), "two MESSAGE_IDs share a value")
    return ids


def emitted_message_ids():
    """The MESSAGE_IDs the daemon logs: those whose name a source file of src/adapter uses."""
    ids = message_ids()
    used = set()
    for f in glob.glob(src("src", "adapter", "*.[ch]")):
        if os.path.basename(f) == "message-ids.h":
            continue
        used |= set(re.findall(r"\b(MESSAGE_ID_\w+)\b", read(f)))
    return {name: value for name, value in ids.items() if name in used}


REQUIRED_HEADERS = ("Subject", "Defined-By", "Support")


def parse_catalog(path):
    """Validates the file as systemd's catalog parser reads it and returns {id: {header: value, "": body}}.
    An entry starts with "-- <32 hex> [lang]" at the top or after an empty line (elsewhere systemd takes
    such a line as text of the previous entry); '#' lines are comments; before the first entry there may be
    only comments and empty lines. Our own rules on top: lowercase ids, the headers Subject:, Defined-By:
    kkt-adapter and Support:, then an empty line, then a body."""
    entries, current, previous_empty = {}, None, True
    for n, line in enumerate(read(path).splitlines(), 1):
        where = f"{os.path.basename(path)}:{n}"
        if line.startswith("#"):
            continue
        if line.startswith("--"):
            m = re.fullmatch(r"-- ([0-9a-f]{32})(?: ([a-z]{2}(?:_[A-Z]{2})?))?", line)
            check(m, f"{where}: not an entry line '-- <32 lowercase hex digits> [language]': {line!r}")
            check(previous_empty, f"{where}: an entry must follow an empty line, or systemd reads it as text")
            check(m.group(1) not in entries, f"{where}: {m.group(1)} has a second entry")
            current = entries[m.group(1)] = {"": "", "_state": "headers"}
            previous_empty = False
            continue
        check(current is not None or not line.strip(), f"{where}: text before the first entry: {line!r}")
        if current is None:
            continue
        if current["_state"] == "headers":
            if not line.strip():
                current["_state"] = "body"
            else:
                m = re.fullmatch(r"([A-Z][A-Za-z-]*): (\S.*)", line)
                check(m, f"{where}: not a 'Header: value' line: {line!r}")
                current[m.group(1)] = m.group(2)
        else:
            current[""] += line + "\n"
        previous_empty = not line.strip()
    for mid, e in entries.items():
        for h in REQUIRED_HEADERS:
            check(h in e, f"catalog entry {mid} has no {h}: header")
        check(e["Defined-By"] == "kkt-adapter", f"catalog entry {mid}: Defined-By: {e['Defined-By']}")
        check(e[""].strip(), f"catalog entry {mid} has no text")
        check(not re.search(r"@\w+@", e[""] + e["Subject"]),
              f"catalog entry {mid} uses @FIELD@ substitutions: the daemon does not promise those fields")
    return entries


def test_catalog_has_a_valid_entry_for_every_message_id():
    ids = message_ids()
    emitted = emitted_message_ids()
    entries = parse_catalog(os.path.join(MAN, "kkt-adapter.catalog"))
    for name, value in sorted(emitted.items()):
        check(value in entries, f"{name} ({value}) has no entry in man/kkt-adapter.catalog")
    for name in sorted(set(ids) - set(emitted)):
        sys.stderr.write(f"note: {name} is defined in message-ids.h but never logged\n")
        check(ids[name] not in entries,
              f"{name} ({ids[name]}) has a catalog entry, but no source logs it: the entry explains an "
              "event that never happens")
    stray = set(entries) - set(ids.values())
    check(not stray, f"catalog entries for ids not in message-ids.h: {sorted(stray)}")


def test_catalog_parser_rejects_broken_files():
    """The validator above must catch what systemd would misread."""
    good = read(os.path.join(MAN, "kkt-adapter.catalog"))
    first = re.search(r"^-- ([0-9a-f]{32})$", good, re.M).group(1)
    broken = {
        "uppercase id": good.replace(f"-- {first}", f"-- {first.upper()}", 1),
        "short id": good.replace(f"-- {first}", f"-- {first[:-1]}", 1),
        "no Subject": re.sub(r"^Subject: .*\n", "", good, count=1, flags=re.M),
        # The second entry: before the first, comments keep systemd's "after an empty line" state.
        "no empty line before an entry": re.sub(r"(\n-- [0-9a-f]{32}\n.*?\n)\n(-- [0-9a-f]{32}\n)", r"\1\2",
                                                good, count=1, flags=re.S),
        "duplicate entry": good + f"\n-- {first}\nSubject: x\nDefined-By: kkt-adapter\nSupport: x\n\ny\n",
    }
    with tempfile.TemporaryDirectory(prefix="kkt-catalog-") as tmp:
        for what, text in broken.items():
            check(text != good, f"the '{what}' mutation did not change the file")
            path = os.path.join(tmp, "broken.catalog")
            with open(path, "w") as f:
                f.write(text)
            try:
                parse_catalog(path)
            except TestFailure:
                continue
            raise TestFailure(f"the catalog validator accepted a file with {what}")


def test_journalctl_indexes_the_catalog_in_a_private_root():
    """systemd's own parser, confined to a temporary --root: nothing is written outside it."""
    tool = need_tool("journalctl")
    ids = emitted_message_ids()
    with tempfile.TemporaryDirectory(prefix="kkt-catalog-") as root:
        catdir = os.path.join(root, "usr", "lib", "systemd", "catalog")
        os.makedirs(catdir)
        shutil.copy(os.path.join(MAN, "kkt-adapter.catalog"), catdir)
        r = run([tool, f"--root={root}", "--update-catalog"])
        check(r.returncode == 0 and r.stderr == "", f"journalctl --update-catalog: {r.stderr}")
        check(os.path.exists(os.path.join(root, "var", "lib", "systemd", "catalog", "database")),
              "journalctl --update-catalog did not write into the private root")
        r = run([tool, f"--root={root}", "--list-catalog"])
        check(r.returncode == 0, f"journalctl --list-catalog: {r.stderr}")
        listed = dict(re.findall(r"^([0-9a-f]{32}) (.*)$", r.stdout, re.M))
        for name, value in ids.items():
            check(listed.get(value, "").startswith("kkt-adapter: "),
                  f"journalctl does not list {name} ({value}) as kkt-adapter's: {listed.get(value)!r}")


TESTS = [
    test_pages_render_without_warnings,
    test_conf_page_documents_every_key_with_default_and_range,
    test_example_config_lists_every_key_with_its_default,
    test_example_config_uncommented_loads_to_the_defaults,
    test_daemon_page_documents_every_option,
    test_kktctl_page_documents_every_option,
    test_daemon_page_documents_every_environment_variable,
    test_daemon_page_lists_every_metric_with_its_type,
    test_dbus_page_matches_the_introspection_xml,
    test_dbus_page_names_every_error_the_daemon_returns,
    test_catalog_has_a_valid_entry_for_every_message_id,
    test_catalog_parser_rejects_broken_files,
    test_journalctl_indexes_the_catalog_in_a_private_root,
]


def main():
    run_all(TESTS)


main()
