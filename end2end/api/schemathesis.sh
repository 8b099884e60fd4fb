#!/usr/bin/env bash
# Schemathesis against the operator API: a fresh server with the demo data, the API's own OpenAPI
# document, the demo operator admin's token. Passes when no call answers 5xx and every answer fits
# the document (its status, content type and schema). Every operation is walked: examples, the
# boundary values of each parameter, then random inputs for the time budget.
#   bash end2end/api/schemathesis.sh [MAX_SECONDS]   (default 120)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=${FORECOURT_BIN:-$root/target/debug/forecourt}
budget=${1:-120}
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --addr "127.0.0.1:$port" --data-dir "$data" --site-root "$root/target/site" \
  --themes-dir "$root/themes" >"$data/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
status=0
export NO_COLOR=1
"$root/.venv-api/bin/schemathesis" run "http://127.0.0.1:$port/api/openapi.json" \
  --header "Authorization: Bearer demo-operator-api-token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples 25 --max-time "$budget" --workers 1 --seed 1 || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 60 lines) ---"
  tail -n 60 "$data/server.log"
fi
exit "$status"
