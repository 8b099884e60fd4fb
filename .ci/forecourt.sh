#!/usr/bin/env bash
# Forecourt's two entry points, called by `npm start` and `npm test` (and by .ci/run):
#   run   install what is missing, build (release), start the server with demo data
#   test  install what is missing, build once (dev), run every test
#   lb-compare  our load balancer beside the referee (../shared/lb-bench) on one retail day (a benchmark)
# Every install step is pinned, idempotent and skips what is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$ROOT/node_modules/.bin:$CARGO_BIN:$PATH"
# The leptos crates read this at compile time and cargo-leptos sets it; setting it for plain
# `cargo test` too lets the tests reuse the crates cargo-leptos compiled instead of rebuilding them.
export LEPTOS_OUTPUT_NAME=forecourt
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

CARGO_LEPTOS_VERSION=0.3.10

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

lock_version() { # the version Cargo.lock pins for a crate
  awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock
}

setup_build_tools() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! cargo leptos --version 2>/dev/null | grep -q " $CARGO_LEPTOS_VERSION"; then
    say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 16 minutes on 2 cores, once)"
    # --locked: newer dependency releases need a newer rustc than ours.
    cargo install --locked cargo-leptos --version "$CARGO_LEPTOS_VERSION"
  fi
  local want have
  want=$(lock_version wasm-bindgen)
  [ -n "$want" ] || die "Cargo.lock has no wasm-bindgen entry"
  have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
  if [ "$have" != "$want" ]; then
    say "installing wasm-bindgen-cli $want (Cargo.lock's wasm-bindgen; found '${have:-none}')"
    # Not --locked: its own lockfile pins a crate release the registry no longer serves.
    cargo install wasm-bindgen-cli --version "$want" --force
    have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
    [ "$have" = "$want" ] || die "wasm-bindgen-cli is $have but Cargo.lock's wasm-bindgen is $want; they must match"
  fi
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "installing Tailwind, wasm-opt and Playwright from npm"
    npm ci --no-audit --no-fund
  fi
}

setup_test_tools() {
  if ! command -v chromium >/dev/null; then
    say "installing Debian's chromium for the browser tests"
    command -v apt-get >/dev/null || die "chromium is missing and apt-get is not available"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  local stamp=.venv/.requirements
  if [ ! -x .venv/bin/python ] || ! cmp -s end2end/requirements.txt "$stamp"; then
    say "installing the Python test packages into .venv"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r end2end/requirements.txt
    cp end2end/requirements.txt "$stamp"
  fi
  stamp=.venv-api/.requirements
  if [ ! -x .venv-api/bin/schemathesis ] || ! cmp -s end2end/api/requirements.txt "$stamp"; then
    say "installing schemathesis into .venv-api"
    python3 -m venv .venv-api
    .venv-api/bin/pip install -q --disable-pip-version-check -r end2end/api/requirements.txt
    cp end2end/api/requirements.txt "$stamp"
  fi
}

postgres_url() {
  echo "${FORECOURT_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
}

cmd_run() {
  setup_build_tools
  say "building (release)"
  cargo leptos build --release
  say "starting forecourt, then simulated chargers on the demo sites"
  target/release/forecourt serve --site-root target/site "$@" &
  local server=$!
  trap 'kill $server $sim 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
  local sim=""
  for _ in $(seq 1 60); do
    curl -fs http://127.0.0.1:3000/readyz >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || exit 1
    sleep 0.5
  done
  target/release/forecourt simulate --url ws://127.0.0.1:3000/ocpp >data/simulator.log 2>&1 &
  sim=$!
  echo "simulated chargers: FM-CAM-01, FM-CAM-02, UP-ZUI-01, UP-ZUI-02 (log: data/simulator.log). Ctrl-C stops everything."
  wait "$server"
}

cmd_test() {
  say "formatting (cargo fmt --check)"
  cargo fmt --check
  setup_build_tools
  setup_test_tools
  say "building the server and the browser bundle (dev profile, once)"
  cargo leptos build
  export FORECOURT_TEST_POSTGRES_URL
  FORECOURT_TEST_POSTGRES_URL=$(postgres_url)
  say "unit, property and integration tests (SQLite and PostgreSQL)"
  cargo test -p app -p forecourt-balancer -p server
  if [ -d end2end/ocpp ]; then
    say "OCPP conformance tests with independent chargers (Python ocpp package)"
    FORECOURT_BIN="$ROOT/target/debug/forecourt" .venv/bin/python -m pytest -q end2end/ocpp
  fi
  say "the operator API against its own OpenAPI document (schemathesis)"
  FORECOURT_BIN="$ROOT/target/debug/forecourt" bash end2end/api/schemathesis.sh 120
  say "end-to-end tests in Chromium"
  (cd end2end && FORECOURT_BIN="$ROOT/target/debug/forecourt" npx playwright test)
}

cmd_lb_compare() {
  local bench="$ROOT/../shared/lb-bench" stamp=.venv-lb/.requirements
  [ -f "$bench/acn_bench.py" ] || die "the referee is missing: expected $bench/acn_bench.py"
  if [ ! -x .venv-lb/bin/python ] || ! cmp -s end2end/lb/requirements.txt "$stamp"; then
    say "installing the referee's Python packages (acnportal 0.3.3) into .venv-lb"
    python3 -m venv .venv-lb
    .venv-lb/bin/pip install -q --disable-pip-version-check -r end2end/lb/requirements.txt
    cp end2end/lb/requirements.txt "$stamp"
  fi
  say "building forecourt (release)"
  cargo build --release -p server --bin forecourt
  .venv-lb/bin/python end2end/lb/compare.py --bench "$bench" --python .venv-lb/bin/python \
    --forecourt target/release/forecourt "$@"
}

case "${1:-}" in
  run) shift; cmd_run "$@" ;;
  test) shift; cmd_test "$@" ;;
  setup) setup_build_tools; setup_test_tools ;;
  lb-compare) shift; cmd_lb_compare "$@" ;;
  *) die "usage: $0 run|test|setup|lb-compare" ;;
esac
