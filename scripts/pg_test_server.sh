#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server for tests of the store's PostgreSQL backend
# (pipeline/sql/store/pg/): a fresh cluster in a directory of its own, trusting every local
# connection, on a free loopback port, tuned for speed rather than durability (no fsync, no
# synchronous commit, no full-page writes). Nothing of it is meant to survive the test run.
#
#   scripts/pg_test_server.sh start DIR   make the cluster in DIR/data, start it (log in
#                                         DIR/server.log, socket in DIR), wait until it accepts
#                                         connections and print its URL on stdout, one line:
#                                         postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/pg_test_server.sh stop DIR    stop it at once and remove DIR
#
# Needs the Debian package postgresql-15 (binaries in /usr/lib/postgresql/15/bin). initdb
# refuses to run as root, so as root DIR is given to the `postgres` user (made by that
# package) and every PostgreSQL command runs as that user; as any other user they run
# directly. DIR must be reachable by that user and short (it holds the server's Unix socket,
# whose path may not exceed 107 bytes). Typical use:
#
#   pgdir=/tmp/pharmwatch-pg.$$
#   url=$(scripts/pg_test_server.sh start "$pgdir")
#   trap 'scripts/pg_test_server.sh stop "$pgdir"' EXIT
#   ... the tests connect to "$url" ...
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin

usage() {
    echo "usage: $0 start DIR | stop DIR" >&2
    exit 2
}

# Runs a command as the cluster's owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir=$1
    if [ ! -x "$PG_BIN/initdb" ]; then
        echo "pg_test_server: $PG_BIN/initdb not found: apt-get install postgresql-15" >&2
        exit 1
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -e "$dir/data" ]; then
        echo "pg_test_server: $dir/data exists already (stop it first: $0 stop $dir)" >&2
        exit 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$dir"
        if ! runuser -u postgres -- test -w "$dir"; then
            echo "pg_test_server: the postgres user cannot reach $dir (a parent directory is" \
                "closed to others, e.g. one made by mktemp -d): choose a DIR under /tmp" >&2
            exit 1
        fi
    fi
    as_owner "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres --locale=C -E UTF8 \
        --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }

    local port
    port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')

    # Started without pg_ctl's own wait (-W): pg_isready is polled below, so that a server that
    # does not come up shows its log.
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -W -o "-p $port \
-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
-c full_page_writes=off -c max_connections=200 -k '$dir'" start >/dev/null

    local deadline=$((SECONDS + 30))
    until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "pg_test_server: the server did not accept connections within 30 s;" \
                "its log ($dir/server.log):" >&2
            cat "$dir/server.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    echo "postgres://postgres@127.0.0.1:$port/postgres"
}

stop() {
    local dir=$1 pid=""
    if [ -d "$dir/data" ]; then
        if [ -f "$dir/data/postmaster.pid" ]; then
            pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
        fi
        as_owner "$PG_BIN/pg_ctl" -D "$dir/data" stop -m immediate >/dev/null 2>&1 || true
        # pg_ctl returns once the pid file is gone; the postmaster may still be exiting then.
        # Wait (5 s at most) for the process itself, so that it is gone when we return.
        if [[ $pid =~ ^[0-9]+$ ]]; then
            local waited=0
            while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 50 ]; do
                sleep 0.1
                waited=$((waited + 1))
            done
        fi
    fi
    rm -rf "$dir"
}

[ $# -eq 2 ] || usage
case $1 in
start) start "$2" ;;
stop) stop "$2" ;;
*) usage ;;
esac
