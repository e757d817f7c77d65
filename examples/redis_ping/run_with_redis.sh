#!/usr/bin/env bash
# Runs a redis example (redis_ping, hiredis: any program taking [host] [port]) against a private
# redis-server on a free loopback port.
#
#   run_with_redis.sh <path to netpool_example_redis_ping or netpool_example_hiredis>
#
# Exit status: the example's; 77 (CTest's SKIP_RETURN_CODE) when redis-server is not installed;
# 1 if redis could not be started. Redis binds 127.0.0.1 only, saves nothing, and runs in a
# temporary directory. It is stopped by its pid (never by name) whatever happens: the EXIT trap.
set -euo pipefail

example=${1:?usage: run_with_redis.sh <netpool_example_redis_ping|netpool_example_hiredis>}
redis_server=${NETPOOL_REDIS_SERVER:-/usr/bin/redis-server}
if [[ ! -x $redis_server ]]; then
  echo "SKIP: $redis_server not found (Debian: apt-get install redis-server)"
  exit 77
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/netpool-redis.XXXXXX")
pid=""
example_pid=""
# shellcheck disable=SC2317  # reached through the EXIT trap
stop_redis() {
  local rc=$?
  if [[ -n $example_pid ]]; then  # interrupted while the example ran: stop it first
    kill "$example_pid" 2>/dev/null || true
    wait "$example_pid" 2>/dev/null || true
  fi
  if [[ -n $pid ]]; then
    kill "$pid" 2>/dev/null || true  # SIGTERM: redis shuts down at once (nothing to save)
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
  rm -rf "$workdir"
  exit "$rc"
}
trap stop_redis EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# A port that was free a moment ago. Another process may take it before redis binds it; redis then
# exits, and the loop below tries again with a new port.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    echo $((20000 + RANDOM % 20000))
  fi
}

# One PING over bash's /dev/tcp; true once redis answers +PONG. Bounded by read -t.
answers_ping() {
  local port=$1 reply=""
  {
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3 || true
    exec 3>&-
  } 2>/dev/null
  [[ $reply == "+PONG"* ]]
}

port=""
for attempt in 1 2 3 4 5; do
  candidate=$(free_port)
  "$redis_server" --port "$candidate" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$workdir" --logfile "$workdir/redis.log" --daemonize no &
  pid=$!
  for _ in $(seq 100); do  # up to ~10 s for redis to accept connections
    if answers_ping "$candidate"; then
      port=$candidate
      break
    fi
    kill -0 "$pid" 2>/dev/null || break  # it exited: most likely the port was taken
    sleep 0.1
  done
  [[ -n $port ]] && break
  echo "redis-server did not come up on port $candidate (attempt $attempt); its log:" >&2
  cat "$workdir/redis.log" >&2 || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
done
if [[ -z $port ]]; then
  echo "could not start redis-server" >&2
  exit 1
fi

echo "redis-server pid $pid on 127.0.0.1:$port"
# timeout: the example bounds its own I/O, but a test must never hang whatever happens. In the
# background so that a signal to this script runs its traps at once (bash defers traps until a
# foreground command ends; `wait` returns as soon as one arrives).
timeout --kill-after=5 60 "$example" 127.0.0.1 "$port" &
example_pid=$!
status=0
wait "$example_pid" || status=$?
example_pid=""
exit "$status"
