/*
 * ssebench: SSE, WebSocket and Socket.IO fan-out load generator for tutti and for the
 * peer servers it is compared with (nchan, Socket.IO, Bun/uWebSockets, Node `ws`).
 *
 * One program (plus the helpers of benchlib.c), one thread, one epoll loop, libc and zlib
 * only: the client side is C for every server, so it is never the bottleneck. It
 *   1. opens N subscriber streams to a loopback server with non-blocking connects, at
 *      most SSEB_CONNECT_INFLIGHT handshakes at a time, and waits until every stream is
 *      ready (--ready, below): with --transport sse (default) GET --sub-path
 *      (/sse/{ch}); with --transport ws GET --sub-path (/ws/{ch}) with a random
 *      Sec-WebSocket-Key, the 101 and Sec-WebSocket-Accept checked; with --transport
 *      socketio the Engine.IO v4 / Socket.IO v4 handshake over WebSocket (below);
 *   2. publishes M messages through keep-alive, pipelined POST --pub-path requests
 *      (/api/channels/{ch}/publish) on K publisher connections, either at a fixed rate
 *      R/s, or (R = 0) as fast as a window of W unsettled messages allows, or (--ramp) at
 *      a rate stepped up until deliveries fall behind (below); any 2xx answer
 *      (tutti and the peers answer 200, nchan 201/202) with any body counts as accepted;
 *      or (--pub-ws) over K publisher WebSockets to --pub-path (/ws), one text message
 *      per publish: tutti's {"type":"publish",...} answered in order by `published`
 *      (accepted) or `error`, or with --raw the data itself answered by any text
 *      message;
 *   3. parses every stream incrementally (SSE: chunked coding, events split across
 *      reads; WebSocket: unmasked server frames with 7/16/64-bit lengths split across
 *      reads, fragmented messages, RSV1 messages inflated, pings answered with masked
 *      pongs, a close frame answered and counted as an early close) and records, per
 *      delivery, latency = receive time - send time carried in the message, plus loss,
 *      duplicates and out-of-order per connection;
 *   4. stops by itself (every expected delivery seen, or --timeout seconds after the
 *      last publish, or no progress for --timeout seconds), prints a table and, with
 *      --json, one JSON line.
 *
 * Paths: --sub-path and --pub-path are templates in which every `{ch}` becomes the
 * channel name, e.g. --sub-path /sub/{ch} --pub-path '/pub?id={ch}' for nchan,
 * --pub-path /publish/{ch} for the socket.io, ws and bun peers. The defaults are tutti's:
 * /sse/{ch}, /ws/{ch}, /api/channels/{ch}/publish (socketio: /socket.io/?EIO=4&
 * transport=websocket, where {ch} is not needed: the channel goes in the subscribe event).
 *
 * Ready (--ready): tutti (default) = the SSE `connected` event or the WebSocket
 * `subscribed` message; message = the first event (SSE, whatever its name, comments
 * aside) or text message (WebSocket) on the stream, which is not counted as a delivery
 * (the peers' `subscribed`); upgrade = the 101 (WebSocket) or the 200 head (SSE), for
 * nchan, which sends nothing on subscribing; socketio = 42["subscribed",..] (implied by,
 * and only with, --transport socketio). Publishing starts once every stream is ready.
 *
 * Message forms: by default tutti's: SSE `message` events whose id: is `epoch:offset`,
 * WebSocket {"type":"message",..,"id":"E:O",..,"data":<payload>}; order is judged by the
 * channel offsets, and the offsets must agree with the publish answers. With --raw
 * (implied by socketio) every SSE `message` event's data (id: lines ignored) or every
 * WebSocket text message after the ready one is the payload itself, and order is judged
 * by seq: with one publisher connection (K = 1) seqs must arrive increasing; with K > 1
 * they must arrive increasing per publisher connection (the server may interleave
 * connections, not reorder one connection's pipelined requests). Loss and duplicates are
 * counted by seq either way.
 *
 * Socket.IO (--transport socketio): after the 101 the server sends the Engine.IO open
 * packet `0{"sid":..}`; the client answers `40` (connect to the default namespace),
 * waits for `40{"sid":..}`, sends `42["subscribe","<channel>"]` and is ready at
 * `42["subscribed",..]`. Messages are `42["message",<payload>]` (payload re-serialised
 * by the server; "seq" and "t" are found wherever they sit); every Engine.IO ping `2` is
 * answered with `3` (masked text frames, like every client frame). `1`, `41` and `44`
 * close the subscriber as an early close.
 *
 * Channels (--channels C): subscriber i subscribes to channel i % C and message seq is
 * published to channel seq % C, the channels being NAME-0 .. NAME-(C-1) (C = 1: NAME
 * itself). Channel k thus has N/C subscribers, one more for k < N % C, and M/C messages,
 * one more for k < M % C; expected = the sum over k of their products. A message of
 * ours arriving on another channel's subscriber counts as wrong_channel (unclean).
 *
 * Source addresses (--src-addrs K): subscriber i binds to 127.0.0.(2 + i % K) before
 * connecting, with IP_BIND_ADDRESS_NO_PORT so that the port is chosen by connect() (free
 * 4-tuple, TIME_WAIT ones of earlier runs avoided): K x ~28,000 ephemeral ports per
 * server port. Without it, 127.0.0.1 is used alone up to 20,000 subscribers and one more
 * address (127.0.0.2, ...) per further 20,000. RLIMIT_NOFILE's soft limit is raised to
 * the hard one at start (N + K + 16 descriptors needed).
 *
 * Idle run (--messages 0): connect the N subscribers, wait SSEB_IDLE_SETTLE_MS (1 s,
 * answering pings) so the server finishes what follows the handshakes, read the server's
 * RSS, report the connect time, the RSS before and after and per connection, close
 * everything and exit 0 (1 when a stream closed meanwhile). Use a fresh server for
 * each: on a reused one freed memory is reused and the RSS per connection reads ~0.
 *
 * Ramp (--ramp R0,F,S): the highest sustained rate. Once every stream is ready,
 * publishing runs in steps of S seconds at R0 msg/s, then R0*F, R0*F^2, ... (paced like
 * --rate: the step's j-th message is due at its start + j / rate, for every j due before
 * its end; messages the loop was too late for are sent at the step's end, so the load
 * generator's lateness shows as answer lag, below). A step is judged once it is over and
 * either everything about its messages is in or a grace of min(S, 1 s) has passed (the
 * next step publishes meanwhile). It is SUSTAINED when
 *   - every delivery expected for its messages arrived within the grace;
 *   - its achieved publish rate is at least 95 % of its target: achieved = its messages
 *     accepted (2xx) within the grace / (S + D), where D is how much the publish answers'
 *     lag (answer time - due time) grew over the step, estimated as twice the mean lag
 *     of the messages due in its second half minus that of the first half (0 if
 *     negative): answers that kept up cost nothing however late they come, a server
 *     whose backlog grows answers at accepted / (S + D) msg/s;
 *   - the p99 latency of its messages (a histogram of its own: a delivery counts for the
 *     step its message was sent in, until the step is judged) is below --ramp-p99 ms.
 * The first step not sustained ends the ramp: publishing stops (the step then running is
 * cut short and left unjudged), the remaining deliveries are awaited as in the other
 * modes (bounded by --timeout), and the report adds a table of the steps (target,
 * achieved, answer lag growth, messages, deliveries/s = the step's deliveries within the
 * grace / S, p50/p99/max, and with --server-pid the server CPU per delivery and both
 * processes' CPU use over the step: server CPU between the step's start and end / the
 * deliveries received meanwhile, read from schedstat at each boundary; this process's
 * from getrusage) and the highest sustained step: its deliveries/s and achieved msg/s.
 * The ramp also ends after --ramp-max-steps steps, before a step whose target is over
 * --ramp-max-rate, or before one that would exceed --messages, which is an upper bound
 * here (default: what every step allowed needs, within 16 M messages and 1 GiB of
 * delivery bitmaps). Loss, duplicates, order, the exit status and every whole-run figure
 * (deliveries_per_s, latency_ms, server CPU over the publish window, ...) are as in the
 * other modes, over all the messages sent. A load generator near 100 % CPU (see the gen%
 * column) means the step measured it as much as the server.
 *
 * Message data is `{"seq":S,"t":T}` or, padded to --payload bytes,
 * `{"seq":S,"t":T,"p":"xxxx"}` (--pad words or random fill "p" with text that
 * compresses like prose or hardly at all); T is CLOCK_MONOTONIC in ns since ssebench
 * started (under 2^53 for 104 days, so a server that parses the JSON into doubles, as
 * Socket.IO does, keeps it exact), taken just before the request is queued. Latency is
 * therefore measured from the actual send, not from the scheduled one: a server that
 * makes the publisher fall behind its rate shows up as a lower achieved rate, not as
 * latency (no coordinated-omission correction).
 *
 * Server figures (--server-pid): VmRSS from /proc/PID/status before connecting, once
 * every stream is connected and at the end; CPU time consumed over the connect phase and
 * between the first publish and the stop, summed over the server's threads from
 * /proc/PID/task/TID/schedstat (ns), with utime + stime from /proc/PID/stat (clock ticks,
 * 10 ms) printed beside it. On loopback the sender's syscalls also carry the receiver's
 * TCP processing, so the CPU per delivery includes kernel work a real network would move
 * to the clients' machines.
 *
 * Exit status: 0 when every expected delivery arrived with no duplicate, no
 * out-of-order delivery, no id mismatch and no wrong-channel delivery (idle run: every
 * stream connected and none closed); 1 when the run completed but those figures are not
 * clean; 2 on a usage or setup error (the table is still printed when the connect phase
 * fails).
 *
 * WebSocket with --deflate: the handshake offers permessage-deflate the way browsers do
 * (`permessage-deflate; client_max_window_bits`) and requires server_no_context_takeover
 * in the answer, so one inflater, reset for every message, serves every connection. The
 * report adds the wire bytes per delivered message (frame headers and payload as sent)
 * beside the JSON size, so the compression is visible. The client sends no data frames
 * except Socket.IO's handshake packets and pongs; every client frame is masked.
 *
 * Several nodes (--sub-ports): the subscribers are spread round-robin over several
 * server ports (e.g. tutti nodes sharing channels through Redis) while the publishers use
 * --port, so one run counts every delivery on every node and the window paces on all of
 * them; the report adds the figures per port. --server-pid then takes one PID per node
 * (RSS and CPU summed over them, and CPU shown per PID), and --aux-pid reads the CPU
 * time of further processes (e.g. Redis) over the same window, reported on its own.
 *
 * JSON line (--json), one per run, the same keys in every run (null when unknown, e.g.
 * the server figures without --server-pid; a key appears once, so a first-match lookup
 * such as bench/lib.sh's jget finds it):
 *   tool "ssebench"; transport "sse"|"ws"|"socketio"; n (= subscribers); channels;
 *   ready "tutti"|"message"|"upgrade"|"socketio"; raw (bool); sub_path, pub_path (the
 *   templates); src_addrs (source addresses bound: K, or 0 = none, 127.0.0.1 unbound);
 *   subscribers; messages (with --ramp: the upper bound); rate (with --ramp: R0); window;
 *   payload; publishers; connected; connect_s (first connect to last ready, -1 when
 *   the connect phase failed); sent; publish_errors; publish_rate (msg/s); expected;
 *   delivered; deliveries_per_s (all channels, first publish to last delivery);
 *   window_s; latency_ms {p50, p90, p99, max} (ms); lost; subscribers_short;
 *   duplicates; out_of_order; id_mismatch; wrong_channel; closed_early; error_events;
 *   foreign_data; server_pid; rss_before_kib, rss_connected_kib (after connecting; idle
 *   run: 1 s later), rss_end_kib (KiB); rss_per_subscriber_kib; rss_per_conn_bytes
 *   ((rss_connected - rss_before) / N, in bytes); server_cpu_s, server_cpu_stat_s,
 *   cpu_us_per_delivery, server_cpu_ns (total in the publish window, ns; null in an idle
 *   run), cpu_ns_per_delivery; server_connect_cpu_ns (over the connect phase); stop;
 *   subscriber_problem; publish_problem; with ws and socketio also deflate_offered,
 *   deflate_subscribers, pad, ws_messages, ws_compressed, wire_bytes_per_delivery,
 *   json_bytes_per_delivery, close_frames, pings, inflates; with socketio
 *   engineio_pings; with several --server-pid server_pids and server_cpu_each_s; with
 *   --aux-pid aux_cpu_s, aux_cpu_us_per_delivery, aux_pids; with --sub-ports port_stats;
 *   last, ramp: null, or with --ramp {r0, factor, step_s, grace_s, p99_limit_ms, max_steps,
 *   max_rate, steps: [{step, target, achieved (msg/s), sent, accepted, expected,
 *   delivered, answer_lag_growth_ms, deliveries_per_s, p50, p99, max (ms),
 *   cpu_ns_per_delivery, server_cpu_pct, loadgen_cpu_pct (null when unknown), sustained,
 *   why}, ...] (the judged steps), steps_started, end (why the ramp ended),
 *   sustained_step, sustained_target, sustained_msgs_per_s, sustained_deliveries_per_s,
 *   sustained_cpu_ns_per_delivery, sustained_server_cpu_pct, sustained_loadgen_cpu_pct
 *   (the last sustained step; null when none was)}; its keys come after every top-level
 *   one, so a first-match lookup of "deliveries_per_s", "p99" or "sent" still finds the
 *   run's.
 *
 * Build: cc -O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -o ssebench ssebench.c benchlib.c -lz
 * Only loopback addresses (127.0.0.0/8) are accepted as targets.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "benchlib.h"

const char bench_prog[] = "ssebench"; /* named by bench_die */

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ------------------------------------------------------------------------------------
 * Limits and constants
 * ---------------------------------------------------------------------------------- */

#define SSEB_CONNECT_INFLIGHT 256 /* subscriber handshakes in progress at once */
#ifndef SSEB_PORTS_PER_ADDR
#define SSEB_PORTS_PER_ADDR 20000 /* subscribers per source address before spreading */
#endif
#define SSEB_MAX_SRC_ADDRS 254            /* 127.0.0.1 .. 127.0.0.254 */
#define SSEB_HEAD_MAX (16 * 1024)         /* largest HTTP response head accepted */
#define SSEB_LINE_SLACK (64 * 1024)       /* longest SSE line = payload + this */
#define SSEB_EVENT_MAX 64                 /* longest event name kept (API.md: 1-64 bytes) */
#define SSEB_READ_CHUNK (64 * 1024)       /* bytes read per readiness per socket */
#define SSEB_MAX_EVENTS 1024              /* epoll_wait batch */
#define SSEB_TICK_MS 50                   /* longest epoll sleep: deadline check granularity */
#define SSEB_PUB_CONNECT_MS 5000          /* bound on one publisher connect */
#define SSEB_SEEN_MAX ((uint64_t)4 << 30) /* bytes of per-connection seq bitmaps allowed */

#define SSEB_TAG_SUB 1u
#define SSEB_TAG_PUB 2u
#define SSEB_TAG_TIMER 3u

#define SSEB_ZCACHE 32 /* inflated messages remembered (see sseb_inflate_cached) */

#define SSEB_WS_OFFER "permessage-deflate; client_max_window_bits" /* what browsers send */

#define SSEB_MAX_PORTS 16 /* --sub-ports entries */
#define SSEB_MAX_CHANNELS 1000000 /* --channels */
#define SSEB_PATH_MAX 1024        /* longest expanded --sub-path or --pub-path */
#define SSEB_IDLE_SETTLE_MS 1000  /* --messages 0: wait after the last ready before RSS */
#define SSEB_MAX_PIDS 16  /* --server-pid and --aux-pid entries */
#define SSEB_RAMP_DEFAULT_MAX (16u << 20) /* --ramp: most messages of the default --messages */
#define SSEB_RAMP_SEEN_BUDGET ((uint64_t)1 << 30) /* ... and most bytes of bitmaps for it */
#define SSEB_RAMP_ACHIEVED 0.95 /* a sustained step's achieved rate / its target, at least */
#define SSEB_RAMP_GRACE_MAX_NS BENCH_NS /* grace after a step: min(S, this) */

/* ------------------------------------------------------------------------------------
 * Chunked transfer coding decoder (incremental)
 * ---------------------------------------------------------------------------------- */

enum {
  SSEB_CHUNK_SIZE,         /* reading hex digits of a chunk size */
  SSEB_CHUNK_EXT,          /* skipping a chunk extension up to CR */
  SSEB_CHUNK_SIZE_LF,      /* LF after the size line */
  SSEB_CHUNK_DATA,         /* chunk payload */
  SSEB_CHUNK_DATA_CR,      /* CR after the payload */
  SSEB_CHUNK_DATA_LF,      /* LF after the payload */
  SSEB_CHUNK_TRAILER,      /* at the start of a trailer line */
  SSEB_CHUNK_TRAILER_LINE, /* inside a trailer line */
  SSEB_CHUNK_TRAILER_LF,   /* LF of the empty line closing the trailers */
  SSEB_CHUNK_DONE          /* last chunk and trailers seen: body complete */
};

typedef struct sseb_chunk_s {
  uint8_t state;
  uint8_t digits; /* hex digits read for the current size */
  uint64_t left;  /* SIZE: size so far; DATA: payload bytes still to come */
} sseb_chunk_t;

static int sseb_hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decodes up to n bytes of chunked coding from `in`, writing payload bytes to `out`.
 * `out` may equal `in` (the output never runs ahead of the input). Stops after the
 * final chunk (state DONE) without reading further. Sets *used to the input bytes
 * consumed and returns the payload bytes written, or -1 on malformed framing. */
static long sseb_chunk_decode(sseb_chunk_t *c, const char *in, size_t n, char *out, size_t *used) {
  size_t i = 0, o = 0;
  while (i < n && c->state != SSEB_CHUNK_DONE) {
    char ch = in[i];
    switch (c->state) {
      case SSEB_CHUNK_SIZE: {
        int d = sseb_hexval(ch);
        if (d >= 0) {
          if (c->left >> 40)
            return -1;
          c->left = c->left * 16 + (uint64_t)d;
          c->digits++;
        } else if (c->digits == 0) {
          return -1;
        } else if (ch == ';' || ch == ' ' || ch == '\t') {
          c->state = SSEB_CHUNK_EXT;
        } else if (ch == '\r') {
          c->state = SSEB_CHUNK_SIZE_LF;
        } else {
          return -1;
        }
        i++;
        break;
      }
      case SSEB_CHUNK_EXT:
        if (ch == '\r')
          c->state = SSEB_CHUNK_SIZE_LF;
        i++;
        break;
      case SSEB_CHUNK_SIZE_LF:
        if (ch != '\n')
          return -1;
        c->state = c->left ? SSEB_CHUNK_DATA : SSEB_CHUNK_TRAILER;
        i++;
        break;
      case SSEB_CHUNK_DATA: {
        size_t take = n - i;
        if ((uint64_t)take > c->left)
          take = (size_t)c->left;
        memmove(out + o, in + i, take);
        o += take;
        i += take;
        c->left -= take;
        if (c->left == 0)
          c->state = SSEB_CHUNK_DATA_CR;
        break;
      }
      case SSEB_CHUNK_DATA_CR:
        if (ch != '\r')
          return -1;
        c->state = SSEB_CHUNK_DATA_LF;
        i++;
        break;
      case SSEB_CHUNK_DATA_LF:
        if (ch != '\n')
          return -1;
        c->state = SSEB_CHUNK_SIZE;
        c->digits = 0;
        c->left = 0;
        i++;
        break;
      case SSEB_CHUNK_TRAILER:
        c->state = ch == '\r' ? SSEB_CHUNK_TRAILER_LF : SSEB_CHUNK_TRAILER_LINE;
        i++;
        break;
      case SSEB_CHUNK_TRAILER_LINE:
        if (ch == '\n')
          c->state = SSEB_CHUNK_TRAILER;
        i++;
        break;
      case SSEB_CHUNK_TRAILER_LF:
        if (ch != '\n')
          return -1;
        c->state = SSEB_CHUNK_DONE;
        i++;
        break;
      default: return -1;
    }
  }
  *used = i;
  return (long)o;
}

/* ------------------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------------------- */

typedef struct sseb_opts_s {
  const char *host;
  struct in_addr addr; /* resolved host, always inside 127.0.0.0/8 */
  unsigned port;
  const char *channel;
  uint32_t subscribers; /* N */
  uint32_t messages;    /* M */
  double rate;          /* R messages/s; 0 = unlimited, paced by the window */
  uint32_t window;      /* W: unsettled messages allowed when R = 0 */
  uint32_t payload;     /* target data size in bytes */
  uint32_t publishers;  /* K */
  long server_pid;      /* 0 = no server figures; else server_pids[0] */
  long server_pids[SSEB_MAX_PIDS]; /* --server-pid P[,P...]: figures summed over them */
  uint32_t n_server_pids;
  long aux_pids[SSEB_MAX_PIDS]; /* --aux-pid P[,P...]: CPU time reported apart */
  uint32_t n_aux_pids;
  unsigned sub_ports[SSEB_MAX_PORTS]; /* subscriber i connects to sub_ports[i % n] */
  uint32_t n_sub_ports;               /* 1 (= --port) unless --sub-ports was given */
  int sub_ports_given;
  double timeout_s;
  int json;
  int transport; /* SSEB_TR_*: --transport */
  int ws;        /* WebSocket framing: --transport ws or socketio */
  int sio;       /* --transport socketio (Engine.IO v4 / Socket.IO v4 over WebSocket) */
  int ready;     /* SSEB_READY_*: when a subscriber counts as ready */
  int raw;       /* --raw (implied by socketio): messages are the payload itself */
  int pub_ws;    /* --pub-ws: publish over a WebSocket to --pub-path */
  const char *sub_path; /* --sub-path template; {ch} = the channel name */
  const char *pub_path; /* --pub-path template */
  uint32_t channels;    /* C: --channels */
  uint32_t src_addrs;   /* --src-addrs K: bind to 127.0.0.2 .. 127.0.0.(K+1); 0 = auto */
  int deflate; /* --deflate: offer permessage-deflate */
  int pad;     /* SSEB_PAD_*: what fills "p" */
  int inflate_all; /* --inflate-every-copy: no cache of inflated messages */
  int messages_given; /* --messages was given */
  int rate_given;     /* --rate or --window was given */
  int ramp;           /* --ramp R0,F,S: step the rate up until deliveries fall behind */
  double ramp_r0;     /* first step's rate (msg/s) */
  double ramp_f;      /* factor from one step to the next */
  double ramp_s;      /* step duration (s) */
  double ramp_p99_ms; /* --ramp-p99: a step's p99 must stay below this (ms) */
  double ramp_max_rate;    /* --ramp-max-rate: no step above this target (msg/s) */
  uint32_t ramp_max_steps; /* --ramp-max-steps */
} sseb_opts_t;

enum { SSEB_PAD_X, SSEB_PAD_WORDS, SSEB_PAD_RANDOM };
static const char *const sseb_pad_names[] = {"x", "words", "random"};

enum { SSEB_TR_SSE, SSEB_TR_WS, SSEB_TR_SIO };
static const char *const sseb_tr_names[] = {"sse", "ws", "socketio"};

enum { SSEB_READY_TUTTI, SSEB_READY_MESSAGE, SSEB_READY_UPGRADE, SSEB_READY_SIO };
static const char *const sseb_ready_names[] = {"tutti", "message", "upgrade", "socketio"};

static void sseb_usage(FILE *f) {
  fputs(
      "usage: ssebench --port P [options]\n"
      "  --host ADDR         loopback address of the server (127.0.0.1)\n"
      "  --port P            server port (required)\n"
      "  --transport T       sse (GET /sse/{channel}), ws (GET /ws/{channel}) or socketio\n"
      "                      (Engine.IO 4 / Socket.IO 4 over WebSocket) (sse)\n"
      "  --sub-path TMPL     subscriber request path; {ch} is replaced by the channel\n"
      "                      (/sse/{ch}, /ws/{ch}, /socket.io/?EIO=4&transport=websocket)\n"
      "  --pub-path TMPL     publish request path (/api/channels/{ch}/publish; with\n"
      "                      --pub-ws /ws)\n"
      "  --pub-ws            publish over a WebSocket to --pub-path instead of HTTP POSTs:\n"
      "                      tutti's {\"type\":\"publish\",\"channel\":..,\"data\":..} answered\n"
      "                      by `published` (or `error`); with --raw the data itself as a\n"
      "                      text message, answered by any text message\n"
      "  --ready MODE        when a subscriber is ready: tutti (SSE `connected` event, ws\n"
      "                      `subscribed` message), message (its first message or event,\n"
      "                      not counted as a delivery), upgrade (the 101, or the SSE 200\n"
      "                      head), socketio (implied by --transport socketio) (tutti)\n"
      "  --raw               messages are the payload itself, not tutti's envelope: no\n"
      "                      channel offsets; order is judged by seq per publisher\n"
      "                      connection (implied by --transport socketio)\n"
      "  --channels C        spread subscribers and messages round-robin over C channels\n"
      "                      NAME-0 .. NAME-(C-1); C = 1 uses NAME itself (1)\n"
      "  --src-addrs K       bind subscribers to 127.0.0.2 .. 127.0.0.(K+1) round-robin\n"
      "                      (ports chosen at connect); default: 127.0.0.1 and one more\n"
      "                      address per 20000 subscribers\n"
      "  --deflate           with --transport ws (or socketio): offer permessage-deflate\n"
      "  --inflate-every-copy  inflate every subscriber's copy of a message, as N real\n"
      "                      clients would; by default a copy byte-identical to one\n"
      "                      already inflated reuses its result, so the load generator\n"
      "                      keeps up with the server\n"
      "  --channel NAME      channel to subscribe and publish to (bench)\n"
      "  --subscribers N     SSE streams or WebSockets to open (100)\n"
      "  --messages M        messages to publish; 0 = an idle run: connect, measure the\n"
      "                      server's RSS per connection, close (100)\n"
      "  --rate R            messages per second; 0 = unlimited, window-paced (100)\n"
      "  --window W          with --rate 0: messages not yet delivered to all (8)\n"
      "  --payload BYTES     size of each message's data (64)\n"
      "  --pad KIND          padding text: x (xxxx, compresses to nothing), words (a\n"
      "                      varied vocabulary, compresses about like text) or random\n"
      "                      (base64-like, hardly compresses) (x)\n"
      "  --publishers K      keep-alive publisher connections (1)\n"
      "  --server-pid PID    read the server's RSS and CPU time from /proc/PID; a\n"
      "                      comma-separated list (one PID per node) sums them\n"
      "  --sub-ports P,P...  spread the subscribers round-robin over these server\n"
      "                      ports (several nodes); publishers still use --port\n"
      "  --aux-pid PID[,PID] also read the CPU time of these processes (e.g. Redis)\n"
      "                      over the same window, reported apart from the server's\n"
      "  --timeout S         stop S seconds after the last publish, or after S seconds\n"
      "                      without progress; also bounds the connect phase (30)\n"
      "  --ramp R0,F,S       instead of --rate: publish at R0 msg/s for S seconds, then at\n"
      "                      R0*F, R0*F^2, ... until a step is not sustained (its\n"
      "                      deliveries all in within min(S, 1 s) after it, its accepted\n"
      "                      publish rate >= 95 % of the target, its p99 under\n"
      "                      --ramp-p99); reports the highest sustained step; --messages\n"
      "                      is then an upper bound (default: enough for every step)\n"
      "  --ramp-p99 MS       a sustained step's p99 latency is below MS (1000)\n"
      "  --ramp-max-steps K  stop the ramp after K steps (30)\n"
      "  --ramp-max-rate R   stop the ramp before a step above R msg/s (1e6)\n"
      "  --json              also print one JSON line with the results\n",
      f);
}

/* Parses a comma-separated list of at most maxn numbers in [min, max] into out;
 * returns how many. */
static uint32_t sseb_parse_list(const char *opt, const char *s, double min, double max,
                                long *out, uint32_t maxn) {
  uint32_t n = 0;
  const char *p = s;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    char item[32];
    if (len == 0 || len >= sizeof item)
      bench_die("%s: '%s' is not a comma-separated list of numbers", opt, s);
    if (n == maxn)
      bench_die("%s: at most %u entries", opt, (unsigned)maxn);
    memcpy(item, p, len);
    item[len] = '\0';
    out[n++] = (long)bench_parse_num(opt, item, min, max);
    if (comma == NULL)
      return n;
    p = comma + 1;
  }
}

static void sseb_opts_parse(int argc, char **argv, sseb_opts_t *o) {
  static const struct option longopts[] = {
      {"host", required_argument, NULL, 'h'},
      {"port", required_argument, NULL, 'p'},
      {"channel", required_argument, NULL, 'c'},
      {"subscribers", required_argument, NULL, 'n'},
      {"messages", required_argument, NULL, 'm'},
      {"rate", required_argument, NULL, 'r'},
      {"window", required_argument, NULL, 'w'},
      {"payload", required_argument, NULL, 'b'},
      {"publishers", required_argument, NULL, 'k'},
      {"server-pid", required_argument, NULL, 's'},
      {"timeout", required_argument, NULL, 't'},
      {"json", no_argument, NULL, 'j'},
      {"transport", required_argument, NULL, 'T'},
      {"deflate", no_argument, NULL, 'D'},
      {"pad", required_argument, NULL, 'P'},
      {"inflate-every-copy", no_argument, NULL, 'I'},
      {"sub-ports", required_argument, NULL, 'S'},
      {"aux-pid", required_argument, NULL, 'A'},
      {"sub-path", required_argument, NULL, 'U'},
      {"pub-path", required_argument, NULL, 'B'},
      {"pub-ws", no_argument, NULL, 'O'},
      {"ready", required_argument, NULL, 'R'},
      {"raw", no_argument, NULL, 'W'},
      {"channels", required_argument, NULL, 'C'},
      {"src-addrs", required_argument, NULL, 'a'},
      {"ramp", required_argument, NULL, 'G'},
      {"ramp-p99", required_argument, NULL, 'Q'},
      {"ramp-max-steps", required_argument, NULL, 'X'},
      {"ramp-max-rate", required_argument, NULL, 'Y'},
      {"help", no_argument, NULL, 'H'},
      {NULL, 0, NULL, 0},
  };
  *o = (sseb_opts_t){
      .host = "127.0.0.1",
      .channel = "bench",
      .subscribers = 100,
      .messages = 100,
      .rate = 100,
      .window = 8,
      .payload = 64,
      .publishers = 1,
      .timeout_s = 30,
      .channels = 1,
      .ready = -1,
      .ramp_p99_ms = 1000,
      .ramp_max_rate = 1e6,
      .ramp_max_steps = 30,
  };
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case 'h': o->host = optarg; break;
      case 'p': o->port = (unsigned)bench_parse_num("--port", optarg, 1, 65535); break;
      case 'c': o->channel = optarg; break;
      case 'n':
        o->subscribers = (uint32_t)bench_parse_num("--subscribers", optarg, 1, 5000000);
        break;
      case 'm':
        o->messages = (uint32_t)bench_parse_num("--messages", optarg, 0, 100000000);
        o->messages_given = 1;
        break;
      case 'r':
        o->rate = bench_parse_num("--rate", optarg, 0, 10000000);
        o->rate_given = 1;
        break;
      case 'w':
        o->window = (uint32_t)bench_parse_num("--window", optarg, 1, 1000000);
        o->rate_given = 1;
        break;
      case 'G': {
        /* R0,F,S: three numbers */
        const char *names[3] = {"--ramp R0", "--ramp F", "--ramp S"};
        const double lo[3] = {0.001, 1, 0.01}, hi[3] = {10000000, 100, 3600};
        double v[3];
        const char *q = optarg;
        for (int k = 0; k < 3; k++) {
          const char *comma = strchr(q, ',');
          size_t len = comma ? (size_t)(comma - q) : strlen(q);
          char item[32];
          if ((comma != NULL) != (k < 2) || len == 0 || len >= sizeof item)
            bench_die("--ramp takes R0,F,S (e.g. 20,1.25,2), got '%s'", optarg);
          memcpy(item, q, len);
          item[len] = '\0';
          v[k] = bench_parse_num(names[k], item, lo[k], hi[k]);
          q = comma ? comma + 1 : q + len;
        }
        o->ramp = 1;
        o->ramp_r0 = v[0];
        o->ramp_f = v[1];
        o->ramp_s = v[2];
        break;
      }
      case 'Q': o->ramp_p99_ms = bench_parse_num("--ramp-p99", optarg, 0.001, 3600000); break;
      case 'X':
        o->ramp_max_steps = (uint32_t)bench_parse_num("--ramp-max-steps", optarg, 1, 1000);
        break;
      case 'Y': o->ramp_max_rate = bench_parse_num("--ramp-max-rate", optarg, 0.001, 10000000); break;
      case 'b': o->payload = (uint32_t)bench_parse_num("--payload", optarg, 0, 900000); break;
      case 'k': o->publishers = (uint32_t)bench_parse_num("--publishers", optarg, 1, 64); break;
      case 's':
        o->n_server_pids =
            sseb_parse_list("--server-pid", optarg, 1, 4194304, o->server_pids, SSEB_MAX_PIDS);
        o->server_pid = o->server_pids[0];
        break;
      case 'A':
        o->n_aux_pids = sseb_parse_list("--aux-pid", optarg, 1, 4194304, o->aux_pids, SSEB_MAX_PIDS);
        break;
      case 'S': {
        long ports[SSEB_MAX_PORTS];
        o->n_sub_ports = sseb_parse_list("--sub-ports", optarg, 1, 65535, ports, SSEB_MAX_PORTS);
        for (uint32_t i = 0; i < o->n_sub_ports; i++)
          o->sub_ports[i] = (unsigned)ports[i];
        o->sub_ports_given = 1;
        break;
      }
      case 't': o->timeout_s = bench_parse_num("--timeout", optarg, 0.1, 3600); break;
      case 'j': o->json = 1; break;
      case 'T':
        if (strcmp(optarg, "ws") == 0 || strcmp(optarg, "websocket") == 0)
          o->transport = SSEB_TR_WS;
        else if (strcmp(optarg, "sse") == 0)
          o->transport = SSEB_TR_SSE;
        else if (strcmp(optarg, "socketio") == 0 || strcmp(optarg, "socket.io") == 0)
          o->transport = SSEB_TR_SIO;
        else
          bench_die("--transport must be sse, ws or socketio, got '%s'", optarg);
        break;
      case 'U': o->sub_path = optarg; break;
      case 'B': o->pub_path = optarg; break;
      case 'O': o->pub_ws = 1; break;
      case 'R': {
        int k = -1;
        for (int i = 0; i < 4; i++)
          if (strcmp(optarg, sseb_ready_names[i]) == 0)
            k = i;
        if (k < 0)
          bench_die("--ready must be tutti, message, upgrade or socketio, got '%s'", optarg);
        o->ready = k;
        break;
      }
      case 'W': o->raw = 1; break;
      case 'C':
        o->channels = (uint32_t)bench_parse_num("--channels", optarg, 1, SSEB_MAX_CHANNELS);
        break;
      case 'a':
        o->src_addrs = (uint32_t)bench_parse_num("--src-addrs", optarg, 1, SSEB_MAX_SRC_ADDRS - 1);
        break;
      case 'D': o->deflate = 1; break;
      case 'I': o->inflate_all = 1; break;
      case 'P': {
        int k = -1;
        for (int i = 0; i < 3; i++)
          if (strcmp(optarg, sseb_pad_names[i]) == 0)
            k = i;
        if (k < 0)
          bench_die("--pad must be x, words or random, got '%s'", optarg);
        o->pad = k;
        break;
      }
      case 'H': sseb_usage(stdout); exit(0);
      default: sseb_usage(stderr); exit(2);
    }
  }
  if (optind < argc)
    bench_die("unexpected argument '%s' (see --help)", argv[optind]);
  if (o->port == 0)
    bench_die("--port is required (see --help)");
  if (!o->sub_ports_given) {
    o->sub_ports[0] = o->port;
    o->n_sub_ports = 1;
  }
  o->ws = o->transport != SSEB_TR_SSE;
  o->sio = o->transport == SSEB_TR_SIO;
  if (o->sio) {
    if (o->ready >= 0 && o->ready != SSEB_READY_SIO)
      bench_die("--transport socketio implies --ready socketio");
    o->ready = SSEB_READY_SIO;
    o->raw = 1;
  } else if (o->ready == SSEB_READY_SIO) {
    bench_die("--ready socketio needs --transport socketio");
  } else if (o->ready < 0) {
    o->ready = SSEB_READY_TUTTI;
  }
  if (o->sub_path == NULL)
    o->sub_path = o->sio ? "/socket.io/?EIO=4&transport=websocket" : o->ws ? "/ws/{ch}" : "/sse/{ch}";
  if (o->pub_path == NULL)
    o->pub_path = o->pub_ws ? "/ws" : "/api/channels/{ch}/publish";
  if (o->pub_ws && o->channels > 1 && strstr(o->pub_path, "{ch}") != NULL)
    bench_die("--pub-ws: a publisher WebSocket has one path, so {ch} in --pub-path needs "
              "--channels 1");
  const char *const tmpls[2] = {o->sub_path, o->pub_path};
  for (int k = 0; k < 2; k++) {
    const char *t = tmpls[k];
    size_t tl = strlen(t);
    /* printable, no space, quote or backslash: it goes into a request line and JSON */
    int ok = tl > 0 && tl < 512 && t[0] == '/';
    for (size_t i = 0; ok && i < tl; i++)
      ok = t[i] > ' ' && t[i] < 127 && t[i] != '"' && t[i] != '\\';
    if (!ok)
      bench_die("%s must start with / and be under 512 printable bytes without spaces, quotes "
                "or backslashes, got '%s'", k ? "--pub-path" : "--sub-path", t);
  }
  if (o->deflate && !o->ws)
    bench_die("--deflate needs --transport ws (or socketio)");
  if (o->inflate_all && !o->deflate)
    bench_die("--inflate-every-copy needs --transport ws --deflate");
  const char *host = strcmp(o->host, "localhost") == 0 ? "127.0.0.1" : o->host;
  if (inet_pton(AF_INET, host, &o->addr) != 1)
    bench_die("--host must be an IPv4 loopback address, got '%s'", o->host);
  if ((ntohl(o->addr.s_addr) >> 24) != 127)
    bench_die("--host %s is not loopback: this tool only targets 127.0.0.0/8", o->host);
  size_t clen = strlen(o->channel);
  if (clen == 0 || clen > (o->channels > 1 ? 247u : 255u) ||
      strspn(o->channel,
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
             "0123456789_.:/-") != clen)
    bench_die("--channel must be 1-255 bytes (with --channels: 1-247) of [A-Za-z0-9_.:/-]");
  if (o->ramp) {
    if (o->rate_given)
      bench_die("--ramp sets the rate itself: drop --rate and --window");
    if (o->messages_given && o->messages == 0)
      bench_die("--ramp needs messages: --messages 0 is an idle run");
    if (o->ramp_r0 > o->ramp_max_rate)
      bench_die("--ramp R0 %g is over --ramp-max-rate %g", o->ramp_r0, o->ramp_max_rate);
    o->rate = o->ramp_r0; /* what the JSON key "rate" shows */
    if (!o->messages_given) {
      /* enough for every step the limits allow, within SSEB_RAMP_DEFAULT_MAX messages
       * and SSEB_RAMP_SEEN_BUDGET bytes of delivery bitmaps (N x M / C bits) */
      uint64_t sum = 0;
      double r = o->ramp_r0;
      for (uint32_t k = 0; k < o->ramp_max_steps && r <= o->ramp_max_rate; k++, r *= o->ramp_f)
        sum += (uint64_t)(r * o->ramp_s) + 2;
      uint64_t cap = (uint64_t)o->channels * (SSEB_RAMP_SEEN_BUDGET * 8 / o->subscribers);
      if (cap > SSEB_RAMP_DEFAULT_MAX)
        cap = SSEB_RAMP_DEFAULT_MAX;
      o->messages = (uint32_t)(sum < cap ? sum : cap);
      if (o->messages == 0)
        o->messages = 1;
    }
  }
}

/* ------------------------------------------------------------------------------------
 * Server figures from /proc
 * ---------------------------------------------------------------------------------- */

/* VmRSS summed over n PIDs in KiB, or -1 when one is unreadable. */
static long sseb_pids_rss_kib(const long *pids, uint32_t n) {
  long sum = 0;
  for (uint32_t i = 0; i < n; i++) {
    long v = bench_proc_rss_kib(pids[i]);
    if (v < 0)
      return -1;
    sum += v;
  }
  return sum;
}

/* CPU of n PIDs: clock ticks and schedstat ns summed into *ticks and *ns (-1 when one is
 * unreadable), and each PID's schedstat ns in ns_each[i]. */
static void sseb_pids_cpu(const long *pids, uint32_t n, long long *ticks, long long *ns,
                          long long *ns_each) {
  *ticks = *ns = 0;
  for (uint32_t i = 0; i < n; i++) {
    long long t = bench_proc_cpu_ticks(pids[i]), c = bench_proc_cpu_ns(pids[i]);
    ns_each[i] = c;
    *ticks = t < 0 || *ticks < 0 ? -1 : *ticks + t;
    *ns = c < 0 || *ns < 0 ? -1 : *ns + c;
  }
}

/* ------------------------------------------------------------------------------------
 * Run state
 * ---------------------------------------------------------------------------------- */

enum {
  SSEB_SUB_IDLE,       /* not started */
  SSEB_SUB_CONNECTING, /* connect() in progress or request not fully written */
  SSEB_SUB_HEAD,       /* reading the response head */
  SSEB_SUB_STREAM,     /* reading events (SSE) or frames (WebSocket) */
  SSEB_SUB_CLOSED      /* closed by either side or failed; fd is -1 */
};

typedef struct sseb_sub_s {
  int fd;
  uint8_t state;
  uint8_t chunked;    /* response body uses chunked coding */
  uint8_t last_cr;    /* the last body byte seen was a CR ending a line */
  uint8_t connected;  /* `connected` event received */
  uint8_t has_id;     /* the event being read has an id: line */
  uint8_t has_offset; /* last_offset holds the offset of a delivered message */
  uint8_t event_len;  /* bytes in event[]; 0 = default name `message` */
  uint8_t ws_deflate; /* WebSocket: permessage-deflate negotiated */
  uint8_t ws_frag;    /* WebSocket: inside a fragmented message */
  uint8_t ws_msg_op;  /* WebSocket: opcode of that message */
  uint8_t ws_msg_z;   /* WebSocket: that message is compressed (RSV1 on its first frame) */
  uint8_t want_out;   /* EPOLLOUT registered for `out` */
  uint8_t sio_state;  /* Socket.IO: SSEB_SIO_* */
  uint32_t ch;        /* channel index: i % C */
  uint32_t req_off;   /* request bytes already written */
  uint32_t ws_msg_wire; /* WebSocket: wire bytes of the fragmented message so far */
  char event[SSEB_EVENT_MAX];
  char ws_key[24];    /* WebSocket: Sec-WebSocket-Key sent (base64, no NUL) */
  sseb_chunk_t chunk;
  bench_buf_t carry; /* response head, or the start of an SSE line / a WebSocket frame
                       split across reads */
  bench_buf_t data;  /* SSE: data: lines of the event being read, joined with '\n';
                       WebSocket: the fragments of a fragmented message */
  bench_buf_t out;   /* WebSocket: control frames (pong, close) not yet written */
  uint64_t id_offset;   /* offset part of the event's id, if has_id */
  uint64_t last_offset; /* offset of the last message delivered */
  int64_t max_seq;      /* highest seq seen; -1 before any */
  uint32_t delivered;   /* distinct messages received */
  uint32_t dups;
  uint32_t ooo;
} sseb_sub_t;

/* Socket.IO handshake of one subscriber, after the 101 */
enum {
  SSEB_SIO_OPEN,       /* awaiting the Engine.IO open packet `0{...}` */
  SSEB_SIO_CONNECT,    /* `40` sent, awaiting `40{"sid":..}` */
  SSEB_SIO_SUBSCRIBE,  /* `42["subscribe",ch]` sent, awaiting `42["subscribed",..]` */
  SSEB_SIO_READY       /* subscribed */
};

typedef struct sseb_pub_s {
  int fd;         /* -1 once dead */
  int want_out;   /* EPOLLOUT registered */
  bench_buf_t out; /* requests not yet written, from out_off */
  size_t out_off;
  bench_buf_t in;  /* response bytes not yet parsed */
  uint32_t *fifo; /* seqs of requests awaiting a response, in order */
  bench_buf_t body; /* --pub-ws: the message being framed */
  uint32_t head;
  uint32_t tail;
} sseb_pub_t;

/* One step of --ramp. Its messages are the seqs [first, end), sent while it was the
 * current step, i.e. in [t_start, t_end); what concerns them is counted up to deadline. */
typedef struct sseb_step_s {
  double target;          /* msg/s */
  uint64_t t_start;       /* scheduled start (CLOCK_MONOTONIC ns): the previous step's t_end */
  uint64_t t_end;         /* t_start + S */
  uint64_t deadline;      /* t_end + grace */
  uint64_t t_cut;         /* SSEB_STEP_CUT: when the ramp stopped during the step */
  uint32_t first;         /* its seqs: [first, end) */
  uint32_t end;
  uint32_t accepted;      /* 2xx publish answers to them received by the deadline */
  uint32_t answered;      /* publish answers of any status received by the deadline */
  double lag_sum[2];      /* accepted answers' lag (answer time - due time, ns) summed over */
  uint32_t lag_n[2];      /* the messages due in the first [0] and second [1] half */
  double lag_growth;      /* ns: 2 x (mean lag of the second half - of the first), >= 0 */
  uint64_t expected;      /* deliveries expected for them */
  uint64_t delivered;     /* of those, arrived by the deadline */
  uint64_t dlv_start;     /* g.delivered (every message) at the start and at the end */
  uint64_t dlv_end;
  long long cpu_start;    /* server schedstat ns there (-1 = unknown) */
  long long cpu_end;
  long long gen_start;    /* this process's CPU time (user + system) there, ns */
  long long gen_end;
  uint8_t state;          /* SSEB_STEP_* */
  uint8_t sustained;
  double achieved;        /* msg/s: accepted / (S + lag_growth) */
  double dps;             /* deliveries/s: delivered / S */
  uint64_t p50, p99, max; /* latency of its messages' deliveries by the deadline (ns) */
  char why[192];          /* why it is not sustained */
} sseb_step_t;

enum {
  SSEB_STEP_SENDING, /* the current step: its messages are being sent */
  SSEB_STEP_ENDED,   /* sending done, awaiting judgement (deliveries, answers, deadline) */
  SSEB_STEP_JUDGED,  /* sustained or not */
  SSEB_STEP_CUT      /* not judged: the ramp ended while it ran or before its judgement */
};

typedef struct sseb_s {
  sseb_opts_t o;
  int ep;
  int tfd;        /* timerfd pacing the rate mode */
  size_t line_max;    /* longest SSE line or data, or WebSocket message, accepted */
  uint32_t n_src;    /* source addresses used (1 = no binding) */
  uint32_t src_base; /* the first one: 127.0.0.1 (auto) or 127.0.0.2 (--src-addrs) */
  uint64_t t0;       /* bench_now() at start: message times T are ns since then */
  uint64_t expected; /* deliveries expected: sum over channels of subscribers x messages */

  /* channels: subscriber i is on channel i % C, message seq on channel seq % C */
  uint32_t *ch_subs; /* subscribers per channel */
  uint32_t *ch_msgs; /* messages per channel (of M) */
  uint8_t *pub_of;   /* publisher connection that sent seq (--raw with K > 1) */
  int32_t *last_by_pub; /* --raw with K > 1: N x K, the last seq from each publisher */
  uint64_t wrong_channel; /* our messages delivered on another channel's subscriber */

  sseb_sub_t *subs;
  uint64_t *seen;    /* N bitmaps of M bits: seq received per subscriber */
  size_t seen_words; /* uint64_t words per subscriber */
  sseb_pub_t *pubs;
  uint32_t pubs_alive;
  uint32_t pub_rr; /* round-robin cursor */

  /* message bookkeeping, indexed by seq */
  uint32_t *passed;    /* subscribers done with seq: seen it, seen a later one, or closed */
  uint64_t *offset_of; /* channel offset of seq (0 = not known yet) */
  uint8_t *failed;     /* publish of seq was not accepted */
  uint32_t next_seq;   /* next message to send */
  uint32_t settled;    /* lowest seq not settled (passed by every subscriber) */
  uint32_t answered;   /* publish responses received */
  uint64_t published_ok;
  uint64_t publish_errors;
  char publish_error[256]; /* the first failure, for the report */

  /* subscriber counters */
  uint32_t started;
  uint32_t connected;
  uint32_t connect_failed;
  uint32_t closed;       /* subscribers in state CLOSED */
  uint32_t closed_early; /* closed by the server or an error after connecting */
  uint64_t delivered;    /* distinct (subscriber, seq) pairs received */
  uint64_t dups;
  uint64_t ooo;
  uint64_t id_mismatch;
  uint64_t bad_data; /* message events whose data is not ours */
  uint64_t heartbeats;
  uint64_t sse_errors; /* `error` events */
  uint64_t shutdowns;  /* `shutdown` events */
  uint64_t other_events;
  char sub_error[256]; /* the first subscriber failure, for the report */
  bench_hist_t lat;

  /* WebSocket */
  z_stream z;            /* raw inflater, reset for every compressed message */
  bench_buf_t zbuf;       /* the message being inflated */
  struct {
    bench_buf_t in;  /* compressed payload */
    bench_buf_t out; /* what it inflated to */
  } zcache[SSEB_ZCACHE];
  uint32_t zcache_next; /* round-robin victim */
  uint64_t inflates;    /* messages actually inflated (the rest came from the cache) */
  uint32_t ws_deflated;  /* subscribers that negotiated permessage-deflate */
  uint64_t ws_msgs;      /* `message` messages received (deliveries, dups, foreign) */
  uint64_t ws_msg_wire;  /* their bytes on the wire: frame headers + payload */
  uint64_t ws_msg_json;  /* their JSON bytes (after inflating) */
  uint64_t ws_msg_z;     /* those of them that came compressed */
  uint64_t ws_welcomes;
  uint64_t ws_pings;  /* pings answered */
  uint64_t ws_closes; /* close frames received */
  uint64_t sio_pings; /* Engine.IO pings (`2`) answered with `3` */

  /* timeline (CLOCK_MONOTONIC ns) */
  uint64_t t_connect_start;
  uint64_t t_connected;
  uint64_t t_first_publish;
  uint64_t t_last_publish;
  uint64_t t_last_delivery;
  uint64_t t_progress; /* last delivery or publish answer */
  uint64_t t_end;

  /* server figures (-1 = unknown) */
  long rss_before;
  long rss_connected;
  long rss_end;
  long long cpu_start; /* utime + stime ticks */
  long long cpu_end;
  long long sched_start; /* schedstat ns */
  long long sched_end;
  long long conn_sched_start; /* schedstat ns over the connect phase */
  long long conn_sched_end;
  long long sched_start_each[SSEB_MAX_PIDS]; /* per --server-pid entry */
  long long sched_end_each[SSEB_MAX_PIDS];
  long long aux_ticks_start; /* --aux-pid, summed */
  long long aux_ticks_end;
  long long aux_start;
  long long aux_end;
  long long aux_start_each[SSEB_MAX_PIDS];
  long long aux_end_each[SSEB_MAX_PIDS];

  const char *stop_reason;

  /* publishing ends at seq pub_end: o.messages, or with --ramp the messages sent once the
   * ramp stops (expected and ch_msgs are then recomputed for that many) */
  uint32_t pub_end;

  /* --ramp */
  sseb_step_t *steps;      /* o.ramp_max_steps entries */
  uint32_t n_steps;        /* steps started */
  uint32_t judged;         /* steps judged or cut, in order: steps[judged] is the next */
  int ramp_sending;        /* steps[n_steps - 1] is SENDING */
  int32_t best;            /* the last sustained step, -1 = none */
  uint64_t step_ns;        /* S in ns */
  uint64_t grace_ns;       /* min(S, 1 s) in ns */
  bench_hist_t step_lat[2]; /* latency of step k's messages: step_lat[k % 2], reset when
                               step k starts (step k - 2 is judged by then) */
  char ramp_end[256];      /* why the ramp ended */
} sseb_t;

static sseb_t g;

/* Expected deliveries and messages per channel for m messages in all (seqs 0 .. m-1). */
static void sseb_set_messages(uint32_t m) {
  uint32_t c = g.o.channels;
  g.pub_end = m;
  g.expected = 0;
  for (uint32_t k = 0; k < c; k++) {
    /* channel k gets every C-th subscriber and message from k on */
    g.ch_msgs[k] = m / c + (k < m % c);
    g.expected += (uint64_t)g.ch_subs[k] * g.ch_msgs[k];
  }
}

/* The --ramp step whose messages include seq, or NULL (the steps' seq ranges are
 * contiguous; the latest ones are the likeliest). */
static sseb_step_t *sseb_step_of(uint64_t seq) {
  for (uint32_t i = g.n_steps; i-- > 0;) {
    sseb_step_t *st = &g.steps[i];
    if (seq >= st->first)
      return seq < st->end ? st : NULL;
  }
  return NULL;
}

/* --ramp: one delivery of seq with latency lat (ns) received at now. */
static void sseb_ramp_delivered(uint64_t seq, uint64_t lat, uint64_t now) {
  sseb_step_t *st = sseb_step_of(seq);
  if (st == NULL || st->state >= SSEB_STEP_JUDGED || now > st->deadline)
    return;
  st->delivered++;
  bench_hist_add(&g.step_lat[(size_t)(st - g.steps) % 2], lat);
}

/* --ramp: when seq of step st is due (the pacing schedule), ns offset from its start. */
static uint64_t sseb_step_due(const sseb_step_t *st, uint32_t seq) {
  return (uint64_t)((double)(seq - st->first) * 1e9 / st->target);
}

/* --ramp: the publish answer for seq (accepted or not) received at now. */
static void sseb_ramp_answered(uint32_t seq, int ok, uint64_t now) {
  sseb_step_t *st = sseb_step_of(seq);
  if (st == NULL || st->state >= SSEB_STEP_JUDGED || now > st->deadline)
    return;
  st->answered++;
  if (ok) {
    st->accepted++;
    uint64_t due = sseb_step_due(st, seq);
    int half = due * 2 >= g.step_ns;
    st->lag_sum[half] += now > st->t_start + due ? (double)(now - st->t_start - due) : 0.0;
    st->lag_n[half]++;
  }
}

static void sseb_ep_ctl(int op, int fd, uint32_t events, uint32_t tag, uint32_t idx) {
  struct epoll_event ev = {.events = events, .data.u64 = ((uint64_t)tag << 32) | idx};
  if (epoll_ctl(g.ep, op, fd, &ev) != 0)
    bench_die("epoll_ctl: %s", strerror(errno));
}

/* ------------------------------------------------------------------------------------
 * Settling: a message is settled once every subscriber is done with it (received it,
 * received a later one, or closed) or its publish failed. With --rate 0 the window
 * only lets next_seq run W messages ahead of the oldest unsettled one.
 * ---------------------------------------------------------------------------------- */

static void sseb_settle(void) {
  while (g.settled < g.next_seq &&
         (g.passed[g.settled] >= g.ch_subs[g.o.channels == 1 ? 0 : g.settled % g.o.channels] ||
          g.failed[g.settled]))
    g.settled++;
}

/* Marks the messages of s's channel in (s->max_seq, upto] as passed by s. */
static void sseb_sub_pass(sseb_sub_t *s, int64_t upto) {
  int64_t c = g.o.channels, x = s->max_seq + 1;
  if (c > 1) /* (the divisions cost more than the rest of a delivery's bookkeeping) */
    x += ((int64_t)s->ch - x % c + c) % c; /* the first seq of s's channel from there */
  for (; x <= upto; x += c)
    g.passed[x]++;
  if (upto > s->max_seq)
    s->max_seq = upto;
}

/* ------------------------------------------------------------------------------------
 * Subscribers: connection life
 * ---------------------------------------------------------------------------------- */

/* Closes s (if open) and counts it. `why` non-NULL marks an early close worth reporting.
 * s stays in the array in state CLOSED; everything it passed stays counted. */
static void sseb_sub_close(sseb_sub_t *s, const char *why) {
  if (s->state == SSEB_SUB_CLOSED)
    return;
  if (s->fd >= 0) {
    epoll_ctl(g.ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
  }
  if (!s->connected)
    g.connect_failed++;
  else if (why != NULL)
    g.closed_early++;
  if (why != NULL)
    bench_note(g.sub_error, sizeof g.sub_error, "subscriber %ld: %s", (long)(s - g.subs), why);
  s->state = SSEB_SUB_CLOSED;
  g.closed++;
  sseb_sub_pass(s, (int64_t)g.o.messages - 1);
  sseb_settle();
  bench_buf_free(&s->carry);
  bench_buf_free(&s->data);
  bench_buf_free(&s->out);
}

/* The name of channel k: --channel itself when C = 1, else `NAME-k`. Returns its length. */
static size_t sseb_ch_name(uint32_t k, char out[264]) {
  if (g.o.channels == 1)
    return (size_t)snprintf(out, 264, "%s", g.o.channel);
  return (size_t)snprintf(out, 264, "%s-%" PRIu32, g.o.channel, k);
}

/* Expands a path template for channel k into out (SSEB_PATH_MAX bytes): every `{ch}`
 * becomes the channel name. Returns the length; dies when it does not fit (the same
 * template and the longest name are checked once in sseb_setup). */
static size_t sseb_path(const char *tmpl, uint32_t k, char out[SSEB_PATH_MAX]) {
  char name[264];
  size_t nl = sseb_ch_name(k, name), o = 0;
  for (const char *t = tmpl; *t;) {
    const char *piece = t;
    size_t len = 1;
    if (strncmp(t, "{ch}", 4) == 0) {
      piece = name;
      len = nl;
      t += 4;
    } else {
      t++;
    }
    if (o + len >= SSEB_PATH_MAX)
      bench_die("path from template '%s' longer than %d bytes", tmpl, SSEB_PATH_MAX - 1);
    memcpy(out + o, piece, len);
    o += len;
  }
  out[o] = '\0';
  return o;
}

/* s's request (the same bytes on every call: WebSocket key fixed at start). Returns its
 * length. */
static size_t sseb_sub_request(const sseb_sub_t *s, char *out, size_t cap) {
  const sseb_opts_t *o = &g.o;
  char path[SSEB_PATH_MAX];
  sseb_path(o->sub_path, s->ch, path);
  int rl;
  if (o->ws)
    rl = snprintf(out, cap,
                  "GET %s HTTP/1.1\r\nHost: %s:%u\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %.24s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                  path, o->host, o->port, s->ws_key,
                  o->deflate ? "Sec-WebSocket-Extensions: " : "", o->deflate ? SSEB_WS_OFFER : "",
                  o->deflate ? "\r\n" : "");
  else
    rl = snprintf(out, cap,
                  "GET %s HTTP/1.1\r\nHost: %s:%u\r\n"
                  "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
                  path, o->host, o->port);
  if (rl < 0 || (size_t)rl >= cap)
    bench_die("subscriber request too long");
  return (size_t)rl;
}

/* Writes what is left of the request. Returns 0 when all is written (the socket then
 * waits for input), 1 when it must wait for writability, -1 on error (s closed). */
static int sseb_sub_send_request(sseb_sub_t *s) {
  char req[SSEB_PATH_MAX + 512];
  size_t req_len = sseb_sub_request(s, req, sizeof req);
  int rc = bench_send_from(s->fd, req, req_len, &s->req_off);
  if (rc == 1)
    return 1;
  if (rc < 0) {
    char why[96];
    snprintf(why, sizeof why, "send: %s", strerror(-rc));
    sseb_sub_close(s, why);
    return -1;
  }
  uint32_t idx = (uint32_t)(s - g.subs);
  sseb_ep_ctl(EPOLL_CTL_MOD, s->fd, EPOLLIN, SSEB_TAG_SUB, idx);
  s->state = SSEB_SUB_HEAD;
  return 0;
}

/* Starts subscriber i: socket, optional source binding, non-blocking connect. */
static void sseb_sub_start(uint32_t i) {
  sseb_sub_t *s = &g.subs[i];
  g.started++;
  s->max_seq = -1;
  s->ch = i % g.o.channels;
  if (g.o.ws)
    bench_ws_key(s->ws_key);
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (s->fd < 0)
    bench_die("socket: %s (subscriber %u)", strerror(errno), i);
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (g.n_src > 1 || g.src_base != 1) {
    /* Spread over 127.0.0.base .. 127.0.0.(base + n_src - 1): one source address has
     * ~28k ephemeral ports per destination. NO_PORT defers the port choice to connect(),
     * so bind() does not reserve a port for every possible destination, and connect()
     * picks a port whose 4-tuple is free (also of TIME_WAIT ones). */
    struct sockaddr_in src = {.sin_family = AF_INET};
    uint32_t host = g.src_base + i % g.n_src;
    src.sin_addr.s_addr = htonl(0x7f000000u + host);
    if (setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0)
      bench_die("setsockopt IP_BIND_ADDRESS_NO_PORT: %s", strerror(errno));
    if (bind(s->fd, (struct sockaddr *)&src, sizeof src) != 0)
      bench_die("bind 127.0.0.%u: %s", host, strerror(errno));
  }
  struct sockaddr_in dst = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)g.o.sub_ports[i % g.o.n_sub_ports]),
                            .sin_addr = g.o.addr};
  s->state = SSEB_SUB_CONNECTING;
  int rc = connect(s->fd, (struct sockaddr *)&dst, sizeof dst);
  if (rc != 0 && errno != EINPROGRESS) {
    char why[96];
    snprintf(why, sizeof why, "connect: %s", strerror(errno));
    close(s->fd); /* not in epoll yet */
    s->fd = -1;
    sseb_sub_close(s, why);
    return;
  }
  sseb_ep_ctl(EPOLL_CTL_ADD, s->fd, EPOLLOUT, SSEB_TAG_SUB, i);
  if (rc == 0)
    sseb_sub_send_request(s);
}

/* ------------------------------------------------------------------------------------
 * Subscribers: the SSE stream
 * ---------------------------------------------------------------------------------- */

/* A message with data [d, d+dlen) arrived on s at `now`; has_id and id_offset give the
 * channel offset from its id when it had a readable one. Used by every transport. */
/* Reads the decimal digits at *p (< end) into *v; returns 0, or -1 when there are none
 * or they overflow. Advances *p past them. */
static int sseb_digits(const char **p, const char *end, uint64_t *v) {
  const char *q = *p, *stop = end - *p > 19 ? *p + 19 : end; /* 19 digits fit */
  uint64_t x = 0;
  while (q < stop && (unsigned)(*q - '0') < 10)
    x = x * 10 + (uint64_t)(*q++ - '0');
  if (q == *p || (q < end && (unsigned)(*q - '0') < 10))
    return -1;
  *p = q;
  *v = x;
  return 0;
}

/* seq and t of our message data: `{"seq":S,"t":T` read in place, the form every server
 * passes on verbatim (a key search for anything else, e.g. spaces or reordered keys). */
static int sseb_seq_t(const char *d, size_t dlen, uint64_t *seq, uint64_t *t) {
  const char *p = d, *end = d + dlen;
  if (dlen > 12 && memcmp(p, "{\"seq\":", 7) == 0) {
    p += 7;
    if (sseb_digits(&p, end, seq) == 0 && end - p > 5 && memcmp(p, ",\"t\":", 5) == 0) {
      p += 5;
      if (sseb_digits(&p, end, t) == 0)
        return 0;
    }
  }
  return bench_json_u64_first(d, dlen, "seq", seq) == 0 && bench_json_u64_first(d, dlen, "t", t) == 0
             ? 0
             : -1;
}

static void sseb_deliver(sseb_sub_t *s, const char *d, size_t dlen, int has_id,
                         uint64_t id_offset, uint64_t now) {
  uint64_t seq, t;
  if (sseb_seq_t(d, dlen, &seq, &t) != 0 || seq >= g.o.messages || seq >= g.next_seq ||
      t > now - g.t0) {
    g.bad_data++;
    return;
  }
  uint64_t k = seq; /* the message's rank on its channel */
  if (g.o.channels > 1) {
    if (seq % g.o.channels != s->ch) {
      g.wrong_channel++;
      return;
    }
    k = seq / g.o.channels;
  }
  size_t idx = (size_t)(s - g.subs);
  uint64_t *w = &g.seen[idx * g.seen_words + k / 64];
  uint64_t bit = 1ull << (k % 64);
  if (*w & bit) {
    s->dups++;
    g.dups++;
    return;
  }
  *w |= bit;
  if (has_id) {
    /* Order is judged on the channel offsets the server assigned: with several
     * publishers the seqs may legitimately reach the channel in another order. */
    if (s->has_offset && id_offset <= s->last_offset) {
      s->ooo++;
      g.ooo++;
    }
    s->last_offset = id_offset;
    s->has_offset = 1;
    if (g.offset_of[seq] == 0)
      g.offset_of[seq] = id_offset;
    else if (g.offset_of[seq] != id_offset)
      g.id_mismatch++;
  } else if (g.last_by_pub != NULL) {
    /* --raw with several publisher connections: seqs are in order per connection only */
    int32_t *last = &g.last_by_pub[idx * g.o.publishers + g.pub_of[seq]];
    if ((int32_t)seq < *last) {
      s->ooo++;
      g.ooo++;
    } else {
      *last = (int32_t)seq;
    }
  } else if ((int64_t)seq < s->max_seq) {
    s->ooo++;
    g.ooo++;
  }
  s->delivered++;
  g.delivered++;
  bench_hist_add(&g.lat, now - g.t0 - t);
  if (g.steps != NULL)
    sseb_ramp_delivered(seq, now - g.t0 - t, now);
  g.t_last_delivery = now;
  g.t_progress = now;
  if ((int64_t)seq > s->max_seq) {
    sseb_sub_pass(s, (int64_t)seq);
    sseb_settle();
  }
}

/* A `message` event carrying one of our messages arrived on s at `now`. */
static void sseb_sub_message(sseb_sub_t *s, uint64_t now) {
  sseb_deliver(s, s->data.p, s->data.len, s->has_id, s->id_offset, now);
}

/* s is ready for messages (see --ready). */
static void sseb_sub_ready(sseb_sub_t *s, uint64_t now) {
  if (!s->connected) {
    s->connected = 1;
    g.connected++;
    if (g.connected == g.o.subscribers)
      g.t_connected = now;
  }
}

/* The blank line ending an event: dispatch it and reset the event state. */
static void sseb_sub_dispatch(sseb_sub_t *s, uint64_t now) {
  const char *name = s->event_len ? s->event : "message";
  size_t nlen = s->event_len ? s->event_len : 7;
#define SSEB_IS(lit) (nlen == sizeof(lit) - 1 && memcmp(name, lit, nlen) == 0)
  if (s->data.len == 0 && s->event_len == 0) {
    /* nothing to dispatch (e.g. a lone `retry:` block) */
  } else if (g.o.ready == SSEB_READY_MESSAGE && !s->connected) {
    sseb_sub_ready(s, now); /* the first event, whatever it is */
  } else if (SSEB_IS("connected") && g.o.ready == SSEB_READY_TUTTI) {
    sseb_sub_ready(s, now);
  } else if (SSEB_IS("message")) {
    if (g.o.raw) /* the payload itself; an id: line (nchan's) says nothing of order here */
      sseb_deliver(s, s->data.p, s->data.len, 0, 0, now);
    else
      sseb_sub_message(s, now);
  } else if (SSEB_IS("heartbeat")) {
    g.heartbeats++;
  } else if (SSEB_IS("error")) {
    g.sse_errors++;
    bench_note(g.sub_error, sizeof g.sub_error, "subscriber %ld got event error: %.*s",
              (long)(s - g.subs), (int)(s->data.len > 160 ? 160 : s->data.len),
              s->data.p ? s->data.p : "");
  } else if (SSEB_IS("shutdown")) {
    g.shutdowns++;
  } else {
    g.other_events++;
  }
#undef SSEB_IS
  s->event_len = 0;
  s->data.len = 0;
  s->has_id = 0;
}

/* One complete SSE line (without its terminator). Returns 0, or -1 when s was closed. */
static int sseb_sub_line(sseb_sub_t *s, const char *line, size_t len, uint64_t now) {
  if (len == 0) {
    sseb_sub_dispatch(s, now);
    return 0;
  }
  if (line[0] == ':')
    return 0; /* comment */
  const char *colon = memchr(line, ':', len);
  size_t flen = colon ? (size_t)(colon - line) : len;
  const char *val = colon ? colon + 1 : line + len;
  size_t vlen = (size_t)(line + len - val);
  if (vlen > 0 && val[0] == ' ') {
    val++;
    vlen--;
  }
  if (flen == 4 && memcmp(line, "data", 4) == 0) {
    if ((s->data.len > 0 && bench_buf_append(&s->data, "\n", 1, g.line_max) != 0) ||
        bench_buf_append(&s->data, val, vlen, g.line_max) != 0) {
      sseb_sub_close(s, "event data over the size limit");
      return -1;
    }
  } else if (flen == 5 && memcmp(line, "event", 5) == 0) {
    size_t n = vlen < SSEB_EVENT_MAX ? vlen : SSEB_EVENT_MAX;
    memcpy(s->event, val, n);
    s->event_len = (uint8_t)n;
  } else if (flen == 2 && memcmp(line, "id", 2) == 0) {
    /* `epoch:offset`; for a single-channel stream the offset is after the last ':' */
    const char *c = val + vlen;
    while (c > val && c[-1] != ':')
      c--;
    uint64_t off = 0;
    int ok = c < val + vlen;
    for (const char *d = c; d < val + vlen; d++) {
      if (*d < '0' || *d > '9' || off > UINT64_MAX / 10 - 9) {
        ok = 0;
        break;
      }
      off = off * 10 + (uint64_t)(*d - '0');
    }
    s->has_id = (uint8_t)(ok && off > 0);
    s->id_offset = off;
  }
  /* retry: and unknown fields are ignored, as EventSource does */
  return 0;
}

/* Feeds n decoded body bytes. Lines complete within p are handled in place; a line
 * split across reads is gathered in s->carry. Returns 0, or -1 when s was closed. */
static int sseb_sub_feed(sseb_sub_t *s, const char *p, size_t n, uint64_t now) {
  size_t i = 0;
  if (s->last_cr && n > 0) {
    if (p[0] == '\n')
      i = 1; /* the LF of a CRLF split across reads */
    s->last_cr = 0;
  }
  while (i < n) {
    size_t j = i;
    while (j < n && p[j] != '\n' && p[j] != '\r')
      j++;
    if (j == n) {
      if (bench_buf_append(&s->carry, p + i, n - i, g.line_max) != 0) {
        sseb_sub_close(s, "SSE line over the size limit");
        return -1;
      }
      return 0;
    }
    int rc;
    if (s->carry.len > 0) {
      if (bench_buf_append(&s->carry, p + i, j - i, g.line_max) != 0) {
        sseb_sub_close(s, "SSE line over the size limit");
        return -1;
      }
      rc = sseb_sub_line(s, s->carry.p, s->carry.len, now);
      s->carry.len = 0;
    } else {
      rc = sseb_sub_line(s, p + i, j - i, now);
    }
    if (rc != 0)
      return -1;
    if (p[j] == '\r') {
      if (j + 1 < n && p[j + 1] == '\n')
        j++;
      else if (j + 1 == n)
        s->last_cr = 1;
    }
    i = j + 1;
  }
  return 0;
}

/* ------------------------------------------------------------------------------------
 * Subscribers: WebSocket frames
 * ---------------------------------------------------------------------------------- */

/* Writes what is queued in s->out; registers for writability while some is left.
 * Returns 0, or -1 when s was closed. */
static int sseb_sub_flush(sseb_sub_t *s) {
  int rc = bench_flush(s->fd, &s->out);
  if (rc < 0) {
    char why[96];
    snprintf(why, sizeof why, "send: %s", strerror(-rc));
    sseb_sub_close(s, why);
    return -1;
  }
  int want = s->out.len > 0;
  if (want != s->want_out) {
    sseb_ep_ctl(EPOLL_CTL_MOD, s->fd, EPOLLIN | (want ? EPOLLOUT : 0u), SSEB_TAG_SUB,
                (uint32_t)(s - g.subs));
    s->want_out = (uint8_t)want;
  }
  return 0;
}

/* Queues a masked control frame and writes what it can. Returns 0, or -1 when s was
 * closed. */
static int sseb_ws_send_control(sseb_sub_t *s, unsigned op, const uint8_t *payload, size_t len) {
  bench_ws_queue(&s->out, op, payload, len);
  return sseb_sub_flush(s);
}

/* Protocol violation by the server: reported, and s closed. Returns -1. */
static int sseb_ws_fail(sseb_sub_t *s, const char *what) {
  char why[160];
  snprintf(why, sizeof why, "WebSocket protocol: %s", what);
  sseb_sub_close(s, why);
  return -1;
}

/* Inflates one permessage-deflate message into g.zbuf: the payload, then the 00 00 ff ff
 * the sender removed (RFC 7692 7.2.2), from a reset inflater, as the server takes no
 * context over (server_no_context_takeover). Returns 0, or -1. */
static int sseb_inflate(const uint8_t *p, size_t n) {
  static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
  if (inflateReset(&g.z) != Z_OK)
    return -1;
  g.zbuf.len = 0;
  for (int part = 0; part < 2; part++) {
    g.z.next_in = (Bytef *)(part == 0 ? p : tail);
    g.z.avail_in = (uInt)(part == 0 ? n : sizeof tail);
    for (;;) {
      bench_buf_reserve(&g.zbuf, 4096);
      g.z.next_out = (Bytef *)g.zbuf.p + g.zbuf.len;
      g.z.avail_out = (uInt)(g.zbuf.cap - g.zbuf.len);
      uInt before = g.z.avail_out;
      int rc = inflate(&g.z, Z_SYNC_FLUSH);
      g.zbuf.len += before - g.z.avail_out;
      if (g.zbuf.len > g.line_max)
        return -1;
      if (rc == Z_STREAM_END)
        return 0; /* a final block: whatever follows is not data */
      if (rc != Z_OK && rc != Z_BUF_ERROR)
        return -1;
      if (g.z.avail_out != 0) {
        if (g.z.avail_in != 0)
          return -1; /* stuck with input left */
        break;
      }
    }
  }
  return 0;
}

/* Inflates a compressed message, or finds what it inflates to among the last
 * SSEB_ZCACHE distinct ones: tutti compresses each publication once and sends the same
 * bytes to every subscriber (no context takeover), so N copies need one inflate. The
 * match is exact (length and every byte), so the result is what inflating would give.
 * Sets *out, *outlen; returns 0, or -1. */
static int sseb_inflate_cached(const uint8_t *p, size_t n, const char **out, size_t *outlen) {
  if (!g.o.inflate_all)
    for (uint32_t k = 0; k < SSEB_ZCACHE; k++) {
      uint32_t i = (g.zcache_next + SSEB_ZCACHE - 1 - k) % SSEB_ZCACHE; /* newest first */
      if (g.zcache[i].in.len == n && n > 0 && memcmp(g.zcache[i].in.p, p, n) == 0) {
        *out = g.zcache[i].out.p;
        *outlen = g.zcache[i].out.len;
        return 0;
      }
    }
  g.inflates++;
  if (sseb_inflate(p, n) != 0)
    return -1;
  if (g.o.inflate_all) {
    *out = g.zbuf.p;
    *outlen = g.zbuf.len;
    return 0;
  }
  uint32_t i = g.zcache_next;
  g.zcache_next = (i + 1) % SSEB_ZCACHE;
  g.zcache[i].in.len = g.zcache[i].out.len = 0;
  bench_buf_append(&g.zcache[i].in, (const char *)p, n, (size_t)-1);
  bench_buf_append(&g.zcache[i].out, g.zbuf.p, g.zbuf.len, (size_t)-1);
  *out = g.zcache[i].out.p;
  *outlen = g.zcache[i].out.len;
  return 0;
}

/* Counts one message that carries (or should carry) a payload. */
static void sseb_ws_count(size_t n, size_t wire, int z) {
  g.ws_msgs++;
  g.ws_msg_wire += wire;
  g.ws_msg_json += n;
  g.ws_msg_z += (uint64_t)(z != 0);
}

/* Queues one masked text frame and writes what it can. Returns 0, or -1 when s was
 * closed. */
static int sseb_ws_send_text(sseb_sub_t *s, const char *text, size_t len) {
  bench_ws_queue(&s->out, 0x1, text, len);
  return sseb_sub_flush(s);
}

/* One Engine.IO packet (a text message) on a Socket.IO subscriber. Returns 0, or -1 when
 * s was closed. */
static int sseb_sio_text(sseb_sub_t *s, const char *p, size_t n, size_t wire, int z,
                         uint64_t now) {
  char why[200];
  if (n == 0) {
    g.bad_data++;
    return 0;
  }
  switch (p[0]) {
    case '0': /* open: {"sid":..,"pingInterval":..,..}; connect to the default namespace */
      if (s->sio_state != SSEB_SIO_OPEN)
        return sseb_ws_fail(s, "Engine.IO open packet twice");
      s->sio_state = SSEB_SIO_CONNECT;
      return sseb_ws_send_text(s, "40", 2);
    case '2': { /* ping: answer pong with the same data */
      char pong[128];
      g.sio_pings++;
      return sseb_ws_send_text(s, pong, bench_eio_pong(p, n, pong, sizeof pong));
    }
    case '1':
      sseb_sub_close(s, "Engine.IO close packet from the server");
      return -1;
    case '3': /* pong */
    case '6': /* noop */
      return 0;
    case '4': break; /* a Socket.IO packet: below */
    default: g.other_events++; return 0;
  }
  if (n < 2) {
    g.bad_data++;
    return 0;
  }
  if (p[1] == '0') { /* CONNECT ack: 40{"sid":".."} */
    if (s->sio_state != SSEB_SIO_CONNECT) {
      g.other_events++;
      return 0;
    }
    char name[264], msg[300];
    size_t nl = sseb_ch_name(s->ch, name);
    int ml = snprintf(msg, sizeof msg, "42[\"subscribe\",\"%.*s\"]", (int)nl, name);
    s->sio_state = SSEB_SIO_SUBSCRIBE;
    return sseb_ws_send_text(s, msg, (size_t)ml);
  }
  if (p[1] == '1' || p[1] == '4') { /* DISCONNECT, CONNECT_ERROR */
    snprintf(why, sizeof why, "Socket.IO %s: %.*s", p[1] == '1' ? "disconnect" : "connect_error",
             (int)(n > 120 ? 120 : n), p);
    if (p[1] == '4')
      g.sse_errors++;
    sseb_sub_close(s, why);
    return -1;
  }
  if (p[1] != '2') { /* ACK, binary packets: not part of the contract */
    g.other_events++;
    return 0;
  }
  /* EVENT: 42[/nsp,][id]["name",args...] */
  const char *name, *rest;
  size_t nlen, rlen;
  int ev = bench_sio_event(p, n, &name, &nlen, &rest, &rlen);
  if (ev > 0) { /* a namespace: not the default one */
    g.other_events++;
    return 0;
  }
  if (ev < 0) {
    g.bad_data++;
    return 0;
  }
  if (nlen == 7 && memcmp(name, "message", 7) == 0) {
    sseb_ws_count(n, wire, z);
    /* the payload: after `"message",` up to the closing bracket */
    const char *d;
    size_t dlen;
    if (bench_sio_arg(rest, rlen, &d, &dlen) != 0) {
      g.bad_data++;
      return 0;
    }
    sseb_deliver(s, d, dlen, 0, 0, now);
  } else if (nlen == 10 && memcmp(name, "subscribed", 10) == 0) {
    s->sio_state = SSEB_SIO_READY;
    sseb_sub_ready(s, now);
  } else {
    g.other_events++;
  }
  return 0;
}

/* Skips the literal lit at *p and the string value after it, up to and including its
 * closing quote; sets *v, *vlen to the value. Returns 0, or -1 when it is not there. */
static int sseb_lit_str(const char **p, const char *end, const char *lit, size_t llen,
                        const char **v, size_t *vlen) {
  if ((size_t)(end - *p) <= llen || memcmp(*p, lit, llen) != 0)
    return -1;
  const char *a = *p + llen, *q = a;
  while (q < end && *q != '"') /* short values: a loop beats a call to memchr */
    q++;
  if (q == end)
    return -1;
  *v = a;
  *vlen = (size_t)(q - a);
  *p = q + 1;
  return 0;
}

/* tutti's message in the exact form the server writes it,
 * {"type":"message","channel":"C","id":"E:O","event":"V","data":D}, read left to right:
 * sets *id, *idlen and *d (D's first byte). Returns 0, or -1 for any other form (the
 * key search then reads it). At millions of deliveries per second the key searches were
 * most of this process's time. */
static int sseb_tutti_fast(const char *p, size_t n, const char **id, size_t *idlen,
                           const char **d) {
#define SSEB_LIT(lit) lit, sizeof(lit) - 1
  const char *end = p + n, *v;
  size_t vlen;
  if (sseb_lit_str(&p, end, SSEB_LIT("{\"type\":\"message\",\"channel\":\""), &v, &vlen) != 0 ||
      sseb_lit_str(&p, end, SSEB_LIT(",\"id\":\""), id, idlen) != 0 ||
      sseb_lit_str(&p, end, SSEB_LIT(",\"event\":\""), &v, &vlen) != 0 ||
      (size_t)(end - p) <= 8 || memcmp(p, ",\"data\":", 8) != 0)
    return -1;
#undef SSEB_LIT
  *d = p + 8;
  return 0;
}

/* One complete text message of tutti's WebSocket protocol (JSON with a "type"). */
static int sseb_ws_tutti(sseb_sub_t *s, const char *p, size_t n, size_t wire, int z,
                         uint64_t now) {
  const char *type = "message", *id, *d = NULL;
  size_t tlen = 7, idlen;
  int fast = sseb_tutti_fast(p, n, &id, &idlen, &d) == 0;
  if (!fast && bench_json_str(p, n, "type", &type, &tlen) != 0) {
    g.bad_data++;
    return 0;
  }
#define SSEB_TYPE(lit) (tlen == sizeof(lit) - 1 && memcmp(type, lit, tlen) == 0)
  if (SSEB_TYPE("message")) {
    sseb_ws_count(n, wire, z);
    /* {"type":"message","channel":..,"id":"E:O","event":..,"data":<published JSON>} */
    int has_id = 0;
    uint64_t off = 0;
    if (fast || bench_json_str(p, n, "id", &id, &idlen) == 0) {
      const char *c = id + idlen; /* the offset: the digits after the last ':' */
      while (c > id && c[-1] != ':')
        c--;
      has_id = c > id && sseb_digits(&c, id + idlen, &off) == 0 && c == id + idlen && off > 0;
      if (!fast && (d = bench_find(id, (size_t)(p + n - id), "\"data\":", 7)) != NULL)
        d += 7;
    }
    if (d == NULL) {
      g.bad_data++;
      return 0;
    }
    sseb_deliver(s, d, (size_t)(p + n - d), has_id, off, now);
  } else if (SSEB_TYPE("subscribed")) {
    if (g.o.ready == SSEB_READY_TUTTI)
      sseb_sub_ready(s, now);
  } else if (SSEB_TYPE("welcome")) {
    g.ws_welcomes++;
  } else if (SSEB_TYPE("error")) {
    g.sse_errors++;
    bench_note(g.sub_error, sizeof g.sub_error, "subscriber %ld got error: %.*s",
              (long)(s - g.subs), (int)(n > 160 ? 160 : n), p);
  } else {
    g.other_events++;
  }
#undef SSEB_TYPE
  return 0;
}

/* One complete text message of `wire` bytes on the wire; z: it came compressed. */
static int sseb_ws_text(sseb_sub_t *s, const char *p, size_t n, size_t wire, int z,
                        uint64_t now) {
  if (g.o.sio)
    return sseb_sio_text(s, p, n, wire, z, now);
  if (g.o.ready == SSEB_READY_MESSAGE && !s->connected) {
    sseb_sub_ready(s, now); /* the first message, whatever it is */
    return 0;
  }
  if (!g.o.raw || (g.o.ready == SSEB_READY_TUTTI && !s->connected))
    return sseb_ws_tutti(s, p, n, wire, z, now);
  sseb_ws_count(n, wire, z); /* --raw: the payload itself */
  sseb_deliver(s, p, n, 0, 0, now);
  return 0;
}

/* One complete data message. Returns 0, or -1 when s was closed. */
static int sseb_ws_message(sseb_sub_t *s, unsigned op, int z, const uint8_t *p, size_t n,
                           size_t wire, uint64_t now) {
  if (z) {
    const char *plain;
    if (sseb_inflate_cached(p, n, &plain, &n) != 0)
      return sseb_ws_fail(s, "a compressed message does not inflate (or is over the limit)");
    p = (const uint8_t *)plain;
  }
  if (op == 0x2) { /* binary: not ours */
    g.other_events++;
    return 0;
  }
  return sseb_ws_text(s, (const char *)p, n, wire, z, now);
}

/* One frame: first header byte b0, payload [p, p+len), wire bytes in all. Returns 0, or
 * -1 when s was closed. */
static int sseb_ws_frame(sseb_sub_t *s, uint8_t b0, const uint8_t *p, size_t len, size_t wire,
                         uint64_t now) {
  int fin = (b0 & 0x80) != 0, rsv1 = (b0 & 0x40) != 0;
  unsigned op = b0 & 0x0fu;
  if (b0 & 0x30)
    return sseb_ws_fail(s, "RSV2 or RSV3 set");
  if (op >= 0x8) {
    if (!fin || len > 125 || rsv1)
      return sseb_ws_fail(s, "control frame fragmented, over 125 bytes or with RSV1");
    if (op == 0x8) {
      unsigned code = len >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
      char why[200];
      snprintf(why, sizeof why, "close frame from the server, code %u%s%.*s", code,
               len > 2 ? ": " : "", (int)(len > 2 ? len - 2 : 0), (const char *)p + 2);
      g.ws_closes++;
      /* Answer with the same code, best effort and only when nothing else is queued:
       * the socket is closed right after. */
      if (s->out.len == 0) {
        bench_ws_queue(&s->out, 0x8, p, len >= 2 ? 2 : 0);
        if (send(s->fd, s->out.p, s->out.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
          /* ignored: the server may have gone already */
        }
      }
      sseb_sub_close(s, why);
      return -1;
    }
    if (op == 0x9) {
      g.ws_pings++;
      return sseb_ws_send_control(s, 0xA, p, len);
    }
    if (op == 0xA)
      return 0; /* unsolicited pong: ignored */
    return sseb_ws_fail(s, "reserved control opcode");
  }
  if (rsv1 && (!s->ws_deflate || op == 0x0))
    return sseb_ws_fail(s, "RSV1 without permessage-deflate, or on a continuation");
  if (op == 0x1 || op == 0x2) {
    if (s->ws_frag)
      return sseb_ws_fail(s, "a new message inside a fragmented one");
    if (fin)
      return sseb_ws_message(s, op, rsv1, p, len, wire, now);
    s->ws_frag = 1;
    s->ws_msg_op = (uint8_t)op;
    s->ws_msg_z = (uint8_t)rsv1;
    s->ws_msg_wire = (uint32_t)wire;
    s->data.len = 0;
    if (bench_buf_append(&s->data, (const char *)p, len, g.line_max) != 0)
      return sseb_ws_fail(s, "message over the size limit");
    return 0;
  }
  if (op == 0x0) {
    if (!s->ws_frag)
      return sseb_ws_fail(s, "continuation without a start");
    if (bench_buf_append(&s->data, (const char *)p, len, g.line_max) != 0)
      return sseb_ws_fail(s, "message over the size limit");
    s->ws_msg_wire += (uint32_t)wire;
    if (!fin)
      return 0;
    s->ws_frag = 0;
    if (sseb_ws_message(s, s->ws_msg_op, s->ws_msg_z, (const uint8_t *)s->data.p, s->data.len,
                        s->ws_msg_wire, now) != 0)
      return -1;
    s->data.len = 0;
    return 0;
  }
  return sseb_ws_fail(s, "reserved data opcode");
}

/* Handles the complete frames at the start of [p, p+n); sets *used to their bytes.
 * Returns 0, or -1 when s was closed. */
static int sseb_ws_frames(sseb_sub_t *s, const uint8_t *p, size_t n, size_t *used,
                          uint64_t now) {
  size_t i = 0;
  for (;;) {
    size_t hl;
    uint64_t len;
    const char *err;
    int rc = bench_ws_frame_head(p + i, n - i, g.line_max, &hl, &len, &err);
    if (rc < 0)
      return sseb_ws_fail(s, err);
    if (rc == 0)
      break;
    if (sseb_ws_frame(s, p[i], p + i + hl, (size_t)len, hl + (size_t)len, now) != 0)
      return -1;
    i += hl + (size_t)len;
  }
  *used = i;
  return 0;
}

/* Bytes after the 101. Complete frames are handled in place; a frame split across reads
 * is gathered in s->carry. Returns 0, or -1 when s was closed. */
static int sseb_ws_feed(sseb_sub_t *s, const char *p, size_t n, uint64_t now) {
  size_t used;
  if (s->carry.len == 0) {
    if (sseb_ws_frames(s, (const uint8_t *)p, n, &used, now) != 0)
      return -1;
    if (used < n && bench_buf_append(&s->carry, p + used, n - used, g.line_max + 14) != 0)
      return sseb_ws_fail(s, "frame over the size limit");
    return 0;
  }
  /* The carry holds the start of one frame: complete it from this read (the header
   * first, up to 14 bytes, then the rest of its payload), handle it, and the rest of
   * the read in place, without copying it. */
  while (s->carry.len > 0) {
    size_t hl = 0;
    uint64_t len = 0;
    const char *err;
    int rc = bench_ws_frame_head((const uint8_t *)s->carry.p, s->carry.len, g.line_max, &hl,
                                 &len, &err);
    if (rc < 0)
      return sseb_ws_fail(s, err);
    /* rc is 0 (a whole frame would have been handled): hl is 0 while the header is
     * incomplete, then the frame's end is known */
    size_t want = hl == 0 ? 14 - s->carry.len : (size_t)(hl + len) - s->carry.len;
    if (want > n)
      want = n;
    if (bench_buf_append(&s->carry, p, want, g.line_max + 14) != 0)
      return sseb_ws_fail(s, "frame over the size limit");
    p += want;
    n -= want;
    if (sseb_ws_frames(s, (const uint8_t *)s->carry.p, s->carry.len, &used, now) != 0)
      return -1;
    bench_buf_consume(&s->carry, used);
    if (n == 0)
      return 0;
  }
  return sseb_ws_feed(s, p, n, now);
}

/* Body bytes of s's response, raw (possibly chunked), in a buffer s may overwrite. */
static int sseb_sub_body(sseb_sub_t *s, char *p, size_t n, uint64_t now) {
  if (g.o.ws)
    return sseb_ws_feed(s, p, n, now);
  if (!s->chunked)
    return sseb_sub_feed(s, p, n, now);
  size_t used;
  long out = sseb_chunk_decode(&s->chunk, p, n, p, &used);
  if (out < 0) {
    sseb_sub_close(s, "malformed chunked coding");
    return -1;
  }
  if (sseb_sub_feed(s, p, (size_t)out, now) != 0)
    return -1;
  if (s->chunk.state == SSEB_CHUNK_DONE) {
    sseb_sub_close(s, "stream ended (last chunk)");
    return -1;
  }
  return 0;
}

/* The response head is complete in s->carry (hlen bytes with the empty line). */
static int sseb_sub_head(sseb_sub_t *s, size_t hlen) {
  bench_head_t h;
  bench_head_parse(s->carry.p, hlen - 4, &h);
  if (g.o.ws) {
    char why[200], accept[29];
    const char *bad = NULL;
    bench_ws_accept(s->ws_key, accept);
    if (h.status != 101 || !h.upgrade_ws || !h.conn_upgrade) {
      size_t bl = s->carry.len - hlen;
      snprintf(why, sizeof why, "HTTP %d%s: %.*s", h.status,
               h.status == 101 ? " without Upgrade: websocket / Connection: Upgrade" : "",
               (int)(bl > 120 ? 120 : bl), s->carry.p + hlen);
      bad = why;
    } else if (strcmp(h.accept, accept) != 0) {
      snprintf(why, sizeof why, "Sec-WebSocket-Accept '%.40s', expected '%s'", h.accept, accept);
      bad = why;
    } else if (h.ext_other || (h.ext_deflate && !g.o.deflate)) {
      bad = "an extension in the answer that was not offered";
    } else if (h.ext_deflate && !h.ext_snct) {
      bad = "permessage-deflate without server_no_context_takeover";
    }
    if (bad != NULL) {
      sseb_sub_close(s, bad);
      return -1;
    }
    s->ws_deflate = (uint8_t)h.ext_deflate;
    g.ws_deflated += (uint32_t)h.ext_deflate;
    s->state = SSEB_SUB_STREAM;
    if (g.o.ready == SSEB_READY_UPGRADE)
      sseb_sub_ready(s, bench_now());
    return 0;
  }
  if (h.status != 200 || !h.event_stream) {
    char why[200];
    size_t bl = s->carry.len - hlen;
    snprintf(why, sizeof why, "HTTP %d%s: %.*s", h.status,
             h.event_stream ? "" : " (not text/event-stream)", (int)(bl > 120 ? 120 : bl),
             s->carry.p + hlen);
    sseb_sub_close(s, why);
    return -1;
  }
  s->chunked = (uint8_t)h.chunked;
  s->state = SSEB_SUB_STREAM;
  if (g.o.ready == SSEB_READY_UPGRADE)
    sseb_sub_ready(s, bench_now());
  return 0;
}

static void sseb_sub_readable(sseb_sub_t *s, char *buf) {
  ssize_t r = recv(s->fd, buf, SSEB_READ_CHUNK, 0);
  uint64_t now = bench_now();
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return;
    char why[96];
    snprintf(why, sizeof why, "recv: %s", strerror(errno));
    sseb_sub_close(s, why);
    return;
  }
  if (r == 0) {
    sseb_sub_close(
        s, s->state == SSEB_SUB_HEAD ? "closed before the response head" : "closed by the server");
    return;
  }
  size_t n = (size_t)r;
  if (s->state == SSEB_SUB_HEAD) {
    size_t hend;
    int rc = bench_head_collect(&s->carry, buf, n, SSEB_HEAD_MAX, SSEB_READ_CHUNK, &hend);
    if (rc < 0)
      sseb_sub_close(s, "response head too large");
    if (rc <= 0)
      return;
    if (sseb_sub_head(s, hend) != 0)
      return;
    /* The terminator completed in this read, so the body bytes after it are the
     * last (carry.len - hend) bytes of buf. */
    size_t body = s->carry.len - hend;
    s->carry.len = 0;
    if (body > 0)
      sseb_sub_body(s, buf + n - body, body, now);
    return;
  }
  sseb_sub_body(s, buf, n, now);
}

static void sseb_sub_event(uint32_t i, uint32_t events, char *buf) {
  sseb_sub_t *s = &g.subs[i];
  if (s->state == SSEB_SUB_CONNECTING) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
      char why[96];
      snprintf(why, sizeof why, "connect: %s", strerror(err));
      sseb_sub_close(s, why);
      return;
    }
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
      sseb_sub_send_request(s);
    return;
  }
  if (s->state == SSEB_SUB_STREAM && (events & EPOLLOUT) && s->out.len > 0 &&
      sseb_sub_flush(s) != 0)
    return;
  if (s->state == SSEB_SUB_HEAD || s->state == SSEB_SUB_STREAM) {
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
      sseb_sub_readable(s, buf);
  }
}

/* ------------------------------------------------------------------------------------
 * Publishers
 * ---------------------------------------------------------------------------------- */

static void sseb_pub_close(sseb_pub_t *p, const char *why) {
  if (p->fd < 0)
    return;
  epoll_ctl(g.ep, EPOLL_CTL_DEL, p->fd, NULL);
  close(p->fd);
  p->fd = -1;
  g.pubs_alive--;
  bench_note(g.publish_error, sizeof g.publish_error, "publisher %ld: %s", (long)(p - g.pubs), why);
  /* requests without an answer count as failed */
  for (; p->head < p->tail; p->head++) {
    g.failed[p->fifo[p->head]] = 1;
    g.publish_errors++;
    g.answered++;
  }
  sseb_settle();
}

/* Writes queued request bytes; registers for writability when the socket is full. */
static void sseb_pub_flush(sseb_pub_t *p) {
  while (p->out_off < p->out.len) {
    ssize_t w = send(p->fd, p->out.p + p->out_off, p->out.len - p->out_off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      char why[96];
      snprintf(why, sizeof why, "send: %s", strerror(errno));
      sseb_pub_close(p, why);
      return;
    }
    p->out_off += (size_t)w;
  }
  if (p->out_off == p->out.len) {
    p->out.len = 0;
    p->out_off = 0;
  }
  int want = p->out.len > 0;
  if (want != p->want_out) {
    sseb_ep_ctl(EPOLL_CTL_MOD, p->fd, EPOLLIN | (want ? EPOLLOUT : 0u), SSEB_TAG_PUB,
                (uint32_t)(p - g.pubs));
    p->want_out = want;
  }
}

/* Appends `pad` bytes of JSON-safe filler for message seq (--pad words or random), the
 * same for a given seq in every run. */
static void sseb_pad_fill(bench_buf_t *b, size_t pad, uint32_t seq) {
  static const char *const words[] = {
      "note", "on",   "off",  "C4",  "D#4",  "G4",    "Bb3",  "A5",  "velocity", "96",
      "112",  "64",   "dur",  "0.25", "0.5", "1",     "beat", "bar", "chord",    "maj7",
      "min",  "sus4", "track", "piano", "bass", "drums", "pan", "-12", "gain",    "tempo",
      "120",  "swing"};
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  uint64_t x = 0x9E3779B97F4A7C15ull * ((uint64_t)seq + 1);
  bench_buf_reserve(b, pad);
  char *o = b->p + b->len;
  size_t i = 0;
  while (i < pad) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    uint64_t r = x * 0x2545F4914F6CDD1Dull;
    if (g.o.pad == SSEB_PAD_RANDOM) {
      for (int k = 0; k < 10 && i < pad; k++, r >>= 6)
        o[i++] = b64[r & 63];
    } else {
      const char *w = words[r % (sizeof words / sizeof *words)];
      if (i > 0)
        o[i++] = ' ';
      for (; *w && i < pad; w++)
        o[i++] = *w;
    }
  }
  b->len += pad;
}

/* Queues the request publishing message g.next_seq on a live publisher and writes it.
 * Returns 0, or -1 when no publisher is left. */
static int sseb_publish_next(void) {
  sseb_pub_t *p = NULL;
  for (uint32_t k = 0; k < g.o.publishers && p == NULL; k++) {
    sseb_pub_t *c = &g.pubs[(g.pub_rr + k) % g.o.publishers];
    if (c->fd >= 0)
      p = c;
  }
  if (p == NULL)
    return -1;
  g.pub_rr = (uint32_t)(p - g.pubs) + 1;
  uint32_t seq = g.next_seq;
  uint64_t t = bench_now();
  char body[96];
  /* T in ns since this process started: small enough (under 2^53) to survive a server
   * that parses and re-serialises the JSON with doubles (Socket.IO) */
  int blen = snprintf(body, sizeof body, "{\"seq\":%" PRIu32 ",\"t\":%" PRIu64, seq, t - g.t0);
  /* `{"seq":S,"t":T` + `}`, or + `,"p":"` pad `"}` (8 bytes around the pad) */
  size_t pad = g.o.payload > (uint32_t)blen + 8 ? g.o.payload - (uint32_t)blen - 8 : 0;
  size_t total = (size_t)blen + (pad ? 8 + pad : 1);
  size_t max = (size_t)-1;
  /* HTTP: the head, then the data straight into the output; WebSocket: the message in
   * p->body, then framed (and masked) into the output */
  bench_buf_t *out = g.o.pub_ws ? &p->body : &p->out;
  if (g.o.pub_ws) {
    p->body.len = 0;
    if (!g.o.raw) {
      char name[264];
      size_t nl = sseb_ch_name(seq % g.o.channels, name);
      bench_buf_append(out, "{\"type\":\"publish\",\"channel\":\"", 29, max);
      bench_buf_append(out, name, nl, max);
      bench_buf_append(out, "\",\"data\":", 9, max);
    }
  } else {
    char head[SSEB_PATH_MAX + 200], path[SSEB_PATH_MAX];
    sseb_path(g.o.pub_path, seq % g.o.channels, path);
    int hlen = snprintf(head, sizeof head,
                        "POST %s HTTP/1.1\r\n"
                        "Host: %s:%u\r\n"
                        "Content-Type: application/json\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        path, g.o.host, g.o.port, total);
    bench_buf_append(out, head, (size_t)hlen, max);
  }
  bench_buf_append(out, body, (size_t)blen, max);
  if (pad) {
    bench_buf_append(out, ",\"p\":\"", 6, max);
    size_t at = out->len;
    if (g.o.pad == SSEB_PAD_X) {
      while (out->len < at + pad) {
        static const char xs[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        size_t take = at + pad - out->len;
        if (take > sizeof xs - 1)
          take = sizeof xs - 1;
        bench_buf_append(out, xs, take, max);
      }
    } else {
      sseb_pad_fill(out, pad, seq);
    }
    bench_buf_append(out, "\"}", 2, max);
  } else {
    bench_buf_append(out, "}", 1, max);
  }
  if (g.o.pub_ws) {
    if (!g.o.raw)
      bench_buf_append(out, "}", 1, max);
    bench_ws_queue(&p->out, 0x1, p->body.p, p->body.len);
  }
  p->fifo[p->tail++] = seq;
  if (g.pub_of != NULL)
    g.pub_of[seq] = (uint8_t)(p - g.pubs);
  g.next_seq++;
  if (g.t_first_publish == 0)
    g.t_first_publish = t;
  g.t_last_publish = t;
  sseb_pub_flush(p);
  return 0;
}

/* One complete response to the oldest request of p. */
static void sseb_pub_answer(sseb_pub_t *p, int status, const char *body, size_t blen) {
  if (p->head == p->tail) {
    sseb_pub_close(p, "response without a request");
    return;
  }
  uint32_t seq = p->fifo[p->head++];
  g.answered++;
  g.t_progress = bench_now();
  if (g.steps != NULL)
    sseb_ramp_answered(seq, status >= 200 && status <= 299, g.t_progress);
  if (status < 200 || status > 299) { /* tutti and the peers answer 200, nchan 201/202 */
    g.failed[seq] = 1;
    g.publish_errors++;
    bench_note(g.publish_error, sizeof g.publish_error, "seq %" PRIu32 ": HTTP %d: %.*s", seq,
              status, (int)(blen > 160 ? 160 : blen), body);
    sseb_settle();
    return;
  }
  g.published_ok++;
  uint64_t off;
  if (!g.o.raw && bench_json_u64_first(body, blen, "offset", &off) == 0 && off > 0) {
    if (g.offset_of[seq] == 0)
      g.offset_of[seq] = off;
    else if (g.offset_of[seq] != off)
      g.id_mismatch++;
  }
}

/* --pub-ws: handles every complete frame in p->in. tutti: `published` answers the
 * oldest publish, `error` fails it (status 400 stands for it), anything else (welcome)
 * is no answer; --raw: every text message is the answer. Pings get their pong. */
static void sseb_pub_ws_parse(sseb_pub_t *p) {
  size_t i = 0;
  while (p->fd >= 0) {
    size_t hl;
    uint64_t len;
    const char *err;
    int rc = bench_ws_frame_head((const uint8_t *)p->in.p + i, p->in.len - i, g.line_max, &hl,
                                 &len, &err);
    if (rc < 0) {
      sseb_pub_close(p, err);
      return;
    }
    if (rc == 0)
      break;
    uint8_t b0 = (uint8_t)p->in.p[i];
    unsigned op = b0 & 0x0fu;
    const char *m = p->in.p + i + hl;
    i += hl + (size_t)len;
    if (!(b0 & 0x80u) || op == 0x0 || op == 0x2) {
      sseb_pub_close(p, "fragmented or binary message on the publisher WebSocket");
      return;
    }
    if (op == 0x8) {
      sseb_pub_close(p, "close frame on the publisher WebSocket");
      return;
    }
    if (op == 0x9) {
      bench_ws_queue(&p->out, 0xA, m, (size_t)len);
      sseb_pub_flush(p);
      continue;
    }
    if (op != 0x1)
      continue;
    if (g.o.raw) {
      sseb_pub_answer(p, 200, m, (size_t)len);
      continue;
    }
    const char *type;
    size_t tlen;
    if (bench_json_str(m, (size_t)len, "type", &type, &tlen) != 0)
      continue;
    if (tlen == 9 && memcmp(type, "published", 9) == 0)
      sseb_pub_answer(p, 200, m, (size_t)len);
    else if (tlen == 5 && memcmp(type, "error", 5) == 0)
      sseb_pub_answer(p, 400, m, (size_t)len);
  }
  if (p->fd >= 0)
    bench_buf_consume(&p->in, i);
}

/* Parses every complete response in p->in. */
static void sseb_pub_parse(sseb_pub_t *p) {
  if (g.o.pub_ws) {
    sseb_pub_ws_parse(p);
    return;
  }
  while (p->fd >= 0 && p->in.len > 0) {
    size_t hend = bench_head_end(p->in.p, p->in.len);
    if (hend == 0) {
      if (p->in.len > SSEB_HEAD_MAX)
        sseb_pub_close(p, "response head too large");
      return;
    }
    bench_head_t h;
    bench_head_parse(p->in.p, hend - 4, &h);
    if (h.status == 0) {
      sseb_pub_close(p, "unreadable status line");
      return;
    }
    size_t consumed;
    if (h.chunked) {
      char *tmp = bench_xrealloc(NULL, p->in.len - hend);
      sseb_chunk_t ck = {0};
      size_t used;
      long out = sseb_chunk_decode(&ck, p->in.p + hend, p->in.len - hend, tmp, &used);
      if (out < 0) {
        free(tmp);
        sseb_pub_close(p, "malformed chunked response");
        return;
      }
      if (ck.state != SSEB_CHUNK_DONE) {
        free(tmp);
        return;
      }
      sseb_pub_answer(p, h.status, tmp, (size_t)out);
      free(tmp);
      consumed = hend + used;
    } else {
      size_t cl = h.content_length > 0 ? (size_t)h.content_length : 0;
      if (p->in.len < hend + cl)
        return;
      sseb_pub_answer(p, h.status, p->in.p + hend, cl);
      consumed = hend + cl;
    }
    if (p->fd >= 0)
      bench_buf_consume(&p->in, consumed);
  }
}

static void sseb_pub_event(uint32_t k, uint32_t events, char *buf) {
  sseb_pub_t *p = &g.pubs[k];
  if (p->fd < 0)
    return;
  if (events & EPOLLOUT)
    sseb_pub_flush(p);
  if (p->fd < 0 || !(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
    return;
  ssize_t r = recv(p->fd, buf, SSEB_READ_CHUNK, 0);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return;
    char why[96];
    snprintf(why, sizeof why, "recv: %s", strerror(errno));
    sseb_pub_close(p, why);
    return;
  }
  if (r == 0) {
    sseb_pub_close(p, "closed by the server");
    return;
  }
  bench_buf_append(&p->in, buf, (size_t)r, (size_t)-1);
  sseb_pub_parse(p);
}

/* --pub-ws: the upgrade of a connected publisher, waited for (bounded by
 * SSEB_PUB_CONNECT_MS) before any publishing; what follows the 101 stays in p->in. */
static void sseb_pub_ws_handshake(sseb_pub_t *p) {
  char key[24], accept[29], path[SSEB_PATH_MAX], req[SSEB_PATH_MAX + 256];
  bench_ws_key(key);
  bench_ws_accept(key, accept);
  sseb_path(g.o.pub_path, 0, path);
  int rl = snprintf(req, sizeof req,
                    "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: %.24s\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n",
                    path, g.o.host, g.o.port, key);
  if (send(p->fd, req, (size_t)rl, MSG_NOSIGNAL) != rl)
    bench_die("publisher WebSocket: could not send the upgrade request");
  uint64_t end = bench_now() + (uint64_t)SSEB_PUB_CONNECT_MS * 1000000u;
  size_t hend = 0;
  while ((hend = bench_head_end(p->in.p, p->in.len)) == 0) {
    uint64_t now = bench_now();
    struct pollfd pf = {.fd = p->fd, .events = POLLIN};
    if (now >= end || poll(&pf, 1, (int)((end - now) / 1000000u) + 1) != 1)
      bench_die("publisher WebSocket: no upgrade answer within %d ms", SSEB_PUB_CONNECT_MS);
    char buf[4096];
    ssize_t r = recv(p->fd, buf, sizeof buf, 0);
    if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR)))
      bench_die("publisher WebSocket: connection closed during the upgrade");
    if (r > 0 && bench_buf_append(&p->in, buf, (size_t)r, SSEB_HEAD_MAX + sizeof buf) != 0)
      bench_die("publisher WebSocket: upgrade answer head too large");
  }
  bench_head_t h;
  bench_head_parse(p->in.p, hend - 4, &h);
  if (h.status != 101 || !h.upgrade_ws || strcmp(h.accept, accept) != 0)
    bench_die("publisher WebSocket: %s answered HTTP %d%s", path, h.status,
              h.status == 101 ? " with a wrong Sec-WebSocket-Accept" : " (no upgrade)");
  bench_buf_consume(&p->in, hend);
}

/* Opens publisher k with a connect bounded by SSEB_PUB_CONNECT_MS. */
static void sseb_pub_open(uint32_t k) {
  sseb_pub_t *p = &g.pubs[k];
  p->fifo = bench_xcalloc(g.o.messages, sizeof *p->fifo);
  p->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (p->fd < 0)
    bench_die("socket: %s", strerror(errno));
  int one = 1;
  setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in dst = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)g.o.port), .sin_addr = g.o.addr};
  if (connect(p->fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
    if (errno != EINPROGRESS)
      bench_die("publisher connect: %s", strerror(errno));
    struct pollfd pf = {.fd = p->fd, .events = POLLOUT};
    if (poll(&pf, 1, SSEB_PUB_CONNECT_MS) != 1)
      bench_die("publisher connect: no answer within %d ms", SSEB_PUB_CONNECT_MS);
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0)
      bench_die("publisher connect: %s", strerror(err));
  }
  if (g.o.pub_ws)
    sseb_pub_ws_handshake(p);
  sseb_ep_ctl(EPOLL_CTL_ADD, p->fd, EPOLLIN, SSEB_TAG_PUB, k);
  g.pubs_alive++;
}

/* ------------------------------------------------------------------------------------
 * Pacing
 * ---------------------------------------------------------------------------------- */

/* Send time due for seq in rate mode. */
static uint64_t sseb_due(uint32_t seq) {
  return g.t_first_publish + (uint64_t)((double)seq * 1e9 / g.o.rate);
}

/* ------------------------------------------------------------------------------------
 * Ramp (--ramp R0,F,S)
 * ---------------------------------------------------------------------------------- */

/* Server CPU time in ns summed over --server-pid (schedstat), or -1. */
static long long sseb_server_ns(void) {
  if (!g.o.server_pid)
    return -1;
  long long ticks, ns, each[SSEB_MAX_PIDS];
  sseb_pids_cpu(g.o.server_pids, g.o.n_server_pids, &ticks, &ns, each);
  return ns;
}

/* This process's CPU time (user + system) in ns. */
static long long sseb_self_ns(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return -1;
  return ((long long)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
         ((long long)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

/* Starts step g.n_steps at t_start with the given target rate; cpu and gen are the
 * server's and this process's CPU time now. */
static void sseb_ramp_start_step(double target, uint64_t t_start, long long cpu, long long gen) {
  sseb_step_t *st = &g.steps[g.n_steps];
  *st = (sseb_step_t){.target = target, .t_start = t_start};
  st->t_end = t_start + g.step_ns;
  st->deadline = st->t_end + g.grace_ns;
  st->first = st->end = g.next_seq;
  st->dlv_start = g.delivered;
  st->cpu_start = cpu;
  st->cpu_end = -1;
  st->gen_start = gen;
  st->gen_end = -1;
  memset(&g.step_lat[g.n_steps % 2], 0, sizeof g.step_lat[0]);
  g.n_steps++;
  g.ramp_sending = 1;
}

/* No more steps: the step still sending (if any) is cut, publishing ends at the messages
 * sent so far. The first reason given is kept unless `override` (a step not sustained
 * ends the ramp even when the limits had already stopped the sending). */
static void sseb_ramp_stop(uint64_t now, int override, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sseb_ramp_stop(uint64_t now, int override, const char *fmt, ...) {
  if (override || g.ramp_end[0] == '\0') {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.ramp_end, sizeof g.ramp_end, fmt, ap);
    va_end(ap);
  }
  if (g.ramp_sending) {
    sseb_step_t *st = &g.steps[g.n_steps - 1];
    st->state = SSEB_STEP_CUT;
    st->t_cut = now;
    st->dlv_end = g.delivered;
    g.ramp_sending = 0;
  }
  sseb_set_messages(g.next_seq);
}

/* Judges, in order, the ended steps whose figures are complete (every delivery and
 * answer in) or whose deadline has passed; with `force` every ended step. The first
 * step not sustained ends the ramp; the steps after it are left unjudged (CUT). */
static void sseb_ramp_judge(uint64_t now, int force) {
  while (g.judged < g.n_steps) {
    uint32_t i = g.judged;
    sseb_step_t *st = &g.steps[i];
    if (st->state == SSEB_STEP_CUT) {
      g.judged++;
      continue;
    }
    if (st->state != SSEB_STEP_ENDED)
      return;
    uint32_t sent = st->end - st->first;
    int complete = st->delivered == st->expected && st->answered == sent;
    if (!complete && now < st->deadline && !force)
      return;
    const bench_hist_t *h = &g.step_lat[i % 2];
    st->p50 = bench_hist_quantile(h, 0.50);
    st->p99 = bench_hist_quantile(h, 0.99);
    st->max = h->max;
    /* Publish throughput: the answers' lag growing by D over the step means the server
     * answered its messages in S + D (a constant lag, however long, costs nothing). */
    st->lag_growth = 0;
    if (st->lag_n[0] && st->lag_n[1]) {
      double d = 2 * (st->lag_sum[1] / st->lag_n[1] - st->lag_sum[0] / st->lag_n[0]);
      st->lag_growth = d > 0 ? d : 0;
    }
    st->achieved = (double)st->accepted * 1e9 / ((double)g.step_ns + st->lag_growth);
    st->dps = (double)st->delivered * 1e9 / (double)g.step_ns;
    char *w = st->why;
    size_t cap = sizeof st->why, len = 0;
#define SSEB_WHY(...)                                                                       \
  do {                                                                                     \
    if (len < cap)                                                                         \
      len += (size_t)snprintf(w + len, cap - len, "%s", len ? "; " : "");                  \
    if (len < cap)                                                                         \
      len += (size_t)snprintf(w + len, cap - len, __VA_ARGS__);                            \
  } while (0)
    if (sent == 0)
      SSEB_WHY("nothing sent (the load generator fell behind)");
    if (st->delivered < st->expected)
      SSEB_WHY("%" PRIu64 " of %" PRIu64 " deliveries within %.3g s", st->delivered,
               st->expected, (double)g.grace_ns / 1e9);
    if (st->achieved < SSEB_RAMP_ACHIEVED * st->target)
      SSEB_WHY("achieved %.1f < %.0f %% of %.1f msg/s (%" PRIu32 " of %" PRIu32
               " accepted in time, answer lag grew %.1f ms)",
               st->achieved, SSEB_RAMP_ACHIEVED * 100, st->target, st->accepted, sent,
               st->lag_growth / 1e6);
    if (bench_ms(st->p99) >= g.o.ramp_p99_ms)
      SSEB_WHY("p99 %.1f ms >= %g ms", bench_ms(st->p99), g.o.ramp_p99_ms);
#undef SSEB_WHY
    st->sustained = st->why[0] == '\0';
    st->state = SSEB_STEP_JUDGED;
    g.judged++;
    if (st->sustained) {
      g.best = (int32_t)i;
      continue;
    }
    sseb_ramp_stop(now, 1, "step %" PRIu32 " (%.1f msg/s) not sustained", i + 1, st->target);
    for (uint32_t k = i + 1; k < g.n_steps; k++)
      if (g.steps[k].state == SSEB_STEP_ENDED)
        g.steps[k].state = SSEB_STEP_CUT;
    g.judged = g.n_steps;
    return;
  }
}

/* Steps still to come or to judge. */
static int sseb_ramp_pending(void) {
  return g.steps != NULL && (g.ramp_sending || g.judged < g.n_steps);
}

/* The first step, at once. */
static void sseb_ramp_begin(void) {
  sseb_ramp_start_step(g.o.ramp_r0, bench_now(), sseb_server_ns(), sseb_self_ns());
}

/* Sends the messages of step st that are due (all those left with `all`, as when the
 * step is over and the load generator was late). Returns when the next is due, or
 * UINT64_MAX when none is left in the step (or no publisher). */
static uint64_t sseb_ramp_send(sseb_step_t *st, int all) {
  while (g.next_seq < g.o.messages) {
    uint64_t due = st->t_start + sseb_step_due(st, g.next_seq);
    if (due >= st->t_end)
      break;
    if (!all && due > bench_now())
      return due;
    uint32_t seq = g.next_seq;
    if (sseb_publish_next() != 0)
      break;
    st->end = g.next_seq;
    st->expected += g.ch_subs[seq % g.o.channels];
  }
  return UINT64_MAX;
}

/* Ramp pacing: ends the current step at its end (starting the next unless a limit says
 * stop), judges what can be judged, sends the current step's messages that are due and
 * arms the timer for the next of: a message due, the step's end, a judgement deadline. */
static void sseb_ramp_pump(void) {
  uint64_t now = bench_now();
  for (;;) {
    sseb_ramp_judge(now, 0);
    if (!g.ramp_sending)
      break;
    sseb_step_t *st = &g.steps[g.n_steps - 1];
    if (now < st->t_end)
      break;
    sseb_ramp_send(st, 1); /* what the loop was too late for is due anyway */
    long long cpu = sseb_server_ns(), gen = sseb_self_ns();
    st->state = SSEB_STEP_ENDED;
    st->dlv_end = g.delivered;
    st->cpu_end = cpu;
    st->gen_end = gen;
    g.ramp_sending = 0;
    double next = st->target * g.o.ramp_f;
    uint64_t need = (uint64_t)(next * g.o.ramp_s) + 2;
    if (g.n_steps == g.o.ramp_max_steps)
      sseb_ramp_stop(now, 0, "--ramp-max-steps %" PRIu32 " reached", g.o.ramp_max_steps);
    else if (next > g.o.ramp_max_rate)
      sseb_ramp_stop(now, 0, "the next step's target %.1f msg/s is over --ramp-max-rate %g", next,
                     g.o.ramp_max_rate);
    else if (g.next_seq + need > g.o.messages)
      sseb_ramp_stop(now, 0, "the next step would exceed --messages %" PRIu32, g.o.messages);
    else
      sseb_ramp_start_step(next, st->t_end, cpu, gen);
  }
  uint64_t wake = UINT64_MAX;
  if (g.ramp_sending) {
    sseb_step_t *st = &g.steps[g.n_steps - 1];
    uint64_t due = sseb_ramp_send(st, 0);
    wake = due < st->t_end ? due : st->t_end;
  }
  if (g.judged < g.n_steps && g.steps[g.judged].state == SSEB_STEP_ENDED &&
      g.steps[g.judged].deadline < wake)
    wake = g.steps[g.judged].deadline;
  if (wake != UINT64_MAX) {
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(wake / BENCH_NS), .tv_nsec = (long)(wake % BENCH_NS)}};
    timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL);
  }
}

/* After the run: a step still sending is cut, the ended ones are judged with what came. */
static void sseb_ramp_finish(void) {
  if (g.steps == NULL)
    return;
  uint64_t now = bench_now();
  if (g.ramp_sending)
    sseb_ramp_stop(now, 0, "the run stopped: %s", g.stop_reason ? g.stop_reason : "-");
  sseb_ramp_judge(now, 1);
}

/* Sends every message that may go now; in rate mode arms the timer for the next one. */
static void sseb_pump(void) {
  if (g.steps != NULL) {
    sseb_ramp_pump();
    return;
  }
  while (g.next_seq < g.o.messages) {
    if (g.o.rate > 0) {
      if (g.next_seq > 0 && bench_now() < sseb_due(g.next_seq))
        break;
    } else if (g.next_seq - g.settled >= g.o.window) {
      break;
    }
    if (sseb_publish_next() != 0)
      return;
  }
  if (g.o.rate > 0 && g.next_seq < g.o.messages) {
    uint64_t due = sseb_due(g.next_seq);
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(due / BENCH_NS), .tv_nsec = (long)(due % BENCH_NS)}};
    timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL);
  }
}

/* ------------------------------------------------------------------------------------
 * Loop
 * ---------------------------------------------------------------------------------- */

/* Waits up to timeout_ms and handles what is ready. */
static void sseb_poll(int timeout_ms, char *buf) {
  static struct epoll_event evs[SSEB_MAX_EVENTS];
  int n = epoll_wait(g.ep, evs, SSEB_MAX_EVENTS, timeout_ms);
  if (n < 0) {
    if (errno == EINTR)
      return;
    bench_die("epoll_wait: %s", strerror(errno));
  }
  for (int i = 0; i < n; i++) {
    uint32_t tag = (uint32_t)(evs[i].data.u64 >> 32);
    uint32_t idx = (uint32_t)evs[i].data.u64;
    if (tag == SSEB_TAG_SUB) {
      sseb_sub_event(idx, evs[i].events, buf);
    } else if (tag == SSEB_TAG_PUB) {
      sseb_pub_event(idx, evs[i].events, buf);
    } else if (tag == SSEB_TAG_TIMER) {
      uint64_t ticks;
      if (read(g.tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
        bench_die("timerfd read: %s", strerror(errno));
    }
  }
}

/* Connect phase: every subscriber started and connected, or failure, or the deadline.
 * Returns 0 when all N are connected. */
static int sseb_connect_all(char *buf) {
  uint64_t deadline = g.t_connect_start + (uint64_t)(g.o.timeout_s * 1e9);
  for (;;) {
    while (g.started < g.o.subscribers &&
           g.started - g.connected - g.connect_failed < SSEB_CONNECT_INFLIGHT)
      sseb_sub_start(g.started);
    if (g.connected == g.o.subscribers)
      return 0;
    if (g.connect_failed > 0 && g.connected + g.connect_failed == g.o.subscribers)
      return -1; /* every subscriber resolved, some failed */
    if (bench_now() >= deadline)
      return -1;
    sseb_poll(SSEB_TICK_MS, buf);
  }
}

/* Publish and drain phase; sets g.stop_reason. */
static void sseb_run(char *buf) {
  uint64_t tmo = (uint64_t)(g.o.timeout_s * 1e9);
  g.t_progress = bench_now();
  if (g.steps != NULL)
    sseb_ramp_begin();
  sseb_pump();
  for (;;) {
    uint64_t now = bench_now();
    /* with --ramp, g.expected and g.pub_end are final once no step is pending */
    int pending = sseb_ramp_pending();
    if (g.delivered == g.expected && !pending) {
      g.stop_reason = "all delivered";
      return;
    }
    if (g.closed == g.o.subscribers) {
      g.stop_reason = "every subscriber closed";
      return;
    }
    if (g.pubs_alive == 0 && g.next_seq < g.pub_end) {
      g.stop_reason = "no publisher connection left";
      return;
    }
    if (g.next_seq == g.pub_end && !pending && now >= g.t_last_publish + tmo) {
      g.stop_reason = "timeout after the last publish";
      return;
    }
    if (g.next_seq < g.pub_end && now >= g.t_progress + tmo) {
      g.stop_reason = "no progress (timeout)";
      return;
    }
    sseb_poll(SSEB_TICK_MS, buf);
    sseb_pump();
  }
}

/* ------------------------------------------------------------------------------------
 * Report
 * ---------------------------------------------------------------------------------- */

static void sseb_buf_puts(bench_buf_t *b, const char *str) {
  bench_buf_append(b, str, strlen(str), (size_t)-1);
}

/* Seconds between two schedstat readings in ns, or -1 when either is unknown. */
static double sseb_cpu_delta_s(long long start, long long end) {
  return start >= 0 && end >= 0 ? (double)(end - start) / 1e9 : -1.0;
}

/* Appends the extra JSON fields of --server-pid lists, --aux-pid and --sub-ports (keys
 * unlike any other key of the line, so a first-match lookup still finds the totals). */
static void sseb_json_multi(bench_buf_t *b) {
  const sseb_opts_t *o = &g.o;
  char t[256];
  size_t max = (size_t)-1;
  if (o->n_server_pids > 1) {
    sseb_buf_puts(b, ",\"server_pids\":[");
    for (uint32_t k = 0; k < o->n_server_pids; k++) {
      int n = snprintf(t, sizeof t, "%s%ld", k ? "," : "", o->server_pids[k]);
      bench_buf_append(b, t, (size_t)n, max);
    }
    sseb_buf_puts(b, "],\"server_cpu_each_s\":[");
    for (uint32_t k = 0; k < o->n_server_pids; k++) {
      int n = snprintf(t, sizeof t, "%s%.4f", k ? "," : "",
                       sseb_cpu_delta_s(g.sched_start_each[k], g.sched_end_each[k]));
      bench_buf_append(b, t, (size_t)n, max);
    }
    sseb_buf_puts(b, "]");
  }
  if (o->n_aux_pids) {
    double aux_s = sseb_cpu_delta_s(g.aux_start, g.aux_end);
    int n = snprintf(t, sizeof t, ",\"aux_cpu_s\":%.4f,\"aux_cpu_us_per_delivery\":%.4f,\"aux_pids\":[",
                     aux_s, aux_s >= 0 && g.delivered > 0 ? aux_s * 1e6 / (double)g.delivered : -1.0);
    bench_buf_append(b, t, (size_t)n, max);
    for (uint32_t k = 0; k < o->n_aux_pids; k++) {
      n = snprintf(t, sizeof t, "%s%ld", k ? "," : "", o->aux_pids[k]);
      bench_buf_append(b, t, (size_t)n, max);
    }
    sseb_buf_puts(b, "]");
  }
  if (o->sub_ports_given) {
    sseb_buf_puts(b, ",\"port_stats\":[");
    for (uint32_t k = 0; k < o->n_sub_ports; k++) {
      uint32_t n = 0, conn = 0;
      uint64_t dlv = 0, exp = 0;
      for (uint32_t i = k; i < o->subscribers; i += o->n_sub_ports) {
        n++;
        conn += g.subs[i].connected;
        dlv += g.subs[i].delivered;
        exp += g.ch_msgs[i % o->channels];
      }
      int len = snprintf(t, sizeof t,
                         "%s{\"sub_port\":%u,\"port_subscribers\":%" PRIu32
                         ",\"port_connected\":%" PRIu32 ",\"port_delivered\":%" PRIu64
                         ",\"port_expected\":%" PRIu64 "}",
                         k ? "," : "", o->sub_ports[k], n, conn, dlv, exp);
      bench_buf_append(b, t, (size_t)len, max);
    }
    sseb_buf_puts(b, "]");
  }
  bench_buf_append(b, "", 1, max); /* NUL */
}

/* Appends printf-formatted text to b. */
static void sseb_bprintf(bench_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sseb_bprintf(bench_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n <= 0)
    return;
  bench_buf_reserve(b, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* Server CPU per delivery of a step in us (its start to its end / deliveries received
 * meanwhile), or -1. */
static double sseb_step_cpu_us(const sseb_step_t *st) {
  if (st->cpu_start < 0 || st->cpu_end < 0 || st->dlv_end <= st->dlv_start)
    return -1.0;
  return (double)(st->cpu_end - st->cpu_start) / 1e3 / (double)(st->dlv_end - st->dlv_start);
}

/* CPU time between two readings in ns as a percentage of one CPU over S, or -1. */
static double sseb_step_pct(long long start, long long end) {
  return start >= 0 && end >= start ? (double)(end - start) * 100.0 / (double)g.step_ns : -1.0;
}

/* The --ramp lines of the table: one per step, the end and the highest sustained step. */
static void sseb_report_ramp(void) {
  const sseb_opts_t *o = &g.o;
  printf("  ramp               %g msg/s x%g every %g s; sustained = every delivery within "
         "%.3g s after the step, achieved >= %.0f %% of target, p99 < %g ms\n",
         o->ramp_r0, o->ramp_f, o->ramp_s, (double)g.grace_ns / 1e9, SSEB_RAMP_ACHIEVED * 100,
         o->ramp_p99_ms);
  printf("    step   target/s achieved/s lag+ms    sent deliveries/s    p50 ms    p99 ms    max ms "
         "us/dlv srv%% gen%%  sustained\n");
  for (uint32_t i = 0; i < g.n_steps; i++) {
    const sseb_step_t *st = &g.steps[i];
    uint32_t sent = st->end - st->first;
    if (st->state != SSEB_STEP_JUDGED) {
      char when[64] = "";
      if (st->t_cut)
        snprintf(when, sizeof when, ", cut %.3f s in", (double)(st->t_cut - st->t_start) / 1e9);
      printf("    %4" PRIu32 " %10.1f %10s %6s %7" PRIu32 " %13s %9s %9s %9s %6s %4s %4s  - (not "
             "judged: the ramp ended%s)\n",
             i + 1, st->target, "-", "-", sent, "-", "-", "-", "-", "-", "-", "-", when);
      continue;
    }
    double cpu = sseb_step_cpu_us(st), srv = sseb_step_pct(st->cpu_start, st->cpu_end),
           gen = sseb_step_pct(st->gen_start, st->gen_end);
    char cpus[32] = "-", srvs[16] = "-", gens[16] = "-";
    if (cpu >= 0)
      snprintf(cpus, sizeof cpus, "%.3f", cpu);
    if (srv >= 0)
      snprintf(srvs, sizeof srvs, "%.0f", srv);
    if (gen >= 0)
      snprintf(gens, sizeof gens, "%.0f", gen);
    printf("    %4" PRIu32 " %10.1f %10.1f %6.1f %7" PRIu32 " %13.0f %9.3f %9.3f %9.3f %6s %4s %4s  %s%s\n",
           i + 1, st->target, st->achieved, st->lag_growth / 1e6, sent, st->dps, bench_ms(st->p50),
           bench_ms(st->p99),
           bench_ms(st->max), cpus, srvs, gens, st->sustained ? "yes" : "no: ", st->why);
  }
  printf("  ramp end           %s\n", g.ramp_end[0] ? g.ramp_end : "-");
  if (g.best >= 0) {
    const sseb_step_t *b = &g.steps[g.best];
    printf("  highest sustained  %.0f deliveries/s, %.1f msg/s (step %" PRId32 ", target %.1f "
           "msg/s, p99 %.3f ms)\n",
           b->dps, b->achieved, g.best + 1, b->target, bench_ms(b->p99));
  } else {
    printf("  highest sustained  none (the first step, %g msg/s, was not sustained)\n", o->ramp_r0);
  }
}

/* A step's server CPU per delivery (ns), server and load-generator CPU (%) as JSON
 * numbers, or null when unknown. */
static void sseb_step_cpu_json(const sseb_step_t *st, char cpus[32], char srvs[32], char gens[32]) {
  double cpu = sseb_step_cpu_us(st), srv = sseb_step_pct(st->cpu_start, st->cpu_end),
         gen = sseb_step_pct(st->gen_start, st->gen_end);
  const double v[3] = {cpu >= 0 ? cpu * 1e3 : -1, srv, gen};
  char *out[3] = {cpus, srvs, gens};
  for (int k = 0; k < 3; k++) {
    if (v[k] >= 0)
      snprintf(out[k], 32, "%.1f", v[k]);
    else
      snprintf(out[k], 32, "null");
  }
}

/* Appends the "ramp" object of the JSON line (null without --ramp). */
static void sseb_json_ramp(bench_buf_t *b) {
  const sseb_opts_t *o = &g.o;
  if (!o->ramp) {
    sseb_buf_puts(b, ",\"ramp\":null");
    return;
  }
  sseb_bprintf(b,
               ",\"ramp\":{\"r0\":%g,\"factor\":%g,\"step_s\":%g,\"grace_s\":%g,"
               "\"p99_limit_ms\":%g,\"max_steps\":%" PRIu32 ",\"max_rate\":%g,\"steps\":[",
               o->ramp_r0, o->ramp_f, o->ramp_s, (double)g.grace_ns / 1e9, o->ramp_p99_ms,
               o->ramp_max_steps, o->ramp_max_rate);
  int first = 1;
  char cpus[32], srvs[32], gens[32];
  for (uint32_t i = 0; i < g.n_steps; i++) {
    const sseb_step_t *st = &g.steps[i];
    if (st->state != SSEB_STEP_JUDGED)
      continue;
    sseb_step_cpu_json(st, cpus, srvs, gens);
    sseb_bprintf(b,
                 "%s{\"step\":%" PRIu32 ",\"target\":%.3f,\"achieved\":%.3f,\"sent\":%" PRIu32
                 ",\"accepted\":%" PRIu32 ",\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64
                 ",\"answer_lag_growth_ms\":%.3f"
                 ",\"deliveries_per_s\":%.1f,\"p50\":%.4f,\"p99\":%.4f,\"max\":%.4f"
                 ",\"cpu_ns_per_delivery\":%s,\"server_cpu_pct\":%s,\"loadgen_cpu_pct\":%s"
                 ",\"sustained\":%s,\"why\":\"%s\"}",
                 first ? "" : ",", i + 1, st->target, st->achieved, st->end - st->first,
                 st->accepted, st->expected, st->delivered, st->lag_growth / 1e6, st->dps,
                 bench_ms(st->p50),
                 bench_ms(st->p99), bench_ms(st->max), cpus, srvs, gens,
                 st->sustained ? "true" : "false", st->why);
    first = 0;
  }
  sseb_bprintf(b, "],\"steps_started\":%" PRIu32 ",\"end\":\"%s\"", g.n_steps, g.ramp_end);
  if (g.best >= 0) {
    const sseb_step_t *bs = &g.steps[g.best];
    sseb_step_cpu_json(bs, cpus, srvs, gens);
    sseb_bprintf(b,
                 ",\"sustained_step\":%" PRId32 ",\"sustained_target\":%.3f"
                 ",\"sustained_msgs_per_s\":%.3f,\"sustained_deliveries_per_s\":%.1f"
                 ",\"sustained_cpu_ns_per_delivery\":%s,\"sustained_server_cpu_pct\":%s"
                 ",\"sustained_loadgen_cpu_pct\":%s}",
                 g.best + 1, bs->target, bs->achieved, bs->dps, cpus, srvs, gens);
  } else {
    sseb_buf_puts(b, ",\"sustained_step\":null,\"sustained_target\":null,"
                     "\"sustained_msgs_per_s\":null,\"sustained_deliveries_per_s\":null,"
                     "\"sustained_cpu_ns_per_delivery\":null,\"sustained_server_cpu_pct\":null,"
                     "\"sustained_loadgen_cpu_pct\":null}");
  }
}

static void sseb_report(void) {
  const sseb_opts_t *o = &g.o;
  uint64_t expected = g.expected;
  double connect_s = g.t_connected ? (double)(g.t_connected - g.t_connect_start) / 1e9 : -1.0;
  double window_s = g.t_last_delivery > g.t_first_publish
                        ? (double)(g.t_last_delivery - g.t_first_publish) / 1e9
                        : 0.0;
  double dps = window_s > 0 ? (double)g.delivered / window_s : 0.0;
  double pub_s = g.t_last_publish > g.t_first_publish
                     ? (double)(g.t_last_publish - g.t_first_publish) / 1e9
                     : 0.0;
  double pub_rate = pub_s > 0 ? (double)(g.next_seq > 1 ? g.next_seq - 1 : 0) / pub_s : 0.0;
  uint64_t lost = expected - g.delivered;
  uint32_t subs_lossy = 0;
  for (uint32_t i = 0; i < o->subscribers; i++)
    if (g.subs[i].delivered < g.ch_msgs[i % o->channels])
      subs_lossy++;
  uint64_t p50 = bench_hist_quantile(&g.lat, 0.50), p90 = bench_hist_quantile(&g.lat, 0.90),
           p99 = bench_hist_quantile(&g.lat, 0.99);
  long tck = sysconf(_SC_CLK_TCK);
  double cpu_s = g.cpu_start >= 0 && g.cpu_end >= 0 && tck > 0
                     ? (double)(g.cpu_end - g.cpu_start) / (double)tck
                     : -1.0;
  double sched_s =
      g.sched_start >= 0 && g.sched_end >= 0 ? (double)(g.sched_end - g.sched_start) / 1e9 : -1.0;
  /* Per delivery from schedstat when readable (ns), else from the 10 ms ticks of stat. */
  double cpu_best = sched_s >= 0 ? sched_s : cpu_s;
  double cpu_us = cpu_best >= 0 && g.delivered > 0 ? cpu_best * 1e6 / (double)g.delivered : -1.0;
  long long cpu_ns = cpu_best >= 0 ? (long long)(cpu_best * 1e9 + 0.5) : -1;
  long long conn_cpu_ns = g.conn_sched_start >= 0 && g.conn_sched_end >= 0
                              ? g.conn_sched_end - g.conn_sched_start
                              : -1;
  int have_rss = g.rss_before >= 0 && g.rss_connected >= 0;
  double rss_per_sub = have_rss ? (double)(g.rss_connected - g.rss_before) / o->subscribers : 0.0;
  double rss_per_conn_b = rss_per_sub * 1024.0;
  int idle = o->messages == 0;
  char rate[96];
  if (idle)
    snprintf(rate, sizeof rate, "- (idle run: connect only)");
  else if (o->ramp)
    snprintf(rate, sizeof rate, "ramp %g/s x%g every %g s (M = upper bound)", o->ramp_r0,
             o->ramp_f, o->ramp_s);
  else if (o->rate > 0)
    snprintf(rate, sizeof rate, "%g/s", o->rate);
  else
    snprintf(rate, sizeof rate, "unlimited (window %" PRIu32 ")", o->window);

  char padkind[32] = "", sub0[SSEB_PATH_MAX], pub0[SSEB_PATH_MAX], chans[64] = "";
  if (o->pad != SSEB_PAD_X)
    snprintf(padkind, sizeof padkind, " (pad %s)", sseb_pad_names[o->pad]);
  sseb_path(o->sub_path, 0, sub0);
  sseb_path(o->pub_path, 0, pub0);
  if (o->channels > 1)
    snprintf(chans, sizeof chans, " (channel 0 of %" PRIu32 ")", o->channels);
  printf("ssebench  %s:%u %s %s%s%s  N=%" PRIu32 " subscribers  M=%" PRIu32 " messages  %" PRIu32
         " B%s  rate %s  %" PRIu32 " publisher%s\n",
         o->host, o->port, sseb_tr_names[o->transport], sub0, chans,
         o->deflate ? " (permessage-deflate offered)" : "", o->subscribers, o->messages,
         o->payload, padkind, rate, o->publishers, o->publishers == 1 ? "" : "s");
  printf("  protocol           ready at %s; messages %s; publish POST %s%s\n",
         o->ready == SSEB_READY_TUTTI     ? (o->ws ? "`subscribed`" : "`connected`")
         : o->ready == SSEB_READY_MESSAGE ? "the first message"
         : o->ready == SSEB_READY_UPGRADE ? (o->ws ? "the 101" : "the 200 head")
                                          : "42[\"subscribed\",..]",
         o->raw ? "raw (order by seq per publisher connection)"
                : "in tutti's form (order by channel offset)",
         pub0, chans);
  char srcs[64] = "";
  if (g.n_src > 1 || g.src_base != 1)
    snprintf(srcs, sizeof srcs, " from 127.0.0.%" PRIu32 "-%" PRIu32, g.src_base,
             g.src_base + g.n_src - 1);
  if (connect_s >= 0)
    printf("  connect            %" PRIu32 " streams in %.3f s (%.0f/s)%s\n", g.connected,
           connect_s, connect_s > 0 ? g.connected / connect_s : 0.0, srcs);
  else
    printf("  connect            %" PRIu32 " of %" PRIu32 " connected, %" PRIu32 " failed%s\n",
           g.connected, o->subscribers, g.connect_failed, srcs);
  if (!idle) {
    printf("  published          %" PRIu32 " sent, %" PRIu64 " accepted, %" PRIu64
           " failed, in %.3f s (%.0f msg/s)\n",
           g.next_seq, g.published_ok, g.publish_errors, pub_s, pub_rate);
    printf("  delivered          %" PRIu64 " / %" PRIu64 " (%.2f %%)\n", g.delivered, expected,
           expected ? 100.0 * (double)g.delivered / (double)expected : 0.0);
    printf("  deliveries/s       %.0f (first publish to last delivery: %.3f s)\n", dps, window_s);
    printf("  latency ms         p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  (%" PRIu64 " samples)\n",
           bench_ms(p50), bench_ms(p90), bench_ms(p99), bench_ms(g.lat.max), g.lat.n);
    printf("  lost               %" PRIu64 " (%" PRIu32 " subscribers short)\n", lost, subs_lossy);
    printf("  duplicates         %" PRIu64 "\n", g.dups);
    printf("  out of order       %" PRIu64 "\n", g.ooo);
    if (!o->raw)
      printf("  id mismatches      %" PRIu64 "\n", g.id_mismatch);
    if (o->channels > 1 || g.wrong_channel)
      printf("  wrong channel      %" PRIu64 "\n", g.wrong_channel);
    if (o->ramp)
      sseb_report_ramp();
  }
  double ws_wire = g.ws_msgs ? (double)g.ws_msg_wire / (double)g.ws_msgs : 0.0;
  double ws_json = g.ws_msgs ? (double)g.ws_msg_json / (double)g.ws_msgs : 0.0;
  if (o->ws)
    printf("  closed early       %" PRIu32 "  (close frames %" PRIu64 ", error messages %" PRIu64
           ", foreign data %" PRIu64 ")\n",
           g.closed_early, g.ws_closes, g.sse_errors, g.bad_data);
  else
    printf("  closed early       %" PRIu32 "  (error events %" PRIu64 ", shutdown %" PRIu64
           ", foreign data %" PRIu64 ")\n",
           g.closed_early, g.sse_errors, g.shutdowns, g.bad_data);
  if (o->ws) {
    char eio[64] = "";
    if (o->sio)
      snprintf(eio, sizeof eio, "; %" PRIu64 " Engine.IO pings answered", g.sio_pings);
    if (o->deflate)
      printf("  websocket          permessage-deflate negotiated on %" PRIu32 " of %" PRIu32
             " subscribers; %" PRIu64 " pings answered%s; %" PRIu64 " inflates%s\n",
             g.ws_deflated, o->subscribers, g.ws_pings, eio, g.inflates,
             o->inflate_all ? " (every copy)" : " (identical copies reuse the result)");
    else
      printf("  websocket          permessage-deflate not offered; %" PRIu64 " pings answered%s\n",
             g.ws_pings, eio);
    if (!idle)
      printf("  wire bytes         %.1f per delivery (message %s %.1f B, %.1f %% of it on the "
             "wire; %" PRIu64 " of %" PRIu64 " compressed)\n",
             ws_wire, o->sio ? "packet" : "JSON", ws_json,
             ws_json > 0 ? 100.0 * ws_wire / ws_json : 0.0, g.ws_msg_z, g.ws_msgs);
  }
  if (o->server_pid) {
    printf("  server RSS         %.1f MiB before connect, %.1f MiB connected "
           "(%.1f KiB = %.0f B per connection)%s, %.1f MiB at end\n",
           g.rss_before / 1024.0, g.rss_connected / 1024.0, rss_per_sub, rss_per_conn_b,
           idle ? " (read 1 s after the last ready)" : "", g.rss_end / 1024.0);
    if (conn_cpu_ns >= 0)
      printf("  server CPU connect %.4f s for %" PRIu32 " connections (%.1f us each)\n",
             (double)conn_cpu_ns / 1e9, g.connected,
             g.connected ? (double)conn_cpu_ns / 1e3 / g.connected : 0.0);
    if (!idle)
      printf("  server CPU         %.4f s in publish window (stat utime+stime %.2f s), "
             "%.3f us/delivery\n",
             cpu_best, cpu_s, cpu_us);
    if (o->n_server_pids > 1 && !idle) {
      printf("  server CPU each   ");
      for (uint32_t k = 0; k < o->n_server_pids; k++)
        printf(" pid %ld %.4f s%s", o->server_pids[k],
               sseb_cpu_delta_s(g.sched_start_each[k], g.sched_end_each[k]),
               k + 1 < o->n_server_pids ? "," : "\n");
    }
  } else {
    printf("  server RSS/CPU     (no --server-pid)\n");
  }
  double aux_s = sseb_cpu_delta_s(g.aux_start, g.aux_end);
  double aux_us = aux_s >= 0 && g.delivered > 0 ? aux_s * 1e6 / (double)g.delivered : -1.0;
  if (o->n_aux_pids && !idle) {
    printf("  aux CPU            %.4f s in publish window, %.3f us/delivery (pid",
           aux_s, aux_us);
    for (uint32_t k = 0; k < o->n_aux_pids; k++)
      printf(" %ld: %.4f s", o->aux_pids[k],
             sseb_cpu_delta_s(g.aux_start_each[k], g.aux_end_each[k]));
    printf(")\n");
  }
  if (o->sub_ports_given) {
    for (uint32_t k = 0; k < o->n_sub_ports; k++) {
      uint32_t n = 0, conn = 0;
      uint64_t dlv = 0, exp = 0;
      for (uint32_t i = k; i < o->subscribers; i += o->n_sub_ports) {
        n++;
        conn += g.subs[i].connected;
        dlv += g.subs[i].delivered;
        exp += g.ch_msgs[i % o->channels];
      }
      printf("  port %-5u         %" PRIu32 " subscribers (%" PRIu32 " connected), %" PRIu64
             " / %" PRIu64 " delivered\n",
             o->sub_ports[k], n, conn, dlv, exp);
    }
  }
  printf("  stopped            %s\n", g.stop_reason ? g.stop_reason : "-");
  if (g.sub_error[0])
    printf("  first subscriber problem: %s\n", g.sub_error);
  if (g.publish_error[0])
    printf("  first publish problem:    %s\n", g.publish_error);

  if (o->json) {
    bench_buf_t j = {0};
    sseb_bprintf(&j,
                 "{\"tool\":\"ssebench\",\"transport\":\"%s\",\"n\":%" PRIu32
                 ",\"channels\":%" PRIu32 ",\"ready\":\"%s\",\"raw\":%s,\"sub_path\":\"%s\""
                 ",\"pub_path\":\"%s\",\"src_addrs\":%" PRIu32,
                 sseb_tr_names[o->transport], o->subscribers, o->channels,
                 sseb_ready_names[o->ready], o->raw ? "true" : "false", o->sub_path, o->pub_path,
                 g.n_src > 1 || g.src_base != 1 ? g.n_src : 0);
    sseb_bprintf(&j,
                 ",\"subscribers\":%" PRIu32 ",\"messages\":%" PRIu32
                 ",\"rate\":%g,\"window\":%" PRIu32 ",\"payload\":%" PRIu32
                 ",\"publishers\":%" PRIu32 ",\"connected\":%" PRIu32 ",\"connect_s\":%.4f,"
                 "\"sent\":%" PRIu32 ",\"publish_errors\":%" PRIu64 ",\"publish_rate\":%.1f,"
                 "\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64
                 ",\"deliveries_per_s\":%.1f,\"window_s\":%.4f,"
                 "\"latency_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"max\":%.4f},"
                 "\"lost\":%" PRIu64 ",\"subscribers_short\":%" PRIu32 ",\"duplicates\":%" PRIu64
                 ",\"out_of_order\":%" PRIu64 ",\"id_mismatch\":%" PRIu64
                 ",\"wrong_channel\":%" PRIu64 ",\"closed_early\":%" PRIu32
                 ",\"error_events\":%" PRIu64 ",\"foreign_data\":%" PRIu64,
                 o->subscribers, o->messages, o->rate, o->window, o->payload, o->publishers,
                 g.connected, connect_s, g.next_seq, g.publish_errors, pub_rate, expected,
                 g.delivered, dps, window_s, bench_ms(p50), bench_ms(p90), bench_ms(p99),
                 bench_ms(g.lat.max), lost, subs_lossy, g.dups, g.ooo, g.id_mismatch,
                 g.wrong_channel, g.closed_early, g.sse_errors, g.bad_data);
    if (o->server_pid) {
      sseb_bprintf(&j,
                   ",\"server_pid\":%ld,\"rss_before_kib\":%ld,\"rss_connected_kib\":%ld,"
                   "\"rss_end_kib\":%ld,\"rss_per_subscriber_kib\":%.2f,"
                   "\"rss_per_conn_bytes\":%.0f",
                   o->server_pid, g.rss_before, g.rss_connected, g.rss_end, rss_per_sub,
                   rss_per_conn_b);
      if (idle)
        sseb_buf_puts(&j, ",\"server_cpu_s\":null,\"server_cpu_stat_s\":null,"
                          "\"cpu_us_per_delivery\":null,\"server_cpu_ns\":null,"
                          "\"cpu_ns_per_delivery\":null");
      else
        sseb_bprintf(&j,
                     ",\"server_cpu_s\":%.4f,\"server_cpu_stat_s\":%.2f,"
                     "\"cpu_us_per_delivery\":%.4f,\"server_cpu_ns\":%lld,"
                     "\"cpu_ns_per_delivery\":%.1f",
                     cpu_best, cpu_s, cpu_us, cpu_ns, cpu_us >= 0 ? cpu_us * 1e3 : -1.0);
      if (conn_cpu_ns >= 0)
        sseb_bprintf(&j, ",\"server_connect_cpu_ns\":%lld", conn_cpu_ns);
      else
        sseb_buf_puts(&j, ",\"server_connect_cpu_ns\":null");
    } else {
      sseb_buf_puts(&j, ",\"server_pid\":null,\"rss_before_kib\":null,\"rss_connected_kib\":null,"
                        "\"rss_end_kib\":null,\"rss_per_subscriber_kib\":null,"
                        "\"rss_per_conn_bytes\":null,\"server_cpu_s\":null,"
                        "\"server_cpu_stat_s\":null,\"cpu_us_per_delivery\":null,"
                        "\"server_cpu_ns\":null,\"cpu_ns_per_delivery\":null,"
                        "\"server_connect_cpu_ns\":null");
    }
    sseb_bprintf(&j, ",\"stop\":\"%s\",\"subscriber_problem\":\"%s\",\"publish_problem\":\"%s\"",
                 g.stop_reason ? g.stop_reason : "", g.sub_error, g.publish_error);
    if (o->ws)
      sseb_bprintf(&j,
                   ",\"deflate_offered\":%s,\"deflate_subscribers\":%" PRIu32
                   ",\"pad\":\"%s\",\"ws_messages\":%" PRIu64 ",\"ws_compressed\":%" PRIu64
                   ",\"wire_bytes_per_delivery\":%.1f,\"json_bytes_per_delivery\":%.1f"
                   ",\"close_frames\":%" PRIu64 ",\"pings\":%" PRIu64 ",\"inflates\":%" PRIu64,
                   o->deflate ? "true" : "false", g.ws_deflated, sseb_pad_names[o->pad], g.ws_msgs,
                   g.ws_msg_z, ws_wire, ws_json, g.ws_closes, g.ws_pings, g.inflates);
    if (o->sio)
      sseb_bprintf(&j, ",\"engineio_pings\":%" PRIu64, g.sio_pings);
    bench_buf_t multi = {0};
    sseb_json_multi(&multi);
    sseb_bprintf(&j, "%s", multi.p);
    bench_buf_free(&multi);
    /* last: its per-step keys (deliveries_per_s, sent, p50, ...) repeat top-level ones,
     * which a first-match lookup thus still finds first */
    sseb_json_ramp(&j);
    sseb_buf_puts(&j, "}\n");
    fwrite(j.p, 1, j.len, stdout);
    bench_buf_free(&j);
  }
  fflush(stdout);
}

/* ------------------------------------------------------------------------------------
 * Setup and main
 * ---------------------------------------------------------------------------------- */

/* Raises RLIMIT_NOFILE's soft limit to the hard one; dies when N+K sockets cannot fit. */
static void sseb_raise_nofile(void) {
  bench_raise_nofile((uint64_t)g.o.subscribers + g.o.publishers + 16,
                     "; raise it (ulimit -Hn) or lower --subscribers");
}

static void sseb_setup(void) {
  const sseb_opts_t *o = &g.o;
  uint32_t c = o->channels;
  /* per subscriber, one bit per message of its channel (at most ceil(M / C)) */
  g.seen_words = (((size_t)o->messages + c - 1) / c + 63) / 64;
  uint64_t seen_bytes = (uint64_t)o->subscribers * g.seen_words * 8;
  if (seen_bytes > SSEB_SEEN_MAX)
    bench_die("N x M / C too large: %" PRIu64 " MiB of delivery bitmaps", seen_bytes >> 20);
  if (o->src_addrs) {
    g.n_src = o->src_addrs;
    g.src_base = 2;
  } else {
    g.n_src = (o->subscribers + SSEB_PORTS_PER_ADDR - 1) / SSEB_PORTS_PER_ADDR;
    g.src_base = 1;
    if (g.n_src > SSEB_MAX_SRC_ADDRS)
      bench_die("--subscribers too large for %d source addresses", SSEB_MAX_SRC_ADDRS);
  }
  g.line_max = (size_t)o->payload + SSEB_LINE_SLACK;
  /* the longest paths (channel C-1 has the longest name) fit, or die here */
  char path[SSEB_PATH_MAX];
  sseb_path(o->sub_path, c - 1, path);
  sseb_path(o->pub_path, c - 1, path);
  if (o->ws) {
    /* the RFC 6455 1.3 example checks SHA-1 and base64 once */
    char acc[29];
    bench_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", acc);
    if (strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0)
      bench_die("internal: Sec-WebSocket-Accept self-check failed (%s)", acc);
    if (inflateInit2(&g.z, -15) != Z_OK)
      bench_die("inflateInit2 failed");
  }
  g.ch_subs = bench_xcalloc(c, sizeof *g.ch_subs);
  g.ch_msgs = bench_xcalloc(c, sizeof *g.ch_msgs);
  for (uint32_t k = 0; k < c; k++)
    g.ch_subs[k] = o->subscribers / c + (k < o->subscribers % c);
  sseb_set_messages(o->messages);
  if (o->ramp) {
    g.steps = bench_xcalloc(o->ramp_max_steps, sizeof *g.steps);
    g.best = -1;
    g.step_ns = (uint64_t)(o->ramp_s * 1e9);
    g.grace_ns = g.step_ns < SSEB_RAMP_GRACE_MAX_NS ? g.step_ns : SSEB_RAMP_GRACE_MAX_NS;
  }
  g.subs = bench_xcalloc(o->subscribers, sizeof *g.subs);
  for (uint32_t i = 0; i < o->subscribers; i++)
    g.subs[i].fd = -1;
  g.seen = bench_xcalloc((size_t)o->subscribers * g.seen_words, sizeof *g.seen);
  g.pubs = bench_xcalloc(o->publishers, sizeof *g.pubs);
  for (uint32_t k = 0; k < o->publishers; k++)
    g.pubs[k].fd = -1;
  g.passed = bench_xcalloc(o->messages, sizeof *g.passed);
  g.offset_of = bench_xcalloc(o->messages, sizeof *g.offset_of);
  g.failed = bench_xcalloc(o->messages, 1);
  if (o->raw && o->publishers > 1 && o->messages > 0) {
    uint64_t bytes = (uint64_t)o->subscribers * o->publishers * sizeof(int32_t);
    if (bytes > SSEB_SEEN_MAX)
      bench_die("N x K too large with --raw: %" PRIu64 " MiB of per-publisher order state",
                bytes >> 20);
    g.pub_of = bench_xcalloc(o->messages, 1);
    g.last_by_pub = bench_xcalloc((size_t)o->subscribers * o->publishers, sizeof(int32_t));
    memset(g.last_by_pub, 0xff, (size_t)bytes); /* -1: nothing from that publisher yet */
  }
  g.ep = epoll_create1(EPOLL_CLOEXEC);
  if (g.ep < 0)
    bench_die("epoll_create1: %s", strerror(errno));
  g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (g.tfd < 0)
    bench_die("timerfd_create: %s", strerror(errno));
  sseb_ep_ctl(EPOLL_CTL_ADD, g.tfd, EPOLLIN, SSEB_TAG_TIMER, 0);
  g.rss_before = g.rss_connected = g.rss_end = -1;
  g.cpu_start = g.cpu_end = g.sched_start = g.sched_end = -1;
  g.conn_sched_start = g.conn_sched_end = -1;
  g.aux_ticks_start = g.aux_ticks_end = g.aux_start = g.aux_end = -1;
  for (uint32_t k = 0; k < SSEB_MAX_PIDS; k++)
    g.sched_start_each[k] = g.sched_end_each[k] = g.aux_start_each[k] = g.aux_end_each[k] = -1;
}

/* Closes every socket this process opened (the process exits right after). */
static void sseb_teardown(void) {
  for (uint32_t i = 0; i < g.o.subscribers; i++)
    if (g.subs[i].fd >= 0)
      close(g.subs[i].fd);
  for (uint32_t k = 0; k < g.o.publishers; k++)
    if (g.pubs[k].fd >= 0)
      close(g.pubs[k].fd);
  close(g.tfd);
  close(g.ep);
  if (g.o.ws) {
    inflateEnd(&g.z);
    bench_buf_free(&g.zbuf);
    for (uint32_t i = 0; i < SSEB_ZCACHE; i++) {
      bench_buf_free(&g.zcache[i].in);
      bench_buf_free(&g.zcache[i].out);
    }
  }
}

int main(int argc, char **argv) {
  g.t0 = bench_now();
  sseb_opts_parse(argc, argv, &g.o);
  signal(SIGPIPE, SIG_IGN);
  bench_rand_seed();
  sseb_raise_nofile();
  sseb_setup();
  static char buf[SSEB_READ_CHUNK];

  for (uint32_t k = 0; k < g.o.n_server_pids; k++)
    if (bench_proc_rss_kib(g.o.server_pids[k]) < 0)
      bench_die("cannot read /proc/%ld/status", g.o.server_pids[k]);
  for (uint32_t k = 0; k < g.o.n_aux_pids; k++)
    if (bench_proc_cpu_ns(g.o.aux_pids[k]) < 0)
      bench_die("cannot read /proc/%ld/task/*/schedstat (--aux-pid)", g.o.aux_pids[k]);
  long long ticks, each[SSEB_MAX_PIDS];
  if (g.o.server_pid) {
    g.rss_before = sseb_pids_rss_kib(g.o.server_pids, g.o.n_server_pids);
    sseb_pids_cpu(g.o.server_pids, g.o.n_server_pids, &ticks, &g.conn_sched_start, each);
  }
  g.t_connect_start = bench_now();
  if (sseb_connect_all(buf) != 0) {
    g.stop_reason = "connect phase failed";
    fprintf(stderr,
            "ssebench: only %" PRIu32 " of %" PRIu32
            " subscribers connected (limit %.1f s, %" PRIu32 " failed)%s%s\n",
            g.connected, g.o.subscribers, g.o.timeout_s, g.connect_failed,
            g.sub_error[0] ? "; first problem: " : "", g.sub_error);
    sseb_report();
    sseb_teardown();
    return 2;
  }
  if (g.o.server_pid)
    sseb_pids_cpu(g.o.server_pids, g.o.n_server_pids, &ticks, &g.conn_sched_end, each);
  if (g.o.messages == 0) {
    /* Idle run: let the server finish what follows the handshakes (answering pings
     * meanwhile), read its RSS, close everything. */
    uint64_t until = bench_now() + (uint64_t)SSEB_IDLE_SETTLE_MS * 1000000u;
    while (bench_now() < until && g.closed < g.o.subscribers)
      sseb_poll(SSEB_TICK_MS, buf);
    if (g.o.server_pid)
      g.rss_connected = g.rss_end = sseb_pids_rss_kib(g.o.server_pids, g.o.n_server_pids);
    g.t_end = bench_now();
    g.stop_reason = "idle run (--messages 0)";
    sseb_report();
    sseb_teardown();
    return g.closed_early == 0 && g.closed == 0 ? 0 : 1;
  }
  if (g.o.server_pid)
    g.rss_connected = sseb_pids_rss_kib(g.o.server_pids, g.o.n_server_pids);
  for (uint32_t k = 0; k < g.o.publishers; k++)
    sseb_pub_open(k);
  if (g.o.server_pid)
    sseb_pids_cpu(g.o.server_pids, g.o.n_server_pids, &g.cpu_start, &g.sched_start,
                  g.sched_start_each);
  if (g.o.n_aux_pids)
    sseb_pids_cpu(g.o.aux_pids, g.o.n_aux_pids, &g.aux_ticks_start, &g.aux_start,
                  g.aux_start_each);
  sseb_run(buf);
  sseb_ramp_finish();
  /* Collect the publish answers still in flight (bounded), so the counts are final. */
  uint64_t grace = bench_now() + BENCH_NS;
  while (g.answered < g.next_seq && g.pubs_alive > 0 && bench_now() < grace)
    sseb_poll(SSEB_TICK_MS, buf);
  g.t_end = bench_now();
  if (g.o.server_pid) {
    sseb_pids_cpu(g.o.server_pids, g.o.n_server_pids, &g.cpu_end, &g.sched_end,
                  g.sched_end_each);
    g.rss_end = sseb_pids_rss_kib(g.o.server_pids, g.o.n_server_pids);
  }
  if (g.o.n_aux_pids)
    sseb_pids_cpu(g.o.aux_pids, g.o.n_aux_pids, &g.aux_ticks_end, &g.aux_end, g.aux_end_each);
  sseb_report();
  sseb_teardown();
  int clean = g.delivered == g.expected && g.dups == 0 && g.ooo == 0 && g.id_mismatch == 0 &&
              g.wrong_channel == 0;
  return clean ? 0 : 1;
}
