#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The chain's monitoring against the running daemon. GET /metrics is scraped from real daemons in each state
a desk gets into (healthy; buffer 80 % and full; breaker open; offline; the fiscal drive 20 and 2 days from
expiry; a receipt rejected by the register; the print queue stuck; a shift open 23.5 hours; receipts not
acknowledged by the OFD for 2 and 26 days, in the buffer, in the register, and both; a dead letter; the
adapter down). Each exposition must pass `promtool check metrics` and carry the values the state implies.
Those series, fed to `promtool test rules`, must fire exactly the alerts of contrib/prometheus/
kkt-adapter.rules.yml the state calls for, with their annotations, and none in the healthy state.
contrib/grafana/kkt-adapter.json must be a dashboard whose every query parses and names only metrics the
daemon exports. Skipped (77) without promtool: tools/install-deps.sh installs it (Debian's prometheus).
"""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import datetime

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from kkttest import (DOWN, Daemon, FakeOfd, TestFailure, call, check, ini,  # noqa: E402
                     parse_metrics, run_tests, sample_receipt, wait_until)

import yaml  # noqa: E402  (python3-yaml)

SOURCE = os.path.dirname(HERE)
RULES = os.path.join(SOURCE, "contrib", "prometheus", "kkt-adapter.rules.yml")
DASHBOARD = os.path.join(SOURCE, "contrib", "grafana", "kkt-adapter.json")
PROMTOOL = shutil.which("promtool")
INSTANCE = "desk-01:8000"
JOB = "kkt-adapter"

# The one lint finding allowed: the chain's alert rules read this name, days and all.
ALLOWED_LINT = {'kkt_fiscal_memory_days_left use base unit "seconds" instead of "days"'}

STATES = {}   # state name -> exposition text; None: the scrape failed (the adapter is down)

# What each state must fire; every other alert of the rules file must stay silent in it.
EXPECTED = {
    "healthy": set(),
    "buffer-80": {"KktBufferFilling"},
    "buffer-full": {"KktBufferFull", "KktBufferFilling"},
    "breaker-open": {"KktCircuitBreakerOpen"},
    "offline": {"KktOffline"},
    "fn-20-days": {"KktFiscalMemoryExpiresSoon"},
    "fn-2-days": {"KktFiscalMemoryExpiring", "KktFiscalMemoryExpiresSoon"},
    "print-rejected": {"KktPrintRejected"},
    "print-queue-stuck": {"KktPrintQueueStuck"},
    "shift-23.5-hours": {"KktShiftOpenTooLong"},
    "buffer-unsynced-2-days": {"KktReceiptUnsynced24h"},
    "buffer-unsynced-26-days": {"KktReceiptUnsynced24h", "KktReceiptUnsynced25d"},
    "register-unsent-26-days": {"KktReceiptUnsynced24h", "KktReceiptUnsynced25d"},
    "both-unacknowledged-26-days": {"KktReceiptUnsynced24h", "KktReceiptUnsynced25d"},
    "dead-letter": {"KktDeadLetters"},
    "dead-letter-resolved": set(),
    "down": {"KktAdapterDown"},
}


def log(msg):
    sys.stderr.write(f"   {msg}\n")
    sys.stderr.flush()


# ---- producing the states ----------------------------------------------------------------------------------

def config(ofd_url=None, hb_url=None, **sections):
    """A fast register and sync; the OFD and the ERP down unless given; sections override key by key. The
    breaker only opens where a state asks for it."""
    return ini({
        "Heartbeat": {"URL": hb_url or f"http://127.0.0.1:{DOWN}/hb", "Interval": "200ms" if hb_url else "1h"},
        "OFD": {"URL": ofd_url or f"http://127.0.0.1:{DOWN}/", "Timeout": "2s"},
        "Sync": {"Interval": "300ms", "InitialBackoff": "100ms", "MaxBackoff": "1s", "FailureThreshold": "1000"},
        "Device": {"PrintLatencyMin": "0", "PrintLatencyMax": "0"},
        "Bus": {"Address": "none"},
    }, sections)


def post(d, key, expect=200):
    status, _, answer = d.post_receipt(sample_receipt(), key)
    check(status == expect, f"POST {key} answered {status}, expected {expect}: {answer}")
    return answer


def settings(d, **kw):
    return call(d, "POST", "/v1/kkt/debug/device/settings", kw)


def fault(d, name, count=0):
    call(d, "POST", "/v1/kkt/debug/device/fault", {"fault": name, "count": count})


def metric(d, name):
    return d.metrics().get(name)


def wait_metric(d, name, predicate, what, timeout=15):
    return wait_until(lambda: (lambda v: v is not None and predicate(v))(metric(d, name)), timeout, what)


def wait_online(d):
    wait_metric(d, "kkt_heartbeat_state", lambda v: v == 1, "the heartbeat online")


def scrape(d, state):
    status, headers, text = d.request("GET", "/metrics")
    check(status == 200 and headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
          f"{state}: /metrics answered {status} {headers}")
    STATES[state] = text
    return parse_metrics(text)


def age_buffer(d, days):
    """Stopped, the buffer's unacknowledged receipts are made `days` old, as if they had waited that long."""
    d.stop_clean()
    created = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days))
    c = sqlite3.connect(d.db_path, timeout=10)
    try:
        with c:
            n = c.execute("UPDATE receipts SET created_at = ? WHERE status IN ('pending', 'failed')",
                          (created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),)).rowcount
    finally:
        c.close()
    check(n > 0, "no unacknowledged receipt to age")
    d.start()


def collect_states(fake):
    hb = f"{fake.url}/heartbeat"

    with Daemon(config(fake.url, hb), name="mon-ok") as d:
        d.start()
        wait_online(d)
        for i in range(3):
            post(d, f"ok-{i}")
        wait_metric(d, "kkt_receipts_synced_total", lambda v: v == 3, "3 receipts synced")
        m = scrape(d, "healthy")
        check(m["kkt_intake_latency_seconds_count"] == 3 and m['kkt_intake_latency_seconds_bucket{le="+Inf"}'] == 3
              and m["kkt_intake_latency_seconds_sum"] > 0, "intake latency: 3 answers measured")
        check(m["kkt_heartbeat_online"] == 1 and m["kkt_health_state"] == 0 and m["kkt_circuit_breaker_state"] == 0
              and m["kkt_buffer_percent_full"] == 0 and m["kkt_ofd_limit_remaining_seconds"] == 30 * 86400,
              "healthy values")
        check(m['kkt_adapter_build_info{version="%s"}' % call(d, "GET", "/")["version"]] == 1, "build info")
        d.stop_clean()

    with Daemon(config(None, hb, Buffer={"Capacity": "5"}), name="mon-full") as d:
        d.start()
        wait_online(d)
        for i in range(4):
            post(d, f"full-{i}")
        m = scrape(d, "buffer-80")
        check(m["kkt_buffer_percent_full"] == 80 and m["kkt_circuit_breaker_state"] == 0, "80 % full")
        post(d, "full-4")
        m = scrape(d, "buffer-full")
        check(m["kkt_buffer_percent_full"] == 100 and m["kkt_health_state"] == 2, "full")
        post(d, "full-5", expect=503)
        d.stop_clean()

    with Daemon(config(None, hb, Sync={"FailureThreshold": "1", "OpenTimeout": "1h"}), name="mon-cb") as d:
        d.start()
        wait_online(d)
        post(d, "cb-1")
        wait_metric(d, "kkt_circuit_breaker_state", lambda v: v == 2, "the breaker open")
        m = scrape(d, "breaker-open")
        check(m['kkt_circuit_breaker_status{state="open"}'] == 1 and m["kkt_circuit_breaker_opened_total"] == 1,
              "breaker open")
        d.stop_clean()

    with Daemon(config(fake.url, None, Heartbeat={"Interval": "100ms"}), name="mon-off") as d:
        d.start()
        wait_metric(d, "kkt_heartbeat_state", lambda v: v == 2, "the heartbeat offline")
        m = scrape(d, "offline")
        check(m["kkt_heartbeat_online"] == 0 and m["kkt_heartbeat_consecutive_failures"] >= 3, "offline")
        d.stop_clean()

    with Daemon(config(fake.url, hb), name="mon-fn") as d:
        d.start()
        wait_online(d)
        settings(d, fn_days_left=20)
        m = scrape(d, "fn-20-days")
        check(19.9 < m["kkt_fiscal_memory_days_left"] <= 20, f"FN 20 days: {m['kkt_fiscal_memory_days_left']}")
        settings(d, fn_days_left=2)
        m = scrape(d, "fn-2-days")
        check(1.9 < m["kkt_fiscal_memory_days_left"] <= 2, f"FN 2 days: {m['kkt_fiscal_memory_days_left']}")
        d.stop_clean()

    with Daemon(config(fake.url, hb), name="mon-rej") as d:
        d.start()
        wait_online(d)
        fault(d, "rejected", 1)
        check(post(d, "rej-1")["status"] == "print_rejected", "rejected by the register")
        post(d, "rej-2")
        m = scrape(d, "print-rejected")
        check(m["kkt_print_rejected"] == 1 and m["kkt_print_rejections_total"] == 1, "print rejected")
        d.stop_clean()

    with Daemon(config(fake.url, hb, Device={"StuckAfter": "1s"}), name="mon-stuck") as d:
        d.start()
        wait_online(d)
        fault(d, "paper-out")
        post(d, "stuck-1")
        wait_metric(d, "kkt_print_queue_head_wait_seconds", lambda v: v > 1.5, "the head waiting 1.5 s")
        m = scrape(d, "print-queue-stuck")
        check(m["kkt_print_queue_length"] == 1 and m["kkt_print_queue_stuck_after_seconds"] == 1 and
              m["kkt_print_failed_attempts_total"] >= 1, "print queue stuck")
        fault(d, "none")
        d.stop_clean()

    with Daemon(config(fake.url, hb), name="mon-shift") as d:
        d.start()
        wait_online(d)
        post(d, "shift-1")
        settings(d, shift_age_seconds=23 * 3600 + 1800)
        m = scrape(d, "shift-23.5-hours")
        check(m["kkt_shift_open"] == 1 and 23.5 * 3600 <= m["kkt_shift_open_seconds"] < 23.6 * 3600,
              f"shift open {m['kkt_shift_open_seconds']} s")
        d.stop_clean()

    # Receipts the OFD never acknowledged: aged in the buffer across restarts, then in the register too.
    with Daemon(config(None, hb), name="mon-age") as d:
        d.start()
        post(d, "age-1")
        age_buffer(d, 2)
        wait_online(d)
        m = scrape(d, "buffer-unsynced-2-days")
        check(2 * 86400 <= m["kkt_buffer_oldest_unsynced_age_seconds"] < 2 * 86400 + 60 and
              m["kkt_ofd_oldest_unsent_age_seconds"] == 0, "buffer 2 days")
        age_buffer(d, 26)
        wait_online(d)
        m = scrape(d, "buffer-unsynced-26-days")
        check(4 * 86400 - 60 < m["kkt_ofd_limit_remaining_seconds"] <= 4 * 86400, "limit 4 days away")
        settings(d, ofd_online=False)
        post(d, "age-2")
        settings(d, unsent_age_days=26)
        m = scrape(d, "both-unacknowledged-26-days")
        check(m["kkt_ofd_oldest_unsent_age_seconds"] >= 26 * 86400 and
              m["kkt_buffer_oldest_unsynced_age_seconds"] >= 26 * 86400, "both 26 days")
        d.stop_clean()

    with Daemon(config(fake.url, hb), name="mon-unsent") as d:
        d.start()
        wait_online(d)
        settings(d, ofd_online=False)
        post(d, "unsent-1")
        wait_metric(d, "kkt_receipts_synced_total", lambda v: v == 1, "the buffer synced")
        settings(d, unsent_age_days=26)
        m = scrape(d, "register-unsent-26-days")
        check(m["kkt_buffer_oldest_unsynced_age_seconds"] == 0 and m["kkt_ofd_unsent_documents"] >= 1 and
              m["kkt_ofd_oldest_unsent_age_seconds"] >= 26 * 86400, "the register's documents 26 days")
        d.stop_clean()

    fake.mode("status", status=422)
    try:
        with Daemon(config(fake.url, hb), name="mon-dlq") as d:
            d.start()
            wait_online(d)
            post(d, "dlq-1")
            wait_metric(d, "kkt_dlq_size", lambda v: v == 1, "a dead letter")
            m = scrape(d, "dead-letter")
            check(m["kkt_dlq_unresolved"] == 1, f"kkt_dlq_unresolved {m['kkt_dlq_unresolved']}")
            # Resolved by an admin: still in the queue until pruned, no longer an alert.
            rid = d.request("GET", "/v1/kkt/dlq")[2]["dead_letters"][0]["receipt_id"]
            status, _, body = d.request("POST", f"/v1/kkt/dlq/{rid}/resolve", {"note": "sent by hand"})
            check(status == 200, f"resolve: {status} {body}")
            m = scrape(d, "dead-letter-resolved")
            check(m["kkt_dlq_size"] == 1 and m["kkt_dlq_unresolved"] == 0, "a resolved dead letter")
            d.stop_clean()
    finally:
        fake.mode("accept")

    with Daemon(config(fake.url, hb), name="mon-down") as d:
        d.start()
        d.stop_clean()
        try:
            d.request("GET", "/metrics", timeout=5)
            raise TestFailure("a stopped daemon answered /metrics")
        except OSError:
            STATES["down"] = None  # what Prometheus records as up == 0


# ---- the exposition ----------------------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def families(text):
    """{family: type} of an exposition, checking that each family is announced once and its samples follow."""
    types, current, seen = {}, None, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            check(name not in types, f"{name} announced twice")
            current = name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            check(name == current, f"TYPE {name} without its HELP first")
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            check(m is not None, f"not a sample: {line!r}")
            name, labels, value = m.groups()
            float(value)
            base = re.sub(r"_(bucket|sum|count)$", "", name) if types.get(current) == "histogram" else name
            check(base == current, f"{line!r} outside its family {current}")
            check((name, labels) not in seen, f"{name}{labels or ''} twice")
            seen.add((name, labels))
    return types


def check_exposition(state, text):
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    problems = {line.strip() for line in (r.stdout + r.stderr).splitlines() if line.strip()} - ALLOWED_LINT
    check(r.returncode in (0, 3) and not problems, f"{state}: promtool check metrics (rc {r.returncode}): {problems}")
    types = families(text)
    for name, kind in types.items():
        check((kind == "counter") == name.endswith("_total"), f"{state}: {name} is a {kind}")
        if kind == "histogram":
            values = parse_metrics(text)
            buckets = [(float(re.search(r'le="([^"]+)"', k).group(1)), v) for k, v in values.items()
                       if k.startswith(name + "_bucket{")]
            check([v for _, v in sorted(buckets)] == sorted(v for _, v in buckets), f"{name}: not cumulative")
            check(values[name + '_bucket{le="+Inf"}'] == values[name + "_count"], f"{name}: +Inf != count")
    return types


def exported_families():
    names = set()
    for text in STATES.values():
        if text is not None:
            names |= set(families(text))
    return names


def exported_names():
    """Every name a query may use: the families, and the series names of the histograms."""
    names = set()
    for text in STATES.values():
        if text is None:
            continue
        for name, kind in families(text).items():
            names.add(name)
            if kind == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
    return names


# ---- the rules: a little PromQL and the Go templates of the annotations, for the expected alerts ----------

def load_rules():
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    return [r for g in doc["groups"] for r in g["rules"]]


def samples(text):
    """Unlabelled samples of a state plus `up`, as the rule expressions read them."""
    values = {} if text is None else {k: v for k, v in parse_metrics(text).items() if "{" not in k}
    values["up"] = 0.0 if text is None else 1.0
    return values


OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
       ">": lambda a, b: a > b, "<": lambda a, b: a < b}
COMPARISON = re.compile(r'^\s*([a-z_:][a-z0-9_:]*)(\{[^}]*\})?\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$')


def evaluate(expr, values):
    """The value of an alert expression of the forms the rules file uses (`metric OP number-or-metric`, joined
    by `or`), None when it selects nothing."""
    for part in expr.split(" or "):
        m = COMPARISON.match(part)
        check(m is not None, f"rule expression beyond what the test reads: {expr!r}")
        name, _, op, rhs = m.groups()
        if name not in values:
            continue
        if re.fullmatch(r"[a-z_:][a-z0-9_:]*", rhs):
            if rhs not in values:
                continue
            right = values[rhs]
        else:
            check(re.fullmatch(r"[0-9.\s*+-]+", rhs) is not None, f"bad threshold {rhs!r}")
            right = eval(rhs)  # digits and arithmetic only, checked above
        if OPS[op](values[name], right):
            return values[name]
    return None


def go_float(v):
    """fmt's %v of a float64, for the values the states produce."""
    if v == int(v) and abs(v) < 1e21:
        return str(int(v))
    return repr(v)


def humanize_duration(v):
    """Prometheus' humanizeDuration for values of a second or more."""
    check(abs(v) >= 1, f"humanizeDuration({v}) below a second is not expected here")
    sign = "-" if v < 0 else ""
    d = int(abs(v))
    days, hours, minutes, seconds = d // 86400, d // 3600 % 24, d // 60 % 60, d % 60
    if days:
        return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
    if hours:
        return f"{sign}{hours}h {minutes}m {seconds}s"
    if minutes:
        return f"{sign}{minutes}m {seconds}s"
    return f"{sign}{'%.4g' % abs(v)}s"


TEMPLATE = re.compile(r"\{\{(.*?)\}\}")


def expand(template, labels, value):
    def one(m):
        t = m.group(1).strip()
        if t.startswith("$labels."):
            return labels[t[len("$labels."):]]
        if t == "$value":
            return go_float(value)
        if t == "$value | humanizeDuration":
            return humanize_duration(value)
        f = re.fullmatch(r'printf "(%\.\df)" \$value', t)
        if f:
            return f.group(1) % value
        raise TestFailure(f"template {{{{{t}}}}} beyond what the test expands")
    return TEMPLATE.sub(one, template)


def series(text):
    """promtool input series of a scraped state: every sample with the labels a scrape adds, constant for an
    hour (the states hold; ages only grow), and `up`."""
    extra = f'instance="{INSTANCE}",job="{JOB}"'
    out = [{"series": f'up{{{extra}}}', "values": f"{0 if text is None else 1}+0x60"}]
    if text is None:
        return out
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, labels, value = SAMPLE.match(line).groups()
        inner = labels[1:-1] + "," if labels else ""
        out.append({"series": f"{name}{{{inner}{extra}}}", "values": f"{value}+0x60"})
    return out


# ---- the tests ---------------------------------------------------------------------------------------------

def test_rules_file_is_valid_and_each_alert_says_what_to_run():
    r = subprocess.run([PROMTOOL, "check", "rules", RULES], capture_output=True, text=True)
    check(r.returncode == 0, f"promtool check rules:\n{r.stdout}{r.stderr}")
    rules = load_rules()
    names = [r["alert"] for r in rules]
    check(len(names) == len(set(names)), f"alert names twice: {names}")
    check(set(names) == set().union(*EXPECTED.values()), f"alerts without a state that fires them, or states "
          f"naming unknown alerts: {set(names) ^ set().union(*EXPECTED.values())}")
    for r in rules:
        a = r.get("annotations", {})
        check(r.get("labels", {}).get("severity") in ("warning", "critical"), f"{r['alert']}: severity")
        check(a.get("summary") and a.get("description"), f"{r['alert']}: summary and description")
        check(re.search(r"\b(kktctl|systemctl) [a-z]", a.get("runbook", "")), f"{r['alert']}: the runbook line "
              f"names no kktctl or systemctl command: {a.get('runbook')!r}")
    # The chain's own rules, as its deployment has them.
    chain = {(r["expr"], r["for"], r["labels"]["severity"]) for r in rules}
    for rule in (("kkt_buffer_percent_full >= 100", "1m", "critical"),
                 ("kkt_buffer_percent_full >= 80", "5m", "warning"),
                 ("kkt_fiscal_memory_days_left <= 3", "5m", "critical"),
                 ("kkt_circuit_breaker_state == 2", "5m", "warning")):
        check(rule in chain, f"the chain's rule {rule} is not in the rules file")


def test_each_state_is_valid_exposition_with_the_values_the_rules_read():
    fake = FakeOfd().start()
    try:
        collect_states(fake)
    finally:
        fake.stop()
    check(set(STATES) == set(EXPECTED), f"states scraped: {sorted(STATES)}")
    for state, text in STATES.items():
        if text is not None:
            check_exposition(state, text)
    log(f"{len(STATES)} states, {len(exported_families())} metric families")
    # Every metric the rules read is exported (up is Prometheus' own).
    names = exported_names() | {"up"}
    for r in load_rules():
        used = metric_names(r["expr"])
        check(used and used <= names, f"{r['alert']} reads {used - names or 'nothing'}, not exported")


def test_alerts_fire_in_their_state_and_stay_silent_otherwise():
    check(STATES, "no states scraped")
    rules = load_rules()
    tests = []
    for state, text in sorted(STATES.items()):
        values = samples(text)
        checks = []
        for r in rules:
            firing = r["alert"] in EXPECTED[state]
            value = evaluate(r["expr"], values)
            check((value is not None) == firing, f"{state}: {r['alert']} ({r['expr']}) would "
                  f"{'not ' if firing else ''}fire on the scraped values")
            alerts = []
            if firing:
                labels = {"instance": INSTANCE, "job": JOB}
                alerts.append({
                    "exp_labels": dict(labels, **r["labels"]),
                    "exp_annotations": {k: expand(v, labels, value) for k, v in r["annotations"].items()},
                })
            checks.append({"eval_time": "60m", "alertname": r["alert"], "exp_alerts": alerts})
        tests.append({"name": state, "interval": "1m", "input_series": series(text), "alert_rule_test": checks})

    tmp = tempfile.mkdtemp(prefix="kkt-rules-")
    try:
        path = os.path.join(tmp, "kkt-adapter.test.yml")
        with open(path, "w") as f:
            # JSON is YAML.
            json.dump({"rule_files": [RULES], "evaluation_interval": "1m", "tests": tests}, f, indent=1)
        r = subprocess.run([PROMTOOL, "test", "rules", path], capture_output=True, text=True)
        check(r.returncode == 0, f"promtool test rules:\n{r.stdout}{r.stderr}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"promtool test rules: {len(tests)} states x {len(rules)} alerts")


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "or", "and", "unless", "bool",
                "offset", "inf", "nan"}


def queries(dashboard):
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))
    return list(walk(dashboard["panels"]))


def metric_names(expr):
    """The metric names a PromQL expression selects: label matchers, grouping labels, ranges, strings and
    function calls taken out first."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(", "(", e)  # functions and aggregations
    return {w for w in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", e) if w.lower() not in PROMQL_WORDS}


def test_dashboard_queries_parse_and_name_only_exported_metrics():
    check(STATES, "no states scraped")
    with open(DASHBOARD) as f:
        d = json.load(f)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    check(variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus",
          "a Prometheus datasource variable")
    check("kkt_adapter_build_info" in variables["instance"]["definition"] and variables["instance"]["multi"],
          "a desk variable from kkt_adapter_build_info")
    names = exported_names() | {"up"}
    exprs = []
    rows = {}
    row = None
    for p in queries(d):
        if p["type"] == "row":
            row = p["title"]
            rows[row] = []
            continue
        check(p.get("title") and p.get("targets"), f"panel {p.get('id')} without a title or a query")
        check(p["datasource"]["uid"] == "${datasource}", f"{p['title']}: not on the datasource variable")
        for t in p["targets"]:
            used = metric_names(t["expr"])
            check(used and used <= names, f"{p['title']}: {t['expr']} names {used - names or 'no metric'}")
            check('job=~"$job"' in t["expr"], f"{p['title']}: {t['expr']} ignores $job")
            exprs.append(t["expr"])
            rows[row].append((p["title"], t["expr"]))
    fleet = [k for k in rows if k.startswith("Fleet")]
    desk = [k for k in rows if k.startswith("Desk")]
    check(len(fleet) == 1 and len(desk) == 1, f"rows: {list(rows)}")
    check(all('instance=~"$instance"' in e for _, e in rows[desk[0]]), "a desk panel not on $instance")
    check(not any("$instance" in e for _, e in rows[fleet[0]]), "a fleet panel on $instance")
    # What the issue asks the dashboard to show, per desk and per fleet.
    for what in ("kkt_buffer_percent_full", "kkt_receipts_synced_total", "kkt_circuit_breaker_state",
                 "kkt_heartbeat_state", "kkt_fiscal_memory_days_left", "kkt_intake_latency_seconds_bucket"):
        for r in (fleet[0], desk[0]):
            check(any(what in e for _, e in rows[r]), f"{r}: nothing shows {what}")
    check(any("kkt_print_queue" in e for _, e in rows[desk[0]]), "no print queue panel")
    check(any("kkt_print_rejected" in e for _, e in rows[fleet[0]]), "no rejected receipts in the fleet row")

    # PromQL syntax: every query, variables filled in, as a recording rule for promtool.
    tmp = tempfile.mkdtemp(prefix="kkt-dash-")
    try:
        path = os.path.join(tmp, "dashboard.rules.yml")
        filled = [e.replace("$__rate_interval", "5m").replace("$job", "kkt-adapter").replace("$instance", ".*")
                  for e in exprs]
        with open(path, "w") as f:
            json.dump({"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": e}
                                                                  for i, e in enumerate(filled)]}]}, f)
        r = subprocess.run([PROMTOOL, "check", "rules", path], capture_output=True, text=True)
        check(r.returncode == 0, f"dashboard queries do not parse:\n{r.stdout}{r.stderr}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"dashboard: {len(exprs)} queries")


if __name__ == "__main__":
    if PROMTOOL is None:
        sys.stderr.write("promtool not found (Debian package prometheus, tools/install-deps.sh): skipped\n")
        sys.exit(77)
    r = subprocess.run([PROMTOOL, "--version"], capture_output=True, text=True)
    log((r.stdout or r.stderr).splitlines()[0])
    run_tests([
        test_rules_file_is_valid_and_each_alert_says_what_to_run,
        test_each_state_is_valid_exposition_with_the_values_the_rules_read,
        test_alerts_fire_in_their_state_and_stay_silent_otherwise,
        test_dashboard_queries_parse_and_name_only_exported_metrics,
    ])
