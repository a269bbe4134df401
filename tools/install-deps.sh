#!/bin/bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages kkt-adapter builds, tests and runs with; installs only what is missing, so
# running it again is quick and changes nothing.
set -euo pipefail

packages=(
        meson ninja-build pkg-config gcc
        libsystemd-dev libcurl4-openssl-dev libsqlite3-dev libjson-c-dev libmicrohttpd-dev libinih-dev libssl-dev
        dbus dbus-daemon systemd curl openssl python3 sqlite3 scdoc groff-base man-db
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
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
