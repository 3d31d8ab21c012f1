#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (real etcd and services on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
KUBEP4_INSTALL_TEST_TOOLS=1 bash scripts/install.sh
PY=python3
[ -x .venv/bin/python ] && [ -z "${VIRTUAL_ENV:-}" ] && { PY=.venv/bin/python; export PATH="$PWD/.venv/bin:$PATH"; }
exec $PY -m pytest -q -p no:cacheprovider "$@"
