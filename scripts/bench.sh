#!/usr/bin/env bash
# Runs the standard benchmark set on loopback: starts a private PostgreSQL
# and a Redis, builds release binaries, installs the peer (socket.io) from
# the npm registry, runs `parley-bench standard` (every scenario on 1 node
# and on 2 nodes behind Redis, Parley and the peer, each scenario's targets by
# turns, 3 runs each, about 23 minutes on 2
# cores),
# prints the table and appends JSON lines to bench/results/results.jsonl.
# Extra arguments replace `standard`, e.g.: scripts/bench.sh idle --sessions 100000 --nodes 6
# `scripts/bench.sh sharding` also starts a Redis Cluster of three masters and
# compares the bus over it (sharded pub/sub) with the one Redis on 3 nodes.
# `scripts/bench.sh chaos` runs the fault scenario (3 nodes behind nginx, 3 000
# sessions, 2 minutes of node kills, a frozen Redis and a PostgreSQL restart).
set -euo pipefail
source "$(dirname "$0")/lib/services.sh"
cd "$PARLEY_ROOT"

ensure_postgres
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || ensure_debs redis-server
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || ensure_debs nginx

work=$(mktemp -d /tmp/parley-bench.XXXXXX)
chmod 755 "$work"
pg_port=$(free_port)
redis_port=$(free_port)
cleanup() {
    stop_pidfile "$work/redis.pid"
    for f in "$work"/shard-*.pid; do stop_pidfile "$f"; done
    pg_stop "$work/pg"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PostgreSQL answers a commit before its WAL is on disk (`off`, as the bars
# of issue 11 are stated); PARLEY_BENCH_SYNCHRONOUS_COMMIT=on makes every
# commit wait for the disk. Each result line records which (`database`), and
# the curves of `on` are drawn apart.
sync_commit=${PARLEY_BENCH_SYNCHRONOUS_COMMIT:-off}
case "$sync_commit" in
    on | off) ;;
    *) die "PARLEY_BENCH_SYNCHRONOUS_COMMIT must be on or off, not '$sync_commit'" ;;
esac
pg_start "$work/pg" "$pg_port" max_connections=400 shared_buffers=256MB synchronous_commit="$sync_commit"
pg_createdb "$pg_port" bench
/usr/bin/redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --pidfile "$work/redis.pid" >/dev/null
wait_port "$redis_port" 10 || die "redis did not start"

# `sharding`: a Redis Cluster of three masters (no replicas: the bench
# measures traffic, not failover). Each server is up before the next port
# is chosen, so no data port is another's cluster bus port.
if [ "${1:-}" = sharding ]; then
    shards=()
    for i in 1 2 3; do
        p=$(free_port); b=$(free_port)
        while [ "$b" = "$p" ]; do b=$(free_port); done
        /usr/bin/redis-server --port "$p" --cluster-port "$b" --bind 127.0.0.1 \
            --cluster-enabled yes --cluster-config-file "$work/shard-$p.conf" \
            --save "" --appendonly no --dir "$work" \
            --daemonize yes --pidfile "$work/shard-$p.pid" >/dev/null
        wait_port "$p" 10 || die "cluster shard $i did not start"
        shards+=("127.0.0.1:$p")
    done
    redis-cli --cluster create "${shards[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
    for _ in $(seq 1 100); do
        ok=1
        for s in "${shards[@]}"; do
            redis-cli -p "${s#*:}" cluster info | grep -q cluster_state:ok || ok=0
        done
        [ $ok = 1 ] && break
        sleep 0.1
    done
    [ $ok = 1 ] || die "the Redis Cluster did not form"
    PARLEY_BENCH_REDIS_CLUSTER=$(printf 'redis://%s,' "${shards[@]}")
    export PARLEY_BENCH_REDIS_CLUSTER=${PARLEY_BENCH_REDIS_CLUSTER%,}
fi

# The peer: Node.js socket.io with the Redis adapter, from the npm registry.
command -v node >/dev/null || ensure_debs nodejs npm
if [ ! -d bench/peers/socketio/node_modules ]; then
    (cd bench/peers/socketio && npm ci --no-audit --no-fund --loglevel=error)
fi

cargo build --release -q -p parley-server -p parley-bench
target="${CARGO_TARGET_DIR:-$PARLEY_ROOT/target}/release"
# PARLEY_BENCH_BIN: another build to compare with (A/B on one machine).
export PARLEY_BIN="${PARLEY_BENCH_BIN:-$target/parley}"
export PARLEY_BENCH_DATABASE_URL="postgres://parley@127.0.0.1:$pg_port/bench"
export PARLEY_BENCH_REDIS_URL="redis://127.0.0.1:$redis_port"
# For `chaos`: how to restart PostgreSQL, and which process is Redis.
cat >"$work/pg-restart.sh" <<EOF
source "$PARLEY_ROOT/scripts/lib/services.sh"
_pg "\$(pg_bindir)/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -m fast -w -t 60 restart >/dev/null
EOF
export PARLEY_BENCH_PG_RESTART="bash $work/pg-restart.sh"
export PARLEY_BENCH_REDIS_PID_FILE="$work/redis.pid"
if [ $# -eq 0 ]; then set -- standard; fi
"$target/parley-bench" "$@"
