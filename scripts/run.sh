#!/usr/bin/env bash
# One command to a working Parley on a fresh Debian/Ubuntu machine: installs
# PostgreSQL if missing, runs a private cluster on loopback under the data
# folder, builds and starts `parley serve` on the embedded default (one node,
# in-process bus, mail printed to the log). Ctrl-C stops everything.
#
#   PARLEY_PORT      HTTP port (default 8080)
#   PARLEY_PG_PORT   PostgreSQL port (default 54329)
#   PARLEY_DATA_DIR  data folder (default .parley-data in the repository)
#   PARLEY_PROFILE   cargo profile: release (default) or dev
set -euo pipefail
source "$(dirname "$0")/lib/services.sh"
cd "$PARLEY_ROOT"

port=${PARLEY_PORT:-8080}
pg_port=${PARLEY_PG_PORT:-54329}
data=${PARLEY_DATA_DIR:-$PARLEY_ROOT/.parley-data}
profile=${PARLEY_PROFILE:-release}
mkdir -p "$data"
data=$(cd "$data" && pwd)

pgdata="$data/pg"
# PostgreSQL runs as the postgres user when we are root; it needs a path it
# can reach (a home folder like /root is closed to it).
if [ "$(id -u)" = 0 ]; then
    ensure_postgres
    mkdir -p "$pgdata" && chown postgres: "$pgdata"
    if ! runuser -u postgres -- test -w "$pgdata"; then
        pgdata="/var/lib/parley-dev/$(echo -n "$data" | md5sum | cut -c1-12)/pg"
    fi
fi
ensure_postgres
command -v curl >/dev/null || ensure_debs curl ca-certificates
pg_start "$pgdata" "$pg_port"
pg_createdb "$pg_port" parley

if [ "$profile" = release ]; then
    cargo build --release -q -p parley-server
    bin="${CARGO_TARGET_DIR:-$PARLEY_ROOT/target}/release/parley"
else
    cargo build -q -p parley-server
    bin="${CARGO_TARGET_DIR:-$PARLEY_ROOT/target}/debug/parley"
fi

server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    pg_stop "$pgdata"
    log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export PARLEY_DATABASE__URL="postgres://parley@127.0.0.1:$pg_port/parley"
export PARLEY_HTTP__BIND="127.0.0.1:$port"
export PARLEY_FILES__LOCAL_DIR="$data/files"
# The development sign-in of the web client, for this machine only.
export PARLEY_WEB__DEV_SIGNIN="${PARLEY_WEB__DEV_SIGNIN:-true}"
# The server's output goes to the terminal and to parley.log (the log mail
# transport prints registration codes there).
"$bin" serve > >(tee "$data/parley.log") 2>&1 &
server_pid=$!

for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
    kill -0 "$server_pid" 2>/dev/null || die "parley exited; see $data/parley.log"
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || die "parley is not ready; see $data/parley.log"
log "Parley is running at http://127.0.0.1:$port  (OpenAPI: http://127.0.0.1:$port/v1/openapi.json; log: $data/parley.log; Ctrl-C stops)"
wait "$server_pid"
