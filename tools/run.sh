#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs kkt-adapterd for real on the embedded defaults, the way its units would: the HTTP socket is bound by
# systemd-socket-activate on 127.0.0.1 and passed in, the daemon owns its name on a private D-Bus, keeps
# its state in .run/state, and talks to local stand-ins for the OFD and the ERP. Ctrl-C stops everything.
# The register is the emulator; KKT_DRIVER=atol-web drives a stand-in for ATOL's web server
# (tests/fake-atol.py) through the real atol-web driver instead.
# The banner comes only once every process answers; one run per run directory (a lock in it).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

port=${KKT_PORT:-8000}
upstream_port=${KKT_UPSTREAM_PORT:-9000}
run=${KKT_RUN_DIR:-$top/.run}
build=${KKT_BUILD_DIR:-$top/build}
driver=${KKT_DRIVER:-emulator}
case "$driver" in
        emulator|atol-web) ;;
        *) echo "KKT_DRIVER=$driver: use emulator or atol-web" >&2; exit 2 ;;
esac

fail() {
        echo "tools/run.sh: $*" >&2
        exit 1
}

# The last lines of a log, after a failure that it explains.
show_log() {
        if [ -s "$1" ]; then
                echo "---- $1 ----" >&2
                tail -n 20 "$1" >&2
                echo "----" >&2
        fi
}

# One run per run directory: a second one would take over the first's bus socket and configuration. The lock
# is held by this script and inherited by what it starts, so it stays taken while any of them lives.
mkdir -p "$run"
exec 9>>"$run/lock"
if ! flock -n 9; then
        other=$(cat "$run/run.pid" 2>/dev/null || true)
        if [ -n "$other" ] && kill -0 "$other" 2>/dev/null; then
                fail "another run is live in $run (tools/run.sh, pid $other): stop it with Ctrl-C in its" \
                     "terminal or 'kill $other', or give this one another KKT_RUN_DIR= (and KKT_PORT=," \
                     "KKT_UPSTREAM_PORT=)."
        fi
        fail "processes of an earlier run still hold $run/lock (see 'fuser -v $run/lock'): stop them, or" \
             "give this run another KKT_RUN_DIR=."
fi
echo $$ >"$run/run.pid"

# KKT_SKIP_BUILD=1: use what $KKT_BUILD_DIR holds (the test suite runs this script on its own build).
# -Dtests=true: the emulator's debug hooks (README, "Test builds") belong to a development run.
if [ "${KKT_SKIP_BUILD:-0}" != 1 ]; then
        "$top/tools/install-deps.sh"
        if [ ! -f "$build/build.ninja" ]; then
                meson setup "$build" -Dtests=true >/dev/null
        elif ! meson introspect "$build" --buildoptions |
                /usr/bin/python3 -c 'import json, sys
sys.exit(0 if any(o["name"] == "tests" and o["value"] for o in json.load(sys.stdin)) else 1)'; then
                meson configure "$build" -Dtests=true >/dev/null
        fi
        meson compile -C "$build" >/dev/null
fi

mkdir -p "$run/state"
# The administrative HTTP paths need the admin token: a random one, passed as the systemd credential would be.
mkdir -p -m 0700 "$run/credentials"
if [ ! -s "$run/credentials/admin-token" ]; then
        (umask 077; od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$run/credentials/admin-token")
fi
bus_address="unix:path=$run/bus"
rm -f "$run/bus"

cat >"$run/kkt-adapter.conf" <<CONF
# Written by tools/run.sh: the defaults, with the OFD and the ERP pointed at the local stand-in.
[OFD]
URL=http://127.0.0.1:$upstream_port

[Heartbeat]
URL=http://127.0.0.1:$upstream_port/api/v1/kkt/heartbeat
# Shorter than the 30 s default, so the state goes online within seconds.
Interval=5s

[Sync]
# Shorter than the 10 s default, so a receipt reaches the OFD stand-in within seconds.
Interval=2s
CONF

pids=()
cleanup() {
        trap - EXIT INT TERM
        for pid in "${pids[@]}"; do
                kill "$pid" 2>/dev/null || true
        done
        wait 2>/dev/null || true
        rm -f "$run/run.pid"
}
trap cleanup EXIT INT TERM

alive() {
        kill -0 "$1" 2>/dev/null
}

# Does anything answer HTTP at $1? Any status will do: the question is whether it listens.
answers() {
        [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true)" != 000 ]
}

dbus-daemon --session --address="$bus_address" --nofork --nopidfile 2>"$run/dbus.log" &
bus_pid=$!
pids+=($bus_pid)

# The stand-in exits when its stdin closes, i.e. when this script goes away.
coproc UPSTREAM { exec /usr/bin/python3 "$top/tests/fake-upstream.py" --port "$upstream_port" 2>"$run/upstream.log"; }
upstream_pid=$UPSTREAM_PID
pids+=("$upstream_pid")

if [ "$driver" = atol-web ]; then
        # ATOL's web server stands in as tests/fake-atol.py with its fiscal memory in the run directory; it too
        # exits when its stdin (a FIFO this script holds open on fd 7) closes.
        rm -f "$run/atol.in" "$run/atol.out"
        mkfifo "$run/atol.in"
        /usr/bin/python3 "$top/tests/fake-atol.py" --port 0 --state "$run/state/fake-atol.json" --exit-on-eof \
                <"$run/atol.in" >"$run/atol.out" 2>"$run/atol.log" &
        pids+=($!)
        exec 7>"$run/atol.in"
        atol_pid=$!
        atol_port=
        for _ in $(seq 100); do
                atol_port=$(sed -n 's/^PORT=//p' "$run/atol.out" 2>/dev/null | head -1)
                [ -n "$atol_port" ] && break
                alive "$atol_pid" || break
                sleep 0.1
        done
        if [ -z "$atol_port" ] || ! answers "http://127.0.0.1:$atol_port/"; then
                show_log "$run/atol.log"
                fail "the ATOL web server stand-in (tests/fake-atol.py) did not start; its log is above."
        fi
        cat >>"$run/kkt-adapter.conf" <<CONF

[Device]
# The atol-web driver, against the stand-in for ATOL's web server.
Driver=atol-web
URL=http://127.0.0.1:$atol_port
CONF
fi

# Each stand-in alive and answering before the daemon is pointed at it; a dead one is reported with its log.
for _ in $(seq 100); do
        [ -S "$run/bus" ] && break
        alive "$bus_pid" || break
        sleep 0.1
done
if ! [ -S "$run/bus" ] || ! alive "$bus_pid"; then
        show_log "$run/dbus.log"
        fail "the private dbus-daemon did not start on $bus_address; its log is above."
fi
for _ in $(seq 100); do
        curl -sf -m 2 "http://127.0.0.1:$upstream_port/_control/state" >/dev/null && break
        alive "$upstream_pid" || break
        sleep 0.1
done
if ! alive "$upstream_pid" || ! curl -sf -m 2 "http://127.0.0.1:$upstream_port/_control/state" >/dev/null; then
        show_log "$run/upstream.log"
        fail "the OFD and ERP stand-in (tests/fake-upstream.py) did not start on 127.0.0.1:$upstream_port;" \
             "its log is above."
fi

systemd-socket-activate -l "127.0.0.1:$port" --fdname=http \
        -E STATE_DIRECTORY="$run/state" -E CREDENTIALS_DIRECTORY="$run/credentials" -E PATH="$PATH" \
        "$build/src/adapter/kkt-adapterd" --config="$run/kkt-adapter.conf" --bus="$bus_address" &
daemon=$!
pids+=($daemon)

# The daemon is up when it answers HTTP and owns its name on the bus.
owns_name() {
        busctl --address="$bus_address" call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                NameHasOwner s org.opticserp.KktAdapter1 2>/dev/null | grep -q true
}
for _ in $(seq 200); do
        alive "$daemon" || break
        answers "http://127.0.0.1:$port/v1/health" && owns_name && break
        sleep 0.1
done
if ! alive "$daemon"; then
        status=0
        wait "$daemon" || status=$?
        fail "kkt-adapterd exited (status $status) before it was ready; its messages are above."
fi
answers "http://127.0.0.1:$port/v1/health" || fail "kkt-adapterd does not answer on 127.0.0.1:$port."
owns_name || fail "kkt-adapterd does not own org.opticserp.KktAdapter1 on $bus_address."
still_alive() {
        alive "$1" && return 0
        show_log "$3"
        fail "$2 exited while kkt-adapterd started; its log is above."
}
still_alive "$bus_pid" "the private dbus-daemon" "$run/dbus.log"
still_alive "$upstream_pid" "the OFD and ERP stand-in" "$run/upstream.log"
if [ "$driver" = atol-web ]; then
        still_alive "$atol_pid" "the ATOL web server stand-in" "$run/atol.log"
fi

kktctl="$build/src/kktctl/kktctl"
cat <<BANNER

kkt-adapterd is running (pid $daemon): HTTP on 127.0.0.1:$port, D-Bus $bus_address,
state in $run/state, OFD and ERP stand-in on 127.0.0.1:$upstream_port,
register: $driver${atol_port:+ (ATOL web server stand-in on 127.0.0.1:$atol_port)}.

Post a receipt:
  curl -s -X POST http://127.0.0.1:$port/v1/kkt/receipt -H 'Idempotency-Key: demo-1' \\
       -H 'Content-Type: application/json' -d '{"pos_id":"POS-1","type":"sale",
       "items":[{"name":"Frame","price":1500.00,"quantity":1,"total":1500.00,"vat":"vat22"}],
       "payments":[{"type":"card","amount":1500.00}]}'
It answers "printed" with the fiscal document from the register; within seconds the receipt is
synced to the OFD stand-in (status "synced"):
  curl -s http://127.0.0.1:$port/v1/kkt/receipt/RECEIPT_ID
Look around:
  curl -s http://127.0.0.1:$port/v1/kkt/buffer/status
  curl -s http://127.0.0.1:$port/v1/kkt/worker/status
  curl -s http://127.0.0.1:$port/v1/kkt/device/status
  curl -s http://127.0.0.1:$port/v1/kkt/heartbeat/status
  curl -s http://127.0.0.1:$port/v1/health
  curl -s http://127.0.0.1:$port/metrics
Administrative paths need the admin token ($run/credentials/admin-token):
  curl -s -X POST -H "Authorization: Bearer \$(cat $run/credentials/admin-token)" \\
       http://127.0.0.1:$port/v1/kkt/buffer/sync
The fiscal day (X report, Z report closing the shift):
  curl -s -X POST http://127.0.0.1:$port/v1/kkt/report/x
  curl -s -X POST http://127.0.0.1:$port/v1/kkt/report/z
  busctl --address=$bus_address introspect org.opticserp.KktAdapter1 /org/opticserp/KktAdapter1
  busctl --address=$bus_address get-property org.opticserp.KktAdapter1 /org/opticserp/KktAdapter1 \\
         org.opticserp.KktAdapter1 State
BANNER
if [ -x "$kktctl" ]; then
        cat <<BANNER
  $kktctl --address=$bus_address status
  $kktctl --address=$bus_address device
  $kktctl --address=$bus_address report x
  $kktctl --address=$bus_address shift close
  $kktctl --address=$bus_address monitor
  $kktctl --address=$bus_address submit - < receipt.json
BANNER
fi
echo
echo "Logs follow; Ctrl-C stops the daemon and the stand-ins."
echo

wait "$daemon"
