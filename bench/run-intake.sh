#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The intake benchmark (issue 3): POST /v1/kkt/receipt against the real kkt-adapterd, with a fresh
# Idempotency-Key per request, at 1, 16 and 64 connections; once with the durability as shipped
# (synchronous=FULL) and once with KKT_ADAPTER_DEBUG_SYNCHRONOUS=off (the ceiling); plus the raw
# write-4K-and-fdatasync rate of the state directory's disk. Prints a table and checks the targets.
#
#   bench/run-intake.sh [BUILD_DIR]        (default: build)
#
# Environment: DURATION (seconds per point, default 10), WARMUP (default 1), CONNECTIONS (default
# "1 16 64"), WRK_THREADS (default 1), FSYNC_COUNT (default 2000), COMMIT_BYTES (what one single-receipt
# commit writes to the WAL, default 20600: 5 frames of 24 + 4096 bytes), STORE_COUNT (receipts per run of
# the store-only benchmark, default 20000; 0 skips it), FSYNC_PAUSE_US (idle time before each fdatasync() of
# the reference for the one-connection target, default 200: see below), KKT_ADAPTERD (the binary), BENCH_TMPDIR (where the
# state directories go, default TMPDIR or /tmp: it is that disk that is measured), DAEMON_CPUS and
# CLIENT_CPUS (taskset lists; by default, with two or more CPUs, the daemon and the disk measurements get
# the last CPU and wrk the others, so the load generator does not compete with what it measures;
# PIN=0 runs everything unpinned).
#
# Needs wrk (LuaJIT scripting), curl, a C compiler and python3. The daemon must be built with the debug
# hooks (meson -Dtests=true; the default is false) for the ceiling; without them the ceiling runs are skipped.
# Not a test: meson test never runs it. Everything is bounded: each point takes WARMUP + DURATION seconds.

set -eu -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build=${1:-$root/build}
daemon=${KKT_ADAPTERD:-$build/src/adapter/kkt-adapterd}
duration=${DURATION:-10}
warmup=${WARMUP:-1}
connections=${CONNECTIONS:-1 16 64}
wrk_threads=${WRK_THREADS:-1}
fsync_count=${FSYNC_COUNT:-2000}
commit_bytes=${COMMIT_BYTES:-20600}
fsync_pause_us=${FSYNC_PAUSE_US:-200}
ncpus=$(nproc)
if [ "${PIN:-1}" = 1 ] && [ "$ncpus" -ge 2 ]; then
        daemon_cpus=${DAEMON_CPUS:-$((ncpus - 1))}
        client_cpus=${CLIENT_CPUS:-0-$((ncpus - 2))}
        on_daemon_cpus=(taskset -c "$daemon_cpus")
        on_client_cpus=(taskset -c "$client_cpus")
else
        daemon_cpus=all client_cpus=all on_daemon_cpus=() on_client_cpus=()
fi
store_count=${STORE_COUNT:-20000}
tmpbase=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}

for tool in wrk curl python3 taskset "${CC:-cc}"; do
        command -v "$tool" >/dev/null || { echo "run-intake: $tool is missing" >&2; exit 1; }
done
if [ ! -x "$daemon" ]; then
        echo "run-intake: no daemon at $daemon (build first, or set KKT_ADAPTERD)" >&2
        exit 1
fi

work=$(mktemp -d "$tmpbase/kkt-bench.XXXXXX")
daemon_pid=

# SIGTERM, up to 10 s for a clean stop, then SIGKILL: only ever the daemon this script started.
stop_daemon() {
        [ -n "$daemon_pid" ] || return 0
        kill "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 100); do
                kill -0 "$daemon_pid" 2>/dev/null || break
                sleep 0.1
        done
        kill -KILL "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
        daemon_pid=
}

cleanup() {
        stop_daemon
        rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- the machine ----

echo "== machine"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "kernel:  $(uname -r)"
echo "cpus:    $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
echo "memory:  $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
fs_source=$(findmnt -n -o SOURCE --target "$work" || echo '?')
echo "disk:    $(findmnt -n -o SOURCE,FSTYPE,OPTIONS --target "$work" || echo '?')"
if [ -b "$fs_source" ]; then
        dev=$(basename "$fs_source")
        echo "device:  $dev rotational=$(cat /sys/block/"$dev"/queue/rotational 2>/dev/null || echo '?')" \
             "scheduler=$(cat /sys/block/"$dev"/queue/scheduler 2>/dev/null || echo '?')"
fi
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min; other work on the machine skews everything)"
echo "daemon:  $daemon"
echo "wrk:     $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), $wrk_threads thread(s)"
# The CPU that takes most of the disk's interrupts: the daemon's fdatasync() returns a little sooner there.
disk_irq_cpu=$(awk 'NR == 1 {n = NF} /virtio.*-req|nvme|ahci/ {for (i = 2; i <= n + 1; i++) c[i - 2] += $i}
                    END {best = -1; for (k in c) if (best < 0 || c[k] > c[best]) best = k; print best < 0 ? "?" : best}' \
               /proc/interrupts)
echo "cpus:    daemon and disk measurements on $daemon_cpus, wrk on $client_cpus; disk interrupts on $disk_irq_cpu"
echo

# ---- the disk's raw fdatasync rate ----

"${CC:-cc}" -O2 -o "$work/fsync-rate" "$here/fsync-rate.c"
echo "== fdatasync (write + fdatasync, $fsync_count times, in $tmpbase)"
fsync_line=$("${on_daemon_cpus[@]}" "$work/fsync-rate" "$work" "$fsync_count")
echo "$fsync_line"
"${on_daemon_cpus[@]}" "$work/fsync-rate" "$work" "$((fsync_count / 2))" append
commit_line=$("${on_daemon_cpus[@]}" "$work/fsync-rate" "$work" "$((fsync_count / 2))" overwrite "$commit_bytes")
echo "$commit_line   (the size of one single-receipt commit)"
commit_fsync_p50=$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$commit_line")
echo

# ---- the store alone: the writer's own ceiling, without HTTP ----

lib=$build/src/adapter/libkktcore.a
if [ "$store_count" -gt 0 ] && [ -f "$lib" ] && [ -f "$build/config.h" ]; then
        # shellcheck disable=SC2046
        "${CC:-cc}" -O2 -D_GNU_SOURCE -include "$build/config.h" -I"$root/src/shared" -I"$root/src/adapter" \
                -o "$work/store-bench" "$here/store-bench.c" "$lib" \
                $(pkg-config --cflags --libs libsystemd json-c sqlite3 libcrypto libcurl libmicrohttpd \
                  inih) \
                -lpthread -lm
        echo "== the store alone ($store_count receipts per run, submitted directly, IN_FLIGHT at a time)"
        for mode in full off; do
                for n in 1 64; do
                        dir=$(mktemp -d "$work/store-$mode-$n.XXXXXX")
                        "${on_daemon_cpus[@]}" "$work/store-bench" "$dir/buffer.db" "$store_count" "$n" "$mode"
                        rm -rf "$dir"
                done
        done
        echo
fi

# ---- the daemon under load ----

# One point: a fresh state directory and daemon, a warm-up, the measured run. Leaves wrk's BENCH line,
# extended, in $point (or a SKIP line). Not run in a subshell, so that the EXIT trap knows the daemon.
run_point() {
        local mode=$1 conns=$2 port closed dir env_hook=() line metrics tx jobs
        point=
        port=$(free_port)
        closed=$(free_port) # nobody listens there: the OFD and the ERP stay out of the measurement
        dir=$(mktemp -d "$work/state-$mode-$conns.XXXXXX")
        cat >"$dir/kkt-adapter.conf" <<EOF
[Adapter]
LogLevel=warning
[HTTP]
Listen=127.0.0.1:$port
MaxConnections=1024
[Buffer]
Path=$dir/buffer.db
Capacity=10000000
[Device]
# Answer once the receipt is durable; printing goes on behind (this measures the intake, not the register).
ResponseTimeout=0
[OFD]
URL=http://127.0.0.1:$closed
[Heartbeat]
URL=http://127.0.0.1:$closed/api/v1/kkt/heartbeat
[Bus]
Address=none
EOF
        [ "$mode" = off ] && env_hook=(KKT_ADAPTER_DEBUG_SYNCHRONOUS=off)
        "${on_daemon_cpus[@]}" env "${env_hook[@]}" "$daemon" --config="$dir/kkt-adapter.conf" >"$dir/daemon.log" 2>&1 &
        daemon_pid=$!

        for _ in $(seq 100); do
                curl -s -o /dev/null "http://127.0.0.1:$port/" && break
                kill -0 "$daemon_pid" 2>/dev/null || { cat "$dir/daemon.log" >&2; return 1; }
                sleep 0.1
        done
        if [ "$mode" = off ] && ! grep -q "synchronous=off" "$dir/daemon.log"; then
                point="SKIP $mode $conns: the daemon ignored KKT_ADAPTER_DEBUG_SYNCHRONOUS (no debug hooks)"
                stop_daemon
                return 0
        fi

        if [ "$warmup" -gt 0 ]; then
                KKT_BENCH_RUN="warm-$mode-$conns-$$" "${on_client_cpus[@]}" wrk -t"$wrk_threads" -c"$conns" -d"${warmup}s" \
                        -s "$here/intake.lua" "http://127.0.0.1:$port" >/dev/null
        fi
        metrics=$(curl -sf "http://127.0.0.1:$port/metrics")
        tx=$(awk '/^kkt_store_transactions_total / {print $2}' <<<"$metrics")
        jobs=$(awk '/^kkt_store_jobs_total / {print $2}' <<<"$metrics")

        line=$(KKT_BENCH_RUN="run-$mode-$conns-$$" "${on_client_cpus[@]}" wrk -t"$wrk_threads" -c"$conns" -d"${duration}s" \
                --latency -s "$here/intake.lua" "http://127.0.0.1:$port" | grep '^BENCH')

        metrics=$(curl -sf "http://127.0.0.1:$port/metrics")
        tx=$(( $(awk '/^kkt_store_transactions_total / {print $2}' <<<"$metrics") - tx ))
        jobs=$(( $(awk '/^kkt_store_jobs_total / {print $2}' <<<"$metrics") - jobs ))

        stop_daemon
        point="$line mode=$mode conns=$conns jobs_per_txn=$(( tx > 0 ? jobs / tx : 0 ))"
        rm -rf "$dir"
}

field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$2"; }

# FULL and OFF at the same connection count run back to back, so the ratio compares neighbouring minutes;
# the disk's fdatasync() p50 is measured again right before each point (it moves from minute to minute).
echo "== POST /v1/kkt/receipt, ${duration}s per point after ${warmup}s of warm-up"
printf '%-5s %5s %10s %9s %9s %8s %7s %11s\n' sync conns receipts/s p50_us p99_us per_txn non200 fsync_p50us
declare -A rps p50 fsync_at
fsync_idle=
for c in $connections; do
        for mode in full off; do
                # At one connection every commit follows idle time (the client is busy with the answer and
                # the next request), and on some virtual machines an fdatasync() after idle time takes
                # ~100 us longer than one of a back-to-back series: measure that too, as the workload has it.
                if [ "$c" = 1 ] && [ "$mode" = full ]; then
                        fsync_idle=$(field p50_us " $("${on_daemon_cpus[@]}" "$work/fsync-rate" "$work" \
                                "$((fsync_count / 2))" overwrite 4096 "$fsync_pause_us")")
                fi
                fsync_at[$mode-$c]=$(field p50_us \
                        " $("${on_daemon_cpus[@]}" "$work/fsync-rate" "$work" "$((fsync_count / 2))")")
                run_point "$mode" "$c"
                line=$point
                if [[ $line == SKIP* ]]; then
                        echo "$line"
                        continue
                fi
                rps[$mode-$c]=$(field rps "$line")
                p50[$mode-$c]=$(field p50_us "$line")
                printf '%-5s %5s %10s %9s %9s %8s %7s %11s\n' "$mode" "$c" "${rps[$mode-$c]}" \
                        "${p50[$mode-$c]}" "$(field p99_us "$line")" "$(field jobs_per_txn "$line")" \
                        "$(( $(field non200 "$line") + $(field socket_errors "$line") ))" "${fsync_at[$mode-$c]}"
        done
done
echo

# ---- the targets ----

echo "== targets"
verdict=0
check() { # description, condition (0/1)
        if [ "$2" = 1 ]; then echo "PASS  $1"; else echo "MISS  $1"; verdict=1; fi
}
if [ -n "${rps[full-64]:-}" ]; then
        check "64 connections, synchronous=FULL: ${rps[full-64]} receipts/s >= 10000" \
              "$(( rps[full-64] >= 10000 ))"
        if [ -n "${rps[off-64]:-}" ] && [ "${rps[off-64]}" -gt 0 ]; then
                what="64 connections: FULL is $(( rps[full-64] * 100 / rps[off-64] )) %"
                what+=" of the ceiling (${rps[off-64]}/s) >= 70 %"
                check "$what" "$(( rps[full-64] * 10 >= rps[off-64] * 7 ))"
        fi
fi
if [ -n "${p50[full-1]:-}" ]; then
        what="1 connection, synchronous=FULL: p50 ${p50[full-1]} us <= fdatasync p50 $fsync_idle us + 300 us"
        what+=" (4 KiB after ${fsync_pause_us} us idle, as each commit at one connection; measured right before)"
        check "$what" "$(( p50[full-1] <= fsync_idle + 300 ))"
        echo "      (against a back-to-back 4 KiB fdatasync, p50 ${fsync_at[full-1]} us:" \
             "$(( p50[full-1] - fsync_at[full-1] )) us more; against one of a single-receipt commit's" \
             "$commit_bytes bytes, p50 $commit_fsync_p50 us: $(( p50[full-1] - commit_fsync_p50 )) us more)"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $verdict
