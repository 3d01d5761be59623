#!/usr/bin/env bash
# Builds Plexus and starts the bus in the foreground on its default socket:
# $PLEXUS_BUS_ADDRESS, else $XDG_RUNTIME_DIR/plexus/bus, else /run/plexus/bus
# as root. Extra arguments go to plexusd (e.g. -v).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
if [ ! -d build ]; then
    meson setup build
fi
meson compile -C build
exec build/daemon/plexusd "$@"
