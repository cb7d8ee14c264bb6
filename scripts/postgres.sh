#!/usr/bin/env bash
# A throw-away PostgreSQL server for the multi-worker tests, on 127.0.0.1 only (idempotent).
#
#   export SPIKENAS_POSTGRES_URL="$(bash scripts/postgres.sh)"   # install if needed, start, print URL
#   bash scripts/postgres.sh stop                                 # stop it (the data stay)
#
# Installs Debian's `postgresql` package when no PostgreSQL server binaries are found (with sudo
# when not root), makes a cluster of its own in $SPIKENAS_PG_DIR (default
# /tmp/spikenas-postgres; run by the `postgres` user when this script runs as root), starts it
# on 127.0.0.1 at port $SPIKENAS_PG_PORT (default: 5432, or the next free port), and creates the
# role and database `spikenas` (password `spikenas`). The only thing printed on stdout is the
# URL, postgresql://spikenas:spikenas@127.0.0.1:PORT/spikenas, also written to $DIR/url.
# A second run finds the server running and prints the same URL. Durability is switched off
# (fsync, synchronous_commit): the cluster is for tests, its data are disposable.
set -euo pipefail

DIR="${SPIKENAS_PG_DIR:-/tmp/spikenas-postgres}"
DATA="$DIR/data"
ROLE=spikenas
PASSWORD=spikenas
DATABASE=spikenas

say() { echo "postgres.sh: $*" >&2; }

server_bin() {
    # Debian keeps one folder per major version; take the newest, else whatever is on PATH.
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
        echo "$dir"
    elif command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

BIN=$(server_bin)
if [ "${1:-}" = "stop" ]; then
    if [ -n "$BIN" ] && [ -f "$DATA/postmaster.pid" ]; then
        if [ "$(id -u)" = 0 ]; then
            runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
        else
            "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
        fi
    else
        say "no server running in $DATA"
    fi
    exit 0
fi

if [ -z "$BIN" ]; then
    say "installing PostgreSQL from Debian's packages"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
    BIN=$(server_bin)
    if [ -z "$BIN" ]; then
        say "the postgresql package is installed but initdb and pg_ctl were not found"
        exit 1
    fi
fi

# initdb refuses to run as root: as root the cluster belongs to Debian's `postgres` user.
if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        say "running as root but there is no 'postgres' user to own the cluster"
        exit 1
    fi
    as_owner() { runuser -u postgres -- "$@"; }
    mkdir -p "$DIR"
    chown postgres: "$DIR"
else
    as_owner() { "$@"; }
    mkdir -p "$DIR"
fi
chmod 700 "$DIR"

if [ ! -f "$DATA/PG_VERSION" ]; then
    say "creating a cluster in $DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<EOF

# scripts/postgres.sh: a local, disposable test server
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
fi

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    PORT=$(sed -n 4p "$DATA/postmaster.pid")
    say "server already running on 127.0.0.1:$PORT"
else
    PORT="${SPIKENAS_PG_PORT:-}"
    if [ -z "$PORT" ]; then
        PORT=5432
        while port_taken "$PORT"; do
            PORT=$((PORT + 1))
            if [ "$PORT" -gt 5532 ]; then
                say "no free port between 5432 and 5532; set SPIKENAS_PG_PORT"
                exit 1
            fi
        done
    fi
    say "starting the server on 127.0.0.1:$PORT (log: $DIR/server.log)"
    if ! as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -o "-p $PORT" -w -t 60 \
        start >/dev/null; then
        say "the server did not start; the end of $DIR/server.log:"
        tail -n 20 "$DIR/server.log" >&2 || true
        exit 1
    fi
fi

psql_admin() {
    as_owner "$BIN/psql" -h "$DIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
}
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    psql_admin -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
    psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE"
fi

URL="postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"
echo "$URL" | as_owner tee "$DIR/url" >/dev/null
echo "$URL"
