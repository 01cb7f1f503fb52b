# Shared by scripts/run.sh and scripts/test.sh (sourced, not run): installs what
# is missing with apt-get and runs private services on loopback, each under a
# folder of its own, so nothing system-wide is touched.

PARLEY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
_apt_updated=0

log() { printf '[parley] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root (or sudo) to run: $*"; fi
}

# ensure_debs PKG... : installs the Debian packages that are not installed yet.
ensure_debs() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    if [ "$_apt_updated" = 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        _apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# A TCP port on 127.0.0.1 that nothing listens on.
free_port() {
    local p
    # Below the kernel's ephemeral range (32768-60999 by default): a port
    # there can be taken by an outgoing connection, which the probe below
    # cannot see (after a benchmark thousands are in TIME_WAIT).
    for _ in $(seq 1 200); do
        p=$(( (RANDOM % 12000) + 20000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    die "no free port found"
}

# wait_port PORT SECONDS: until something accepts connections on 127.0.0.1:PORT.
wait_port() {
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] && [ -x "$d/initdb" ] || return 1
    echo "$d"
}

ensure_postgres() {
    pg_bindir >/dev/null || ensure_debs postgresql
    pg_bindir >/dev/null || die "PostgreSQL server binaries not found after installing postgresql"
}

# PostgreSQL refuses to run as root; then it runs as the postgres user.
_pg() {
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# pg_start DIR PORT [extra postgres -c options...]: a private cluster on
# 127.0.0.1:PORT with a superuser `parley` (trust on loopback only).
pg_start() {
    local dir=$1 port=$2; shift 2
    local bin; bin=$(pg_bindir)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir" && chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
        _pg "$bin/initdb" -D "$dir" -U parley --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null \
            || die "initdb failed in $dir"
    fi
    local opts="-p $port -k $dir -c listen_addresses=127.0.0.1"
    for o in "$@"; do opts+=" -c $o"; done
    if ! _pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        _pg "$bin/pg_ctl" -D "$dir" -o "$opts" -l "$dir/server.log" -w -t 60 start >/dev/null \
            || { tail -n 20 "$dir/server.log" >&2; die "PostgreSQL did not start (log above)"; }
    fi
    log "PostgreSQL on 127.0.0.1:$port (data in $dir)"
}

# pg_createdb PORT NAME: creates the database unless it exists.
pg_createdb() {
    local bin; bin=$(pg_bindir)
    "$bin/psql" -h 127.0.0.1 -p "$1" -U parley -d postgres -qtAc \
        "SELECT 1 FROM pg_database WHERE datname = '$2'" | grep -q 1 \
        || "$bin/createdb" -h 127.0.0.1 -p "$1" -U parley "$2"
}

pg_stop() {
    local bin; bin=$(pg_bindir) || return 0
    [ -f "$1/PG_VERSION" ] && _pg "$bin/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1 || true
}

# smtp_start MAILDIR PORT PIDFILE: a real SMTP server (aiosmtpd) that stores
# every message it receives in MAILDIR.
smtp_start() {
    local maildir=$1 port=$2 pidfile=$3
    /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || ensure_debs python3-aiosmtpd
    mkdir -p "$maildir"/{tmp,new,cur}
    /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Mailbox "$maildir" \
        >"$maildir/../smtp.log" 2>&1 &
    echo $! >"$pidfile"
    wait_port "$port" 30 || die "SMTP server did not start (see $maildir/../smtp.log)"
    log "SMTP on 127.0.0.1:$port (mail in $maildir)"
}

stop_pidfile() {
    [ -f "$1" ] || return 0
    local pid; pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
}

# Garage, a production S3 server: built once with cargo (about 14 minutes on
# 2 cores), then cached in ~/.cargo/bin.
GARAGE_VERSION=2.5.0
garage_bin() { echo "${CARGO_HOME:-$HOME/.cargo}/bin/garage"; }

ensure_garage() {
    local bin; bin=$(garage_bin)
    if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then return 0; fi
    log "building Garage $GARAGE_VERSION (cargo install; once per machine)"
    cargo install garage --locked --version "$GARAGE_VERSION" --quiet
}

# garage_start DIR S3_PORT RPC_PORT PIDFILE: a single-node Garage on
# loopback with a key that may create buckets; exports PARLEY_TEST_S3_*.
garage_start() {
    local dir=$1 s3=$2 rpc=$3 pidfile=$4
    local bin; bin=$(garage_bin)
    mkdir -p "$dir"
    cat >"$dir/garage.toml" <<CONF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
CONF
    "$bin" -c "$dir/garage.toml" server >"$dir/server.log" 2>&1 &
    echo $! >"$pidfile"
    wait_port "$s3" 30 || die "Garage did not start (see $dir/server.log)"
    local g="$bin -c $dir/garage.toml" id=""
    for _ in $(seq 1 50); do
        id=$($g node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$id" ] && break
        sleep 0.2
    done
    [ -n "$id" ] || die "Garage has no node id"
    $g layout assign -z dc1 -c 1G "$id" >/dev/null
    $g layout apply --version 1 >/dev/null
    $g key create parley-test >/dev/null
    $g key allow --create-bucket parley-test >/dev/null
    export PARLEY_TEST_S3_ENDPOINT="http://127.0.0.1:$s3"
    export PARLEY_TEST_S3_REGION=garage
    PARLEY_TEST_S3_KEY=$($g key info --show-secret parley-test | awk '/Key ID:/{print $3}')
    PARLEY_TEST_S3_SECRET=$($g key info --show-secret parley-test | awk '/Secret key:/{print $3}')
    export PARLEY_TEST_S3_KEY PARLEY_TEST_S3_SECRET
    log "Garage S3 on 127.0.0.1:$s3 (data in $dir)"
}
