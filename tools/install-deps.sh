#!/bin/bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages kkt-adapter builds, tests and runs with; installs only what is missing, so
# running it again is quick and changes nothing.
set -euo pipefail

packages=(
        meson ninja-build pkg-config gcc libtsan2 # libtsan2: gcc's ThreadSanitizer runtime, the TSan pass
        clang libclang-rt-14-dev # the fuzz pass: libFuzzer and clang's sanitizer runtimes
        libsystemd-dev libcurl4-openssl-dev libsqlite3-dev libjson-c-dev libmicrohttpd-dev libinih-dev libssl-dev
        dbus dbus-daemon systemd curl openssl python3 sqlite3 scdoc groff-base man-db
        python3-yaml prometheus # promtool, for the tests of the metrics and of contrib/ (not the server)
)

missing=()
for p in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
                missing+=("$p")
        fi
done

if [ ${#missing[@]} -eq 0 ]; then
        exit 0
fi

sudo=
if [ "$(id -u)" -ne 0 ]; then
        sudo=sudo
fi
echo "Installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive

# Installing a package with a service (prometheus) would start it: on a machine without a policy of its
# own, a temporary policy-rc.d keeps invoke-rc.d and deb-systemd-invoke from starting anything. Only
# promtool is used; the service stays stopped (systemd machines: enabled for the next boot, so
# `systemctl disable prometheus` if that is not wanted).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
        trap '$sudo rm -f "$policy"' EXIT
        printf '#!/bin/sh\n# temporary, from kkt-adapter tools/install-deps.sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
fi

$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
