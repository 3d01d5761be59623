#!/usr/bin/env bash
# The benchmark regression guard, as .ci/run calls it: a short pinned run
# of plexusd against dbus-broker and the raw SEQPACKET floor that fails
# only on a gross regression (a ratio past bench/report.py's GUARD_LIMITS;
# never an absolute time). See bench/run.sh --guard and
# docs/performance.md §1.5.
set -euo pipefail
exec "$(dirname "$0")/run.sh" --guard "$@"
