# shellcheck shell=bash
# Settings shared by docker/up, docker/down and docker/compose. Sourced, never run.
#
# Every setting is an environment variable with a default. docker/up saves the ones in
# effect to $SWS_STATE_DIR/settings.env, and later commands read them from there for any
# variable the environment does not set: `SWS_HTTP_PORT=8080 make up` once, then plain
# `make down` or `docker/compose restart agent`, act on the same platform.
#
#   SWS_PROJECT        compose project and agent instance name (sws); containers,
#                      volumes and the services network carry it
#   SWS_STATE_DIR      generated secrets and saved settings (.sws/$SWS_PROJECT, mode 0700)
#   SWS_HTTP_PORT      host port of the balancer (80)
#   SWS_HTTP_BIND      host address it is published on (0.0.0.0)
#   SWS_API_DOMAIN     the API's domain behind the balancer (api.sws.localhost)
#   SWS_IMAGE_NAMESPACE  use <namespace>/platform:latest and <namespace>/confdb:latest, as
#                      docker/build names them with the same variable (sws)
#   and, passed to compose.yaml as they are: SWS_PLATFORM_IMAGE, SWS_CONFDB_IMAGE,
#   SWS_PROXY_WORKERS, SWS_API_WORKERS, SWS_AGENT_INTERVAL, SWS_GRACE_PERIOD,
#   SWS_API_LOG_LEVEL, SWS_AGENT_LOG_LEVEL

sws_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

sws_die() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

# The variables compose.yaml reads (besides SWS_PROJECT and SWS_STATE_DIR).
sws_settings=(
	SWS_HTTP_PORT SWS_HTTP_BIND SWS_API_DOMAIN SWS_PLATFORM_IMAGE SWS_CONFDB_IMAGE
	SWS_PROXY_WORKERS SWS_API_WORKERS SWS_AGENT_INTERVAL SWS_GRACE_PERIOD
	SWS_API_LOG_LEVEL SWS_AGENT_LOG_LEVEL
)

SWS_PROJECT=${SWS_PROJECT:-sws}
# The agent's instance rule, which is stricter than compose's project-name rule.
if ! [[ $SWS_PROJECT =~ ^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$ ]]; then
	sws_die "SWS_PROJECT: \"$SWS_PROJECT\" is not a project name (a-z, 0-9 and '-', 1-32 long)"
fi
SWS_STATE_DIR=${SWS_STATE_DIR:-$sws_root/.sws/$SWS_PROJECT}
case "$SWS_STATE_DIR" in
/*) ;;
*) SWS_STATE_DIR="$PWD/$SWS_STATE_DIR" ;;
esac
export SWS_PROJECT SWS_STATE_DIR

# Saved settings fill in what the environment leaves unset.
if [ -f "$SWS_STATE_DIR/settings.env" ]; then
	while IFS='=' read -r name value; do
		case " ${sws_settings[*]} " in
		*" $name "*) [ -n "${!name:-}" ] || printf -v "$name" '%s' "$value" ;;
		esac
	done <"$SWS_STATE_DIR/settings.env"
fi
# Images built by `SWS_IMAGE_NAMESPACE=... docker/build` unless named one by one.
if [ -n "${SWS_IMAGE_NAMESPACE:-}" ]; then
	SWS_PLATFORM_IMAGE=${SWS_PLATFORM_IMAGE:-$SWS_IMAGE_NAMESPACE/platform:latest}
	SWS_CONFDB_IMAGE=${SWS_CONFDB_IMAGE:-$SWS_IMAGE_NAMESPACE/confdb:latest}
fi
SWS_HTTP_PORT=${SWS_HTTP_PORT:-80}
SWS_HTTP_BIND=${SWS_HTTP_BIND:-0.0.0.0}
SWS_API_DOMAIN=${SWS_API_DOMAIN:-api.sws.localhost}
if ! [[ $SWS_HTTP_PORT =~ ^[0-9]+$ ]] || [ "$SWS_HTTP_PORT" -lt 1 ] || [ "$SWS_HTTP_PORT" -gt 65535 ]; then
	sws_die "SWS_HTTP_PORT: \"$SWS_HTTP_PORT\" is not a port (1-65535)"
fi
for _sws_name in "${sws_settings[@]}"; do
	# shellcheck disable=SC2163 # exporting the variable named by _sws_name
	[ -n "${!_sws_name:-}" ] && export "$_sws_name"
done
unset _sws_name

# Where the balancer is reached from this host.
# shellcheck disable=SC2034 # used by the scripts that source this file
if [ "$SWS_HTTP_BIND" = 0.0.0.0 ]; then
	sws_http_addr=127.0.0.1
else
	sws_http_addr=$SWS_HTTP_BIND
fi

# Save the settings in effect, for the commands that come later.
sws_save_settings() {
	local name tmp="$SWS_STATE_DIR/settings.env.tmp"
	{
		for name in "${sws_settings[@]}"; do
			[ -n "${!name:-}" ] && printf '%s=%s\n' "$name" "${!name}"
		done
	} >"$tmp"
	mv "$tmp" "$SWS_STATE_DIR/settings.env"
}

# The plugin if there is one, else Debian's docker-compose 1.29.
if docker compose version >/dev/null 2>&1; then
	sws_compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	sws_compose_cmd=(docker-compose)
else
	sws_compose_cmd=()
fi

sws_compose() {
	[ ${#sws_compose_cmd[@]} -gt 0 ] ||
		sws_die "neither \`docker compose\` nor \`docker-compose\` is installed"
	"${sws_compose_cmd[@]}" --project-name "$SWS_PROJECT" --file "$sws_root/compose.yaml" "$@"
}
