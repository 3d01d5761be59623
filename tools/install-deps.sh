#!/usr/bin/env bash
# Installs the Debian packages Plexus needs to build, test and run, but only
# those that are missing, so that the README commands work on a fresh
# Debian 12 machine. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
    build-essential
    meson
    ninja-build
    pkg-config
    protobuf-c-compiler
    libprotobuf-c-dev
    libsystemd-dev
    libcmocka-dev
    libinih-dev
    # plexusctl's JSON mapping: json-c, and descriptor.proto (from
    # libprotobuf-dev) to read the FileDescriptorSets services describe
    # themselves with; python3-protobuf cross-checks the mapping in tests
    libjson-c-dev
    libprotobuf-dev
    python3-protobuf
    # plexusd sends fan-out through io_uring (meson option io_uring, auto)
    liburing-dev
    systemd
    valgrind
    python3
    tshark
    # tests/fuzz/run.sh: clang with libFuzzer and its sanitizer runtimes
    clang
    libclang-rt-14-dev
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

echo "Installing: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
