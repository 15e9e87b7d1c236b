#!/usr/bin/env bash
# Side-by-side benchmark: tutti against the servers people use today, same workload,
# same machine, same command, one table.
#
# Servers (BENCH_SERVERS to pick, space-separated): tutti1 (tutti --workers 1), tutti2
# (--workers 2), bun (Bun.serve: uWebSockets pub/sub), nchan (nginx, 1 worker), socketio
# (Node + socket.io 4), ws (Node + ws, a broadcast loop). Each server gets CPU 0 (tutti2:
# CPUs 0 and 1, shared with the load generator: see docs/BENCHMARKS.md), the load
# generator (build/release/ssebench: C, one thread, epoll) CPU 1. Peers are installed and
# started by bench/peers/peers.sh; a fresh server for every run.
#
# Workloads (docs/BENCHMARKS.md says what each figure means):
#   ramp-1k, ramp-10k      1 channel, N WebSocket subscribers (Socket.IO for socketio); the
#                          publish rate rises by a fifth every second until deliveries fall
#                          behind (ssebench --ramp): the highest sustained deliveries/s
#   ramp-1k-wspub          ramp-1k with the publisher on a WebSocket (tutti, bun)
#   fanout-1k, fanout-10k  the same subscribers with 8 messages in flight: server CPU per
#                          delivery under load
#   latency-10k            N = 10000, a fixed rate every server sustains: p50/p99/max; three
#                          rounds, the servers taking turns, the round with the median p99
#                          kept (one run's p99 moves by 10-20 % on this VM)
#   sse-1k                 as fanout-1k over SSE (tutti, nchan, bun)
#   channels               10000 subscribers on 1000 channels, publishes spread over them
#   idle                   as many WebSocket connections as the open-file limit allows
#                          (19000): connect time, RSS per connection
#   jam                    100 rooms x 5 participants x 20 events/s for 10 s, relayed to
#                          everyone else in the room (tutti rooms; Socket.IO rooms with
#                          socket.to(room).emit): relay latency (tools/jambench)
#   floor                  tools/floor: one prebuilt frame written to N sockets, one write
#                          per message (single) and 8 per write (coalesced)
#
# Usage: bench/compare.sh [--quick]
#   --quick   tiny N and M, every server and workload once: a smoke run (make test)
# Environment: TUTTI_BIN (build/release/tutti), SSEBENCH_BIN / SSEBENCH, JAMBENCH_BIN /
#   JAMBENCH, FLOOR_BIN,
#   BENCH_SERVERS, BENCH_LAT_RATE (messages/s of the latency run, 5), BENCH_LAT_ROUNDS (3),
#   BENCH_NO_NPM=1.
# Exit status: 0 when every run delivered everything it expected and every server
# stopped cleanly; 1 otherwise (after the table); 2 on setup errors (a peer that cannot
# be installed or started). Loopback only; every process it starts is stopped by PID;
# every step is bounded in time.

set -euo pipefail

bench_name=compare
# shellcheck source=bench/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
bench_args "$@"
bench_init
# shellcheck source=bench/peers/peers.sh
. "$root/bench/peers/peers.sh"

FLOOR_BIN=${FLOOR_BIN:-$(dirname "$SSEBENCH_BIN")/floor}
[ -x "$FLOOR_BIN" ] || FLOOR_BIN=$(dirname "$TUTTI_BIN")/floor
JAMBENCH_BIN=${JAMBENCH_BIN:-${JAMBENCH:-$(dirname "$SSEBENCH_BIN")/jambench}}
[ -x "$JAMBENCH_BIN" ] || JAMBENCH_BIN=$(dirname "$TUTTI_BIN")/jambench
for b in "$FLOOR_BIN" "$JAMBENCH_BIN"; do
  [ -x "$b" ] || { echo "$bench_name: no $b (cmake --build build/release)" >&2; exit 2; }
done
SERVERS=${BENCH_SERVERS:-tutti1 tutti2 bun nchan socketio ws}
LAT_ROUNDS=${BENCH_LAT_ROUNDS:-3}
LAT_RATE=${BENCH_LAT_RATE:-5}
TMO=20
if [ "$quick" = 1 ]; then
  LAT_ROUNDS=${BENCH_LAT_ROUNDS:-2}
  N1=50 N2=200 M1=20 M2=10 NCH=400 CH=40 MCH=200 NIDLE=300 MLAT=10 NFLOOR2=200 MFLOOR=20 PFLOOR=2 ROOMS=4 JAMS=2
  RAMP1=(--ramp 20,2,0.5 --ramp-max-steps 3) RAMP2=(--ramp 5,2,0.5 --ramp-max-steps 3)
else
  N1=1000 N2=10000 M1=2000 M2=200 NCH=10000 CH=1000 MCH=20000 NIDLE=18000 MLAT=50 NFLOOR2=9000 MFLOOR=200 PFLOOR=10 ROOMS=100 JAMS=10
  RAMP1=(--ramp 50,1.2,1 --ramp-max-steps 50) RAMP2=(--ramp 5,1.2,1 --ramp-max-steps 50)
fi

for s in $SERVERS; do
  case "$s" in
    tutti1|tutti2) ;;
    bun|nchan|socketio|ws) peer_install "$s" || { echo "$bench_name: cannot install $s" >&2; exit 2; } ;;
    *) echo "$bench_name: unknown server '$s'" >&2; exit 2 ;;
  esac
done

# Rooms relay 20 events/s per participant in the jam run; WebSocket publishers publish
# without a per-connection rate limit.
TUTTI_ARGS=(--room-rate 1000 --client-publish '*' --ws-rate 0)
res=$tmp/results
mkdir -p "$res"
problems=0

# ------------------------------------------------------------------ one run

# run SERVER TRANSPORT LABEL ssebench-options...: a fresh server, one ssebench run, the
# JSON line kept as $res/SERVER.LABEL.json.
run() {
  local srv=$1 transport=$2 label=$3
  shift 3
  local name=$srv pids port_ rc=0 status
  [ "${srv#tutti}" != "$srv" ] && name=tutti
  local out=$res/$srv.$label.txt json=$res/$srv.$label.json
  local opts=()
  if [ "$transport" != jam ]; then
    local pub=http
    case "$label" in *-wspub) pub=ws ;; esac
    opts=(--transport "$transport" --sub-path "$(peer_sub_path "$name" "$transport")"
      --pub-path "$(peer_pub_path "$name" "$pub")" --ready "$(peer_ready "$name" "$transport")")
    [ "$pub" = ws ] && opts+=(--pub-ws)
    [ "$name" = tutti ] || opts+=(--raw)
  fi
  case "$srv" in
    tutti1) start_server 1 0 "${TUTTI_ARGS[@]}"; pids=$server_pid port_=$port ;;
    tutti2) start_server 2 0,1 "${TUTTI_ARGS[@]}"; pids=$server_pid port_=$port ;;
    *)
      port_=$(free_port) || { echo "$bench_name: no free port" >&2; exit 2; }
      peer_start "$srv" "$port_" 0 >/dev/null || { echo "$bench_name: $srv did not start" >&2; exit 2; }
      pids=$(peer_server_pids "$srv") ;;
  esac
  local gen=("$SSEBENCH_BIN" "${opts[@]}")
  if [ "$transport" = jam ]; then
    gen=("$JAMBENCH_BIN")
    [ "$name" = socketio ] && gen+=(--proto socketio)
  fi
  # shellcheck disable=SC2046
  timeout $((TMO + 180)) $(pin_to 1) "${gen[@]}" --host 127.0.0.1 --port "$port_" --server-pid "$pids" \
    --timeout "$TMO" --json "$@" >"$out" 2>&1 || rc=$?
  grep '^{' "$out" >"$json" || true
  if [ "${srv#tutti}" != "$srv" ]; then
    stop_server
    status=$server_status
  else
    peer_stop "$srv" >/dev/null 2>&1 || true
    status=${peer_status:-?}
  fi
  local mark=""
  if [ "$rc" != 0 ] || [ ! -s "$json" ]; then mark=" (ssebench exit $rc)"; problems=1; fi
  # nginx and node exit 0 on SIGTERM; so must tutti
  if [ "$status" != 0 ]; then mark="$mark (server exit $status)"; problems=1; fi
  printf '  %-9s %-10s %s%s\n' "$srv" "$label" "$(summary "$json")" "$mark"
  if [ -n "$mark" ]; then tail -n 5 "$out" | sed 's/^/      /'; fi
}

summary() {
  [ -s "$1" ] || { echo "no result"; return; }
  if [ "$(jget messages "$1")" = 0 ]; then
    echo "connect $(jget connect_s "$1") s, $(jget rss_per_conn_bytes "$1") B/conn"
  else
    echo "$(jget delivered "$1")/$(jget expected "$1") delivered, $(fmt_k "$(jget deliveries_per_s "$1")")/s," \
      "p50 $(jget p50 "$1") p99 $(jget p99 "$1") ms, $(cpu_of "$1") CPU/delivery" \
      "$(v=$(jget sustained_deliveries_per_s "$1"); [ -n "$v" ] && echo "; highest sustained $(fmt_k "$v")/s")"
  fi
}

cpu_of() { # ssebench reports ns per delivery, jambench µs
  local ns
  ns=$(jget cpu_ns_per_delivery "$1")
  if [ -n "$ns" ] && [ "$ns" != null ]; then echo "$ns ns"; else echo "$(jget cpu_us_per_delivery "$1") µs"; fi
}

fmt_k() { awk -v v="${1:-}" 'BEGIN { if (v == "" || v == "null") print "-"; else if (v >= 1e6) printf "%.2fM", v / 1e6; else if (v >= 1e3) printf "%.0fk", v / 1e3; else printf "%.0f", v }'; }

serves() { # serves SERVER TRANSPORT
  local name=$1
  [ "${1#tutti}" != "$1" ] && name=tutti
  [ "$2" = ws ] && [ "$name" = socketio ] && return 0
  peer_transports "$name" | tr ' ' '\n' | grep -qx "$2"
}

transport_of() { if [ "$1" = socketio ] && [ "$2" = ws ]; then echo socketio; else echo "$2"; fi; }

# ------------------------------------------------------------------ workloads

echo "tutti side-by-side benchmark: $SERVERS"
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
  "$(uname -r); servers on CPU 0, load generator on CPU 1 $([ "$pin" = 1 ] || echo '(not pinned: no taskset)')"
for s in $SERVERS; do
  case "$s" in tutti*) echo "  $s: tutti $("$TUTTI_BIN" --version 2>/dev/null | head -n 1)" ;; *) echo "  $s: $(peer_version "$s")" ;; esac
done

echo
# The floor at N1 and at N2 (at most 9000 pairs: 18000 descriptors), its writer on the
# servers' CPU and its reader on the load generator's.
floor_cpus=()
[ "$pin" = 1 ] && floor_cpus=(--cpus 0,1)
floor_run() { # floor_run N [floor options]: sets floor_single, floor_coal, floor_paced
  local n=$1
  shift
  "$FLOOR_BIN" --subscribers "$n" --messages "$MFLOOR" --src-addrs 4 "${floor_cpus[@]}" --json "$@" \
    >"$res/floor-$n.txt" 2>&1 || problems=1
  grep '^{' "$res/floor-$n.txt" >"$res/floor-$n.json" || true
  floor_of() { grep -o "\"$1\":{[^}]*" "$res/floor-$n.json" | grep -o '"cpu_ns_per_delivery":[0-9.]*' | cut -d: -f2 || true; }
  floor_single=$(floor_of single) floor_coal=$(floor_of coalesced) floor_paced=$(floor_of paced)
  echo "  N=$n: one write per message ${floor_single:-?} ns/delivery; 8 messages per write ${floor_coal:-?} ns/delivery" \
    "$([ -n "$floor_paced" ] && echo "; one write per message at $LAT_RATE messages/s $floor_paced ns/delivery")"
}
echo "== floor (tools/floor, M=$MFLOOR)"
floor_run "$N1"
floor1_single=$floor_single floor1_coal=$floor_coal
floor_run "$NFLOOR2" --rate "$LAT_RATE" --paced-messages "$PFLOOR"
floor2_single=$floor_single floor2_coal=$floor_coal floor2_paced=$floor_paced

echo
echo "== ramp-1k: 1 channel, $N1 WebSocket subscribers, rate ramped (${RAMP1[*]})"
for s in $SERVERS; do run "$s" "$(transport_of "$s" ws)" ramp-1k --subscribers "$N1" "${RAMP1[@]}"; done

echo
echo "== ramp-10k: 1 channel, $N2 WebSocket subscribers, rate ramped (${RAMP2[*]})"
for s in $SERVERS; do run "$s" "$(transport_of "$s" ws)" ramp-10k --subscribers "$N2" "${RAMP2[@]}" --src-addrs 4; done

echo
echo "== ramp-1k-wspub: as ramp-1k, the publisher on a WebSocket (tutti, bun)"
for s in $SERVERS; do
  case "$s" in tutti1|tutti2|bun) run "$s" ws ramp-1k-wspub --subscribers "$N1" "${RAMP1[@]}" ;; esac
done

echo
echo "== fanout-1k: 1 channel, $N1 WebSocket subscribers, $M1 messages, 8 in flight"
for s in $SERVERS; do run "$s" "$(transport_of "$s" ws)" fanout-1k --subscribers "$N1" --messages "$M1" --rate 0 --window 8; done

echo
echo "== fanout-10k: 1 channel, $N2 WebSocket subscribers, $M2 messages, 8 in flight"
for s in $SERVERS; do run "$s" "$(transport_of "$s" ws)" fanout-10k --subscribers "$N2" --messages "$M2" --rate 0 --window 8 --src-addrs 4; done

echo
echo "== latency-10k: $N2 WebSocket subscribers, $LAT_RATE messages/s, $MLAT messages, $LAT_ROUNDS rounds"
for r in $(seq "$LAT_ROUNDS"); do
  for s in $SERVERS; do run "$s" "$(transport_of "$s" ws)" "latency-10k-r$r" --subscribers "$N2" --messages "$MLAT" --rate "$LAT_RATE" --src-addrs 4; done
done
# each server's round with the median p99 is its latency-10k result
for s in $SERVERS; do
  pick=$(for r in $(seq "$LAT_ROUNDS"); do
    f=$res/$s.latency-10k-r$r.json
    [ -s "$f" ] && echo "$(jget p99 "$f") $f"
  done | sort -g | awk '{ a[NR] = $2 } END { if (NR) print a[int((NR + 1) / 2)] }')
  [ -n "$pick" ] && cp "$pick" "$res/$s.latency-10k.json"
done

echo
echo "== sse-1k: 1 channel, $N1 SSE subscribers, $M1 messages, 8 in flight"
for s in $SERVERS; do
  serves "$s" sse && run "$s" sse sse-1k --subscribers "$N1" --messages "$M1" --rate 0 --window 8
done

echo
echo "== channels: $NCH WebSocket subscribers on $CH channels, $MCH messages, 64 in flight"
for s in $SERVERS; do run "$s" "$(transport_of "$s" ws)" channels --subscribers "$NCH" --channels "$CH" --messages "$MCH" --rate 0 --window 64 --src-addrs 4; done

echo
echo "== idle: $NIDLE WebSocket connections"
for s in $SERVERS; do run "$s" "$(transport_of "$s" ws)" idle --subscribers "$NIDLE" --messages 0 --src-addrs 8; done

echo
echo "== jam: $ROOMS rooms x 5 participants x 20 events/s for $JAMS s (tutti rooms, Socket.IO rooms)"
for s in $SERVERS; do
  case "$s" in tutti1|tutti2|socketio) run "$s" jam jam --rooms "$ROOMS" --participants 5 --rate 20 --duration "$JAMS" ;; esac
done

# ------------------------------------------------------------------ the table

# cell SERVER LABEL FIELD [kind]: the figure, and its ratio to tutti1's (kind k: in k/M,
# n: a plain number, p: a plain number without the ratio)
cell() {
  local f=$res/$1.$2.json v base
  [ -s "$f" ] || { echo "-"; return; }
  v=$(jget "$3" "$f")
  base=$(jget "$3" "$res/tutti1.$2.json" 2>/dev/null || true)
  awk -v v="$v" -v b="$base" -v kind="${4:-k}" 'BEGIN {
    if (v == "" || v == "null") { print "-"; exit }
    if (kind == "k") s = (v >= 1e6) ? sprintf("%.2fM", v / 1e6) : (v >= 1e3) ? sprintf("%.0fk", v / 1e3) : sprintf("%.0f", v)
    else s = (v < 10) ? sprintf("%.2f", v) : (v < 100) ? sprintf("%.1f", v) : sprintf("%.0f", v)
    if (kind != "p" && b != "" && b != "null" && b + 0 > 0 && v + 0 > 0) s = s sprintf(" (%.2fx)", v / b)
    print s }'
}

echo
echo "== table: figure (ratio to tutti1's; for throughput higher is better, for latency, CPU and memory lower is)"
header="| workload |"
sep="|---|"
for s in $SERVERS; do header="$header $s |"; sep="$sep---|"; done
echo "$header"
echo "$sep"
row() { # row TITLE LABEL FIELD KIND [LABEL2 FIELD2]: with a second field, "a / b" cells
  local line="| $1 |" c
  for s in $SERVERS; do
    c=$(cell "$s" "$2" "$3" "$4")
    [ -n "${6:-}" ] && [ "$c" != - ] && c="$c / $(cell "$s" "$5" "$6" p)"
    line="$line $c |"
  done
  echo "$line"
}
row "fanout $N1 subs, rate ramped: highest sustained deliveries/s" ramp-1k sustained_deliveries_per_s k
row "fanout $N2 subs, rate ramped: highest sustained deliveries/s" ramp-10k sustained_deliveries_per_s k
row "fanout $N1 subs, ramped, WebSocket publisher: highest sustained deliveries/s" ramp-1k-wspub sustained_deliveries_per_s k
row "fanout $N1 subs, ramped, at the highest sustained step: server CPU ns/delivery" ramp-1k sustained_cpu_ns_per_delivery n
row "... server CPU % / load generator CPU %" ramp-1k sustained_server_cpu_pct p ramp-1k sustained_loadgen_cpu_pct
row "fanout $N2 subs, ramped, at the highest sustained step: server CPU ns/delivery" ramp-10k sustained_cpu_ns_per_delivery n
row "... server CPU % / load generator CPU %" ramp-10k sustained_server_cpu_pct p ramp-10k sustained_loadgen_cpu_pct
row "fanout $N1 subs, 8 in flight: deliveries/s" fanout-1k deliveries_per_s k
row "fanout $N1 subs: server CPU ns/delivery" fanout-1k cpu_ns_per_delivery n
row "fanout $N2 subs, 8 in flight: deliveries/s" fanout-10k deliveries_per_s k
row "fanout $N2 subs: server CPU ns/delivery" fanout-10k cpu_ns_per_delivery n
row "latency $N2 subs @ $LAT_RATE msg/s: p50 ms" latency-10k p50 n
row "latency $N2 subs @ $LAT_RATE msg/s: p99 ms" latency-10k p99 n
row "latency $N2 subs @ $LAT_RATE msg/s: max ms" latency-10k max n
row "latency $N2 subs: server CPU ns/delivery" latency-10k cpu_ns_per_delivery n
row "SSE $N1 subs: deliveries/s" sse-1k deliveries_per_s k
row "$CH channels, $NCH subs: deliveries/s" channels deliveries_per_s k
row "jam relay $ROOMS x 5 @ 20/s: p50 ms" jam p50 n
row "jam relay $ROOMS x 5 @ 20/s: p99 ms" jam p99 n
row "jam relay: server CPU µs/delivery" jam cpu_us_per_delivery n
row "idle $NIDLE conns: connect s" idle connect_s n
row "idle $NIDLE conns: RSS bytes/conn" idle rss_per_conn_bytes n
echo
echo "| floor: server CPU ns/delivery, one write per message (N=$N1 / $NFLOOR2) | ${floor1_single:-?} / ${floor2_single:-?} |"
echo "| floor: server CPU ns/delivery, 8 messages per write (N=$N1 / $NFLOOR2) | ${floor1_coal:-?} / ${floor2_coal:-?} |"
echo "| floor: server CPU ns/delivery, one write per message at $LAT_RATE messages/s (N=$NFLOOR2) | ${floor2_paced:-?} |"
echo
# Each server's CPU per delivery over the floor of its pattern: under load (8 in flight)
# the coalesced floor; at the latency run's low rate the paced one.
for l in fanout-1k fanout-10k sse-1k latency-10k; do
  fl=$floor2_coal what="8 messages per write"
  case "$l" in
    *-1k) fl=$floor1_coal ;;
    latency-10k) fl=$floor2_paced what="one write per message at $LAT_RATE messages/s" ;;
  esac
  line="$l over the floor ($what):"
  for s in $SERVERS; do
    f=$res/$s.$l.json
    [ -s "$f" ] || continue
    line="$line $s $(awk -v t="$(jget cpu_ns_per_delivery "$f")" -v fl="${fl:-0}" 'BEGIN {
      if (t == "" || t == "null" || fl + 0 == 0) print "?"; else printf "%.2fx", t / fl }')"
  done
  echo "$line"
done
if [ "$problems" != 0 ]; then
  echo
  echo "!!! some runs did not deliver everything or a server did not stop cleanly (see above)"
  exit 1
fi
