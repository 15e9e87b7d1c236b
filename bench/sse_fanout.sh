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

bench_name=sse_fanout
# shellcheck source=bench/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

bench_args "$@"

if [ "$quick" = 1 ]; then
  N=${BENCH_N:-20}; M=${BENCH_M:-20}; RATE=${BENCH_RATE:-200}; TMO=5
else
  N=${BENCH_N:-1000}; M=${BENCH_M:-200}; RATE=${BENCH_RATE:-500}; TMO=10
fi
PAYLOAD=128
WINDOW=${BENCH_WINDOW:-8}

bench_init

failures=0
summary=$tmp/summary.txt
printf '%-8s %-11s %17s %12s %9s %9s %9s %10s %11s %11s\n' workers mode delivered \
  deliveries/s p50_ms p99_ms max_ms cpu_us/dlv rss0_MiB rssN_MiB >"$summary"

# One run: $1 workers, $2 server CPUs, $3 label, $4 rate (0 = unlimited).
run_one() {
  local workers=$1 cpus=$2 label=$3 rate=$4
  bench_run "$workers" "$cpus" "$label" --channel "bench-w$workers-$label" \
    --subscribers "$N" --messages "$M" --rate "$rate" --window "$WINDOW" \
    --payload "$PAYLOAD" --publishers 1
  local json=$run_json
  if [ -s "$json" ]; then
    printf '%-8s %-11s %17s %12.0f %9.3f %9.3f %9.3f %10.3f %11.1f %11.1f\n' "$workers" "$label" \
      "$(jget delivered "$json")/$(jget expected "$json")" "$(jget deliveries_per_s "$json")" \
      "$(jget p50 "$json")" "$(jget p99 "$json")" "$(jget max "$json")" \
      "$(jget cpu_us_per_delivery "$json")" \
      "$(awk "BEGIN{print $(jget rss_before_kib "$json")/1024}")" \
      "$(awk "BEGIN{print $(jget rss_connected_kib "$json")/1024}")" >>"$summary"
  else
    printf '%-8s %-11s %17s\n' "$workers" "$label" "no result" >>"$summary"
  fi
  failures=$((failures + run_problems))
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
