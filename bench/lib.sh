# shellcheck shell=bash
# Shared parts of the fan-out benchmarks (bench/sse_fanout.sh, bench/ws_fanout.sh).
# Sourced, not run. The caller sets bench_name (the prefix of its messages) before
# sourcing it and TMO (ssebench's --timeout, s) before bench_init; after bench_init it has:
#   root, tmp            the repository and a temporary folder removed on exit
#   TUTTI_BIN, SSEBENCH_BIN, ncpu, pin
#   pin_to CPUS          the taskset prefix for CPUS, or nothing when not pinning
#   start_server W CPUS [tutti options...]   sets server_pid, port, server_log
#   stop_server          SIGTERM, SIGKILL after 10 s; sets server_status
#   bench_run W CPUS LABEL [ssebench options...]
#                        one run on a fresh server; sets run_json (ssebench's JSON line,
#                        empty file when none), run_problems (0 or 1), and run_drops,
#                        run_retrans (net_drops and tcp_retrans during ssebench's run)
#   jget FIELD FILE      a field of a one-line JSON document
# For several nodes (bench/redis_fanout.sh):
#   start_redis CPUS     a redis-server on a free loopback port (no persistence); sets
#                        redis_pid, redis_port, redis_log, redis_version
#   start_node W CPUS [tutti options...]   one more server, tracked apart from
#                        server_pid; sets node_pid, node_port, node_log
#   stop_pid PID NAME    SIGTERM, SIGKILL after 10 s, by PID; sets pid_status
#   stop_tracked PID NAME   stop_pid, and forget PID (no longer stopped on exit)
#   bench_run_nodes K W CPUS LABEL [ssebench options...]
#                        one run on K fresh nodes (each with W workers on CPUS and the
#                        tutti options in the array node_opts); subscribers spread over
#                        them, published to the first; --aux-pid gets $aux_pids (e.g.
#                        Redis) when set; sets run_json, run_problems, run_drops,
#                        run_retrans like bench_run, and run_logs (the nodes' logs)
#   log_summary FILE...  the warn/error lines of tutti logs, counted per level and event
# Every process is started here and stopped by PID; traffic goes to 127.0.0.1 only.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${bench_name:=bench}"

# Prints the leading comment block of the script $1 (its --help).
bench_help() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$1"; }

# The arguments every script takes: --quick (sets quick=1) and --help.
bench_args() {
  quick=0
  for arg in "$@"; do
    case "$arg" in
      --quick) quick=1 ;;
      -h|--help) bench_help "$0"; exit 0 ;;
      *) echo "$bench_name: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
  done
}

bench_init() {
  TUTTI_BIN=${TUTTI_BIN:-$root/build/release/tutti}
  if [ ! -x "$TUTTI_BIN" ]; then
    echo "$bench_name: no server binary at $TUTTI_BIN (build it, or set TUTTI_BIN)" >&2
    exit 2
  fi
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/$bench_name.XXXXXX")
  server_pid=""
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM

  # The load generator: SSEBENCH_BIN, or SSEBENCH (as CTest sets it), or next to
  # TUTTI_BIN when not older than its source, else compiled into $tmp.
  SSEBENCH_BIN=${SSEBENCH_BIN:-${SSEBENCH:-}}
  if [ -z "$SSEBENCH_BIN" ]; then
    local c
    for c in "$(dirname "$TUTTI_BIN")/ssebench" "$(dirname "$TUTTI_BIN")/tools/ssebench"; do
      if [ -x "$c" ] && [ ! "$root/tools/ssebench.c" -nt "$c" ] && [ ! "$root/tools/benchlib.c" -nt "$c" ] \
        && [ ! "$root/tools/benchlib.h" -nt "$c" ]; then SSEBENCH_BIN=$c; break; fi
    done
  fi
  if [ -z "$SSEBENCH_BIN" ]; then
    SSEBENCH_BIN=$tmp/ssebench
    cc -O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -o "$SSEBENCH_BIN" \
      "$root/tools/ssebench.c" "$root/tools/benchlib.c" -lz -lm
  fi

  # Pinning: when taskset and 2+ CPUs exist.
  ncpu=$(nproc 2>/dev/null || echo 1)
  pin=0
  if command -v taskset >/dev/null 2>&1 && [ "$ncpu" -ge 2 ]; then pin=1; fi

  # Both the server and ssebench get the hard descriptor limit (ssebench raises its own too).
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

pin_to() { if [ "$pin" = 1 ]; then echo "taskset -c $1"; fi; }

# Stops the server this script started, by PID: SIGTERM, then SIGKILL after 10 s.
# Sets server_status to its exit status (or "killed").
stop_server() {
  server_status=""
  [ -n "$server_pid" ] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      echo "$bench_name: server $server_pid still running 10 s after SIGTERM; sending SIGKILL" >&2
      kill -KILL "$server_pid" 2>/dev/null || true
      server_status="killed"
    fi
  fi
  local rc=0
  wait "$server_pid" 2>/dev/null || rc=$?
  [ -n "$server_status" ] || server_status=$rc
  server_pid=""
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
bench_cleanup() {
  stop_server || true
  local i
  for ((i = ${#tracked_pids[@]} - 1; i >= 0; i--)); do stop_pid "${tracked_pids[$i]}" || true; done
  tracked_pids=()
  [ -z "${tmp:-}" ] || rm -rf "$tmp"
}

# Prints a loopback port nothing listens on, below the ephemeral range.
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

# Starts tutti with $1 workers on CPUs $2 (and any further tutti options); sets
# server_pid, port, server_log.
start_server() {
  local workers=$1 cpus=$2
  shift 2
  port=$(free_port) || { echo "$bench_name: no free port found" >&2; exit 2; }
  server_log=$tmp/server-w$workers-$RANDOM.log
  # shellcheck disable=SC2046
  $(pin_to "$cpus") "$TUTTI_BIN" --host 127.0.0.1 --port "$port" --workers "$workers" \
    --log-level warn --web-root "$root/web" "$@" >"$server_log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "$bench_name: tutti exited at start:" >&2
      tail -n 20 "$server_log" >&2
      server_pid=""
      exit 2
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$bench_name: tutti did not listen on 127.0.0.1:$port within 10 s" >&2
  tail -n 20 "$server_log" >&2
  exit 2
}

# Packets the kernel dropped at its input backlog (all CPUs; /proc/net/softnet_stat,
# second column), and TCP segments retransmitted (/proc/net/snmp): on loopback a burst of
# writes to many sockets can overrun net.core.netdev_max_backlog, and each drop costs a
# retransmission (tail loss probe or timeout), which shows in the latency tail.
net_drops() {
  local d=0 v
  while read -r _ v _; do d=$((d + 16#$v)); done </proc/net/softnet_stat 2>/dev/null || true
  echo "$d"
}
tcp_retrans() {
  awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RetransSegs") c = i; h = 1 }
                 else print $c }' /proc/net/snmp 2>/dev/null || echo 0
}

# Value of a top-level or nested numeric/string field in a one-line JSON document.
jget() { grep -o "\"$1\":[^,}]*" "$2" | head -n 1 | cut -d: -f2- | tr -d '"'; }

# One run on a fresh server: $1 workers, $2 server CPUs, $3 label (unique per run), then
# ssebench's options (without --host, --port, --server-pid, --timeout, --json).
# shellcheck disable=SC2034  # run_json and run_problems are for the caller
bench_run() {
  local workers=$1 cpus=$2 label=$3
  shift 3
  start_server "$workers" "$cpus"
  local out=$tmp/run-w$workers-$label.txt rc=0
  run_json=$tmp/run-w$workers-$label.json
  echo
  echo "=== tutti --workers $workers ($label) on 127.0.0.1:$port, server pid $server_pid" \
    "$( [ "$pin" = 1 ] && echo "pinned to CPU $cpus, ssebench on CPU 1" || echo "not pinned")"
  local drops0 retrans0
  drops0=$(net_drops); retrans0=$(tcp_retrans)
  # shellcheck disable=SC2046
  timeout $((TMO + 120)) $(pin_to 1) "$SSEBENCH_BIN" --host 127.0.0.1 --port "$port" \
    --server-pid "$server_pid" --timeout "$TMO" --json "$@" >"$out" 2>&1 || rc=$?
  run_drops=$(($(net_drops) - drops0)); run_retrans=$(($(tcp_retrans) - retrans0))
  grep -v '^{' "$out" || true
  grep '^{' "$out" >"$run_json" || true
  stop_server
  run_problems=0
  if [ "$rc" != 0 ]; then
    echo "!!! ssebench exited with $rc"
    run_problems=1
  fi
  if [ "$server_status" != 0 ]; then
    echo "!!! tutti exited with status $server_status after SIGTERM"
    run_problems=1
  fi
  if [ -s "$server_log" ]; then
    echo "--- server log ($(wc -l <"$server_log") lines at level warn and above; first 10):"
    head -n 10 "$server_log"
  fi
  if [ -s "$run_json" ]; then
    [ "$(jget expected "$run_json")" = "$(jget delivered "$run_json")" ] || run_problems=1
  else
    run_problems=1
  fi
}

# ------------------------------------------------------------------------------------
# Several processes: Redis and further tutti nodes (bench/redis_fanout.sh)
# ------------------------------------------------------------------------------------

tracked_pids=() # started here besides server_pid; stopped by bench_cleanup, last first
node_opts=()    # tutti options for every node of bench_run_nodes (set by the caller)
aux_pids=""     # PIDs for ssebench --aux-pid in bench_run_nodes (e.g. Redis), or empty

# Stops process $1 (a child of this shell) by PID: SIGTERM, then SIGKILL after 10 s.
# Sets pid_status to its exit status (or "killed").
stop_pid() {
  local pid=$1 name=${2:-process}
  pid_status=""
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$bench_name: $name $pid still running 10 s after SIGTERM; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      pid_status="killed"
    fi
  fi
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  [ -n "$pid_status" ] || pid_status=$rc
}

# stop_pid, and drop $1 from the processes stopped on exit.
stop_tracked() {
  stop_pid "$1" "${2:-process}"
  local keep=() p
  for p in ${tracked_pids[@]+"${tracked_pids[@]}"}; do [ "$p" = "$1" ] || keep+=("$p"); done
  tracked_pids=(${keep[@]+"${keep[@]}"})
}

# Sends one inline command to 127.0.0.1:$1 and prints the first reply line (bounded by 2 s).
redis_inline() {
  local port=$1
  shift
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf '%s\r\n' "$*" >&3
    IFS= read -r -t 2 line <&3 || exit 1
    printf '%s\n' "${line%$'\r'}"
  ) 2>/dev/null
}

# Starts redis-server (REDIS_SERVER, default /usr/bin/redis-server; Redis 7 or later, which
# tutti's engine needs) on a free loopback port with CPUs $1, without persistence; sets
# redis_pid, redis_port, redis_log, redis_version. Exits 2 when it cannot.
start_redis() {
  local cpus=$1 bin=${REDIS_SERVER:-/usr/bin/redis-server}
  if [ ! -x "$bin" ]; then
    echo "$bench_name: no redis-server at $bin (apt-get install redis-server, or set REDIS_SERVER)" >&2
    exit 2
  fi
  redis_version=$("$bin" --version 2>/dev/null | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')
  if [ -z "$redis_version" ] || [ "${redis_version%%.*}" -lt 7 ]; then
    echo "$bench_name: $bin is Redis '${redis_version:-?}'; tutti's engine needs 7 or later" >&2
    exit 2
  fi
  redis_port=$(free_port) || { echo "$bench_name: no free port found" >&2; exit 2; }
  mkdir -p "$tmp/redis"
  redis_log=$tmp/redis/redis.log
  # shellcheck disable=SC2046
  $(pin_to "$cpus") "$bin" --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --dir "$tmp/redis" --daemonize no --protected-mode yes --logfile '' >"$redis_log" 2>&1 &
  redis_pid=$!
  tracked_pids+=("$redis_pid")
  for _ in $(seq 100); do
    if ! kill -0 "$redis_pid" 2>/dev/null; then
      echo "$bench_name: redis-server exited at start:" >&2
      tail -n 20 "$redis_log" >&2
      exit 2
    fi
    if [ "$(redis_inline "$redis_port" PING)" = "+PONG" ]; then return 0; fi
    sleep 0.1
  done
  echo "$bench_name: redis-server did not answer PING on 127.0.0.1:$redis_port within 10 s" >&2
  tail -n 20 "$redis_log" >&2
  exit 2
}

# Starts one more tutti ($1 workers on CPUs $2, further tutti options after), tracked for
# bench_cleanup but not in server_pid; sets node_pid, node_port, node_log.
start_node() {
  local saved_pid=$server_pid saved_port=${port:-} saved_log=${server_log:-}
  server_pid=""
  start_server "$@"
  node_pid=$server_pid node_port=$port node_log=$server_log
  tracked_pids+=("$node_pid")
  server_pid=$saved_pid port=$saved_port server_log=$saved_log
}

# The warn/error lines of tutti's JSON logs $@, as "COUNT LEVEL EVENT" lines (other
# non-empty lines, e.g. a crash report, count as "? other").
log_summary() {
  cat "$@" 2>/dev/null | awk '
    /^[[:space:]]*$/ { next }
    {
      lv = "?"; ev = "other"
      if (match($0, /"level":"[a-z]+"/)) lv = substr($0, RSTART + 9, RLENGTH - 10)
      if (match($0, /"event":"[^"]*"/)) ev = substr($0, RSTART + 9, RLENGTH - 10)
      n[lv " " ev]++
    }
    END { for (k in n) print n[k], k }' | sort -k2,2 -k3,3
}

# One run on $1 fresh nodes: $2 workers each on CPUs $3, label $4, then ssebench's options
# (without --host, --port, --sub-ports, --server-pid, --aux-pid, --timeout, --json). Every
# node gets the tutti options in the array node_opts; the subscribers are spread
# round-robin over the nodes and the messages are published to the first one.
# shellcheck disable=SC2034  # run_* are for the caller
bench_run_nodes() {
  local nodes=$1 workers=$2 cpus=$3 label=$4
  shift 4
  local pids=() ports=() k
  run_logs=()
  for k in $(seq "$nodes"); do
    start_node "$workers" "$cpus" ${node_opts[@]+"${node_opts[@]}"}
    pids+=("$node_pid"); ports+=("$node_port"); run_logs+=("$node_log")
  done
  local plist plist_ports
  plist=$(IFS=,; echo "${pids[*]}"); plist_ports=$(IFS=,; echo "${ports[*]}")
  local out=$tmp/run-nodes$nodes-w$workers-$label.txt rc=0
  run_json=$tmp/run-nodes$nodes-w$workers-$label.json
  echo
  echo "=== $nodes x tutti --workers $workers ($label) on 127.0.0.1:{$plist_ports}, pids $plist" \
    "$( [ "$pin" = 1 ] && echo "pinned to CPU $cpus, ssebench on CPU 1" || echo "not pinned")"
  local aux=()
  [ -z "${aux_pids:-}" ] || aux=(--aux-pid "$aux_pids")
  local drops0 retrans0
  drops0=$(net_drops); retrans0=$(tcp_retrans)
  # shellcheck disable=SC2046
  timeout $((TMO + 120)) $(pin_to 1) "$SSEBENCH_BIN" --host 127.0.0.1 --port "${ports[0]}" \
    --sub-ports "$plist_ports" --server-pid "$plist" ${aux[@]+"${aux[@]}"} --timeout "$TMO" \
    --json "$@" >"$out" 2>&1 || rc=$?
  run_drops=$(($(net_drops) - drops0)); run_retrans=$(($(tcp_retrans) - retrans0))
  grep -v '^{' "$out" || true
  grep '^{' "$out" >"$run_json" || true
  run_problems=0
  if [ "$rc" != 0 ]; then
    echo "!!! ssebench exited with $rc"
    run_problems=1
  fi
  for k in "${!pids[@]}"; do
    stop_tracked "${pids[$k]}" "tutti"
    if [ "$pid_status" != 0 ]; then
      echo "!!! tutti ${pids[$k]} (port ${ports[$k]}) exited with status $pid_status after SIGTERM"
      run_problems=1
    fi
    if [ -s "${run_logs[$k]}" ]; then
      echo "--- log of node $((k + 1)) (port ${ports[$k]}; $(wc -l <"${run_logs[$k]}") lines at level warn and above; first 10):"
      head -n 10 "${run_logs[$k]}"
    fi
  done
  if [ -s "$run_json" ]; then
    [ "$(jget expected "$run_json")" = "$(jget delivered "$run_json")" ] || run_problems=1
  else
    run_problems=1
  fi
}
