#!/usr/bin/env bash
# Install what KubeP4 needs on a fresh Debian/Ubuntu machine: etcd (Debian's etcd-server) and the
# Python package. Idempotent; uses sudo only when not root.
# Extras (pyproject.toml): the local stack (`kubep4 up`) needs none; this installs `traces` and `plot`
# for `kubep4 up --traces` and `kubep4 bench deploy --plot`, and with KUBEP4_INSTALL_TEST_TOOLS=1
# (scripts/test.sh) `test`, which is every extra and the test tools. KUBEP4_EXTRAS=... overrides
# (e.g. KUBEP4_EXTRAS=kube for a controller with --placement=kubernetes, "" for the core alone).
# Where the system Python refuses pip installs (PEP 668, Debian 12's python3), everything goes into
# ./.venv instead: put .venv/bin on PATH (the README's commands do).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
extras=traces,plot
if [ "${KUBEP4_INSTALL_TEST_TOOLS:-0}" = 1 ]; then
  extras=test
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
fi
PY=python3
managed=$($PY -c 'import sysconfig, os; print(os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))')
if [ "$managed" = True ] && [ -z "${VIRTUAL_ENV:-}" ]; then
  $PY -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} with apt"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts etcd as a system service on install: the project starts its own
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; fi
fi
if [ "$managed" = True ] && [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || $PY -m venv .venv
  PY=.venv/bin/python
  echo "the system Python is externally managed: installing into .venv (PATH=\"\$PWD/.venv/bin:\$PATH\")"
fi
extras=${KUBEP4_EXTRAS-$extras}
$PY -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
echo "installed: $(etcd --version | head -1), kubep4 $($PY -c 'import kubep4; print(kubep4.__version__)')" \
  "(extras: ${extras:-none})"
