#!/usr/bin/env bash
# Installs what Ironflow and its tests need on Debian/Ubuntu, then the npm dependencies and the build.
# Idempotent: apt runs only when a program is missing (and only as root); npm ci only when the lock changed.
#   scripts/setup.sh            server + test peers (redis-server, redis-sentinel, ipmitool, ipmi_sim, atftp, curl, socat)
#   SETUP_APT=0 scripts/setup.sh   never touch apt (print what is missing instead)
set -euo pipefail
cd "$(dirname "$0")/.."

# program → Debian package
declare -A NEED=(
  [redis-server]=redis-server [ipmitool]=ipmitool [ipmi_sim]=openipmi [atftp]=atftp
  [curl]=curl [socat]=socat [redis-sentinel]=redis-sentinel
)
missing=()
for prog in "${!NEED[@]}"; do command -v "$prog" >/dev/null 2>&1 || missing+=("${NEED[$prog]}"); done
if ((${#missing[@]})); then
  if [[ "${SETUP_APT:-1}" == 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" ipxe >/dev/null
  else
    echo "setup: missing packages: ${missing[*]} — install them (sudo apt-get install -y ${missing[*]}) or set REDIS_URL for the server" >&2
  fi
fi

stamp=node_modules/.ironflow-lock
if [[ ! -f "$stamp" ]] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
fi
npm run build --silent
