#!/usr/bin/env bash
# SSE fan-out benchmark for tutti.
#
# For --workers 1 and then --workers 2 it starts tutti on a free loopback port, opens
# N SSE subscribers with tools/ssebench, publishes M messages at a fixed rate (latency)
# and then, on a fresh server, as fast as a window of W messages in flight allows
# (throughput), and prints ssebench's figures and a summary. Pinning (when taskset and
# 2+ CPUs exist):
# the server on CPU 0 (with 2 workers on CPUs 0-1, so one worker shares CPU 1 with the
# load generator), ssebench on CPU 1.
#
# Usage: bench/sse_fanout.sh [--quick]
#   --quick   smoke run: N=20 subscribers, M=20 messages
# Environment:
#   TUTTI_BIN      server binary (default: build/release/tutti)
#   SSEBENCH_BIN   load generator (or SSEBENCH, as CTest sets it; default: next to
#                  TUTTI_BIN, else compiled from tools/ssebench.c into a temporary folder)
#   BENCH_N, BENCH_M, BENCH_RATE   override subscribers, messages, fixed rate
#   BENCH_WINDOW   messages in flight in the unlimited run (default 8; a larger window,
#                  e.g. 32, lets the server batch more and shows its peak throughput)
#
# Exit status: 0 when every run delivered every expected message and the server
# started and stopped cleanly; 1 otherwise (after printing everything); 2 on setup
# errors. Every process it starts is stopped by PID; every step is bounded in time.
# Traffic goes to 127.0.0.1 only.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "sse_fanout: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$quick" = 1 ]; then
  N=${BENCH_N:-20}; M=${BENCH_M:-20}; RATE=${BENCH_RATE:-200}; TMO=5
else
  N=${BENCH_N:-1000}; M=${BENCH_M:-200}; RATE=${BENCH_RATE:-500}; TMO=10
fi
PAYLOAD=128
WINDOW=${BENCH_WINDOW:-8}

TUTTI_BIN=${TUTTI_BIN:-$root/build/release/tutti}
if [ ! -x "$TUTTI_BIN" ]; then
  echo "sse_fanout: no server binary at $TUTTI_BIN (build it, or set TUTTI_BIN)" >&2
  exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sse_fanout.XXXXXX")
server_pid=""

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
      echo "sse_fanout: server $server_pid still running 10 s after SIGTERM; sending SIGKILL" >&2
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
cleanup() {
  stop_server || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- the load generator

SSEBENCH_BIN=${SSEBENCH_BIN:-${SSEBENCH:-}}
if [ -z "$SSEBENCH_BIN" ]; then
  for c in "$(dirname "$TUTTI_BIN")/ssebench" "$(dirname "$TUTTI_BIN")/tools/ssebench"; do
    if [ -x "$c" ] && [ ! "$root/tools/ssebench.c" -nt "$c" ]; then SSEBENCH_BIN=$c; break; fi
  done
fi
if [ -z "$SSEBENCH_BIN" ]; then
  SSEBENCH_BIN=$tmp/ssebench
  cc -O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -o "$SSEBENCH_BIN" "$root/tools/ssebench.c"
fi

# ---------------------------------------------------------------- pinning

ncpu=$(nproc 2>/dev/null || echo 1)
pin=0
if command -v taskset >/dev/null 2>&1 && [ "$ncpu" -ge 2 ]; then pin=1; fi

# Prints the taskset prefix for a CPU list, or nothing when not pinning.
pin_to() { if [ "$pin" = 1 ]; then echo "taskset -c $1"; fi; }

# Both the server and ssebench get the hard descriptor limit (ssebench raises its own too).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- server life

# Prints a loopback port nothing listens on, below the ephemeral range.
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

# Starts tutti with $1 workers on CPUs $2; sets server_pid, port, server_log.
start_server() {
  local workers=$1 cpus=$2
  port=$(free_port) || { echo "sse_fanout: no free port found" >&2; exit 2; }
  server_log=$tmp/server-w$workers-$RANDOM.log
  # shellcheck disable=SC2046
  $(pin_to "$cpus") "$TUTTI_BIN" --host 127.0.0.1 --port "$port" --workers "$workers" \
    --log-level warn --web-root "$root/web" >"$server_log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "sse_fanout: tutti exited at start:" >&2
      tail -n 20 "$server_log" >&2
      server_pid=""
      exit 2
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "sse_fanout: tutti did not listen on 127.0.0.1:$port within 10 s" >&2
  tail -n 20 "$server_log" >&2
  exit 2
}

# Value of a top-level or nested numeric/string field in a one-line JSON document.
jget() { grep -o "\"$1\":[^,}]*" "$2" | head -n 1 | cut -d: -f2- | tr -d '"'; }

failures=0
summary=$tmp/summary.txt
printf '%-8s %-11s %17s %12s %9s %9s %9s %10s %11s %11s\n' workers mode delivered \
  deliveries/s p50_ms p99_ms max_ms cpu_us/dlv rss0_MiB rssN_MiB >"$summary"

# One run: $1 workers, $2 server CPUs, $3 label, $4 rate (0 = unlimited).
run_one() {
  local workers=$1 cpus=$2 label=$3 rate=$4
  start_server "$workers" "$cpus"
  local out=$tmp/run-w$workers-$label.txt json=$tmp/run-w$workers-$label.json rc=0
  echo
  echo "=== tutti --workers $workers ($label) on 127.0.0.1:$port, server pid $server_pid" \
    "$( [ "$pin" = 1 ] && echo "pinned to CPU $cpus, ssebench on CPU 1" || echo "not pinned")"
  # shellcheck disable=SC2046
  timeout $((TMO + 120)) $(pin_to 1) "$SSEBENCH_BIN" --host 127.0.0.1 --port "$port" \
    --channel "bench-w$workers-$label" --subscribers "$N" --messages "$M" --rate "$rate" \
    --window "$WINDOW" --payload "$PAYLOAD" --publishers 1 --server-pid "$server_pid" \
    --timeout "$TMO" --json >"$out" 2>&1 || rc=$?
  grep -v '^{' "$out" || true
  grep '^{' "$out" >"$json" || true
  stop_server
  local problems=0
  if [ "$rc" != 0 ]; then
    echo "!!! ssebench exited with $rc"
    problems=1
  fi
  if [ "$server_status" != 0 ]; then
    echo "!!! tutti exited with status $server_status after SIGTERM"
    problems=1
  fi
  if [ -s "$server_log" ]; then
    echo "--- server log ($(wc -l <"$server_log") lines at level warn and above; first 10):"
    head -n 10 "$server_log"
  fi
  if [ -s "$json" ]; then
    local expected delivered
    expected=$(jget expected "$json"); delivered=$(jget delivered "$json")
    [ "$expected" = "$delivered" ] || problems=1
    printf '%-8s %-11s %17s %12.0f %9.3f %9.3f %9.3f %10.3f %11.1f %11.1f\n' "$workers" "$label" \
      "$delivered/$expected" "$(jget deliveries_per_s "$json")" "$(jget p50 "$json")" \
      "$(jget p99 "$json")" "$(jget max "$json")" "$(jget cpu_us_per_delivery "$json")" \
      "$(awk "BEGIN{print $(jget rss_before_kib "$json")/1024}")" \
      "$(awk "BEGIN{print $(jget rss_connected_kib "$json")/1024}")" >>"$summary"
  else
    problems=1
    printf '%-8s %-11s %17s\n' "$workers" "$label" "no result" >>"$summary"
  fi
  failures=$((failures + problems))
}

echo "sse_fanout: $TUTTI_BIN, N=$N subscribers, M=$M messages of $PAYLOAD B," \
  "fixed rate $RATE/s then unlimited (window $WINDOW); $ncpu CPUs"
for workers in 1 2; do
  if [ "$workers" = 1 ]; then cpus=0; else cpus=0,1; fi
  run_one "$workers" "$cpus" "rate$RATE" "$RATE"
  run_one "$workers" "$cpus" "unlimited" 0
done

echo
echo "=== summary (N=$N, M=$M; rss0 = server RSS before connecting, rssN = after N connected)"
cat "$summary"
if [ "$pin" = 1 ]; then
  echo "note: with --workers 2 the server runs on CPUs 0-1, so one worker shares CPU 1 with ssebench."
else
  echo "note: not pinned (taskset missing or fewer than 2 CPUs)."
fi
if [ "$failures" -gt 0 ]; then
  echo "sse_fanout: $failures run(s) incomplete or unclean (see above)" >&2
  exit 1
fi
exit 0
