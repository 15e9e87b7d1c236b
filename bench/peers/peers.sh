# shellcheck shell=bash source-path=SCRIPTDIR
# shellcheck disable=SC2034  # peer_port, peer_pids, peer_status, peer_log are for the caller
# The servers tutti is compared against (bench/peers/), installed and started the same way
# every time. Sourced, not run; sources bench/lib.sh when it is not sourced yet (for root,
# free_port, pin_to, stop_tracked, tracked_pids), so source it after lib.sh (and call
# bench_init first when the peers should be stopped on exit and pinned like tutti).
#
# Peers (each ONE process on 127.0.0.1, nchan aside, given one CPU with taskset; the
# contract with tools/ssebench.c: paths, ready modes and framing below and in the servers):
#   nchan     nginx, 1 worker (and its idle master) + nchan (apt: nginx, libnginx-mod-nchan);
#             nchan.conf.in. Transports: ws, sse (both GET /sub/{ch}).
#   socketio  Node + socket.io 4, WebSocket transport only; socketio_server.mjs.
#             Transport: socketio.
#   ws        Node + ws 8, a hand-written broadcast loop; ws_server.mjs. Transport: ws.
#   bun       Bun.serve (uWebSockets pub/sub) + SSE streams; bun_server.js, run by the Bun
#             binary of npm `bun`. Transports: ws, sse.
# (tutti is known to peer_pub_path, peer_sub_path and peer_ready only: start it with
# lib.sh's start_server.)
#
# Functions:
#   peer_install NAME      nchan: apt-get install libnginx-mod-nchan (pulls nginx) when
#                          nginx or the module is missing (root, or sudo -n). The system's
#                          nginx service is left alone and never used: on a host with
#                          systemd the package starts it on port 80 (a container's
#                          policy-rc.d usually stops that); this script only ever runs its
#                          own nginx with its own config. socketio, ws, bun: `npm ci` in
#                          bench/peers when node_modules is missing or older than
#                          package-lock.json (BENCH_NO_NPM=1: never; node_modules must be
#                          there); bun: checks that node_modules/.bin/bun runs.
#                          Returns 2 when it cannot.
#   peer_start NAME PORT CPU
#                          starts the peer on 127.0.0.1:PORT (taskset -c CPU; CPU empty, or
#                          lib.sh's pin=0 after bench_init: not pinned) with the hard
#                          descriptor limit, waits (PEER_START_TIMEOUT s, 30) for the line
#                          `ready` on its stdout and PORT accepting (nchan: until nginx's
#                          worker exists and answers HTTP on PORT),
#                          records its PID and prints it. Sets peer_pid, peer_port,
#                          peer_pids (what to measure, comma-separated: peer_pid, or for
#                          nchan nginx's master and its one worker: nchan.conf.in says why),
#                          peer_log (its stdout and stderr; nchan: nginx's error log is
#                          appended at peer_stop).
#                          Call it directly, not in $(...): then the peer is a child of the
#                          calling shell, is in lib.sh's tracked_pids (stopped by
#                          bench_cleanup on exit) and its exit status is known. Returns 2
#                          (after stopping what it started) when the peer does not start.
#   peer_stop NAME         SIGTERM to the recorded PID (only a PID peer_start recorded, and
#                          only while it is still that process), SIGKILL after 10 s; sets
#                          peer_status (exit status, "killed", or "unknown" when it was
#                          started from a subshell, not a child); removes the peer's run
#                          folder (and its log, unless it lives in bench_init's $tmp).
#   peer_pid NAME          prints the recorded PID (nothing when not started).
#   peer_server_pids NAME  prints the PIDs to measure, comma-separated (ssebench --server-pid).
#   peer_pub_path NAME [KIND]  the publish path template for ssebench --pub-path: KIND
#                          http (POST, the default) or ws (a publisher WebSocket, ssebench
#                          --pub-ws: tutti and bun)
#   peer_sub_path NAME TRANSPORT   the subscribe path template for ssebench --sub-path
#   peer_ready NAME TRANSPORT      ssebench's --ready mode (tutti, message, upgrade, socketio)
#   peer_transports NAME   the transports the peer offers (ws sse socketio), one line
#   peer_version NAME      one line, e.g. "nginx 1.22.1, nchan 1.3.6" or "node v20.x, ws 8.x"
# Templates: {ch} is the channel. Transports: sse, ws, socketio.
#
# State: one folder per peer in ${PEERS_STATE:-$tmp/peers} ($tmp: bench_init's; without
# it ${TMPDIR:-/tmp}/tutti-peers.$$, removed again by the last peer_stop).
# Settings: NGINX_BIN (/usr/sbin/nginx), NCHAN_MODULE
# (/usr/lib/nginx/modules/ngx_nchan_module.so), NODE_BIN (node), PEER_START_TIMEOUT (30).

if ! declare -F stop_tracked >/dev/null 2>&1 || ! declare -F free_port >/dev/null 2>&1; then
  # shellcheck source=../lib.sh
  source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"
fi

peers_dir=$root/bench/peers
: "${NGINX_BIN:=/usr/sbin/nginx}"
: "${NCHAN_MODULE:=/usr/lib/nginx/modules/ngx_nchan_module.so}"
: "${NODE_BIN:=node}"

peer_err() { echo "${bench_name:-peers}: $*" >&2; }

peer_known() {
  case "$1" in
    nchan|socketio|ws|bun) return 0 ;;
    *) peer_err "unknown peer '$1' (nchan, socketio, ws, bun)"; return 2 ;;
  esac
}

# The folder holding every peer's state (created on demand).
peers_state() {
  if [ -n "${PEERS_STATE:-}" ]; then echo "$PEERS_STATE"
  elif [ -n "${tmp:-}" ] && [ -d "$tmp" ]; then echo "$tmp/peers"
  else echo "${TMPDIR:-/tmp}/tutti-peers.$$"
  fi
}

# ------------------------------------------------------------------------------------
# Install
# ------------------------------------------------------------------------------------

peer_install() {
  local name=$1
  peer_known "$name" || return 2
  case "$name" in
    nchan) peer_install_nchan ;;
    *) peer_install_npm "$name" ;;
  esac
}

peer_install_nchan() {
  [ -x "$NGINX_BIN" ] && [ -f "$NCHAN_MODULE" ] && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=(sudo -n)
    else peer_err "nchan: nginx or $NCHAN_MODULE missing; installing needs root (apt-get install libnginx-mod-nchan)"; return 2
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    peer_err "nchan: no apt-get; install nginx with the nchan module (NGINX_BIN, NCHAN_MODULE)"
    return 2
  fi
  echo "${bench_name:-peers}: apt-get install libnginx-mod-nchan (nginx with the nchan module)" >&2
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libnginx-mod-nchan)
  if ! timeout 900 "${sudo[@]}" "${apt[@]}" >/dev/null; then
    # Perhaps stale package lists.
    timeout 300 "${sudo[@]}" apt-get update -qq >/dev/null || true
    timeout 900 "${sudo[@]}" "${apt[@]}" >/dev/null || { peer_err "nchan: apt-get install libnginx-mod-nchan failed"; return 2; }
  fi
  if [ ! -x "$NGINX_BIN" ] || [ ! -f "$NCHAN_MODULE" ]; then
    peer_err "nchan: still no $NGINX_BIN or $NCHAN_MODULE after apt-get"
    return 2
  fi
}

peer_install_npm() {
  local name=$1
  command -v "$NODE_BIN" >/dev/null 2>&1 || { peer_err "$name: no node (apt-get install nodejs npm)"; return 2; }
  if [ ! -f "$peers_dir/node_modules/.package-lock.json" ] \
    || [ "$peers_dir/package-lock.json" -nt "$peers_dir/node_modules/.package-lock.json" ]; then
    if [ "${BENCH_NO_NPM:-0}" = 1 ]; then
      peer_err "$name: bench/peers/node_modules missing or older than its lockfile, and BENCH_NO_NPM=1"
      return 2
    fi
    command -v npm >/dev/null 2>&1 || { peer_err "$name: no npm"; return 2; }
    echo "${bench_name:-peers}: npm ci in bench/peers (socket.io, ws, bun)" >&2
    (cd "$peers_dir" && timeout 600 npm ci --no-audit --no-fund --loglevel=error >&2) \
      || { peer_err "npm ci in bench/peers failed"; return 2; }
  fi
  # npm `bun` puts the binary in place in its postinstall script; when scripts were not run
  # (npm --ignore-scripts) bin/bun.exe is a stub that says so: run the script now.
  if [ "$name" = bun ] && ! "$peers_dir/node_modules/.bin/bun" --version >/dev/null 2>&1 \
    && [ -f "$peers_dir/node_modules/bun/install.js" ]; then
    (cd "$peers_dir/node_modules/bun" && timeout 300 "$NODE_BIN" install.js >&2) || true
  fi
  case "$name" in
    socketio) [ -f "$peers_dir/node_modules/socket.io/package.json" ] ;;
    ws) [ -f "$peers_dir/node_modules/ws/package.json" ] ;;
    bun) "$peers_dir/node_modules/.bin/bun" --version >/dev/null 2>&1 ;;
  esac || { peer_err "$name: not usable from bench/peers/node_modules (npm ci in bench/peers)"; return 2; }
}

# ------------------------------------------------------------------------------------
# Start and stop
# ------------------------------------------------------------------------------------

# Field $2 of /proc/$1/stat counted from the state (3 = state, 4 = ppid, 22 = start time).
peer_stat() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  local f
  read -ra f <<<"$s"
  echo "${f[$(($2 - 3))]}"
}

# Whether process $1 exists and is not a zombie.
peer_alive() {
  local st
  st=$(peer_stat "$1" 3) && [ "$st" != Z ]
}

peer_pid() {
  local f
  f="$(peers_state)/$1/pid"
  [ -f "$f" ] && cut -d' ' -f1 "$f"
  return 0
}

peer_start() {
  local name=$1 port=$2 cpu=${3:-}
  peer_known "$name" || return 2
  [ -n "$port" ] || { peer_err "peer_start $name: no port"; return 2; }
  local state dir
  state=$(peers_state)
  dir=$state/$name
  if [ -f "$dir/pid" ]; then
    local old
    old=$(peer_pid "$name")
    if peer_alive "$old" && [ "$(peer_stat "$old" 22)" = "$(cut -d' ' -f2 "$dir/pid")" ]; then
      peer_err "peer $name already running (pid $old); peer_stop $name first"
      return 2
    fi
  fi
  rm -rf "$dir"
  mkdir -p "$dir/run" || return 2
  peer_log=$state/$name.log
  : >"$peer_log"

  local cmd=()
  case "$name" in
    nchan)
      if [ ! -x "$NGINX_BIN" ] || [ ! -f "$NCHAN_MODULE" ]; then
        peer_err "nchan: not installed (peer_install nchan)"
        return 2
      fi
      sed -e "s|@PORT@|$port|g" -e "s|@RUNDIR@|$dir/run|g" -e "s|@MODULE@|$NCHAN_MODULE|g" \
        "$peers_dir/nchan.conf.in" >"$dir/run/nginx.conf" || return 2
      cmd=("$NGINX_BIN" -p "$dir/run" -e "$dir/run/error.log" -c "$dir/run/nginx.conf") ;;
    socketio) cmd=("$NODE_BIN" "$peers_dir/socketio_server.mjs") ;;
    ws) cmd=("$NODE_BIN" "$peers_dir/ws_server.mjs") ;;
    bun) cmd=("$peers_dir/node_modules/.bin/bun" "$peers_dir/bun_server.js") ;;
  esac
  local pin_cmd=()
  if [ -n "$cpu" ] && [ "${pin:-1}" = 1 ] && command -v taskset >/dev/null 2>&1; then
    pin_cmd=(taskset -c "$cpu")
  fi

  # The subshell raises the descriptor limit and becomes the peer (exec): $! is its PID.
  (
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    cd "$dir/run" || exit 1
    exec env HOST=127.0.0.1 PORT="$port" NODE_ENV=production DO_NOT_TRACK=1 \
      "${pin_cmd[@]}" "${cmd[@]}"
  ) >"$peer_log" 2>&1 </dev/null &
  peer_pid=$!
  peer_port=$port
  echo "$peer_pid $(peer_stat "$peer_pid" 22)" >"$dir/pid"
  tracked_pids+=("$peer_pid")

  local waited=0 limit=$((${PEER_START_TIMEOUT:-30} * 10)) up=0
  while [ "$waited" -lt "$limit" ]; do
    if ! peer_alive "$peer_pid"; then
      peer_err "peer $name exited at start:"
      peer_show_log "$name" >&2
      peer_stop "$name" >/dev/null 2>&1 || true
      return 2
    fi
    if [ "$name" = nchan ]; then
      # The master listens before its worker runs: wait for the worker and an answer.
      local w
      w=$(peer_children "$peer_pid")
      if [ -n "$w" ] && [ "$(peer_http_status "$port" /pub?id=peers-ready)" != "" ]; then
        peer_pids=$peer_pid,${w//$'\n'/,}
        up=1
        break
      fi
    elif grep -qx 'ready' "$peer_log" 2>/dev/null \
      && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      peer_pids=$peer_pid
      up=1
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  if [ "$up" != 1 ]; then
    peer_err "peer $name not ready on 127.0.0.1:$port within ${PEER_START_TIMEOUT:-30} s:"
    peer_show_log "$name" >&2
    peer_stop "$name" >/dev/null 2>&1 || true
    return 2
  fi
  echo "$peer_pids" >"$dir/pids"
  echo "$peer_pid"
}

# The PIDs of the children of process $1, one a line.
peer_children() {
  local d
  if [ -r "/proc/$1/task/$1/children" ]; then
    tr ' ' '\n' <"/proc/$1/task/$1/children" | grep . || true
    return 0
  fi
  for d in /proc/[0-9]*; do
    [ "$(peer_stat "${d#/proc/}" 4 2>/dev/null)" = "$1" ] && echo "${d#/proc/}"
  done
  return 0
}

# The status code of GET $2 on 127.0.0.1:$1 (HTTP/1.0), or nothing (bounded by 2 s).
peer_http_status() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    IFS=' ' read -r -t 2 _ code _ <&3 || exit 1
    echo "$code"
  ) 2>/dev/null
}

# The PIDs to measure (ssebench --server-pid), comma-separated: the peer's process, and for
# nchan nginx's master and its worker.
peer_server_pids() {
  local f
  f="$(peers_state)/$1/pids"
  [ -f "$f" ] && cat "$f"
  return 0
}

# The last lines of peer $1's output (and nginx's error log).
peer_show_log() {
  local state
  state=$(peers_state)
  tail -n 20 "$state/$1.log" 2>/dev/null || true
  [ ! -s "$state/$1/run/error.log" ] || tail -n 20 "$state/$1/run/error.log"
}

peer_stop() {
  local name=$1 state dir pid start
  peer_known "$name" || return 2
  state=$(peers_state)
  dir=$state/$name
  peer_status=""
  [ -f "$dir/pid" ] || return 0
  read -r pid start <"$dir/pid"
  if [ -n "$pid" ] && peer_alive "$pid" && [ "$(peer_stat "$pid" 22)" = "$start" ]; then
    if [ "$(peer_stat "$pid" 4)" = "${BASHPID:-$$}" ]; then
      # A child of this shell: lib.sh's stop_tracked waits for it and gets its status.
      stop_tracked "$pid" "peer $name"
      peer_status=$pid_status
    else
      # Started from another (sub)shell: by PID, without wait (a zombie counts as gone).
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do peer_alive "$pid" || break; sleep 0.1; done
      if peer_alive "$pid" && [ "$(peer_stat "$pid" 22)" = "$start" ]; then
        peer_err "peer $name $pid still running 10 s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        peer_status=killed
      else
        peer_status=unknown
      fi
    fi
  elif [ -n "$pid" ]; then
    # Already gone (or the PID is another process now: never signalled); its status when
    # it was a child of this shell.
    local keep=() p rc=0
    for p in ${tracked_pids[@]+"${tracked_pids[@]}"}; do [ "$p" = "$pid" ] || keep+=("$p"); done
    tracked_pids=(${keep[@]+"${keep[@]}"})
    wait "$pid" 2>/dev/null || rc=$?
    if [ "$rc" = 127 ]; then peer_status=unknown; else peer_status=$rc; fi
  fi
  if [ "$name" = nchan ] && [ -s "$dir/run/error.log" ]; then
    cat "$dir/run/error.log" >>"$state/$name.log"
  fi
  rm -rf "$dir"
  if [ -z "${PEERS_STATE:-}" ] && [ "$state" = "${TMPDIR:-/tmp}/tutti-peers.$$" ]; then
    rm -f "$state/$name.log"
    rmdir "$state" 2>/dev/null || true
  fi
  return 0
}

# ------------------------------------------------------------------------------------
# What the load generator needs to know
# ------------------------------------------------------------------------------------

peer_transports() {
  case "$1" in
    nchan|bun) echo "ws sse" ;;
    socketio) echo "socketio" ;;
    ws) echo "ws" ;;
    tutti) echo "sse ws" ;;
    *) peer_err "unknown peer '$1'"; return 2 ;;
  esac
}

peer_pub_path() {
  case "$1:${2:-http}" in
    nchan:http) echo '/pub?id={ch}' ;;
    socketio:http|ws:http|bun:http) echo '/publish/{ch}' ;;
    tutti:http) echo '/api/channels/{ch}/publish' ;;
    bun:ws) echo '/pubws/{ch}' ;;
    tutti:ws) echo '/ws' ;;
    *) peer_err "peer '$1' has no ${2:-http} publisher"; return 2 ;;
  esac
}

peer_sub_path() {
  case "$1:${2:-}" in
    nchan:ws|nchan:sse) echo '/sub/{ch}' ;;
    socketio:socketio) echo '/socket.io/?EIO=4&transport=websocket' ;;
    ws:ws|bun:ws|tutti:ws) echo '/ws/{ch}' ;;
    bun:sse|tutti:sse) echo '/sse/{ch}' ;;
    *) peer_err "peer '$1' has no transport '${2:-}'"; return 2 ;;
  esac
}

peer_ready() {
  case "$1:${2:-}" in
    nchan:ws|nchan:sse) echo upgrade ;;
    socketio:socketio) echo socketio ;;
    ws:ws|bun:ws|bun:sse) echo message ;;
    tutti:ws|tutti:sse) echo tutti ;;
    *) peer_err "peer '$1' has no transport '${2:-}'"; return 2 ;;
  esac
}

peer_version() {
  local v
  case "$1" in
    nchan)
      v=$("$NGINX_BIN" -v 2>&1 | sed -n 's|.*nginx/\([^ ]*\).*|\1|p')
      echo "nginx ${v:-?}, nchan $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null | sed 's/^[0-9]*://; s/[+~-].*//')" ;;
    socketio|ws)
      local pkg=$1
      [ "$pkg" = socketio ] && pkg=socket.io
      v=$("$NODE_BIN" -p 'require(process.argv[1]).version' "$peers_dir/node_modules/$pkg/package.json" 2>/dev/null)
      echo "node $("$NODE_BIN" --version 2>/dev/null), $pkg ${v:-?}" ;;
    bun) echo "bun $("$peers_dir/node_modules/.bin/bun" --version 2>/dev/null)" ;;
    *) peer_err "unknown peer '$1'"; return 2 ;;
  esac
}
