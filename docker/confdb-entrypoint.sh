#!/usr/bin/env bash
# Entrypoint of sws/confdb: PostgreSQL 15 with the environment contract of the
# official postgres image, so either image can serve as the configuration store.
#
#   POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE)  superuser password; required
#                         unless POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_USER         superuser name (postgres)
#   POSTGRES_DB           database created at first start (= POSTGRES_USER)
#   POSTGRES_INITDB_ARGS  extra initdb arguments
#   POSTGRES_HOST_AUTH_METHOD  auth for network connections (scram-sha-256)
#   /docker-entrypoint-initdb.d/*.sql|*.sh  run once, after the first initdb
#
# The data directory ($PGDATA) is initialised only when it holds no cluster yet.
# Then postgres replaces this script as PID 1, so Docker's stop signal reaches it
# directly: SIGTERM is a smart shutdown, SIGINT (the image's STOPSIGNAL) a fast one.
#
# The password is handed to initdb in a file readable only by postgres and never
# written to the log or to a command line.
set -Eeuo pipefail

PG_MAJOR=${PG_MAJOR:-15}
export PATH="/usr/lib/postgresql/$PG_MAJOR/bin:$PATH"
export PGDATA=${PGDATA:-/var/lib/postgresql/data}

log() { printf 'confdb-entrypoint: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# VAR or VAR_FILE, never both (the official image's rule).
file_env() {
	local var=$1 file_var="${1}_FILE" default=${2:-}
	if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
		die "$var and $file_var are both set; set only one"
	fi
	local value=$default
	if [ -n "${!var:-}" ]; then
		value=${!var}
	elif [ -n "${!file_var:-}" ]; then
		[ -r "${!file_var}" ] || die "$file_var: ${!file_var} is not a readable file"
		value=$(<"${!file_var}")
	fi
	export "$var"="$value"
	unset "$file_var"
}

# As root: give the data and socket directories to postgres, then run the rest
# of this script as postgres. Started as another user, trust its permissions.
prepare_dirs() {
	mkdir -p "$PGDATA" /var/run/postgresql || true
	chmod 0700 "$PGDATA" || true
	chmod 3777 /var/run/postgresql || true
	if [ "$(id -u)" = 0 ]; then
		find "$PGDATA" \! -user postgres -exec chown postgres:postgres {} +
		chown postgres:postgres /var/run/postgresql
	fi
}

init_cluster() {
	local auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
		die "POSTGRES_PASSWORD is not set; set it (or POSTGRES_PASSWORD_FILE), or set POSTGRES_HOST_AUTH_METHOD=trust to allow connections without one"
	fi
	log "initdb pgdata=$PGDATA user=$POSTGRES_USER db=$POSTGRES_DB auth=$auth"
	local pwfile
	pwfile=$(umask 077 && mktemp)
	printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
	local pw_args=()
	[ -n "$POSTGRES_PASSWORD" ] && pw_args=(--pwfile="$pwfile")
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words by contract
	initdb --username="$POSTGRES_USER" "${pw_args[@]}" --auth-local=trust --auth-host="$auth" \
		--encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} >/dev/null
	rm -f "$pwfile"
	{
		echo
		echo "# Reached from other containers and the host: every address, $auth."
		echo "host all all all $auth"
	} >>"$PGDATA/pg_hba.conf"
	echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"

	# The first server listens on the socket only, so health checks and clients
	# see the database only once it is fully set up.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -s start
	local psql=(psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --quiet --username "$POSTGRES_USER")
	if [ "$POSTGRES_DB" != postgres ]; then
		"${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
		EOSQL
	fi
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		[ -e "$f" ] || continue
		case "$f" in
		*.sh)
			log "run file=$f"
			# shellcheck disable=SC1090
			. "$f"
			;;
		*.sql)
			log "run file=$f"
			"${psql[@]}" --dbname "$POSTGRES_DB" -f "$f"
			;;
		*) log "skip file=$f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w -s stop
	log "initdb done"
}

main() {
	local first=${1:-postgres}
	# Flags alone are flags for postgres; any other command runs as given.
	if [ "${first#-}" != "$first" ] || [ $# = 0 ]; then
		set -- postgres "$@"
	elif [ "$first" != postgres ]; then
		exec "$@"
	fi

	prepare_dirs
	if [ "$(id -u)" = 0 ]; then
		exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
	fi

	file_env POSTGRES_PASSWORD
	export POSTGRES_USER=${POSTGRES_USER:-postgres}
	export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		init_cluster
	fi
	# The server never needs the password again; keep it out of its environment.
	unset POSTGRES_PASSWORD
	log "start pgdata=$PGDATA"
	exec "$@"
}

main "$@"
