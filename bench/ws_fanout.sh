#!/usr/bin/env bash
# WebSocket fan-out benchmark for tutti.
#
# For N=1000 and N=10000 subscribers (GET /ws/{channel}), without and with
# permessage-deflate, it starts tutti on a free loopback port, opens N WebSockets with
# tools/ssebench --transport ws, publishes M messages of 512 B of JSON (over HTTP) at a
# fixed rate (latency) and then, on a fresh server, as fast as a window of W messages in
# flight allows (throughput), and prints ssebench's figures and a summary. The fixed
# rate is chosen per N so that both sizes get the same deliveries per second. Runs use
# --workers 1, and for N=1000 also --workers 2. Pinning (when taskset and 2+ CPUs
# exist): the server on CPU 0 (with 2 workers on CPUs 0-1, so one worker shares CPU 1
# with the load generator), ssebench on CPU 1.
#
# The payload's padding is varied text (ssebench --pad words), so a message of 512 B of
# data (about 600 B with the envelope) is over the server's --ws-deflate-threshold (256)
# and compresses about as JSON does; the summary's wire_B column is the bytes per
# delivery on the wire. ssebench inflates each distinct compressed message once and
# reuses the result for its byte-identical copies (set BENCH_INFLATE_ALL=1 to inflate
# every copy, as N real clients would, which makes the load generator the bottleneck).
#
# Usage: bench/ws_fanout.sh [--quick]
#   --quick   smoke run for CI: N=20, M=20, --workers 1, without and with deflate;
#             fails on any lost message
# Environment:
#   TUTTI_BIN      server binary (default: build/release/tutti)
#   SSEBENCH_BIN   load generator (or SSEBENCH, as CTest sets it; default: next to
#                  TUTTI_BIN, else compiled from tools/ssebench.c into a temporary folder)
#   BENCH_SIZES    subscriber counts (default "1000 10000")
#   BENCH_M        messages per run (default 200)
#   BENCH_DPS      deliveries per second of the fixed-rate run: rate = BENCH_DPS / N
#                  messages/s (default 100000: 100/s for N=1000, 10/s for N=10000)
#   BENCH_WINDOW   messages in flight in the unlimited run (default 8)
#   BENCH_PAYLOAD, BENCH_PAD   message data size (512) and ssebench --pad (words)
#
# Exit status: 0 when every run delivered every expected message and the server
# started and stopped cleanly; 1 otherwise (after printing everything); 2 on setup
# errors. Every process it starts is stopped by PID; every step is bounded in time.
# Traffic goes to 127.0.0.1 only.

set -euo pipefail

bench_name=ws_fanout
# shellcheck source=bench/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

bench_args "$@"

if [ "$quick" = 1 ]; then
  SIZES=${BENCH_SIZES:-20}; M=${BENCH_M:-20}; DPS=${BENCH_DPS:-4000}; TMO=5
else
  SIZES=${BENCH_SIZES:-1000 10000}; M=${BENCH_M:-200}; DPS=${BENCH_DPS:-100000}; TMO=10
fi
PAYLOAD=${BENCH_PAYLOAD:-512}
PAD=${BENCH_PAD:-words}
WINDOW=${BENCH_WINDOW:-8}
inflate_all=()
if [ "${BENCH_INFLATE_ALL:-0}" = 1 ]; then inflate_all=(--inflate-every-copy); fi

bench_init

failures=0
summary=$tmp/summary.txt
printf '%-6s %-3s %-7s %-10s %17s %12s %9s %9s %9s %10s %8s %9s %8s %8s\n' N wrk deflate \
  mode delivered deliveries/s p50_ms p99_ms max_ms cpu_us/dlv wire_B rssN_MiB drops \
  retrans >"$summary"

# One run: $1 subscribers, $2 workers, $3 server CPUs, $4 deflate (0/1), $5 rate (0 =
# unlimited).
run_one() {
  local n=$1 workers=$2 cpus=$3 deflate=$4 rate=$5
  local mode=unlimited dname=off
  [ "$rate" = 0 ] || mode=rate$rate
  local extra=()
  if [ "$deflate" = 1 ]; then dname=on; extra=(--deflate "${inflate_all[@]}"); fi
  local label=n$n-deflate-$dname-$mode
  bench_run "$workers" "$cpus" "$label" --transport ws "${extra[@]}" \
    --channel "bench-w$workers-$label" --subscribers "$n" --messages "$M" --rate "$rate" \
    --window "$WINDOW" --payload "$PAYLOAD" --pad "$PAD" --publishers 1
  local json=$run_json
  echo "--- loopback during the run: $run_drops packets dropped at the input backlog" \
    "(net.core.netdev_max_backlog $(cat /proc/sys/net/core/netdev_max_backlog 2>/dev/null || echo ?))," \
    "$run_retrans TCP segments retransmitted"
  if [ -s "$json" ]; then
    printf '%-6s %-3s %-7s %-10s %17s %12.0f %9.3f %9.3f %9.3f %10.3f %8.1f %9.1f %8s %8s\n' \
      "$n" "$workers" "$dname" "$mode" \
      "$(jget delivered "$json")/$(jget expected "$json")" "$(jget deliveries_per_s "$json")" \
      "$(jget p50 "$json")" "$(jget p99 "$json")" "$(jget max "$json")" \
      "$(jget cpu_us_per_delivery "$json")" "$(jget wire_bytes_per_delivery "$json")" \
      "$(awk "BEGIN{print $(jget rss_connected_kib "$json")/1024}")" \
      "$run_drops" "$run_retrans" >>"$summary"
  else
    printf '%-6s %-3s %-7s %-10s %17s\n' "$n" "$workers" "$dname" "$mode" "no result" >>"$summary"
  fi
  failures=$((failures + run_problems))
}

echo "ws_fanout: $TUTTI_BIN, N in {$SIZES} WebSocket subscribers, M=$M messages of" \
  "$PAYLOAD B (pad $PAD), fixed rate $DPS deliveries/s then unlimited (window $WINDOW);" \
  "$ncpu CPUs"
for n in $SIZES; do
  rate=$(awk "BEGIN{r = $DPS / $n; print (r < 1 ? 1 : r)}")
  workers_list="1 2"
  [ "$n" -le 1000 ] || workers_list=1
  [ "$quick" = 0 ] || workers_list=1
  for workers in $workers_list; do
    if [ "$workers" = 1 ]; then cpus=0; else cpus=0,1; fi
    for deflate in 0 1; do
      run_one "$n" "$workers" "$cpus" "$deflate" "$rate"
      run_one "$n" "$workers" "$cpus" "$deflate" 0
    done
  done
done

echo
echo "=== summary (M=$M messages of $PAYLOAD B; wire_B = bytes on the wire per delivery;"
echo "    rssN = server RSS after N connected; cpu_us/dlv = server CPU in the publish window;"
echo "    drops/retrans = loopback packets dropped at the kernel's input backlog and TCP"
echo "    segments retransmitted during the run, machine-wide: each drop adds a retransmission"
echo "    delay to some deliveries, so runs with drops have a longer latency tail)"
cat "$summary"
if [ "$pin" = 1 ]; then
  echo "note: with --workers 2 the server runs on CPUs 0-1, so one worker shares CPU 1 with ssebench."
else
  echo "note: not pinned (taskset missing or fewer than 2 CPUs)."
fi
if [ "$failures" -gt 0 ]; then
  echo "ws_fanout: $failures run(s) incomplete or unclean (see above)" >&2
  exit 1
fi
exit 0
