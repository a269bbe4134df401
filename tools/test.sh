#!/bin/bash
# SPDX-License-Identifier: MIT
# The whole test suite: installs what is missing, builds with warnings as errors and the tests on, runs every
# test (unit and integration), then again under AddressSanitizer and UndefinedBehaviorSanitizer, then the
# unit tests and the integration tests that drive the store's and the register's threads under
# ThreadSanitizer, then each fuzz target for 30 s (clang, libFuzzer). The last line is the total over all
# passes: "N passed, N failed, N skipped". KKT_SKIP_SANITIZERS=1 runs the first pass only.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

"$top/tools/install-deps.sh" || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }

# The integration tests that run the writer and reader threads of the store and the register's thread
# hardest: intake under load and across crashes, printing, syncing, the fiscal day, start and stop.
tsan_integration=(
        test-intake-durability test-intake-http test-print test-sync-daemon test-fiscal-day-daemon
        test-daemon-lifecycle
)

# Each pass: its build directory, the compiler ("" for the default), meson's options, what `meson test` runs
# ("@threads": every unit test and the integration tests above; meson intersects --suite with names).
passes=("build||-Dwerror=true -Dtests=true|")
if [ "${KKT_SKIP_SANITIZERS:-0}" != 1 ]; then
        passes+=("build-sanitizers||-Dwerror=true -Dtests=true -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug|")
        passes+=("build-tsan||-Dwerror=true -Dtests=true -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug|@threads")
        # Not -Dwerror: clang warns where gcc does not (-Wformat-nonliteral on vprintf-style helpers); the
        # gcc passes hold the code to -Werror.
        passes+=("build-fuzz|clang|-Dtests=false -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false|--suite fuzz")
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# No suppressions: libsystemd's sd-event and sd-bus are not instrumented, but each loop and bus is used by
# one thread only, and the threads hand work over through mutexes and eventfds that TSan sees.
export TSAN_OPTIONS="${TSAN_OPTIONS:-second_deadlock_stack=1:history_size=4}"

status=0
dirs=()
for p in "${passes[@]}"; do
        IFS='|' read -r dir compiler opts tests <<<"$p"
        dirs+=("$dir")
        echo "=== $dir (${compiler:+CC=$compiler }$opts${tests:+; $tests})"
        start=$SECONDS
        rm -f "$dir/meson-logs/testlog.json"
        if [ ! -f "$dir/build.ninja" ]; then
                # shellcheck disable=SC2086
                ${compiler:+env CC=$compiler} meson setup "$dir" $opts || { status=1; continue; }
        else
                # shellcheck disable=SC2086
                meson configure "$dir" $opts || { status=1; continue; }
        fi
        meson compile -C "$dir" || { status=1; continue; }
        if [ "$tests" = @threads ]; then
                tests="$(meson test -C "$dir" --list --no-rebuild --suite unit | sed -n 's|.* / ||p' | tr '\n' ' ')"
                tests+="${tsan_integration[*]}"
        fi
        # shellcheck disable=SC2086
        meson test -C "$dir" --print-errorlogs --num-processes 2 $tests || status=1
        echo "=== $dir: $((SECONDS - start)) s"
done

# One total over every pass, read from meson's own logs; a pass that did not get as far as its tests
# counts as one failure.
/usr/bin/python3 - "${dirs[@]}" <<'PY'
import json, sys
passed = failed = skipped = 0
for d in sys.argv[1:]:
    try:
        lines = open(f"{d}/meson-logs/testlog.json").read().splitlines()
    except OSError:
        failed += 1
        continue
    for line in lines:
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
