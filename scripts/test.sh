#!/usr/bin/env bash
# Runs every test of Parley: formatting, lints, unit tests, integration tests
# against a private PostgreSQL and a real SMTP server (both started here on
# loopback and stopped at the end), cluster tests with real `parley` nodes,
# Redis and nginx (started by the tests themselves on loopback), the deploy/
# files, and the README walk-through against a server started by
# scripts/run.sh.
set -euo pipefail
source "$(dirname "$0")/lib/services.sh"
cd "$PARLEY_ROOT"

ensure_postgres
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || ensure_debs python3-aiosmtpd
command -v curl >/dev/null || ensure_debs curl ca-certificates
# The TLS tests make their own authority and certificates.
command -v openssl >/dev/null || ensure_debs openssl
command -v jq >/dev/null || ensure_debs jq
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || ensure_debs redis-server
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || ensure_debs nginx
/usr/bin/python3 -c 'import boto3' 2>/dev/null || ensure_debs python3-boto3
[ -x /usr/bin/chromium ] || ensure_debs chromium
# Chromium's first start on a machine builds its font cache: done here once,
# not inside the first browser test's time limits (a brand-new machine's
# first web test once waited more than 30 s for DevTools).
fc-cache >/dev/null 2>&1 || true
warm=$(mktemp -d)
timeout 60 /usr/bin/chromium --headless=new --no-sandbox --disable-gpu --user-data-dir="$warm" \
    --dump-dom about:blank >/dev/null 2>&1 || true
rm -rf "$warm"
# Calls: a real TURN relay (the tests start their own on loopback).
[ -x /usr/bin/turnserver ] || ensure_debs coturn
# Through a transaction-mode pooler (the tests start their own PgBouncer).
[ -x /usr/sbin/pgbouncer ] || ensure_debs pgbouncer
# Group calls: a real Janus with the VideoRoom plugin (started by the tests).
command -v janus >/dev/null || ensure_debs janus
ensure_garage
# Web Push tests: a push service in Python checks the VAPID token and
# decrypts with http_ece (PyPI), installed once into a cache of its own.
push_python=$(command -v python3)
push_pythonpath="${XDG_CACHE_HOME:-$HOME/.cache}/parley/pydeps"
if ! PYTHONPATH="$push_pythonpath" "$push_python" -c 'import http_ece, cryptography' 2>/dev/null; then
    log "installing http-ece (PyPI) into $push_pythonpath"
    "$push_python" -m pip install -q --disable-pip-version-check --target "$push_pythonpath" "http-ece==1.2.1"
fi
export PARLEY_TEST_PUSH_PYTHON="$push_python" PARLEY_TEST_PUSH_PYTHONPATH="$push_pythonpath"

work=$(mktemp -d /tmp/parley-test.XXXXXX)
chmod 755 "$work"
pg_port=$(free_port)
smtp_port=$(free_port)
run_pid=""
cleanup() {
    if [ -n "$run_pid" ]; then kill -TERM "$run_pid" 2>/dev/null || true; wait "$run_pid" 2>/dev/null || true; fi
    stop_pidfile "$work/smtp.pid"
    stop_pidfile "$work/garage.pid"
    pg_stop "$work/pg"
    pg_stop "$work/run/pg"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Durability is not under test here; speed is welcome.
pg_start "$work/pg" "$pg_port" fsync=off synchronous_commit=off full_page_writes=off max_connections=300
smtp_start "$work/mail" "$smtp_port" "$work/smtp.pid"
garage_start "$work/garage" "$(free_port)" "$(free_port)" "$work/garage.pid"

export PARLEY_TEST_DATABASE_URL="postgres://parley@127.0.0.1:$pg_port/postgres"
export PARLEY_TEST_SMTP_PORT="$smtp_port"
export PARLEY_TEST_MAILDIR="$work/mail"
# Screenshots of the web client's end-to-end tests.
export PARLEY_ARTIFACTS="${CARGO_TARGET_DIR:-$PARLEY_ROOT/target}/e2e-artifacts"
# The fuzz run (tests/fuzz.rs): generated frames and bodies for this long.
export PARLEY_FUZZ_SECS="${PARLEY_FUZZ_SECS:-60}"
# The cluster tests start this binary.
export PARLEY_BIN="${CARGO_TARGET_DIR:-$PARLEY_ROOT/target}/debug/parley"

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings
log "cargo test"
# The cluster tests run the real binary: build it first (cargo test builds
# only test harnesses of binaries).
cargo build -p parley-server --bin parley
# The bot test runs the client's example bot (examples/approval_bot.rs).
cargo build -p parley-client --examples --bins
cargo test --workspace --all-targets

log "web client screenshots in $PARLEY_ARTIFACTS"
log "deploy files"
bash scripts/check-deploy.sh

# The README's one run command and its curl walk-through, as written.
log "README walk-through against scripts/run.sh"
run_port=$(free_port)
run_pg_port=$(free_port)
# run.sh as a terminal would start it: its own process group, SIGINT not
# ignored (a background job of this script would ignore it).
start_run() {
    PARLEY_PROFILE=dev PARLEY_PORT=$run_port PARLEY_PG_PORT=$run_pg_port PARLEY_DATA_DIR="$work/run" \
        /usr/bin/python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setsid()
os.execvp("bash", ["bash", "scripts/run.sh"])' >"$work/run.out" 2>&1 &
    run_pid=$!
    for _ in $(seq 1 600); do
        grep -q "Parley is running" "$work/run.out" 2>/dev/null && break
        kill -0 "$run_pid" 2>/dev/null || { cat "$work/run.out"; die "scripts/run.sh exited"; }
        sleep 0.2
    done
    grep -q "Parley is running" "$work/run.out" || { cat "$work/run.out"; die "scripts/run.sh did not come up"; }
}
# stop_run SIGNAL: sends it to run.sh's whole process group (the node, tee
# and run.sh itself, as Ctrl-C or a service manager would); run.sh must stop
# the node and PostgreSQL and exit.
stop_run() {
    kill "-$1" -- "-$run_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$run_pid" 2>/dev/null && { cat "$work/run.out"; die "scripts/run.sh did not exit on SIG$1 to its process group"; }
    wait "$run_pid" 2>/dev/null || true
    run_pid=""
    for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$run_port/healthz" >/dev/null 2>&1 || break; sleep 0.1; done
    curl -fsS "http://127.0.0.1:$run_port/healthz" >/dev/null 2>&1 && die "the node still runs after SIG$1 to run.sh's group"
    for _ in $(seq 1 50); do "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$run_pg_port" || break; sleep 0.1; done
    "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$run_pg_port" && die "PostgreSQL still runs after SIG$1 to run.sh's group"
    log "scripts/run.sh stopped the node and PostgreSQL on SIG$1"
}
start_run
curl -fsS "http://127.0.0.1:$run_port/readyz" | jq -e '.components.database.status == "ready"' >/dev/null \
    || die "/readyz does not report the database ready"
awk '/<!-- walkthrough:start -->/{on=1; next} /<!-- walkthrough:end -->/{on=0} on && !/^```/' README.md \
    >"$work/walkthrough.sh"
[ -s "$work/walkthrough.sh" ] || die "README.md has no walk-through block"
PARLEY_URL="http://127.0.0.1:$run_port" PARLEY_DATA_DIR="$work/run" \
    bash -euo pipefail "$work/walkthrough.sh" >"$work/walkthrough.out" 2>&1 \
    || { cat "$work/walkthrough.out"; tail -n 30 "$work/run.out"; die "README walk-through failed"; }
grep -q '"id"' "$work/walkthrough.out" || { cat "$work/walkthrough.out"; die "walk-through did not end with the user"; }
log "README walk-through passed"
stop_run TERM
start_run
stop_run INT
