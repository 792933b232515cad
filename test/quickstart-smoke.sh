#!/usr/bin/env bash
# Runs the README's quick start for real: scripts/quickstart.sh on free ports with a fresh data dir,
# waits for the API, logs in with the generated admin password and drives the CLI. Exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
PORT=$(free_port)
DATA=$(mktemp -d /tmp/ironflow-quickstart.XXXXXX)
LOG="$DATA/serve.log"
export IRONFLOW_PORT=$PORT IRONFLOW_HOST=127.0.0.1 IRONFLOW_TFTP_PORT=0 IRONFLOW_DATA_DIR=$DATA
scripts/quickstart.sh >"$LOG" 2>&1 &
PID=$!
cleanup() { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; kill -0 "$PID" 2>/dev/null || { cat "$LOG"; exit 1; }; sleep 0.2; done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "quickstart: server did not come up"; cat "$LOG"; exit 1; }
export IRONFLOW_ENDPOINT="http://127.0.0.1:$PORT" IRONFLOW_CREDENTIALS="$DATA/credentials.json"
cli() { node bin/ironflow.js "$@"; }
cli login --username admin --password "$(cat "$DATA/admin-password")" >/dev/null
cli machines create '{"name":"quickstart1","hardwareAddrs":["52:54:00:aa:bb:cc"]}' >/dev/null
cli machines params name:quickstart1 set kernel-console '"console=ttyS1"' >/dev/null
test "$(cli machines show hardwareAddrs:52:54:00:aa:bb:cc | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).name))')" = quickstart1
cli machines list -o table | grep -q quickstart1
if cli machines show nope 2>/dev/null; then echo "quickstart: expected a non-zero exit for a missing machine"; exit 1; fi
kill -TERM "$PID"; wait "$PID" || { echo "quickstart: unclean shutdown"; cat "$LOG"; exit 1; }
grep -q "api listening on http://127.0.0.1:$PORT" "$LOG"
if pgrep -f "$DATA/redis/redis.sock" >/dev/null; then echo "quickstart: embedded redis-server left running"; exit 1; fi
echo "quickstart smoke: PASS"
