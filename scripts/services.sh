# Sourced by scripts/test and scripts/bench: starts what the tests need,
# unless you point them at your own (SLUICE_TEST_SQS_ENDPOINT,
# SLUICE_TEST_DATABASE_URL), and exports their addresses:
#
#   fauxqs  — a fast SQS emulator (npm), on a free loopback port
#   moto    — a second SQS emulator (PyPI), so a test tuned to one server's
#             quirks shows up (SLUICE_TEST_SQS_ENDPOINT_MOTO)
#   a throwaway PostgreSQL cluster made with initdb in a temporary folder
#
# Everything started here is stopped and removed when the shell exits.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-test.XXXXXX")
chmod 755 "$work"
pids=()
pgdata=""
pg_ctl_cmd=()

cleanup() {
  local rc=$?
  for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  if [ -n "$pgdata" ]; then "${pg_ctl_cmd[@]}" -D "$pgdata" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "error: $what did not start" >&2; return 1; fi
    sleep 0.2
  done
}

# The outage tests run a fauxqs of their own (to freeze and thaw it).
"$root/scripts/install-fauxqs"
export SLUICE_TEST_FAUXQS="$root/.ci/tools/node_modules/fauxqs/dist/cli.js"

if [ -z "${SLUICE_TEST_SQS_ENDPOINT:-}" ]; then
  port=$(free_port)
  FAUXQS_PORT=$port FAUXQS_HOST=127.0.0.1 FAUXQS_LOGGER=false \
    node "$SLUICE_TEST_FAUXQS" >"$work/fauxqs.log" 2>&1 &
  pids+=($!)
  wait_for 30 "fauxqs (log: $work/fauxqs.log)" curl -sf "http://127.0.0.1:$port/health"
  export SLUICE_TEST_SQS_ENDPOINT="http://127.0.0.1:$port"
  echo "fauxqs on $SLUICE_TEST_SQS_ENDPOINT"
fi

if [ -z "${SLUICE_TEST_SQS_ENDPOINT_MOTO:-}" ]; then
  "$root/scripts/install-moto"
  port=$(free_port)
  "$root/.ci/tools/moto/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
  pids+=($!)
  wait_for 60 "moto (log: $work/moto.log)" curl -sf "http://127.0.0.1:$port/moto-api/"
  export SLUICE_TEST_SQS_ENDPOINT_MOTO="http://127.0.0.1:$port"
  echo "moto on $SLUICE_TEST_SQS_ENDPOINT_MOTO"
fi

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$pg_bin" ] && [ -z "${SLUICE_TEST_PG_BIN:-}" ]; then export SLUICE_TEST_PG_BIN="$pg_bin"; fi

if [ -z "${SLUICE_TEST_DATABASE_URL:-}" ]; then
  if [ -z "$pg_bin" ]; then
    echo "error: PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql), or set SLUICE_TEST_DATABASE_URL" >&2
    exit 1
  fi
  # initdb refuses to run as root: run the cluster as the postgres user then.
  as_owner=()
  if [ "$(id -u)" = 0 ]; then as_owner=(runuser -u postgres --); fi
  pgdata="$work/pg"
  mkdir -p "$pgdata"
  [ "$(id -u)" = 0 ] && chown postgres "$pgdata"
  pg_ctl_cmd=("${as_owner[@]}" "$pg_bin/pg_ctl")
  "${as_owner[@]}" "$pg_bin/initdb" -D "$pgdata" -A trust -U postgres >"$work/initdb.log" 2>&1
  port=$(free_port)
  "${pg_ctl_cmd[@]}" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
    -o "-p $port -k $pgdata -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
  export SLUICE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL on $SLUICE_TEST_DATABASE_URL"
fi

