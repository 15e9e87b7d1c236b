#!/usr/bin/env bash
# Multi-node fan-out benchmark for tutti: two nodes on the Redis engine against one node on
# the memory engine, in the same run.
#
# It starts a redis-server (Debian's /usr/bin/redis-server, --save '' --appendonly no) on a
# free loopback port, then for each transport (SSE; WebSocket too with BENCH_TRANSPORTS)
# and each of three modes:
#   rate*-k1   a fixed rate, one publisher connection (latency);
#   unlim-k1   as fast as a window of W messages in flight allows, one publisher
#              connection (what one pipelining HTTP client gets);
#   unlim-kW   the same with W publisher connections (fan-out capacity): the Redis
#              engine answers the requests pipelined on one connection one at a time
#              (each after its FCALL), so with one connection only one message is in
#              flight there and every message is fanned out on its own, which the
#              memory engine (answering at once) does not show;
# and in each mode:
#   (a) memory: one tutti --engine memory, N subscribers, M messages published over HTTP;
#   (b) redis:  two tutti --engine redis --redis-url redis://127.0.0.1:PORT/0 (fresh for
#       each run, like (a)), the N subscribers spread over them (N/2 each), the M messages
#       published over HTTP to the first node only, so half the deliveries cross Redis
#       from node to node.
# One tools/ssebench process drives both (--sub-ports: it spreads its subscribers over
# the nodes, counts every delivery on every node and paces the window on all of them),
# and reports deliveries/s, latency p50/p99 and server CPU per delivery: in (b) summed
# over both tutti processes, and Redis's CPU per delivery beside it (--aux-pid). The
# summary ends with the ratio (b)/(a) per transport and mode.
#
# Pinning (when taskset and 2+ CPUs exist), as in the other benchmarks: servers on CPU 0,
# the load generator on CPU 1. In (b) the two tutti nodes and Redis all share CPU 0, so
# both setups get one core for the server side; ssebench (every subscriber and the
# publisher) runs alone on CPU 1 in both. On loopback the sender's system calls carry
# the receiver's TCP work, so server CPU includes kernel work a real network would move
# to the clients' machines (and in (b) the node-to-Redis traffic counts twice).
#
# Usage: bench/redis_fanout.sh [--quick]
#   --quick   smoke run for CI: N=40 (20 per node), M=20, SSE and WebSocket; fails on
#             any lost message
# Environment:
#   TUTTI_BIN      server binary (default: build/release/tutti)
#   SSEBENCH_BIN   load generator (or SSEBENCH, as CTest sets it; default: next to
#                  TUTTI_BIN, else compiled from tools/ssebench.c into a temporary folder)
#   REDIS_SERVER   redis-server binary, Redis 7 or later (default: /usr/bin/redis-server)
#   BENCH_N, BENCH_M   subscribers (default 10000, spread over the nodes) and messages (200)
#   BENCH_DPS      deliveries per second of the fixed-rate runs: rate = BENCH_DPS / N
#                  messages/s (default 100000: 10/s for N=10000)
#   BENCH_WINDOW   messages in flight in the unlimited runs (default 8)
#   BENCH_PUBLISHERS   publisher connections of the unlim-kW runs (default: the window)
#   BENCH_PAYLOAD  message data size (default 128)
#   BENCH_TRANSPORTS   "sse", "ws" or "sse ws" (default: sse; --quick: sse ws)
#   BENCH_NODES    nodes in (b) (default 2)
#   BENCH_REDIS_CPUS   CPUs for redis-server (default 0, with the servers)
#   BENCH_TIMEOUT  ssebench --timeout: how long after the last publish (or without
#                  progress) a run may take before what is missing counts as lost
#                  (default 10; --quick: 5)
#
# Exit status: 0 when every run delivered every expected message (on every node) and
# every server started and stopped cleanly; 1 otherwise (after printing everything); 2 on
# setup errors (no tutti, no Redis 7, ...). Every process it starts is stopped by PID;
# every step is bounded in time. Traffic goes to 127.0.0.1 only.

set -euo pipefail

bench_name=redis_fanout
# shellcheck source=bench/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

bench_args "$@"

if [ "$quick" = 1 ]; then
  N=${BENCH_N:-40}; M=${BENCH_M:-20}; DPS=${BENCH_DPS:-4000}; TMO=${BENCH_TIMEOUT:-5}
  TRANSPORTS=${BENCH_TRANSPORTS:-sse ws}
else
  N=${BENCH_N:-10000}; M=${BENCH_M:-200}; DPS=${BENCH_DPS:-100000}; TMO=${BENCH_TIMEOUT:-10}
  TRANSPORTS=${BENCH_TRANSPORTS:-sse}
fi
PAYLOAD=${BENCH_PAYLOAD:-128}
WINDOW=${BENCH_WINDOW:-8}
KMANY=${BENCH_PUBLISHERS:-$WINDOW}
NODES=${BENCH_NODES:-2}
REDIS_CPUS=${BENCH_REDIS_CPUS:-0}
RATE=$(awk "BEGIN{r = $DPS / $N; print (r < 1 ? 1 : r)}")
for t in $TRANSPORTS; do
  case "$t" in sse|ws) ;; *) echo "redis_fanout: BENCH_TRANSPORTS: '$t' is not sse or ws" >&2; exit 2 ;; esac
done
if [ "$NODES" -lt 1 ] || [ "$N" -lt "$NODES" ]; then
  echo "redis_fanout: need 1 <= BENCH_NODES ($NODES) <= BENCH_N ($N)" >&2
  exit 2
fi

bench_init
# The servers' descriptors: every subscriber on one node in (a), plus listeners, Redis
# connections and the like; ssebench checks its own need.
if [ "$(ulimit -n)" != unlimited ] && [ "$N" -gt $(($(ulimit -n) - 64)) ]; then
  echo "redis_fanout: N=$N does not fit the open-file limit $(ulimit -n) of one server" >&2
  exit 2
fi

start_redis "$REDIS_CPUS"
redis_url=redis://127.0.0.1:$redis_port/0
aux_pids=$redis_pid

failures=0
rows=$tmp/rows.txt   # setup transport mode then the figures, one line per run
notes=$tmp/notes.txt # what went wrong in the runs that did
: >"$rows"
: >"$notes"
all_logs=()

# Appends a row for the run just done: $1 setup, $2 transport, $3 mode.
record() {
  local setup=$1 transport=$2 mode=$3 json=$run_json
  if [ -s "$json" ]; then
    local per_node aux
    per_node=$(grep -o '"port_delivered":[0-9]*' "$json" | cut -d: -f2 | paste -sd+ -) || true
    aux=$(jget aux_cpu_us_per_delivery "$json") || true
    echo "$setup $transport $mode $(jget delivered "$json") $(jget expected "$json")" \
      "$(jget deliveries_per_s "$json") $(jget p50 "$json") $(jget p99 "$json")" \
      "$(jget max "$json") $(jget cpu_us_per_delivery "$json") ${aux:--}" \
      "${per_node:--} $run_drops $run_retrans $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo -)" \
      >>"$rows"
    if [ "$run_problems" != 0 ]; then
      echo "$setup $transport $mode: stopped: $(jget stop "$json"); delivered" \
        "$(jget delivered "$json")/$(jget expected "$json"), lost $(jget lost "$json")" \
        "($(jget subscribers_short "$json") subscribers short), duplicates $(jget duplicates "$json")," \
        "out of order $(jget out_of_order "$json"), closed early $(jget closed_early "$json")" \
        >>"$notes"
    fi
  else
    echo "$setup $transport $mode -" >>"$rows"
    echo "$setup $transport $mode: no result from ssebench" >>"$notes"
  fi
  failures=$((failures + run_problems))
}

echo "redis_fanout: $TUTTI_BIN, Redis $redis_version (pid $redis_pid, 127.0.0.1:$redis_port," \
  "CPU $REDIS_CPUS), N=$N subscribers (memory: 1 node; redis: $NODES nodes, $((N / NODES))" \
  "each), M=$M messages of $PAYLOAD B, transports {$TRANSPORTS}, fixed rate $RATE/s" \
  "($DPS deliveries/s) then unlimited (window $WINDOW); $ncpu CPUs, load average" \
  "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?)"
echo "redis_fanout: modes rate$RATE-k1 (fixed rate, 1 publisher connection), unlim-k1 and" \
  "unlim-k$KMANY (window $WINDOW, 1 and $KMANY publisher connections)"

node_opts=(--engine redis --redis-url "$redis_url")
specs=("$RATE:1" "0:1")
[ "$KMANY" = 1 ] || specs+=("0:$KMANY")
for transport in $TRANSPORTS; do
  for spec in "${specs[@]}"; do
    rate=${spec%%:*} k=${spec#*:}
    mode=unlim-k$k
    [ "$rate" = 0 ] || mode=rate$rate-k$k
    opts=(--transport "$transport" --subscribers "$N" --messages "$M" --rate "$rate"
      --window "$WINDOW" --payload "$PAYLOAD" --publishers "$k")

    # (a) one node, memory engine
    bench_run 1 0 "memory-$transport-$mode" --channel "bench-mem-$transport-$mode" "${opts[@]}"
    all_logs+=("$server_log")
    record memory "$transport" "$mode"

    # (b) NODES nodes, Redis engine
    bench_run_nodes "$NODES" 1 0 "redis-$transport-$mode" \
      --channel "bench-redis-$transport-$mode" "${opts[@]}"
    all_logs+=("${run_logs[@]}")
    if ! kill -0 "$redis_pid" 2>/dev/null; then
      echo "!!! redis-server $redis_pid is gone:"
      tail -n 20 "$redis_log"
      failures=$((failures + 1))
      record "redis$NODES" "$transport" "$mode"
      break 2
    fi
    record "redis$NODES" "$transport" "$mode"
  done
done

echo
echo "=== summary (N=$N, M=$M messages of $PAYLOAD B; tutti_us = CPU of every tutti process per"
echo "    delivery, in (b) summed over the $NODES nodes; redis_us = Redis's CPU per delivery;"
echo "    per_node = deliveries counted on each node; drops/retrans = loopback packets dropped"
echo "    at the input backlog and TCP segments retransmitted during the run, machine-wide;"
echo "    load = 1-minute load average after the run: above ~2 other processes shared the CPUs)"
printf '%-8s %-4s %-10s %19s %12s %8s %8s %8s %8s %8s %8s %17s %6s %7s %5s\n' setup tr mode \
  delivered deliveries/s p50_ms p99_ms max_ms tutti_us redis_us total_us per_node drops \
  retrans load
while read -r setup tr mode dlv exp dps p50 p99 max cpu aux per_node drops retrans load; do
  if [ "$dlv" = - ]; then
    printf '%-8s %-4s %-10s %19s\n' "$setup" "$tr" "$mode" "no result"
    continue
  fi
  total=$(awk -v a="$cpu" -v b="$aux" 'BEGIN{ printf "%.3f", a + (b == "-" ? 0 : b) }')
  [ "$aux" = - ] || aux=$(printf '%.3f' "$aux")
  printf '%-8s %-4s %-10s %19s %12.0f %8.3f %8.3f %8.3f %8.3f %8s %8s %17s %6s %7s %5s\n' \
    "$setup" "$tr" "$mode" "$dlv/$exp" "$dps" "$p50" "$p99" "$max" "$cpu" "$aux" "$total" \
    "$per_node" "$drops" "$retrans" "$load"
done <"$rows"
if [ -s "$notes" ]; then
  echo "incomplete or unclean runs:"
  sed 's/^/  /' "$notes"
fi

echo
echo "=== ratio redis$NODES / memory (deliveries/s above 1 = the $NODES nodes deliver more;"
echo "    CPU ratios compare tutti alone, and tutti plus Redis, with the single memory node)"
printf '%-4s %-10s %12s %9s %9s %14s %14s\n' tr mode deliveries/s p50 p99 tutti_us/dlv \
  +redis_us/dlv
awk '
  $4 != "-" {
    key = $2 " " $3
    if ($1 == "memory") { m_dps[key] = $6; m_p50[key] = $7; m_p99[key] = $8; m_cpu[key] = $10 }
    else { r_dps[key] = $6; r_p50[key] = $7; r_p99[key] = $8; r_cpu[key] = $10
           r_tot[key] = $10 + ($11 == "-" ? 0 : $11); order[++n] = key }
  }
  function ratio(a, b) { return (b > 0 ? sprintf("%.2f", a / b) : "-") }
  END {
    for (i = 1; i <= n; i++) {
      k = order[i]
      if (!(k in m_dps)) continue
      split(k, kk, " ")
      printf "%-4s %-10s %12s %9s %9s %14s %14s\n", kk[1], kk[2], ratio(r_dps[k], m_dps[k]),
        ratio(r_p50[k], m_p50[k]), ratio(r_p99[k], m_p99[k]), ratio(r_cpu[k], m_cpu[k]),
        ratio(r_tot[k], m_cpu[k])
    }
  }' "$rows"

echo
if [ "${#all_logs[@]}" -gt 0 ] && [ -n "$(log_summary "${all_logs[@]}")" ]; then
  echo "=== tutti log lines at level warn and above, all runs (count level event):"
  log_summary "${all_logs[@]}" | sed 's/^/  /'
else
  echo "=== tutti logs: nothing at level warn or above"
fi
stop_tracked "$redis_pid" "redis-server"
if [ "$pid_status" != 0 ]; then
  echo "!!! redis-server exited with status $pid_status after SIGTERM"
  failures=$((failures + 1))
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?)" \
  "(other processes on these CPUs skew the figures)"
if [ "$pin" = 1 ]; then
  echo "note: tutti (every node) pinned to CPU 0, redis-server to CPU $REDIS_CPUS, ssebench to CPU 1."
else
  echo "note: not pinned (taskset missing or fewer than 2 CPUs)."
fi
if [ "$failures" -gt 0 ]; then
  echo "redis_fanout: $failures run(s) incomplete or unclean (see above)" >&2
  exit 1
fi
exit 0
