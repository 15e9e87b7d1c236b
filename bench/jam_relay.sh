#!/usr/bin/env bash
# Jam-session (room) relay benchmark for tutti.
#
# Starts tutti on a free loopback port with --workers 1 and then --workers 2 (a fresh
# server per run, --room-rate high enough that the events are never rate-limited) and runs
# tools/jambench against it: R rooms of P WebSocket participants (GET /ws, no
# permessage-deflate), made with session:create and session:join; then every participant
# sends event:broadcast events at E/s for D seconds, each carrying its send time and a
# per-sender counter. jambench measures the relay latency of every delivery, checks that
# each event reaches the P-1 others of its room exactly once and in order, that nobody
# gets its own events back, and that seq increases per room; it reads the server's CPU
# time per delivery from /proc. The script prints jambench's figures per run, the
# server's warn/error log lines, and a summary table.
#
# Pinning (when taskset and 2+ CPUs exist): the server on CPU 0 (both worker counts, so
# with --workers 2 both workers share CPU 0; set BENCH_SERVER_CPUS=0-1 to spread them),
# jambench on CPU 1.
#
# Usage: bench/jam_relay.sh [--quick]
#   --quick   smoke run for CI: R=3 rooms, P=3, E=10/s, D=2 s, --workers 1; fails on any
#             loss, own echo or other relay error
# Environment:
#   TUTTI_BIN          server binary (default: build/release/tutti)
#   JAMBENCH_BIN       load generator (or JAMBENCH; default: next to TUTTI_BIN when not
#                      older than tools/jambench.c, else compiled into a temporary folder)
#   BENCH_ROOMS, BENCH_PARTICIPANTS, BENCH_RATE, BENCH_DURATION
#                      R, P, E (events/s per participant), D (s) (100, 5, 20, 10)
#   BENCH_PAYLOAD      pad each event's payload to this many bytes (0: {"t","n","s"} only)
#   BENCH_WORKERS      worker counts to run (default "1 2"; --quick: "1")
#   BENCH_ROOM_RATE    tutti --room-rate (default 1000)
#   BENCH_SERVER_CPUS  CPUs of the server (default 0)
#
# Exit status: 0 when every run delivered every event to every other participant of its
# room with no duplicate, no out-of-order delivery, no own echo, no seq or error message,
# every event acknowledged, no error-level server log line, and the server started and
# stopped cleanly; 1 otherwise (after printing everything); 2 on setup errors. Every
# process it starts is stopped by PID; every step is bounded in time. Traffic goes to
# 127.0.0.1 only.

set -euo pipefail

bench_name=jam_relay
# shellcheck source=bench/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

bench_args "$@"

if [ "$quick" = 1 ]; then
  R=${BENCH_ROOMS:-3}; P=${BENCH_PARTICIPANTS:-3}; E=${BENCH_RATE:-10}; D=${BENCH_DURATION:-2}
  WORKERS=${BENCH_WORKERS:-1}; TMO=5
else
  R=${BENCH_ROOMS:-100}; P=${BENCH_PARTICIPANTS:-5}; E=${BENCH_RATE:-20}; D=${BENCH_DURATION:-10}
  WORKERS=${BENCH_WORKERS:-1 2}; TMO=10
fi
PAYLOAD=${BENCH_PAYLOAD:-0}
ROOM_RATE=${BENCH_ROOM_RATE:-1000}
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}

bench_init

# The load generator: JAMBENCH_BIN, or JAMBENCH, or next to TUTTI_BIN when not older than
# its source, else compiled into $tmp.
JAMBENCH_BIN=${JAMBENCH_BIN:-${JAMBENCH:-}}
if [ -z "$JAMBENCH_BIN" ]; then
  for c in "$(dirname "$TUTTI_BIN")/jambench" "$(dirname "$TUTTI_BIN")/tools/jambench"; do
    if [ -x "$c" ] && [ ! "$root/tools/jambench.c" -nt "$c" ] && [ ! "$root/tools/benchlib.c" -nt "$c" ] \
      && [ ! "$root/tools/benchlib.h" -nt "$c" ]; then JAMBENCH_BIN=$c; break; fi
  done
fi
if [ -z "$JAMBENCH_BIN" ]; then
  JAMBENCH_BIN=$tmp/jambench
  cc -O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -o "$JAMBENCH_BIN" \
    "$root/tools/jambench.c" "$root/tools/benchlib.c" -lm -lz
fi

failures=0
summary=$tmp/summary.txt
printf '%-3s %-7s %13s %17s %5s %4s %4s %5s %5s %5s %8s %8s %8s %8s %9s %10s %9s %6s %7s\n' \
  wrk rooms acked/sent delivered/expect lost dup ooo echo seq err p50_ms p90_ms p99_ms \
  max_ms dlv/s cpu_us/dlv log_w/e drops retrans >"$summary"

# One run on a fresh server: $1 workers, $2 server CPUs.
run_one() {
  local workers=$1 cpus=$2
  start_server "$workers" "$cpus" --room-rate "$ROOM_RATE"
  local out=$tmp/run-w$workers.txt json=$tmp/run-w$workers.json rc=0
  echo
  echo "=== tutti --workers $workers --room-rate $ROOM_RATE on 127.0.0.1:$port, server pid" \
    "$server_pid $( [ "$pin" = 1 ] && echo "pinned to CPU $cpus, jambench on CPU 1" || echo "not pinned")"
  local drops0 retrans0
  drops0=$(net_drops); retrans0=$(tcp_retrans)
  # jambench bounds itself (connect and join phases and the drain after the last send
  # each within TMO); timeout is the backstop.
  # shellcheck disable=SC2046
  timeout $((3 * TMO + ${D%.*} + 60)) $(pin_to 1) "$JAMBENCH_BIN" --host 127.0.0.1 \
    --port "$port" --server-pid "$server_pid" --timeout "$TMO" --json --rooms "$R" \
    --participants "$P" --rate "$E" --duration "$D" --payload "$PAYLOAD" >"$out" 2>&1 || rc=$?
  local drops=$(($(net_drops) - drops0)) retrans=$(($(tcp_retrans) - retrans0))
  grep -v '^{' "$out" || true
  grep '^{' "$out" >"$json" || true
  stop_server
  local problems=0
  if [ "$rc" != 0 ]; then
    echo "!!! jambench exited with $rc"
    problems=1
  fi
  if [ "$server_status" != 0 ]; then
    echo "!!! tutti exited with status $server_status after SIGTERM"
    problems=1
  fi
  echo "--- loopback during the run: $drops packets dropped at the input backlog," \
    "$retrans TCP segments retransmitted"
  local warns=0 errs=0
  if [ -s "$server_log" ]; then
    warns=$(grep -c '"level":"warn"' "$server_log" || true)
    errs=$(($(grep -cv '^[[:space:]]*$' "$server_log" || true) - warns))
    echo "--- server log ($(wc -l <"$server_log") lines at level warn and above; per level and event:"
    log_summary "$server_log" | sed 's/^/    /'
    echo "--- first 10 lines:"
    head -n 10 "$server_log"
    if [ "$errs" -gt 0 ]; then
      echo "!!! $errs server log line(s) above warn (error, or not JSON)"
      problems=1
    fi
  else
    echo "--- server log: nothing at level warn or above"
  fi
  if [ -s "$json" ]; then
    local f
    for f in lost duplicates out_of_order own_echo seq_errors errors wrong_room sender_mismatch; do
      if [ "$(jget "$f" "$json")" != 0 ]; then
        echo "!!! $f: $(jget "$f" "$json")"
        problems=1
      fi
    done
    if [ "$(jget expected "$json")" != "$(jget delivered "$json")" ] ||
       [ "$(jget sent "$json")" != "$(jget acked "$json")" ] ||
       [ "$(jget sent "$json")" != "$(jget scheduled "$json")" ]; then
      problems=1
    fi
    printf '%-3s %-7s %13s %17s %5s %4s %4s %5s %5s %5s %8.3f %8.3f %8.3f %8.3f %9.0f %10.3f %9s %6s %7s\n' \
      "$workers" "${R}x$P" "$(jget acked "$json")/$(jget sent "$json")" \
      "$(jget delivered "$json")/$(jget expected "$json")" "$(jget lost "$json")" \
      "$(jget duplicates "$json")" "$(jget out_of_order "$json")" "$(jget own_echo "$json")" \
      "$(jget seq_errors "$json")" "$(jget errors "$json")" \
      "$(jget p50 "$json")" "$(jget p90 "$json")" "$(jget p99 "$json")" "$(jget max "$json")" \
      "$(jget deliveries_per_s "$json")" "$(jget cpu_us_per_delivery "$json")" \
      "$warns/$errs" "$drops" "$retrans" >>"$summary"
  else
    printf '%-3s %-7s %13s\n' "$workers" "${R}x$P" "no result" >>"$summary"
    problems=1
  fi
  failures=$((failures + problems))
}

echo "jam_relay: $TUTTI_BIN, R=$R rooms x P=$P participants, E=$E events/s each for D=$D s" \
  "(payload $PAYLOAD B), --room-rate $ROOM_RATE; workers {$WORKERS}; $ncpu CPUs; jambench $JAMBENCH_BIN"
for workers in $WORKERS; do
  run_one "$workers" "$SERVER_CPUS"
done

echo
echo "=== summary (R=$R x P=$P, E=$E/s for D=$D s: each event to P-1=$((P - 1)) others;"
echo "    latency = send to receipt at another participant; cpu_us/dlv = server CPU from the"
echo "    first send to the stop per delivery; log_w/e = server log lines at warn / above;"
echo "    drops/retrans = loopback input-backlog drops and TCP retransmissions, machine-wide)"
cat "$summary"
if [ "$pin" = 1 ]; then
  echo "note: server on CPU $SERVER_CPUS, jambench on CPU 1."
else
  echo "note: not pinned (taskset missing or fewer than 2 CPUs)."
fi
if [ "$failures" -gt 0 ]; then
  echo "jam_relay: $failures run(s) with lost, duplicated, echoed or misordered events, errors," \
    "or an unclean server (see above)" >&2
  exit 1
fi
exit 0
