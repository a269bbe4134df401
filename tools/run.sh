#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs kkt-adapterd for real on the embedded defaults, the way its units would: the HTTP socket is bound by
# systemd-socket-activate on 127.0.0.1 and passed in, the daemon owns its name on a private D-Bus, keeps
# its state in .run/state, and talks to local stand-ins for the OFD and the ERP. Ctrl-C stops everything.
# The register is the emulator; KKT_DRIVER=atol-web drives a stand-in for ATOL's web server
# (tests/fake-atol.py) through the real atol-web driver instead.
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

# KKT_SKIP_BUILD=1: use what $KKT_BUILD_DIR holds (the test suite runs this script on its own build).
if [ "${KKT_SKIP_BUILD:-0}" != 1 ]; then
        "$top/tools/install-deps.sh"
        if [ ! -f "$build/build.ninja" ]; then
                meson setup "$build" >/dev/null
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
}
trap cleanup EXIT INT TERM

dbus-daemon --session --address="$bus_address" --nofork --nopidfile &
pids+=($!)

# The stand-in exits when its stdin closes, i.e. when this script goes away.
coproc UPSTREAM { exec /usr/bin/python3 "$top/tests/fake-upstream.py" --port "$upstream_port" 2>"$run/upstream.log"; }
pids+=("$UPSTREAM_PID")

if [ "$driver" = atol-web ]; then
        # ATOL's web server stands in as tests/fake-atol.py with its fiscal memory in the run directory; it too
        # exits when its stdin (a FIFO this script holds open on fd 7) closes.
        rm -f "$run/atol.in" "$run/atol.out"
        mkfifo "$run/atol.in"
        /usr/bin/python3 "$top/tests/fake-atol.py" --port 0 --state "$run/state/fake-atol.json" --exit-on-eof \
                <"$run/atol.in" >"$run/atol.out" 2>"$run/atol.log" &
        pids+=($!)
        exec 7>"$run/atol.in"
        atol_port=
        for _ in $(seq 100); do
                atol_port=$(sed -n 's/^PORT=//p' "$run/atol.out" 2>/dev/null | head -1)
                [ -n "$atol_port" ] && break
                sleep 0.1
        done
        if [ -z "$atol_port" ]; then
                echo "The ATOL web server stand-in did not start; see $run/atol.log" >&2
                exit 1
        fi
        cat >>"$run/kkt-adapter.conf" <<CONF

[Device]
# The atol-web driver, against the stand-in for ATOL's web server.
Driver=atol-web
URL=http://127.0.0.1:$atol_port
CONF
fi

for _ in $(seq 50); do
        [ -S "$run/bus" ] && curl -sf "http://127.0.0.1:$upstream_port/_control/state" >/dev/null && break
        sleep 0.1
done

systemd-socket-activate -l "127.0.0.1:$port" --fdname=http \
        -E STATE_DIRECTORY="$run/state" -E CREDENTIALS_DIRECTORY="$run/credentials" -E PATH="$PATH" \
        "$build/src/adapter/kkt-adapterd" --config="$run/kkt-adapter.conf" --bus="$bus_address" &
daemon=$!
pids+=($daemon)

for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null && break
        sleep 0.1
done

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
