#!/usr/bin/env bash
# Quick start: installs what is missing (see setup.sh), builds, and runs `ironflow serve` with an
# embedded Redis (unless REDIS_URL is set). Every IRONFLOW_* variable of the README applies.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# TFTP needs root for port 69; without root use 6969 (override with IRONFLOW_TFTP_PORT).
if [[ $(id -u) != 0 && -z "${IRONFLOW_TFTP_PORT:-}" ]]; then export IRONFLOW_TFTP_PORT=6969; fi
exec node bin/ironflow.js serve "$@"
