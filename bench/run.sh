#!/usr/bin/env bash
# run.sh: `make bench` entry point. Raises the open-file limit (10k
# subscribers need 10k descriptors on each side) and runs bench/run.py with
# Debian's Python; arguments pass through (--quick, --servers, --scenarios).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 21000 ]; then
  ulimit -n 21000 2>/dev/null || true
fi
exec /usr/bin/python3 bench/run.py "$@"
