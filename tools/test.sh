#!/bin/bash
# SPDX-License-Identifier: MIT
# The whole test suite: installs what is missing, builds with warnings as errors, runs every test (unit and
# integration), then again under AddressSanitizer and UndefinedBehaviorSanitizer. The last line is the total:
# "N passed, N failed, N skipped".
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

"$top/tools/install-deps.sh" || { echo "0 passed, 1 failed"; exit 1; }

builds=("build:-Dwerror=true")
if [ "${KKT_SKIP_SANITIZERS:-0}" != 1 ]; then
        builds+=("build-sanitizers:-Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug")
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

status=0
for b in "${builds[@]}"; do
        dir=${b%%:*}
        opts=${b#*:}
        echo "=== $dir ($opts)"
        if [ ! -f "$dir/build.ninja" ]; then
                # shellcheck disable=SC2086
                meson setup "$dir" $opts || { status=1; continue; }
        else
                # shellcheck disable=SC2086
                meson configure "$dir" $opts || { status=1; continue; }
        fi
        rm -f "$dir/meson-logs/testlog.json"
        meson compile -C "$dir" || { status=1; continue; }
        meson test -C "$dir" --print-errorlogs --num-processes 2 || status=1
done

# One total over every build, read from meson's own logs.
/usr/bin/python3 - "${builds[@]}" <<'PY'
import json, sys
passed = failed = skipped = 0
for b in sys.argv[1:]:
    d = b.split(":", 1)[0]
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
