#!/usr/bin/env bash
# Install what KubeP4 needs on a fresh Debian/Ubuntu machine: etcd (Debian's etcd-server) and the
# Python package with its test extras. Idempotent; uses sudo only when not root.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
if [ "${KUBEP4_INSTALL_TEST_TOOLS:-0}" = 1 ]; then
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} with apt"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts etcd as a system service on install: the project starts its own
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; fi
fi
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
echo "installed: $(etcd --version | head -1), kubep4 $(python3 -c 'import kubep4; print(kubep4.__version__)')"
