#!/usr/bin/env bash
# Offline render benchmark: tutti against Tone.js, the same piece, side by side.
#
# The piece is bench/render_piece.json (MusicalParameters, docs/API.md): 60 s, 120 BPM,
# 48 kHz stereo, 4 tracks (a sawtooth `synth` lead through a lowpass playing an upDown
# pattern of 16ths over a minor pentatonic scale over 2 octaves, an `fmSynth` bass in 8ths,
# an 8-voice `polySynth` of triangle chords, 2 beats each, and a `sampler` drum grid of
# kick, snare, hat, openhat and clap), master delay and reverb.
#
# 1. Render speed. `tutti render PIECE -o OUT.wav` (its own figure: the render from score
#    to float PCM) and bench/render_tone.mjs, which expands the same JSON into the same
#    notes and renders them with Tone.js (npm `tone`) in Node on npm `node-web-audio-api`
#    (timed: the Tone.Offline call until it returns the buffer). Both pinned to CPU 0 (when
#    taskset and 2+ CPUs exist), one after the other, N repetitions each, alternating.
#    Prints the median render time, the multiple of real time, the whole process's wall
#    time (start, parameters, render, and for tutti the WAV encoding and write; for Node
#    its start and the imports), and tutti's speed over Tone.js's. Tone.js has no
#    built-in drum kit without sample files, so render_tone.mjs synthesises one like
#    tutti's (MembraneSynth and NoiseSynths; see its header).
# 2. Bytes per second of audio for each encoding of the same piece, through a tutti server
#    (the binary on a free loopback port, --render-max-duration 600): the WAV and Ogg Opus
#    files of POST /api/render?format=wav|ogg, and the four messages of
#    POST /api/channels/bench/render as four SSE subscribers (?encoding=opus|pcm16|json|
#    json16) receive them: the size of each `data:` payload (JSON; opus and pcm16 carry
#    base64), and for opus/pcm16 the raw audio bytes (what a WebSocket binary frame
#    carries, plus its small JSON header).
#
# Usage: bench/render.sh [--quick]
#   --quick   smoke run: the piece cut to 10 s, 1 repetition
# Environment:
#   TUTTI_BIN      server binary (default: build/release/tutti)
#   BENCH_PIECE    the MusicalParameters file (default: bench/render_piece.json)
#   BENCH_REPS     repetitions per engine (default 3; --quick: 1)
#   BENCH_NO_NPM   1: do not run `npm ci` in bench/ (node_modules must be there)
#
# Needs node and npm (bench/package.json and its lockfile: tone, node-web-audio-api,
# installed with `npm ci` in bench/ when missing or older than the lockfile) and curl.
# Exit status: 0 when every render and every request worked; 1 otherwise (after printing
# everything); 2 on setup errors. Every process it starts is stopped by PID; every step is
# bounded in time. Traffic goes to 127.0.0.1 only.

set -euo pipefail

bench_name=render
# shellcheck source=bench/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

bench_args "$@"
REPS=${BENCH_REPS:-$([ "$quick" = 1 ] && echo 1 || echo 3)}
PIECE_SRC=${BENCH_PIECE:-$root/bench/render_piece.json}

# ------------------------------------------------------------------ setup
# (lib.sh's bench_init also finds ssebench, which this benchmark does not use)
TUTTI_BIN=${TUTTI_BIN:-$root/build/release/tutti}
if [ ! -x "$TUTTI_BIN" ]; then
  echo "render: no tutti binary at $TUTTI_BIN (make build, or set TUTTI_BIN)" >&2
  exit 2
fi
for tool in node npm curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "render: $tool is needed" >&2; exit 2; }
done
[ -r "$PIECE_SRC" ] || { echo "render: no piece at $PIECE_SRC" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/render-bench.XXXXXX")
server_pid=""
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
ncpu=$(nproc 2>/dev/null || echo 1)
pin=0
if command -v taskset >/dev/null 2>&1 && [ "$ncpu" -ge 2 ]; then pin=1; fi

if [ "${BENCH_NO_NPM:-0}" != 1 ]; then
  if [ ! -f "$root/bench/node_modules/.package-lock.json" ] \
    || [ "$root/bench/package-lock.json" -nt "$root/bench/node_modules/.package-lock.json" ]; then
    echo "render: npm ci in bench/ (tone, node-web-audio-api)"
    (cd "$root/bench" && timeout 600 npm ci --no-audit --no-fund --loglevel=error) \
      || { echo "render: npm ci in bench/ failed" >&2; exit 2; }
  fi
fi
[ -d "$root/bench/node_modules/tone" ] || { echo "render: bench/node_modules has no tone (npm ci in bench/)" >&2; exit 2; }

# The piece (cut to 10 s with --quick).
piece=$tmp/piece.json
if [ "$quick" = 1 ]; then
  node -e 'const fs = require("fs"); const p = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
           (p.musicalParams ?? p).duration = 10; fs.writeFileSync(process.argv[2], JSON.stringify(p));' \
    "$PIECE_SRC" "$piece"
else
  cp "$PIECE_SRC" "$piece"
fi

problems=0
fail() { echo "!!! $*"; problems=1; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
# $1 / $2 with printf format $3
div() { awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { if (b > 0) printf f, a / b; else print "-" }'; }
jnum() { grep -o "\"$1\":[-0-9.e+]*" "$2" | head -n 1 | cut -d: -f2; }

tutti_version=$("$TUTTI_BIN" --version 2>/dev/null | head -n 1 || echo tutti)
tone_version=$(node -p 'require(process.argv[1]).version' "$root/bench/node_modules/tone/package.json")
nwaa_version=$(node -p 'require(process.argv[1]).version' "$root/bench/node_modules/node-web-audio-api/package.json")
where=$([ "$pin" = 1 ] && echo "both pinned to CPU 0 (taskset -c 0)" || echo "not pinned")

# ------------------------------------------------------------------ 1. render speed
echo
echo "=== render speed: $(basename "$PIECE_SRC")$([ "$quick" = 1 ] && echo ", cut to 10 s (--quick)"), $REPS repetition(s) per engine, $where"
echo "    $tutti_version; Tone.js $tone_version on node-web-audio-api $nwaa_version, node $(node --version)"
tutti_s=() tutti_wall=() tone_s=() tone_wall=()
audio_s=""
for i in $(seq "$REPS"); do
  # tutti: its own figure is the render (score -> float PCM); the process adds the rest
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2046
  if timeout 300 $(pin_to 0) "$TUTTI_BIN" render "$piece" -o "$tmp/tutti.wav" 2>"$tmp/tutti-$i.err"; then
    t1=$EPOCHREALTIME
    echo "  [$i] $(tail -n 1 "$tmp/tutti-$i.err")"
    s=$(sed -n 's/.* s of audio in \([0-9.]*\) s .*/\1/p' "$tmp/tutti-$i.err" | tail -n 1)
    audio_s=$(sed -n 's/^tutti render: \([0-9.]*\) s of audio.*/\1/p' "$tmp/tutti-$i.err" | tail -n 1)
    if [ -n "$s" ]; then
      tutti_s+=("$s"); tutti_wall+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
    else
      fail "tutti render printed no summary line"
    fi
  else
    fail "tutti render failed (exit $?):"; tail -n 5 "$tmp/tutti-$i.err"
  fi
  # Tone.js
  t0=$EPOCHREALTIME
  # shellcheck disable=SC2046
  if timeout 900 $(pin_to 0) node "$root/bench/render_tone.mjs" "$piece" --json >"$tmp/tone-$i.json" 2>"$tmp/tone-$i.err"; then
    t1=$EPOCHREALTIME
    grep -v '^tone render:' "$tmp/tone-$i.err" | head -n 5 | sed 's/^/      node: /' || true
    echo "  [$i] $(grep '^tone render:' "$tmp/tone-$i.err" | tail -n 1)"
    s=$(jnum seconds "$tmp/tone-$i.json")
    if [ -n "$s" ]; then
      tone_s+=("$s"); tone_wall+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
    else
      fail "render_tone.mjs printed no result"
    fi
  else
    fail "render_tone.mjs failed (exit $?):"; tail -n 15 "$tmp/tone-$i.err"
  fi
done

if [ "${#tutti_s[@]}" -gt 0 ] && [ "${#tone_s[@]}" -gt 0 ]; then
  tm=$(printf '%s\n' "${tutti_s[@]}" | median); tw=$(printf '%s\n' "${tutti_wall[@]}" | median)
  om=$(printf '%s\n' "${tone_s[@]}" | median); ow=$(printf '%s\n' "${tone_wall[@]}" | median)
  # Tone's breakdown from the run with the median time
  tone_med=""
  for i in $(seq "$REPS"); do
    [ -s "$tmp/tone-$i.json" ] && [ "$(jnum seconds "$tmp/tone-$i.json")" = "$om" ] && { tone_med=$tmp/tone-$i.json; break; }
  done
  echo
  printf '%-48s %12s %13s %12s\n' "engine ($audio_s s of audio)" "render s" "x real time" "process s"
  f3() { awk -v a="$1" 'BEGIN { printf "%.3f", a }'; }
  printf '%-48s %12s %13s %12s\n' "tutti render (C; median of ${#tutti_s[@]})" "$(f3 "$tm")" "$(div "$audio_s" "$tm" '%.1fx')" "$tw"
  printf '%-48s %12s %13s %12s\n' "Tone.js $tone_version + node-web-audio-api (median of ${#tone_s[@]})" "$(f3 "$om")" \
    "$(div "$audio_s" "$om" '%.2fx')" "$ow"
  echo "tutti / Tone.js speed (render): $(div "$om" "$tm" '%.1fx')   (whole processes: $(div "$ow" "$tw" '%.1fx'))"
  if [ -n "$tone_med" ]; then
    su=$(jnum setup_seconds "$tone_med"); na=$(jnum native_seconds "$tone_med")
    echo "Tone.js's $(f3 "$om") s: setup $(f3 "$su") s (graph, $(jnum notes "$tone_med") notes on the Transport, reverb impulse)," \
      "Tone's clock $(awk -v a="$om" -v b="$su" -v c="$na" 'BEGIN { printf "%.3f", a - b - c }') s," \
      "node-web-audio-api's startRendering $(f3 "$na") s"
  fi
  tstat=$tmp/tutti-stats.json
  if node "$root/bench/render_tone.mjs" --wav-stats "$tmp/tutti.wav" >"$tstat" 2>/dev/null && [ -n "$tone_med" ]; then
    echo "same piece, similar sound: peak / RMS  tutti $(jnum peak "$tstat") / $(jnum rms "$tstat")," \
      "Tone.js $(jnum peak "$tone_med") / $(jnum rms "$tone_med")"
  fi
  echo "(process s: tutti = start, parameters, render, WAV encoding and write; Tone.js = node's start, imports, render)"
else
  fail "no render time for one of the engines"
fi

# ------------------------------------------------------------------ 2. bytes per second
start_server 1 0 --render-max-duration 600 --render-timeout 600 --max-queue 1073741824
base=http://127.0.0.1:$port
echo
echo "=== bytes per second of audio, per encoding: the same piece through tutti on 127.0.0.1:$port (pid $server_pid)"

# the two files
declare -A file_bytes=()
for fmt in wav ogg; do
  code=$(curl -sS --max-time 300 -o "$tmp/srv.$fmt" -D "$tmp/srv-$fmt.h" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary @"$piece" "$base/api/render?format=$fmt" 2>"$tmp/curl-$fmt.err") || true
  if [ "$code" = 200 ]; then
    file_bytes[$fmt]=$(wc -c <"$tmp/srv.$fmt")
  else
    fail "POST /api/render?format=$fmt answered '$code': $(head -c 300 "$tmp/srv.$fmt" 2>/dev/null) $(cat "$tmp/curl-$fmt.err")"
  fi
done

# the four messages, as four SSE subscribers of channel "bench" receive them
encs=(opus pcm16 json json16)
declare -A sse_pid=()
for e in "${encs[@]}"; do
  curl -sS -N --max-time 600 "$base/sse/bench?encoding=$e" -o "$tmp/sse-$e.txt" 2>"$tmp/sse-$e.err" &
  sse_pid[$e]=$!
  tracked_pids+=("${sse_pid[$e]}")
done
for e in "${encs[@]}"; do
  for _ in $(seq 100); do
    grep -q '^event: connected' "$tmp/sse-$e.txt" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '^event: connected' "$tmp/sse-$e.txt" 2>/dev/null || fail "SSE subscriber ($e) not connected within 10 s"
done
answer=$(curl -sS --max-time 30 -X POST -H 'Content-Type: application/json' --data-binary @"$piece" \
  "$base/api/channels/bench/render" 2>&1) || true
job=$(printf '%s' "$answer" | grep -o '"job_id":"[^"]*"' | cut -d'"' -f4)
status=""
if [ -z "$job" ]; then
  fail "POST /api/channels/bench/render answered: $(printf '%s' "$answer" | head -c 300)"
else
  for _ in $(seq 3000); do # 300 s
    status=$(curl -sS --max-time 5 "$base/api/render/jobs/$job" 2>/dev/null | grep -o '"status":"[a-z]*"' | cut -d'"' -f4) || true
    if [ "$status" = "done" ] || [ "$status" = "failed" ]; then break; fi
    sleep 0.1
  done
  [ "$status" = "done" ] || fail "render job $job ended as '${status:-unknown}'"
fi
# a subscriber has its message once the data line after "event: audio_buffer" is ended by a blank line
sse_complete() {
  LC_ALL=C awk '/^event: audio_(buffer|error)/ { ev = 1; next } ev && /^data:/ { d = 1; next } d && /^$/ { ok = 1; exit }
                END { exit !ok }' "$1" 2>/dev/null
}
if [ "$status" = "done" ]; then
  for e in "${encs[@]}"; do
    for _ in $(seq 1200); do # 120 s
      sse_complete "$tmp/sse-$e.txt" && break
      sleep 0.1
    done
    sse_complete "$tmp/sse-$e.txt" || fail "SSE subscriber ($e) got no complete audio_buffer message"
  done
fi
for e in "${encs[@]}"; do stop_tracked "${sse_pid[$e]}" "curl"; done

declare -A msg_bytes=() raw_bytes=()
frames="" chans="" dur=""
for e in "${encs[@]}"; do
  f=$tmp/sse-$e.txt
  if grep -q '^event: audio_error' "$f" 2>/dev/null; then
    fail "$e subscriber got audio_error: $(LC_ALL=C awk '/^event: audio_error/ { ev = 1; next } ev && /^data:/ { print; exit }' "$f" | head -c 300)"
    continue
  fi
  n=$(LC_ALL=C awk '/^event: audio_buffer/ { ev = 1; next } ev && /^data: / { print length($0) - 6; exit }' "$f")
  [ -n "$n" ] || continue
  msg_bytes[$e]=$n
  LC_ALL=C awk '/^event: audio_buffer/ { ev = 1; next } ev && /^data: / { print substr($0, 7, 600); exit }' "$f" >"$tmp/head-$e.txt"
  if [ "$e" = opus ] || [ "$e" = pcm16 ]; then raw_bytes[$e]=$(jnum bytes "$tmp/head-$e.txt"); fi
  [ -n "$frames" ] || { frames=$(jnum length "$tmp/head-$e.txt"); chans=$(jnum numberOfChannels "$tmp/head-$e.txt"); dur=$(jnum duration "$tmp/head-$e.txt"); }
done
[ -n "$dur" ] || dur=${audio_s:-0}
[ -n "$dur" ] && [ "$dur" != 0 ] || dur=$(awk -v f="${frames:-0}" 'BEGIN { print f / 48000 }')

row() { # label bytes
  if [ -n "$2" ]; then
    printf '%-58s %12s %16s %8s\n' "$1" "$2" "$(div "$2" "$dur" '%.0f')" "$(div "$2" "${file_bytes[wav]:-0}" '%.3f')"
  else
    printf '%-58s %12s %16s %8s\n' "$1" "-" "-" "-"
  fi
}
echo
printf '%-58s %12s %16s %8s\n' "encoding ($(awk -v d="$dur" 'BEGIN { printf "%g", d }') s of audio, $frames frames x $chans channels)" "bytes" "bytes/s of audio" "x WAV"
row "WAV file, 16-bit PCM (POST /api/render?format=wav)" "${file_bytes[wav]:-}"
row "Ogg Opus file (POST /api/render?format=ogg)" "${file_bytes[ogg]:-}"
row "opus message (SSE data: JSON, base64 Ogg Opus)" "${msg_bytes[opus]:-}"
row "  its Ogg Opus bytes (a WebSocket binary frame's audio)" "${raw_bytes[opus]:-}"
row "pcm16 message (SSE data: JSON, base64 s16le)" "${msg_bytes[pcm16]:-}"
row "  its s16le bytes (= frames x channels x 2)" "${raw_bytes[pcm16]:-}"
row "json message (Float32 SerializedBuffer, 6 decimals)" "${msg_bytes[json]:-}"
row "json16 message (Int16 \"compressed\" SerializedBuffer)" "${msg_bytes[json16]:-}"
if [ -n "${raw_bytes[pcm16]:-}" ] && [ -n "$frames" ] && [ -n "$chans" ] && [ "${raw_bytes[pcm16]}" != $((frames * chans * 2)) ]; then
  fail "pcm16 bytes ${raw_bytes[pcm16]} != frames x channels x 2 = $((frames * chans * 2))"
fi
for e in "${encs[@]}"; do [ -n "${msg_bytes[$e]:-}" ] || fail "no $e message measured"; done
x=$(grep -i '^X-Render-Seconds:' "$tmp/srv-wav.h" 2>/dev/null | tr -d '\r' | awk '{ print $2 }') || true
[ -z "$x" ] || echo "(the server's render for the WAV file: $x s, X-Render-Seconds)"

stop_server
[ "$server_status" = 0 ] || fail "tutti exited with status $server_status after SIGTERM"
if [ -s "$server_log" ]; then
  echo "--- server log ($(wc -l <"$server_log") lines at level warn and above; first 10):"
  head -n 10 "$server_log"
fi
exit "$problems"
