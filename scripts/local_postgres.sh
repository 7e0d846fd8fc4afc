#!/usr/bin/env bash
# A private PostgreSQL for trying the shared MLflow tracking server on one machine (docs/scale.md).
#
#   scripts/local_postgres.sh start     # cluster in $LEADSCORE_PG_DIR, database "mlflow", loopback only
#   eval "$(scripts/local_postgres.sh env)"   # PGPASSWORD and LEADSCORE_TRACKING_BACKEND_URI
#   leadscore tracking-server           # MLflow on that database, artifacts under $LEADSCORE_HOME
#   scripts/local_postgres.sh stop
#
# Needs Debian's postgresql package (apt-get install -y postgresql). As root the cluster runs as the
# postgres user (initdb refuses root). Teams point --backend-store-uri at their managed PostgreSQL.
set -euo pipefail

PG_DIR="${LEADSCORE_PG_DIR:-/tmp/leadscore-postgres}"
PG_PORT="${LEADSCORE_PG_PORT:-5433}"
PG_USER=mlflow
PG_DB=mlflow

bin_dir() {
	local initdb
	initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
	if [ -n "$initdb" ]; then
		dirname "$initdb"
	elif command -v initdb >/dev/null 2>&1; then
		dirname "$(command -v initdb)"
	else
		echo "PostgreSQL server binaries not found: apt-get install -y postgresql" >&2
		exit 1
	fi
}

as_owner() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
	local bin
	bin=$(bin_dir)
	if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
		mkdir -p "$PG_DIR"
		chmod 700 "$PG_DIR"
		umask 077
		head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PG_DIR/password"
		if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$PG_DIR"; fi
		as_owner "$bin/initdb" -D "$PG_DIR/data" -U "$PG_USER" --pwfile="$PG_DIR/password" \
			--auth=scram-sha-256 -E UTF8 >/dev/null
	fi
	if as_owner "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
		echo "already running on 127.0.0.1:$PG_PORT"
	else
		as_owner "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
			-o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR" start >/dev/null
		echo "PostgreSQL on 127.0.0.1:$PG_PORT (data in $PG_DIR/data, log $PG_DIR/log)"
	fi
	PGPASSWORD=$(cat "$PG_DIR/password") psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1 ||
		PGPASSWORD=$(cat "$PG_DIR/password") psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres \
			-qc "CREATE DATABASE $PG_DB"
	echo "next: eval \"\$($0 env)\" && leadscore tracking-server"
}

stop() {
	as_owner "$(bin_dir)/pg_ctl" -D "$PG_DIR/data" -m fast -w stop
}

env_lines() {
	echo "export PGPASSWORD=$(cat "$PG_DIR/password")"
	echo "export LEADSCORE_TRACKING_BACKEND_URI=postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) as_owner "$(bin_dir)/pg_ctl" -D "$PG_DIR/data" status ;;
env) env_lines ;;
*)
	echo "usage: $0 start|stop|status|env" >&2
	exit 2
	;;
esac
