/*
 * jambench: jam-session (room) relay benchmark for tutti.
 *
 * One program (plus the helpers of benchlib.c), one thread, one epoll loop, libc only
 * (built like ssebench). It
 *   1. opens R x P WebSockets to GET /ws on a loopback server (non-blocking connects, at
 *      most JAMB_CONNECT_INFLIGHT handshakes at a time; a random Sec-WebSocket-Key, the
 *      101 and Sec-WebSocket-Accept checked, permessage-deflate never offered) and waits
 *      for every `welcome`;
 *   2. makes R rooms: participant 0 of each room sends `session:create` (with
 *      max_participants P) and, once its `session:created` names the room code, the
 *      other P-1 send `session:join`; it waits for every `session:joined`;
 *   3. has every participant send `event:broadcast` events at E/s for D seconds, paced
 *      by a timerfd on one schedule spread evenly over all R x P senders (sender i sends
 *      its n-th event at t0 + (n * R * P + i) / (R * P * E) s), each with an `id` (so
 *      the server acknowledges it) and a payload {"t":T,"n":N,"s":S}: T the send time
 *      (CLOCK_MONOTONIC ns, taken just before the frame is queued), N the sender's
 *      counter, S the sender's index; --payload pads it with "p" to that many bytes;
 *   4. parses every connection incrementally (unmasked server frames with 7/16/64-bit
 *      lengths split across reads, fragmented messages, pings answered with masked
 *      pongs, a close frame answered and counted as an early close) and, for each
 *      `event:broadcast` received, records relay latency = receive time - T, checks the
 *      room code, that it is not the receiver's own event (sender_id and S), that
 *      sender_id is the sender's user_id, that seq increases on every receiver and names
 *      one event per room (acks included), and counts per (sender, receiver) pair the
 *      counters received: lost, duplicated and out of order (a counter below one already
 *      received from the same sender);
 *   5. stops by itself (every expected delivery and ack seen, or --timeout seconds after
 *      the last send), prints a table and, with --json, one JSON line.
 *
 * Socket.IO (--proto socketio; default tutti, all of the above): the same workload against
 * Socket.IO 4 rooms (bench/peers/socketio_server.mjs), for a side-by-side comparison:
 *   1. the WebSockets go to GET /socket.io/?EIO=4&transport=websocket; after the 101 the
 *      server sends the Engine.IO open packet `0{..}`, the client answers `40` and the
 *      connection counts as welcomed at `40{"sid":..}`;
 *   2. there is no create step: the rooms are named jam-0 .. jam-{R-1}, every participant
 *      sends 42["join","jam-r"] and waits for 42["joined","jam-r"];
 *   3. events are 42["relay","jam-r",<data>], <data> the same {"t":T,"n":N,"s":S} (and
 *      padding); the server does socket.to(room).emit, so the other participants get
 *      42["relay",<data>] and the sender nothing (no ack). T is ns since jambench started
 *      (not raw CLOCK_MONOTONIC) so that it stays under 2^53 and survives Socket.IO's
 *      JSON.parse into doubles exactly; Socket.IO re-serialises <data>, so t, n and s are
 *      found wherever they sit;
 *   4. Engine.IO pings `2` are answered with `3` (masked, like every client frame);
 *      `1` (Engine.IO close), `41` (disconnect) and `44` (connect_error) close the
 *      participant as an early close, `44` also counting as an error message.
 * Relay latency, lost, duplicated and out-of-order deliveries per (sender, receiver) and
 * own echoes (S = the receiver's index) are measured as with tutti. What the protocol
 * lacks is not checked and reads null in the JSON line: there are no acks, no seq (so no
 * seq checks), no sender_id (no sender check), no join/leave notices and no error codes
 * (rate_limited). A relay carries no room name, so the room is checked only through the
 * payload's sender: an event of a sender of another room counts as wrong_room.
 *
 * Each event should reach the P-1 other participants of its room, so the expected
 * deliveries are sent x (P-1). Latency is measured from the actual send, not from the
 * scheduled one (no coordinated-omission correction): a load generator that falls behind
 * shows as a lower achieved send rate.
 *
 * Server figures (--server-pid): VmRSS from /proc/PID/status before connecting, once
 * every room is joined and at the end; CPU time between the first send and the stop,
 * summed over the server's threads from /proc/PID/task/TID/schedstat (ns), with utime +
 * stime from /proc/PID/stat (clock ticks) beside it, and per delivery. On loopback the
 * sender's syscalls also carry the receiver's TCP processing.
 *
 * JSON line (--json): the same keys for both protocols, "proto" ("tutti"|"socketio")
 * among them; a figure the protocol does not have is null (see above). engineio_pings
 * counts the Engine.IO pings answered (null with tutti); pings counts WebSocket pings.
 *
 * Exit status: 0 when every expected delivery and ack (tutti) arrived with no duplicate,
 * no out-of-order delivery, no own echo, no wrong room or sender, no seq error, no error
 * message and no early close; 1 when the run completed but is not clean; 2 on a usage or
 * setup error (the table is still printed when the connect or join phase fails).
 *
 * Build: cc -O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -o jambench jambench.c benchlib.c
 * Only loopback addresses (127.0.0.0/8) are accepted as targets.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "benchlib.h"

const char bench_prog[] = "jambench"; /* named by bench_die */

/* ------------------------------------------------------------------------------------
 * Limits and constants
 * ---------------------------------------------------------------------------------- */

#define JAMB_CONNECT_INFLIGHT 256 /* handshakes in progress at once */
#define JAMB_HEAD_MAX (16 * 1024) /* largest HTTP response head accepted */
#define JAMB_MSG_SLACK (64 * 1024) /* longest server message = payload + this */
#define JAMB_READ_CHUNK (64 * 1024) /* bytes read per readiness per socket */
#define JAMB_MAX_EVENTS 1024        /* epoll_wait batch */
#define JAMB_TICK_MS 50             /* longest epoll sleep: deadline check granularity */
#define JAMB_ID_MAX 64              /* longest user_id kept */
#define JAMB_CODE_MAX 32            /* longest room code (HUB_ROOM_CODE_MAX) */
#define JAMB_STATE_MAX ((uint64_t)1 << 30) /* bytes of per-pair bitmaps and tables allowed */

#define JAMB_TAG_CONN 1u
#define JAMB_TAG_TIMER 2u

/* ------------------------------------------------------------------------------------
 * Small utilities
 * ---------------------------------------------------------------------------------- */

/* 1 when [a, a+alen) equals the NUL-terminated s. */
static int jamb_eq(const char *a, size_t alen, const char *s) {
  return alen == strlen(s) && memcmp(a, s, alen) == 0;
}

/* ------------------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------------------- */

typedef struct jamb_opts_s {
  const char *host;
  struct in_addr addr; /* resolved host, always inside 127.0.0.0/8 */
  unsigned port;
  uint32_t rooms;        /* R */
  uint32_t participants; /* P per room */
  double rate;           /* E events/s per participant */
  double duration_s;     /* D */
  uint32_t payload;      /* target payload size in bytes (0: just t, n, s) */
  long server_pid;       /* 0 = no server figures */
  double timeout_s;
  int json;
  int sio; /* --proto socketio */
} jamb_opts_t;

static void jamb_usage(FILE *f) {
  fputs(
      "usage: jambench --port P [options]\n"
      "  --host ADDR         loopback address of the server (127.0.0.1)\n"
      "  --port P            server port (required)\n"
      "  --proto PROTO       tutti (GET /ws, session:create/join, event:broadcast) or\n"
      "                      socketio (Socket.IO 4 rooms jam-0..: join, relay) (tutti)\n"
      "  --rooms R           rooms to create (socketio: to join by name) (10)\n"
      "  --participants P    WebSocket participants per room, the creator included (4)\n"
      "  --rate E            events per second per participant (20)\n"
      "  --duration D        seconds of sending (5)\n"
      "  --payload BYTES     pad each event's payload to about this size (0: none)\n"
      "  --server-pid PID    read the server's RSS and CPU time from /proc/PID\n"
      "  --timeout S         bounds the connect phase and the join phase, and how long\n"
      "                      to wait for deliveries after the last send (10)\n"
      "  --json              also print one JSON line with the results\n",
      f);
}

static void jamb_opts_parse(int argc, char **argv, jamb_opts_t *o) {
  static const struct option longopts[] = {
      {"host", required_argument, NULL, 'h'},
      {"port", required_argument, NULL, 'p'},
      {"proto", required_argument, NULL, 'x'},
      {"rooms", required_argument, NULL, 'R'},
      {"participants", required_argument, NULL, 'P'},
      {"rate", required_argument, NULL, 'E'},
      {"duration", required_argument, NULL, 'D'},
      {"payload", required_argument, NULL, 'b'},
      {"server-pid", required_argument, NULL, 's'},
      {"timeout", required_argument, NULL, 't'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'H'},
      {NULL, 0, NULL, 0},
  };
  *o = (jamb_opts_t){
      .host = "127.0.0.1",
      .rooms = 10,
      .participants = 4,
      .rate = 20,
      .duration_s = 5,
      .timeout_s = 10,
  };
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case 'h': o->host = optarg; break;
      case 'p': o->port = (unsigned)bench_parse_num("--port", optarg, 1, 65535); break;
      case 'x':
        if (strcmp(optarg, "tutti") == 0)
          o->sio = 0;
        else if (strcmp(optarg, "socketio") == 0 || strcmp(optarg, "socket.io") == 0)
          o->sio = 1;
        else
          bench_die("--proto must be tutti or socketio, got '%s'", optarg);
        break;
      case 'R': o->rooms = (uint32_t)bench_parse_num("--rooms", optarg, 1, 1000000); break;
      case 'P':
        o->participants = (uint32_t)bench_parse_num("--participants", optarg, 1, 1000);
        break;
      case 'E': o->rate = bench_parse_num("--rate", optarg, 0.01, 100000); break;
      case 'D': o->duration_s = bench_parse_num("--duration", optarg, 0.01, 3600); break;
      case 'b': o->payload = (uint32_t)bench_parse_num("--payload", optarg, 0, 16000); break;
      case 's': o->server_pid = (long)bench_parse_num("--server-pid", optarg, 1, 4194304); break;
      case 't': o->timeout_s = bench_parse_num("--timeout", optarg, 0.1, 3600); break;
      case 'j': o->json = 1; break;
      case 'H': jamb_usage(stdout); exit(0);
      default: jamb_usage(stderr); exit(2);
    }
  }
  if (optind < argc)
    bench_die("unexpected argument '%s' (see --help)", argv[optind]);
  if (o->port == 0)
    bench_die("--port is required (see --help)");
  const char *host = strcmp(o->host, "localhost") == 0 ? "127.0.0.1" : o->host;
  if (inet_pton(AF_INET, host, &o->addr) != 1)
    bench_die("--host must be an IPv4 loopback address, got '%s'", o->host);
  if ((ntohl(o->addr.s_addr) >> 24) != 127)
    bench_die("--host %s is not loopback: this tool only targets 127.0.0.0/8", o->host);
  if ((uint64_t)o->rooms * o->participants > 60000)
    bench_die("--rooms x --participants is over 60000 connections (one source address)");
}

/* ------------------------------------------------------------------------------------
 * Run state
 * ---------------------------------------------------------------------------------- */

enum {
  JAMB_CONN_IDLE,       /* not started */
  JAMB_CONN_CONNECTING, /* connect() in progress or request not fully written */
  JAMB_CONN_HEAD,       /* reading the response head */
  JAMB_CONN_OPEN,       /* reading frames */
  JAMB_CONN_CLOSED      /* closed by either side or failed; fd is -1 */
};

enum { JAMB_PHASE_CONNECT, JAMB_PHASE_JOIN, JAMB_PHASE_RUN };

/* Socket.IO handshake of one participant, after the 101 */
enum {
  JAMB_SIO_OPEN,    /* awaiting the Engine.IO open packet `0{...}` */
  JAMB_SIO_CONNECT, /* `40` sent, awaiting `40{"sid":..}` */
  JAMB_SIO_READY    /* connected to the default namespace (welcomed) */
};

/* Participant i is participant i % P of room i / P; participant 0 creates the room. */
typedef struct jamb_conn_s {
  int fd;
  uint8_t state;
  uint8_t welcomed;  /* `welcome` received */
  uint8_t joined;    /* `session:joined` received */
  uint8_t want_out;  /* EPOLLOUT registered for `out` */
  uint8_t ws_frag;   /* inside a fragmented message */
  uint8_t ws_msg_op; /* opcode of that message */
  uint8_t sio_state; /* socketio: JAMB_SIO_* */
  uint8_t user_id_len;
  uint32_t req_off; /* request bytes already written */
  uint32_t room;
  uint32_t local;
  char ws_key[24]; /* Sec-WebSocket-Key sent (base64, no NUL) */
  char user_id[JAMB_ID_MAX];
  bench_buf_t carry; /* response head, or the start of a frame split across reads */
  bench_buf_t data;  /* the fragments of a fragmented message */
  bench_buf_t out;   /* frames not yet written */
  uint64_t last_seq;  /* highest seq received (0 before any) */
  uint64_t last_ack_seq;
  uint32_t sent;      /* events sent: its counters are 0 .. sent-1 */
  uint64_t delivered; /* distinct events received */
} jamb_conn_t;

typedef struct jamb_room_s {
  char code[JAMB_CODE_MAX + 1]; /* socketio: the room's name, jam-r */
  uint8_t created; /* `session:created` received */
  uint32_t joined;
  uint64_t *seq_owner; /* per seq: (sender local + 1) << 32 | (counter + 1); 0 = unseen */
  uint64_t seq_cap;    /* entries of seq_owner */
  uint64_t max_seq;    /* highest seq seen in an event or an ack */
} jamb_room_t;

typedef struct jamb_s {
  jamb_opts_t o;
  int ep;
  int tfd;        /* timerfd pacing the sends */
  char req[512];  /* the upgrade request, the same for all but the key */
  size_t req_len;
  size_t req_key_off;
  size_t msg_max; /* longest server message accepted */
  int phase;
  uint64_t t_base; /* subtracted from the send times carried in events (socketio) */

  uint32_t n;         /* connections: R x P */
  uint32_t per;       /* events per sender: round(E x D) */
  jamb_conn_t *conns;
  jamb_room_t *rooms;
  /* per (receiver, sender local) pair, index receiver * P + sender local */
  uint64_t *pair_seen; /* bitmaps of `per` bits: counters received */
  size_t pair_words;
  uint32_t *pair_count; /* distinct counters received */
  int64_t *pair_max;    /* highest counter received; -1 before any */
  /* per (sender, counter), index sender * per + counter */
  uint64_t *sent_t; /* send time (ns); 0 = not sent */
  uint8_t *acked;

  /* setup */
  uint32_t started;
  uint32_t opened;   /* 101 received */
  uint32_t welcomed;
  uint32_t connect_failed;
  uint32_t rooms_created;
  uint32_t joined;
  uint32_t setup_errors;
  uint32_t dup_codes; /* a room code given to two rooms */

  /* sending */
  uint64_t total;  /* events on the schedule: n x per */
  uint64_t next_k; /* next event of the schedule */
  uint64_t sent;
  uint64_t send_skipped; /* scheduled on a closed connection */
  uint64_t acked_n;
  uint64_t ack_dups;
  uint64_t ack_bad; /* acks naming no event we sent, or another room */

  /* receiving */
  uint64_t delivered; /* distinct (receiver, event) pairs */
  uint64_t dups;
  uint64_t ooo;
  uint64_t own_echo;
  uint64_t wrong_room;      /* an event naming another room, or from a sender of another */
  uint64_t sender_mismatch; /* sender_id is not the user_id of the payload's sender */
  uint64_t seq_disorder;    /* a receiver's seq not above its previous one */
  uint64_t seq_conflict;    /* one seq of a room naming two events */
  uint64_t seq_range;       /* a seq above what the room can have */
  uint64_t seq_gaps;        /* seqs of a room never seen, below its highest (at the end) */
  uint64_t foreign;         /* event:broadcast whose payload is not ours */
  uint64_t join_notices;    /* session:user-joined */
  uint64_t leave_notices;   /* session:user-left */
  uint64_t errors;          /* error messages during the run */
  uint64_t rate_limited;    /* ... of them RATE_LIMITED */
  uint64_t other_msgs;
  uint64_t pings;
  uint64_t sio_pings; /* Engine.IO pings (`2`) answered with `3` */
  uint64_t closes;
  uint32_t closed;
  uint32_t closed_early;
  char conn_error[256];  /* the first connection failure */
  char setup_error[256]; /* the first error of create/join */
  char run_error[256];   /* the first error message during the run */
  bench_hist_t lat;
  bench_hist_t ack_lat;

  /* timeline (CLOCK_MONOTONIC ns) */
  uint64_t t_connect_start;
  uint64_t t_connected;
  uint64_t t_joined;
  uint64_t t0; /* the schedule's start */
  uint64_t t_first_send;
  uint64_t t_last_send;
  uint64_t t_last_delivery;
  uint64_t t_end;

  /* server figures (-1 = unknown) */
  long rss_before;
  long rss_joined;
  long rss_end;
  long long cpu_start; /* utime + stime ticks */
  long long cpu_end;
  long long sched_start; /* schedstat ns */
  long long sched_end;

  const char *stop_reason;
} jamb_t;

static jamb_t g;

static void jamb_ep_ctl(int op, int fd, uint32_t events, uint32_t tag, uint32_t idx) {
  struct epoll_event ev = {.events = events, .data.u64 = ((uint64_t)tag << 32) | idx};
  if (epoll_ctl(g.ep, op, fd, &ev) != 0)
    bench_die("epoll_ctl: %s", strerror(errno));
}

static uint32_t jamb_idx(const jamb_conn_t *c) {
  return (uint32_t)(c - g.conns);
}

/* The upgrade request's path. */
static const char *jamb_path(void) {
  return g.o.sio ? "/socket.io/?EIO=4&transport=websocket" : "/ws";
}

/* ------------------------------------------------------------------------------------
 * Connections: life and writing
 * ---------------------------------------------------------------------------------- */

/* Closes c (if open) and counts it. `why` non-NULL marks a close worth reporting. */
static void jamb_conn_close(jamb_conn_t *c, const char *why) {
  if (c->state == JAMB_CONN_CLOSED)
    return;
  if (c->fd >= 0) {
    epoll_ctl(g.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
  }
  if (!c->welcomed)
    g.connect_failed++;
  else if (why != NULL)
    g.closed_early++;
  if (why != NULL)
    bench_note(g.conn_error, sizeof g.conn_error, "participant %u (room %u): %s", jamb_idx(c),
              c->room, why);
  c->state = JAMB_CONN_CLOSED;
  g.closed++;
  bench_buf_free(&c->carry);
  bench_buf_free(&c->data);
  bench_buf_free(&c->out);
}

/* Writes what is queued in c->out; registers for writability while some is left.
 * Returns 0, or -1 when c was closed. */
static int jamb_conn_flush(jamb_conn_t *c) {
  int rc = bench_flush(c->fd, &c->out);
  if (rc < 0) {
    char why[96];
    snprintf(why, sizeof why, "send: %s", strerror(-rc));
    jamb_conn_close(c, why);
    return -1;
  }
  int want = c->out.len > 0;
  if (want != c->want_out) {
    jamb_ep_ctl(EPOLL_CTL_MOD, c->fd, EPOLLIN | (want ? EPOLLOUT : 0u), JAMB_TAG_CONN,
                jamb_idx(c));
    c->want_out = (uint8_t)want;
  }
  return 0;
}

/* Queues a text message and writes what it can. Returns 0, or -1 when c was closed. */
static int jamb_ws_send_text(jamb_conn_t *c, const char *p, size_t len) {
  if (c->state != JAMB_CONN_OPEN)
    return -1;
  bench_ws_queue(&c->out, 0x1, p, len);
  return jamb_conn_flush(c);
}

/* Writes what is left of the upgrade request. Returns 0 when all is written, 1 when it
 * must wait for writability, -1 on error (c closed). */
static int jamb_conn_send_request(jamb_conn_t *c) {
  char req[sizeof g.req];
  memcpy(req, g.req, g.req_len);
  memcpy(req + g.req_key_off, c->ws_key, sizeof c->ws_key);
  int rc = bench_send_from(c->fd, req, g.req_len, &c->req_off);
  if (rc == 1)
    return 1;
  if (rc < 0) {
    char why[96];
    snprintf(why, sizeof why, "send: %s", strerror(-rc));
    jamb_conn_close(c, why);
    return -1;
  }
  jamb_ep_ctl(EPOLL_CTL_MOD, c->fd, EPOLLIN, JAMB_TAG_CONN, jamb_idx(c));
  c->state = JAMB_CONN_HEAD;
  return 0;
}

/* Starts connection i: socket, non-blocking connect. */
static void jamb_conn_start(uint32_t i) {
  jamb_conn_t *c = &g.conns[i];
  g.started++;
  bench_ws_key(c->ws_key);
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (c->fd < 0)
    bench_die("socket: %s (participant %u)", strerror(errno), i);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in dst = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)g.o.port), .sin_addr = g.o.addr};
  c->state = JAMB_CONN_CONNECTING;
  int rc = connect(c->fd, (struct sockaddr *)&dst, sizeof dst);
  if (rc != 0 && errno != EINPROGRESS) {
    char why[96];
    snprintf(why, sizeof why, "connect: %s", strerror(errno));
    close(c->fd); /* not in epoll yet */
    c->fd = -1;
    jamb_conn_close(c, why);
    return;
  }
  jamb_ep_ctl(EPOLL_CTL_ADD, c->fd, EPOLLOUT, JAMB_TAG_CONN, i);
  if (rc == 0)
    jamb_conn_send_request(c);
}

/* ------------------------------------------------------------------------------------
 * Rooms: create and join
 * ---------------------------------------------------------------------------------- */

static const char *const jamb_instruments[] = {"drums", "bass", "piano", "guitar", "sax", "voice"};

/* Participant 0 of room r asks for the room. */
static void jamb_create(uint32_t r) {
  jamb_conn_t *c = &g.conns[(size_t)r * g.o.participants];
  char m[256];
  int n = snprintf(m, sizeof m,
                   "{\"type\":\"session:create\",\"name\":\"jambench %" PRIu32
                   "\",\"max_participants\":%" PRIu32
                   ",\"user\":{\"name\":\"p0\",\"instrument\":\"drums\"},\"id\":\"create\"}",
                   r, g.o.participants);
  jamb_ws_send_text(c, m, (size_t)n);
}

/* The other participants of room r join it. */
static void jamb_join_others(uint32_t r) {
  for (uint32_t k = 1; k < g.o.participants; k++) {
    jamb_conn_t *c = &g.conns[(size_t)r * g.o.participants + k];
    char m[256];
    int n = snprintf(m, sizeof m,
                     "{\"type\":\"session:join\",\"room_code\":\"%s\",\"user\":{\"name\":\"p%" PRIu32
                     "\",\"instrument\":\"%s\"},\"id\":\"join\"}",
                     g.rooms[r].code, k, jamb_instruments[k % 6]);
    jamb_ws_send_text(c, m, (size_t)n);
  }
}

/* Socket.IO: participant c joins its room by name. */
static void jamb_sio_join(jamb_conn_t *c) {
  char m[128];
  int n = snprintf(m, sizeof m, "42[\"join\",\"%s\"]", g.rooms[c->room].code);
  jamb_ws_send_text(c, m, (size_t)n);
}

/* Socket.IO: 42["joined",<args>] on c; <args> must be its room's name. */
static void jamb_sio_on_joined(jamb_conn_t *c, const char *args, size_t alen) {
  const jamb_room_t *rm = &g.rooms[c->room];
  if (c->joined) {
    g.other_msgs++;
    return;
  }
  size_t cl = strlen(rm->code);
  if (alen != cl + 2 || args[0] != '"' || args[alen - 1] != '"' ||
      memcmp(args + 1, rm->code, cl) != 0) {
    g.setup_errors++;
    bench_note(g.setup_error, sizeof g.setup_error,
               "participant %u: joined another room than %s: %.*s", jamb_idx(c), rm->code,
               (int)(alen > 160 ? 160 : alen), args);
    return;
  }
  c->joined = 1;
  g.rooms[c->room].joined++;
  g.joined++;
}

/* `session:created` on c. */
static void jamb_on_created(jamb_conn_t *c, const char *p, size_t n) {
  jamb_room_t *rm = &g.rooms[c->room];
  const char *code;
  size_t clen;
  if (c->local != 0 || rm->created) {
    g.other_msgs++;
    return;
  }
  if (bench_json_str(p, n, "room_code", &code, &clen) != 0 || clen == 0 || clen > JAMB_CODE_MAX ||
      strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") < clen) {
    g.setup_errors++;
    bench_note(g.setup_error, sizeof g.setup_error, "room %u: session:created without a usable room_code: %.*s",
              c->room, (int)(n > 160 ? 160 : n), p);
    return;
  }
  memcpy(rm->code, code, clen);
  rm->code[clen] = '\0';
  rm->created = 1;
  g.rooms_created++;
  for (uint32_t r = 0; r < g.o.rooms; r++)
    if (r != c->room && g.rooms[r].created && strcmp(g.rooms[r].code, rm->code) == 0)
      g.dup_codes++;
  jamb_join_others(c->room);
}

/* `session:joined` on c. */
static void jamb_on_joined(jamb_conn_t *c, const char *p, size_t n) {
  jamb_room_t *rm = &g.rooms[c->room];
  const char *v;
  size_t vlen;
  if (c->joined) {
    g.other_msgs++;
    return;
  }
  if (!rm->created || bench_json_str(p, n, "room_code", &v, &vlen) != 0 ||
      !jamb_eq(v, vlen, rm->code)) {
    g.setup_errors++;
    bench_note(g.setup_error, sizeof g.setup_error, "participant %u: session:joined for another room: %.*s",
              jamb_idx(c), (int)(n > 160 ? 160 : n), p);
    return;
  }
  if (bench_json_str(p, n, "user_id", &v, &vlen) != 0 || vlen == 0 || vlen >= JAMB_ID_MAX) {
    g.setup_errors++;
    bench_note(g.setup_error, sizeof g.setup_error, "participant %u: session:joined without user_id: %.*s",
              jamb_idx(c), (int)(n > 160 ? 160 : n), p);
    return;
  }
  memcpy(c->user_id, v, vlen);
  c->user_id_len = (uint8_t)vlen;
  c->joined = 1;
  rm->joined++;
  g.joined++;
}

/* ------------------------------------------------------------------------------------
 * Events: sending, receiving, acks
 * ---------------------------------------------------------------------------------- */

/* Records that seq of room rm names the event (sender local, counter). */
static void jamb_seq_owner(jamb_room_t *rm, uint64_t seq, uint32_t local, uint32_t counter) {
  if (seq == 0 || seq >= rm->seq_cap) {
    g.seq_range++;
    return;
  }
  uint64_t own = ((uint64_t)local + 1) << 32 | ((uint64_t)counter + 1);
  if (rm->seq_owner[seq] == 0)
    rm->seq_owner[seq] = own;
  else if (rm->seq_owner[seq] != own)
    g.seq_conflict++;
  if (seq > rm->max_seq)
    rm->max_seq = seq;
}

/* Sends event k of the schedule: sender k % n, counter k / n. */
static void jamb_send_event(uint64_t k) {
  uint32_t s = (uint32_t)(k % g.n);
  uint32_t cnt = (uint32_t)(k / g.n);
  jamb_conn_t *c = &g.conns[s];
  if (c->state != JAMB_CONN_OPEN) {
    g.send_skipped++;
    return;
  }
  char m[16384 + 512];
  uint64_t t = bench_now();
  int len = snprintf(m, sizeof m,
                     g.o.sio ? "42[\"relay\",\"%s\","
                             : "{\"type\":\"event:broadcast\",\"room_code\":\"%s\","
                               "\"event_name\":\"note\",\"payload\":",
                     g.rooms[c->room].code);
  const char *pl = m + len; /* the payload: the same object in both protocols */
  len += snprintf(m + len, sizeof m - (size_t)len,
                  "{\"t\":%" PRIu64 ",\"n\":%" PRIu32 ",\"s\":%" PRIu32, t - g.t_base, cnt, s);
  size_t plen = (size_t)(m + len - pl) + 1; /* with the closing brace */
  if (g.o.payload > plen + 7) {
    size_t pad = g.o.payload - plen - 7; /* ,"p":"..." */
    memcpy(m + len, ",\"p\":\"", 6);
    len += 6;
    memset(m + len, 'x', pad);
    len += (int)pad;
    m[len++] = '"';
  }
  if (g.o.sio)
    len += snprintf(m + len, sizeof m - (size_t)len, "}]"); /* no id: no ack */
  else
    len += snprintf(m + len, sizeof m - (size_t)len, "},\"id\":%" PRIu32 "}", cnt);
  g.sent_t[(size_t)s * g.per + cnt] = t;
  c->sent = cnt + 1;
  g.sent++;
  if (g.t_first_send == 0)
    g.t_first_send = t;
  g.t_last_send = t;
  jamb_ws_send_text(c, m, (size_t)len);
}

/* Counts event `cnt` of sender snd (of c's room, not c), sent at t, received by c at
 * `now`: duplicate, out of order, or a new delivery with its latency. */
static void jamb_deliver(jamb_conn_t *c, const jamb_conn_t *snd, uint64_t cnt, uint64_t t,
                         uint64_t now) {
  size_t pair = (size_t)jamb_idx(c) * g.o.participants + snd->local;
  uint64_t *w = &g.pair_seen[pair * g.pair_words + cnt / 64];
  uint64_t bit = 1ull << (cnt % 64);
  if (*w & bit) {
    g.dups++;
    return;
  }
  *w |= bit;
  if ((int64_t)cnt < g.pair_max[pair])
    g.ooo++;
  else
    g.pair_max[pair] = (int64_t)cnt;
  g.pair_count[pair]++;
  c->delivered++;
  g.delivered++;
  bench_hist_add(&g.lat, now - t);
  g.t_last_delivery = now;
}

/* `event:broadcast` on receiver c at `now`. */
static void jamb_on_event(jamb_conn_t *c, const char *p, size_t n, uint64_t now) {
  jamb_room_t *rm = &g.rooms[c->room];
  const char *v;
  size_t vlen;
  if (bench_json_str(p, n, "room_code", &v, &vlen) != 0 || !jamb_eq(v, vlen, rm->code)) {
    g.wrong_room++;
    return;
  }
  const char *sid = NULL;
  size_t sidlen = 0;
  int own = 0;
  if (bench_json_str(p, n, "sender_id", &sid, &sidlen) == 0 && c->user_id_len > 0 &&
      sidlen == c->user_id_len && memcmp(sid, c->user_id, sidlen) == 0)
    own = 1;
  const char *pl = bench_find(p, n, "\"payload\":", 10);
  uint64_t seq, t, cnt, s;
  if (pl == NULL || bench_json_u64(p, (size_t)(pl - p), "seq", &seq) != 0) {
    if (bench_json_u64(p, n, "seq", &seq) != 0) {
      g.foreign++;
      return;
    }
  }
  if (pl == NULL) {
    g.foreign++;
    return;
  }
  size_t rest = (size_t)(p + n - pl);
  if (bench_json_u64(pl, rest, "t", &t) != 0 || bench_json_u64(pl, rest, "n", &cnt) != 0 ||
      bench_json_u64(pl, rest, "s", &s) != 0 || s >= g.n || cnt >= g.per ||
      g.sent_t[s * g.per + cnt] != t || t > now) {
    g.foreign++;
    return;
  }
  const jamb_conn_t *snd = &g.conns[s];
  if (own || snd == c) {
    g.own_echo++;
    if (own != (snd == c))
      g.sender_mismatch++;
    return;
  }
  if (snd->room != c->room) {
    g.wrong_room++;
    return;
  }
  if (sid == NULL || sidlen != snd->user_id_len || memcmp(sid, snd->user_id, sidlen) != 0)
    g.sender_mismatch++;
  if (seq <= c->last_seq)
    g.seq_disorder++;
  else
    c->last_seq = seq;
  jamb_seq_owner(rm, seq, snd->local, (uint32_t)cnt);
  jamb_deliver(c, snd, cnt, t, now);
}

/* Socket.IO: 42["relay",<data>] on receiver c at `now`; <data> is the payload as the
 * server re-serialised it. No room name, sender_id or seq to check: the room is checked
 * through the payload's sender only. */
static void jamb_sio_on_relay(jamb_conn_t *c, const char *d, size_t n, uint64_t now) {
  uint64_t t, cnt, s;
  if (bench_json_u64(d, n, "t", &t) != 0 || bench_json_u64(d, n, "n", &cnt) != 0 ||
      bench_json_u64(d, n, "s", &s) != 0 || s >= g.n || cnt >= g.per ||
      t > UINT64_MAX - g.t_base || g.sent_t[s * g.per + cnt] != t + g.t_base ||
      t + g.t_base > now) {
    g.foreign++;
    return;
  }
  t += g.t_base;
  const jamb_conn_t *snd = &g.conns[s];
  if (snd == c) {
    g.own_echo++;
    return;
  }
  if (snd->room != c->room) {
    g.wrong_room++;
    return;
  }
  jamb_deliver(c, snd, cnt, t, now);
}

/* `event:ack` on sender c at `now`. */
static void jamb_on_ack(jamb_conn_t *c, const char *p, size_t n, uint64_t now) {
  jamb_room_t *rm = &g.rooms[c->room];
  const char *v;
  size_t vlen;
  uint64_t ref, seq;
  if (bench_json_str(p, n, "room_code", &v, &vlen) != 0 || !jamb_eq(v, vlen, rm->code) ||
      bench_json_u64(p, n, "ref", &ref) != 0 || bench_json_u64(p, n, "seq", &seq) != 0 ||
      ref >= c->sent) {
    g.ack_bad++;
    return;
  }
  size_t at = (size_t)jamb_idx(c) * g.per + ref;
  if (g.acked[at]) {
    g.ack_dups++;
    return;
  }
  g.acked[at] = 1;
  g.acked_n++;
  bench_hist_add(&g.ack_lat, now - g.sent_t[at]);
  if (seq <= c->last_ack_seq)
    g.seq_disorder++;
  else
    c->last_ack_seq = seq;
  jamb_seq_owner(rm, seq, c->local, (uint32_t)ref);
}

/* `error` on c. */
static void jamb_on_error(jamb_conn_t *c, const char *p, size_t n) {
  const char *code = "";
  size_t clen = 0;
  bench_json_str(p, n, "code", &code, &clen);
  if (g.phase != JAMB_PHASE_RUN) {
    g.setup_errors++;
    bench_note(g.setup_error, sizeof g.setup_error, "participant %u (room %u): %.*s", jamb_idx(c),
              c->room, (int)(n > 200 ? 200 : n), p);
    return;
  }
  g.errors++;
  if (jamb_eq(code, clen, "RATE_LIMITED"))
    g.rate_limited++;
  bench_note(g.run_error, sizeof g.run_error, "participant %u (room %u): %.*s", jamb_idx(c),
            c->room, (int)(n > 200 ? 200 : n), p);
}

/* Socket.IO: one complete text message, an Engine.IO packet. May close c. */
static void jamb_sio_text(jamb_conn_t *c, const char *p, size_t n, uint64_t now) {
  char why[200];
  if (n == 0) {
    g.other_msgs++;
    return;
  }
  switch (p[0]) {
    case '0': /* open: {"sid":..,"pingInterval":..,..}; connect to the default namespace */
      if (c->sio_state != JAMB_SIO_OPEN) {
        jamb_conn_close(c, "Engine.IO open packet twice");
        return;
      }
      c->sio_state = JAMB_SIO_CONNECT;
      jamb_ws_send_text(c, "40", 2);
      return;
    case '2': { /* ping: answer pong with the same data */
      char pong[128];
      g.sio_pings++;
      jamb_ws_send_text(c, pong, bench_eio_pong(p, n, pong, sizeof pong));
      return;
    }
    case '1': jamb_conn_close(c, "Engine.IO close packet from the server"); return;
    case '3': /* pong */
    case '6': /* noop */
      return;
    case '4': break; /* a Socket.IO packet: below */
    default: g.other_msgs++; return;
  }
  if (n < 2) {
    g.other_msgs++;
    return;
  }
  if (p[1] == '0') { /* CONNECT ack: 40{"sid":".."} */
    if (c->sio_state != JAMB_SIO_CONNECT) {
      g.other_msgs++;
      return;
    }
    c->sio_state = JAMB_SIO_READY;
    c->welcomed = 1;
    g.welcomed++;
    return;
  }
  if (p[1] == '1' || p[1] == '4') { /* DISCONNECT, CONNECT_ERROR */
    if (p[1] == '4')
      jamb_on_error(c, p, n);
    snprintf(why, sizeof why, "Socket.IO %s: %.*s", p[1] == '1' ? "disconnect" : "connect_error",
             (int)(n > 120 ? 120 : n), p);
    jamb_conn_close(c, why);
    return;
  }
  /* EVENT: 42[/nsp,][id]["name",args...]; anything else is not part of the contract */
  const char *name, *rest, *args;
  size_t nlen, rlen, alen;
  if (p[1] != '2' || bench_sio_event(p, n, &name, &nlen, &rest, &rlen) != 0 ||
      bench_sio_arg(rest, rlen, &args, &alen) != 0) {
    g.other_msgs++;
    return;
  }
  if (jamb_eq(name, nlen, "relay"))
    jamb_sio_on_relay(c, args, alen, now);
  else if (jamb_eq(name, nlen, "joined"))
    jamb_sio_on_joined(c, args, alen);
  else
    g.other_msgs++;
}

/* One complete text message (JSON; socketio: an Engine.IO packet). May close c. */
static void jamb_text(jamb_conn_t *c, const char *p, size_t n, uint64_t now) {
  const char *type;
  size_t tlen;
  if (g.o.sio) {
    jamb_sio_text(c, p, n, now);
    return;
  }
  if (bench_json_str(p, n, "type", &type, &tlen) != 0) {
    g.other_msgs++;
    return;
  }
#define JAMB_TYPE(lit) (tlen == sizeof(lit) - 1 && memcmp(type, lit, tlen) == 0)
  if (JAMB_TYPE("event:broadcast")) {
    jamb_on_event(c, p, n, now);
  } else if (JAMB_TYPE("event:ack")) {
    jamb_on_ack(c, p, n, now);
  } else if (JAMB_TYPE("session:user-joined")) {
    g.join_notices++;
  } else if (JAMB_TYPE("session:user-left")) {
    g.leave_notices++;
  } else if (JAMB_TYPE("session:joined")) {
    jamb_on_joined(c, p, n);
  } else if (JAMB_TYPE("session:created")) {
    jamb_on_created(c, p, n);
  } else if (JAMB_TYPE("welcome")) {
    if (!c->welcomed) {
      c->welcomed = 1;
      g.welcomed++;
    }
  } else if (JAMB_TYPE("error")) {
    jamb_on_error(c, p, n);
  } else {
    g.other_msgs++;
  }
#undef JAMB_TYPE
}

/* ------------------------------------------------------------------------------------
 * WebSocket frames
 * ---------------------------------------------------------------------------------- */

/* Protocol violation by the server: reported, and c closed. Returns -1. */
static int jamb_ws_fail(jamb_conn_t *c, const char *what) {
  char why[160];
  snprintf(why, sizeof why, "WebSocket protocol: %s", what);
  jamb_conn_close(c, why);
  return -1;
}

/* One frame: first header byte b0, payload [p, p+len). Returns 0, or -1 when c was
 * closed. */
static int jamb_ws_frame(jamb_conn_t *c, uint8_t b0, const uint8_t *p, size_t len, uint64_t now) {
  int fin = (b0 & 0x80) != 0;
  unsigned op = b0 & 0x0fu;
  if (b0 & 0x70)
    return jamb_ws_fail(c, "RSV bit set (no extension was negotiated)");
  if (op >= 0x8) {
    if (!fin || len > 125)
      return jamb_ws_fail(c, "control frame fragmented or over 125 bytes");
    if (op == 0x8) {
      unsigned code = len >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
      char why[200];
      snprintf(why, sizeof why, "close frame from the server, code %u%s%.*s", code,
               len > 2 ? ": " : "", (int)(len > 2 ? len - 2 : 0), (const char *)p + 2);
      g.closes++;
      /* Answer with the same code, best effort: the socket is closed right after. */
      if (c->out.len == 0) {
        bench_ws_queue(&c->out, 0x8, p, len >= 2 ? 2 : 0);
        if (send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
          /* ignored: the server may have gone already */
        }
      }
      jamb_conn_close(c, why);
      return -1;
    }
    if (op == 0x9) {
      g.pings++;
      bench_ws_queue(&c->out, 0xA, p, len);
      return jamb_conn_flush(c);
    }
    if (op == 0xA)
      return 0; /* unsolicited pong: ignored */
    return jamb_ws_fail(c, "reserved control opcode");
  }
  if (op == 0x1 || op == 0x2) {
    if (c->ws_frag)
      return jamb_ws_fail(c, "a new message inside a fragmented one");
    if (fin) {
      if (op == 0x1)
        jamb_text(c, (const char *)p, len, now);
      else
        g.other_msgs++;
      return c->state == JAMB_CONN_OPEN ? 0 : -1;
    }
    c->ws_frag = 1;
    c->ws_msg_op = (uint8_t)op;
    c->data.len = 0;
    if (bench_buf_append(&c->data, (const char *)p, len, g.msg_max) != 0)
      return jamb_ws_fail(c, "message over the size limit");
    return 0;
  }
  if (op == 0x0) {
    if (!c->ws_frag)
      return jamb_ws_fail(c, "continuation without a start");
    if (bench_buf_append(&c->data, (const char *)p, len, g.msg_max) != 0)
      return jamb_ws_fail(c, "message over the size limit");
    if (!fin)
      return 0;
    c->ws_frag = 0;
    if (c->ws_msg_op == 0x1)
      jamb_text(c, c->data.p, c->data.len, now);
    else
      g.other_msgs++;
    if (c->state == JAMB_CONN_OPEN)
      c->data.len = 0;
    return c->state == JAMB_CONN_OPEN ? 0 : -1;
  }
  return jamb_ws_fail(c, "reserved data opcode");
}

/* Handles the complete frames at the start of [p, p+n); sets *used to their bytes.
 * Returns 0, or -1 when c was closed. */
static int jamb_ws_frames(jamb_conn_t *c, const uint8_t *p, size_t n, size_t *used,
                          uint64_t now) {
  size_t i = 0;
  for (;;) {
    size_t hl;
    uint64_t len;
    const char *err;
    int rc = bench_ws_frame_head(p + i, n - i, g.msg_max, &hl, &len, &err);
    if (rc < 0)
      return jamb_ws_fail(c, err);
    if (rc == 0)
      break;
    if (jamb_ws_frame(c, p[i], p + i + hl, (size_t)len, now) != 0)
      return -1;
    i += hl + (size_t)len;
  }
  *used = i;
  return 0;
}

/* Bytes after the 101. Complete frames are handled in place; a frame split across reads
 * is gathered in c->carry. Returns 0, or -1 when c was closed. */
static int jamb_ws_feed(jamb_conn_t *c, const char *p, size_t n, uint64_t now) {
  size_t used;
  if (c->carry.len == 0) {
    if (jamb_ws_frames(c, (const uint8_t *)p, n, &used, now) != 0)
      return -1;
    if (used < n && bench_buf_append(&c->carry, p + used, n - used, g.msg_max + 14) != 0)
      return jamb_ws_fail(c, "frame over the size limit");
    return 0;
  }
  if (bench_buf_append(&c->carry, p, n, g.msg_max + 14) != 0)
    return jamb_ws_fail(c, "frame over the size limit");
  if (jamb_ws_frames(c, (const uint8_t *)c->carry.p, c->carry.len, &used, now) != 0)
    return -1;
  bench_buf_consume(&c->carry, used);
  return 0;
}

/* The response head is complete in c->carry (hlen bytes with the empty line). */
static int jamb_conn_head(jamb_conn_t *c, size_t hlen) {
  bench_head_t h;
  bench_head_parse(c->carry.p, hlen - 4, &h);
  char why[200], accept[29];
  const char *bad = NULL;
  bench_ws_accept(c->ws_key, accept);
  if (h.status != 101 || !h.upgrade_ws || !h.conn_upgrade) {
    size_t bl = c->carry.len - hlen;
    snprintf(why, sizeof why, "HTTP %d%s: %.*s", h.status,
             h.status == 101 ? " without Upgrade: websocket / Connection: Upgrade" : "",
             (int)(bl > 120 ? 120 : bl), c->carry.p + hlen);
    bad = why;
  } else if (strcmp(h.accept, accept) != 0) {
    snprintf(why, sizeof why, "Sec-WebSocket-Accept '%.40s', expected '%s'", h.accept, accept);
    bad = why;
  } else if (h.ext_deflate || h.ext_other) { /* any extension header: none was offered */
    bad = "an extension in the answer that was not offered";
  }
  if (bad != NULL) {
    jamb_conn_close(c, bad);
    return -1;
  }
  c->state = JAMB_CONN_OPEN;
  g.opened++;
  return 0;
}

static void jamb_conn_readable(jamb_conn_t *c, char *buf) {
  ssize_t r = recv(c->fd, buf, JAMB_READ_CHUNK, 0);
  uint64_t now = bench_now();
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return;
    char why[96];
    snprintf(why, sizeof why, "recv: %s", strerror(errno));
    jamb_conn_close(c, why);
    return;
  }
  if (r == 0) {
    jamb_conn_close(c, c->state == JAMB_CONN_HEAD ? "closed before the response head"
                                                  : "closed by the server");
    return;
  }
  size_t n = (size_t)r;
  if (c->state == JAMB_CONN_HEAD) {
    size_t hend;
    int rc = bench_head_collect(&c->carry, buf, n, JAMB_HEAD_MAX, JAMB_READ_CHUNK, &hend);
    if (rc < 0)
      jamb_conn_close(c, "response head too large");
    if (rc <= 0)
      return;
    if (jamb_conn_head(c, hend) != 0)
      return;
    /* The terminator completed in this read, so the frame bytes after it are the last
     * (carry.len - hend) bytes of buf. */
    size_t body = c->carry.len - hend;
    c->carry.len = 0;
    if (body > 0)
      jamb_ws_feed(c, buf + n - body, body, now);
    return;
  }
  jamb_ws_feed(c, buf, n, now);
}

static void jamb_conn_event(uint32_t i, uint32_t events, char *buf) {
  jamb_conn_t *c = &g.conns[i];
  if (c->state == JAMB_CONN_CONNECTING) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
      char why[96];
      snprintf(why, sizeof why, "connect: %s", strerror(err));
      jamb_conn_close(c, why);
      return;
    }
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
      jamb_conn_send_request(c);
    return;
  }
  if (c->state == JAMB_CONN_OPEN && (events & EPOLLOUT) && c->out.len > 0 &&
      jamb_conn_flush(c) != 0)
    return;
  if (c->state == JAMB_CONN_HEAD || c->state == JAMB_CONN_OPEN) {
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
      jamb_conn_readable(c, buf);
  }
}

/* ------------------------------------------------------------------------------------
 * Pacing and the loop
 * ---------------------------------------------------------------------------------- */

/* Send time due for event k of the schedule: R x P x E events/s in all. */
static uint64_t jamb_due(uint64_t k) {
  return g.t0 + (uint64_t)((double)k * 1e9 / ((double)g.n * g.o.rate));
}

/* Sends every event due now and arms the timer for the next one. */
static void jamb_pump(void) {
  uint64_t now = bench_now();
  while (g.next_k < g.total && jamb_due(g.next_k) <= now) {
    jamb_send_event(g.next_k++);
    if ((g.next_k & 63) == 0)
      now = bench_now();
  }
  if (g.next_k < g.total) {
    uint64_t due = jamb_due(g.next_k);
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(due / BENCH_NS), .tv_nsec = (long)(due % BENCH_NS)}};
    timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL);
  }
}

/* Waits up to timeout_ms and handles what is ready. */
static void jamb_poll(int timeout_ms, char *buf) {
  static struct epoll_event evs[JAMB_MAX_EVENTS];
  int n = epoll_wait(g.ep, evs, JAMB_MAX_EVENTS, timeout_ms);
  if (n < 0) {
    if (errno == EINTR)
      return;
    bench_die("epoll_wait: %s", strerror(errno));
  }
  for (int i = 0; i < n; i++) {
    uint32_t tag = (uint32_t)(evs[i].data.u64 >> 32);
    uint32_t idx = (uint32_t)evs[i].data.u64;
    if (tag == JAMB_TAG_CONN) {
      jamb_conn_event(idx, evs[i].events, buf);
    } else if (tag == JAMB_TAG_TIMER) {
      uint64_t ticks;
      if (read(g.tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
        bench_die("timerfd read: %s", strerror(errno));
    }
  }
}

/* Connect phase: every connection open and welcomed, or failure, or the deadline.
 * Returns 0 when all are welcomed. */
static int jamb_connect_all(char *buf) {
  uint64_t deadline = g.t_connect_start + (uint64_t)(g.o.timeout_s * 1e9);
  for (;;) {
    while (g.started < g.n && g.started - g.opened - g.connect_failed < JAMB_CONNECT_INFLIGHT)
      jamb_conn_start(g.started);
    if (g.welcomed == g.n)
      return 0;
    if (g.connect_failed > 0 && g.welcomed + g.connect_failed >= g.n)
      return -1;
    if (g.closed > 0 && g.started == g.n && g.welcomed + g.closed >= g.n)
      return -1;
    if (bench_now() >= deadline)
      return -1;
    jamb_poll(JAMB_TICK_MS, buf);
  }
}

/* Join phase: every room created and every participant joined. Returns 0 when so. */
static int jamb_join_all(char *buf) {
  g.phase = JAMB_PHASE_JOIN;
  uint64_t deadline = bench_now() + (uint64_t)(g.o.timeout_s * 1e9);
  if (g.o.sio)
    for (uint32_t i = 0; i < g.n; i++)
      jamb_sio_join(&g.conns[i]);
  else
    for (uint32_t r = 0; r < g.o.rooms; r++)
      jamb_create(r);
  for (;;) {
    if (g.joined == g.n)
      return 0;
    if (g.setup_errors > 0 || g.closed > 0 || bench_now() >= deadline)
      return -1;
    jamb_poll(JAMB_TICK_MS, buf);
  }
}

/* Send and drain phase; sets g.stop_reason. */
static void jamb_run(char *buf) {
  g.phase = JAMB_PHASE_RUN;
  uint64_t tmo = (uint64_t)(g.o.timeout_s * 1e9);
  uint64_t p1 = g.o.participants - 1;
  g.t0 = bench_now();
  jamb_pump();
  for (;;) {
    uint64_t now = bench_now();
    if (g.next_k == g.total && g.delivered == g.sent * p1 && (g.o.sio || g.acked_n == g.sent)) {
      g.stop_reason = g.o.sio ? "all delivered" : "all delivered and acknowledged";
      return;
    }
    if (g.closed == g.n) {
      g.stop_reason = "every connection closed";
      return;
    }
    if (g.next_k == g.total && now >= g.t_last_send + tmo) {
      g.stop_reason = "timeout after the last send";
      return;
    }
    jamb_poll(JAMB_TICK_MS, buf);
    jamb_pump();
  }
}

/* ------------------------------------------------------------------------------------
 * Report
 * ---------------------------------------------------------------------------------- */

/* Seqs of every room never seen below the room's highest; sets g.seq_gaps. */
static void jamb_count_gaps(void) {
  g.seq_gaps = 0;
  for (uint32_t r = 0; r < g.o.rooms; r++) {
    const jamb_room_t *rm = &g.rooms[r];
    for (uint64_t s = 1; s <= rm->max_seq && s < rm->seq_cap; s++)
      if (rm->seq_owner[s] == 0)
        g.seq_gaps++;
  }
}

static uint64_t jamb_expected(void) {
  return g.sent * (uint64_t)(g.o.participants - 1);
}

/* 1 when the run is clean (see the exit status). */
static int jamb_clean(void) {
  if (g.o.sio) /* no acks, seq, sender_id or notices to check */
    return g.phase == JAMB_PHASE_RUN && g.delivered == jamb_expected() && g.sent == g.total &&
           g.dups == 0 && g.ooo == 0 && g.own_echo == 0 && g.wrong_room == 0 &&
           g.foreign == 0 && g.errors == 0 && g.closed_early == 0;
  return g.phase == JAMB_PHASE_RUN && g.delivered == jamb_expected() && g.acked_n == g.sent &&
         g.sent == g.total && g.dups == 0 && g.ooo == 0 && g.own_echo == 0 && g.wrong_room == 0 &&
         g.sender_mismatch == 0 && g.seq_disorder == 0 && g.seq_conflict == 0 &&
         g.seq_range == 0 && g.seq_gaps == 0 && g.foreign == 0 && g.errors == 0 &&
         g.closed_early == 0 && g.ack_dups == 0 && g.ack_bad == 0 && g.leave_notices == 0;
}

/* Appends printf-style text to the JSON line being built. */
static void jamb_bprintf(bench_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jamb_bprintf(bench_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    bench_die("internal: vsnprintf failed");
  bench_buf_reserve(b, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* ,"key":v or ,"key":null when the protocol has no such figure (tutti has them all). */
static void jamb_jput_u64(bench_buf_t *b, const char *key, int have, uint64_t v) {
  if (have)
    jamb_bprintf(b, ",\"%s\":%" PRIu64, key, v);
  else
    jamb_bprintf(b, ",\"%s\":null", key);
}

static void jamb_report(void) {
  const jamb_opts_t *o = &g.o;
  int sio = o->sio, tut = !o->sio; /* tut: the figure exists (tutti only) */
  uint32_t P = o->participants;
  uint64_t expected = jamb_expected();
  uint64_t lost = expected > g.delivered ? expected - g.delivered : 0;
  uint64_t pairs_short = 0;
  if (g.phase == JAMB_PHASE_RUN)
    for (uint32_t i = 0; i < g.n; i++)
      for (uint32_t k = 0; k < P; k++) {
        const jamb_conn_t *snd = &g.conns[(size_t)g.conns[i].room * P + k];
        if (snd != &g.conns[i] && g.pair_count[(size_t)i * P + k] < snd->sent)
          pairs_short++;
      }
  double connect_s = g.t_connected ? (double)(g.t_connected - g.t_connect_start) / 1e9 : -1.0;
  double join_s = g.t_joined ? (double)(g.t_joined - g.t_connected) / 1e9 : -1.0;
  double send_s = g.t_last_send > g.t_first_send ? (double)(g.t_last_send - g.t_first_send) / 1e9 : 0.0;
  double send_rate = send_s > 0 ? (double)(g.sent - 1) / send_s : 0.0;
  double window_s = g.t_last_delivery > g.t_first_send
                        ? (double)(g.t_last_delivery - g.t_first_send) / 1e9
                        : 0.0;
  double dps = window_s > 0 ? (double)g.delivered / window_s : 0.0;
  uint64_t p50 = bench_hist_quantile(&g.lat, 0.50), p90 = bench_hist_quantile(&g.lat, 0.90),
           p99 = bench_hist_quantile(&g.lat, 0.99);
  uint64_t a50 = bench_hist_quantile(&g.ack_lat, 0.50), a99 = bench_hist_quantile(&g.ack_lat, 0.99);
  long tck = sysconf(_SC_CLK_TCK);
  double cpu_s = g.cpu_start >= 0 && g.cpu_end >= 0 && tck > 0
                     ? (double)(g.cpu_end - g.cpu_start) / (double)tck
                     : -1.0;
  double sched_s =
      g.sched_start >= 0 && g.sched_end >= 0 ? (double)(g.sched_end - g.sched_start) / 1e9 : -1.0;
  double cpu_best = sched_s >= 0 ? sched_s : cpu_s;
  double cpu_us = cpu_best >= 0 && g.delivered > 0 ? cpu_best * 1e6 / (double)g.delivered : -1.0;
  double cpu_us_ev = cpu_best >= 0 && g.sent > 0 ? cpu_best * 1e6 / (double)g.sent : -1.0;
  uint64_t notices_expected = (uint64_t)o->rooms * P * (P - 1) / 2;
  uint64_t seq_errors = g.seq_disorder + g.seq_conflict + g.seq_range + g.seq_gaps;
  const char *conns = sio ? "Socket.IO connections" : "WebSockets";

  printf("jambench  %s:%u %s  %s  R=%" PRIu32 " rooms x P=%" PRIu32 " participants = %" PRIu32
         " WebSockets  E=%g events/s each for D=%g s  payload %" PRIu32 " B\n",
         o->host, o->port, sio ? "/socket.io/ (Engine.IO 4 over WebSocket)" : "/ws",
         sio ? "proto socketio" : "proto tutti", o->rooms, P, g.n, o->rate, o->duration_s,
         o->payload);
  if (connect_s >= 0)
    printf("  connect            %" PRIu32 " %s welcomed in %.3f s\n", g.welcomed, conns,
           connect_s);
  else
    printf("  connect            %" PRIu32 " of %" PRIu32 " welcomed, %" PRIu32 " failed\n",
           g.welcomed, g.n, g.connect_failed);
  if (sio) {
    if (join_s >= 0)
      printf("  rooms              %" PRIu32 " named jam-0..jam-%" PRIu32 " (no create step), %" PRIu32
             " participants joined in %.3f s\n",
             o->rooms, o->rooms - 1, g.joined, join_s);
    else if (g.phase >= JAMB_PHASE_JOIN)
      printf("  rooms              %" PRIu32 " of %" PRIu32 " joined, %" PRIu32 " setup errors\n",
             g.joined, g.n, g.setup_errors);
  } else if (join_s >= 0) {
    printf("  rooms              %" PRIu32 " created, %" PRIu32 " participants joined in %.3f s\n",
           g.rooms_created, g.joined, join_s);
  } else if (g.phase >= JAMB_PHASE_JOIN) {
    printf("  rooms              %" PRIu32 " of %" PRIu32 " created, %" PRIu32 " of %" PRIu32
           " joined, %" PRIu32 " setup errors\n",
           g.rooms_created, o->rooms, g.joined, g.n, g.setup_errors);
  }
  if (sio)
    printf("  events             %" PRIu64 " of %" PRIu64 " sent in %.3f s (%.0f/s), no acks in this"
           " protocol, %" PRIu64 " connect_error%s\n",
           g.sent, g.total, send_s, send_rate, g.errors,
           g.send_skipped ? " (some skipped: connection closed)" : "");
  else
    printf("  events             %" PRIu64 " of %" PRIu64 " sent in %.3f s (%.0f/s), %" PRIu64
           " acked (ack ms p50 %.3f p99 %.3f), %" PRIu64 " refused by error%s\n",
           g.sent, g.total, send_s, send_rate, g.acked_n, bench_ms(a50), bench_ms(a99), g.errors,
           g.send_skipped ? " (some skipped: connection closed)" : "");
  printf("  deliveries         %" PRIu64 " / %" PRIu64 " expected (%.2f %%; each event to the P-1=%" PRIu32
         " others)\n",
         g.delivered, expected, expected ? 100.0 * (double)g.delivered / (double)expected : 0.0,
         P - 1);
  printf("  deliveries/s       %.0f (first send to last delivery: %.3f s)\n", dps, window_s);
  printf("  relay latency ms   p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  (%" PRIu64 " samples)\n",
         bench_ms(p50), bench_ms(p90), bench_ms(p99), bench_ms(g.lat.max), g.lat.n);
  printf("  lost               %" PRIu64 " (%" PRIu64 " sender->receiver pairs short)\n", lost,
         pairs_short);
  printf("  duplicates         %" PRIu64 "\n", g.dups);
  printf("  out of order       %" PRIu64 "\n", g.ooo);
  printf("  own echo           %" PRIu64 " (must be 0)\n", g.own_echo);
  if (sio) {
    printf("  wrong room         %" PRIu64 " (by the payload's sender: a relay names no room)"
           "   foreign payloads %" PRIu64 "\n",
           g.wrong_room, g.foreign);
    printf("  not in protocol    sender_id, seq, acks, join/leave notices, error codes\n");
    printf("  errors             %" PRIu64 " connect_error during the run, %" PRIu32 " in setup\n",
           g.errors, g.setup_errors);
    printf("  closed early       %" PRIu32 "  (close frames %" PRIu64 ", WebSocket pings answered %" PRIu64
           ", Engine.IO pings answered %" PRIu64 ", other messages %" PRIu64 ")\n",
           g.closed_early, g.closes, g.pings, g.sio_pings, g.other_msgs);
  } else {
    printf("  wrong room/sender  %" PRIu64 " / %" PRIu64 "   foreign payloads %" PRIu64 "\n",
           g.wrong_room, g.sender_mismatch, g.foreign);
    printf("  seq errors         %" PRIu64 " (not increasing %" PRIu64 ", one seq for two events %" PRIu64
           ", out of range %" PRIu64 ", never seen %" PRIu64 ")\n",
           seq_errors, g.seq_disorder, g.seq_conflict, g.seq_range, g.seq_gaps);
    printf("  acks               %" PRIu64 " duplicate, %" PRIu64 " naming no event of ours\n",
           g.ack_dups, g.ack_bad);
    printf("  errors             %" PRIu64 " during the run (%" PRIu64 " RATE_LIMITED), %" PRIu32
           " in setup\n",
           g.errors, g.rate_limited, g.setup_errors);
    printf("  notices            %" PRIu64 " session:user-joined (%" PRIu64
           " expected), %" PRIu64 " session:user-left\n",
           g.join_notices, notices_expected, g.leave_notices);
    printf("  closed early       %" PRIu32 "  (close frames %" PRIu64 ", pings answered %" PRIu64
           ", other messages %" PRIu64 ")\n",
           g.closed_early, g.closes, g.pings, g.other_msgs);
  }
  if (o->server_pid) {
    printf("  server RSS         %.1f MiB before connect, %.1f MiB joined, %.1f MiB at end\n",
           g.rss_before / 1024.0, g.rss_joined / 1024.0, g.rss_end / 1024.0);
    printf("  server CPU         %.4f s from first send to stop (stat utime+stime %.2f s), "
           "%.3f us/delivery, %.3f us/event\n",
           cpu_best, cpu_s, cpu_us, cpu_us_ev);
  } else {
    printf("  server RSS/CPU     (no --server-pid)\n");
  }
  printf("  stopped            %s\n", g.stop_reason ? g.stop_reason : "-");
  if (g.conn_error[0])
    printf("  first connection problem: %s\n", g.conn_error);
  if (g.setup_error[0])
    printf("  first setup problem:      %s\n", g.setup_error);
  if (g.run_error[0])
    printf("  first error message:      %s\n", g.run_error);

  if (o->json) {
    bench_buf_t j = {0};
    jamb_bprintf(&j,
                 "{\"tool\":\"jambench\",\"proto\":\"%s\",\"rooms\":%" PRIu32
                 ",\"participants\":%" PRIu32 ",\"connections\":%" PRIu32
                 ",\"rate\":%g,\"duration_s\":%g,\"payload\":%" PRIu32 ",\"welcomed\":%" PRIu32
                 ",\"connect_s\":%.4f,\"joined\":%" PRIu32 ",\"join_s\":%.4f,"
                 "\"scheduled\":%" PRIu64 ",\"sent\":%" PRIu64,
                 sio ? "socketio" : "tutti", o->rooms, P, g.n, o->rate, o->duration_s, o->payload,
                 g.welcomed, connect_s, g.joined, join_s, g.total, g.sent);
    jamb_jput_u64(&j, "acked", tut, g.acked_n);
    jamb_bprintf(&j,
                 ",\"send_rate\":%.1f,\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64
                 ",\"deliveries_per_s\":%.1f,\"window_s\":%.4f,"
                 "\"latency_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"max\":%.4f},",
                 send_rate, expected, g.delivered, dps, window_s, bench_ms(p50), bench_ms(p90),
                 bench_ms(p99), bench_ms(g.lat.max));
    if (tut)
      jamb_bprintf(&j, "\"ack_latency_ms\":{\"ack_p50\":%.4f,\"ack_p99\":%.4f}", bench_ms(a50),
                   bench_ms(a99));
    else
      jamb_bprintf(&j, "\"ack_latency_ms\":{\"ack_p50\":null,\"ack_p99\":null}");
    jamb_bprintf(&j,
                 ",\"lost\":%" PRIu64 ",\"pairs_short\":%" PRIu64 ",\"duplicates\":%" PRIu64
                 ",\"out_of_order\":%" PRIu64 ",\"own_echo\":%" PRIu64 ",\"wrong_room\":%" PRIu64,
                 lost, pairs_short, g.dups, g.ooo, g.own_echo, g.wrong_room);
    jamb_jput_u64(&j, "sender_mismatch", tut, g.sender_mismatch);
    jamb_bprintf(&j, ",\"foreign\":%" PRIu64, g.foreign);
    jamb_jput_u64(&j, "seq_errors", tut, seq_errors);
    jamb_jput_u64(&j, "seq_disorder", tut, g.seq_disorder);
    jamb_jput_u64(&j, "seq_conflict", tut, g.seq_conflict);
    jamb_jput_u64(&j, "seq_range", tut, g.seq_range);
    jamb_jput_u64(&j, "seq_gaps", tut, g.seq_gaps);
    jamb_jput_u64(&j, "ack_dups", tut, g.ack_dups);
    jamb_jput_u64(&j, "ack_bad", tut, g.ack_bad);
    jamb_bprintf(&j, ",\"errors\":%" PRIu64, g.errors);
    jamb_jput_u64(&j, "rate_limited", tut, g.rate_limited);
    jamb_bprintf(&j, ",\"setup_errors\":%" PRIu32, g.setup_errors);
    jamb_jput_u64(&j, "join_notices", tut, g.join_notices);
    jamb_jput_u64(&j, "join_notices_expected", tut, notices_expected);
    jamb_jput_u64(&j, "leave_notices", tut, g.leave_notices);
    jamb_bprintf(&j, ",\"closed_early\":%" PRIu32 ",\"close_frames\":%" PRIu64 ",\"pings\":%" PRIu64,
                 g.closed_early, g.closes, g.pings);
    jamb_jput_u64(&j, "engineio_pings", sio, g.sio_pings);
    if (o->server_pid)
      jamb_bprintf(&j,
                   ",\"server_pid\":%ld,\"rss_before_kib\":%ld,\"rss_joined_kib\":%ld,"
                   "\"rss_end_kib\":%ld,\"server_cpu_s\":%.4f,\"server_cpu_stat_s\":%.2f,"
                   "\"cpu_us_per_delivery\":%.4f,\"cpu_us_per_event\":%.4f",
                   o->server_pid, g.rss_before, g.rss_joined, g.rss_end, cpu_best, cpu_s, cpu_us,
                   cpu_us_ev);
    else
      jamb_bprintf(&j,
                   ",\"server_pid\":null,\"rss_before_kib\":null,\"rss_joined_kib\":null,"
                   "\"rss_end_kib\":null,\"server_cpu_s\":null,\"server_cpu_stat_s\":null,"
                   "\"cpu_us_per_delivery\":null,\"cpu_us_per_event\":null");
    jamb_bprintf(&j,
                 ",\"stop\":\"%s\",\"clean\":%s,"
                 "\"connection_problem\":\"%s\",\"setup_problem\":\"%s\",\"error_message\":\"%s\"}\n",
                 g.stop_reason ? g.stop_reason : "", jamb_clean() ? "true" : "false", g.conn_error,
                 g.setup_error, g.run_error);
    fwrite(j.p, 1, j.len, stdout);
    bench_buf_free(&j);
  }
  fflush(stdout);
}

/* ------------------------------------------------------------------------------------
 * Setup and main
 * ---------------------------------------------------------------------------------- */

/* Raises RLIMIT_NOFILE's soft limit to the hard one; dies when the sockets cannot fit. */
static void jamb_raise_nofile(void) {
  bench_raise_nofile((uint64_t)g.o.rooms * g.o.participants + 16, "");
}

static void jamb_setup(void) {
  const jamb_opts_t *o = &g.o;
  g.n = o->rooms * o->participants;
  double per = o->rate * o->duration_s + 0.5;
  if (per < 1 || per > 100000000)
    bench_die("--rate x --duration must give 1 to 1e8 events per participant");
  g.per = (uint32_t)per;
  g.total = (uint64_t)g.n * g.per;
  g.pair_words = ((size_t)g.per + 63) / 64;
  uint64_t pairs = (uint64_t)g.n * o->participants;
  uint64_t bytes = pairs * (g.pair_words * 8 + 12) + g.total * 9 +
                   (uint64_t)o->rooms * ((uint64_t)o->participants * g.per + 16) * 8;
  if (bytes > JAMB_STATE_MAX)
    bench_die("R x P x P x E x D too large: %" PRIu64 " MiB of bookkeeping", bytes >> 20);
  g.msg_max = (size_t)o->payload + JAMB_MSG_SLACK;
  static const char key_hdr[] = "Sec-WebSocket-Key: ";
  int rl = snprintf(g.req, sizeof g.req,
                    "GET %s HTTP/1.1\r\nHost: %s:%u\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "%s------------------------\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    jamb_path(), o->host, o->port, key_hdr);
  if (rl < 0 || (size_t)rl >= sizeof g.req)
    bench_die("request too long");
  g.req_len = (size_t)rl;
  g.req_key_off = (size_t)(strstr(g.req, key_hdr) - g.req) + sizeof key_hdr - 1;
  /* the RFC 6455 1.3 example checks SHA-1 and base64 once */
  char acc[29];
  bench_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", acc);
  if (strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0)
    bench_die("internal: Sec-WebSocket-Accept self-check failed (%s)", acc);
  g.conns = bench_xcalloc(g.n, sizeof *g.conns);
  for (uint32_t i = 0; i < g.n; i++) {
    g.conns[i].fd = -1;
    g.conns[i].room = i / o->participants;
    g.conns[i].local = i % o->participants;
  }
  g.rooms = bench_xcalloc(o->rooms, sizeof *g.rooms);
  for (uint32_t r = 0; r < o->rooms; r++) {
    g.rooms[r].seq_cap = (uint64_t)o->participants * g.per + 16;
    g.rooms[r].seq_owner = bench_xcalloc(g.rooms[r].seq_cap, sizeof(uint64_t));
    if (o->sio) /* named, not created: the name is known from the start */
      snprintf(g.rooms[r].code, sizeof g.rooms[r].code, "jam-%" PRIu32, r);
  }
  g.pair_seen = bench_xcalloc(pairs * g.pair_words, sizeof(uint64_t));
  g.pair_count = bench_xcalloc(pairs, sizeof(uint32_t));
  g.pair_max = bench_xcalloc(pairs, sizeof(int64_t));
  for (uint64_t k = 0; k < pairs; k++)
    g.pair_max[k] = -1;
  g.sent_t = bench_xcalloc(g.total, sizeof(uint64_t));
  g.acked = bench_xcalloc(g.total, 1);
  g.ep = epoll_create1(EPOLL_CLOEXEC);
  if (g.ep < 0)
    bench_die("epoll_create1: %s", strerror(errno));
  g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (g.tfd < 0)
    bench_die("timerfd_create: %s", strerror(errno));
  jamb_ep_ctl(EPOLL_CTL_ADD, g.tfd, EPOLLIN, JAMB_TAG_TIMER, 0);
  g.rss_before = g.rss_joined = g.rss_end = -1;
  g.cpu_start = g.cpu_end = g.sched_start = g.sched_end = -1;
  /* Socket.IO parses <data> into doubles: send times counted from here stay under 2^53 */
  g.t_base = o->sio ? bench_now() : 0;
}

/* Closes every socket this process opened (the process exits right after). */
static void jamb_teardown(void) {
  for (uint32_t i = 0; i < g.n; i++)
    if (g.conns[i].fd >= 0)
      close(g.conns[i].fd);
  close(g.tfd);
  close(g.ep);
}

/* The server's figures at the end. */
static void jamb_server_end(void) {
  if (!g.o.server_pid)
    return;
  g.cpu_end = bench_proc_cpu_ticks(g.o.server_pid);
  g.sched_end = bench_proc_cpu_ns(g.o.server_pid);
  g.rss_end = bench_proc_rss_kib(g.o.server_pid);
}

int main(int argc, char **argv) {
  jamb_opts_parse(argc, argv, &g.o);
  signal(SIGPIPE, SIG_IGN);
  bench_rand_seed();
  jamb_raise_nofile();
  jamb_setup();
  static char buf[JAMB_READ_CHUNK];

  if (g.o.server_pid) {
    if (bench_proc_rss_kib(g.o.server_pid) < 0)
      bench_die("cannot read /proc/%ld/status", g.o.server_pid);
    g.rss_before = bench_proc_rss_kib(g.o.server_pid);
  }
  g.t_connect_start = bench_now();
  if (jamb_connect_all(buf) != 0) {
    g.stop_reason = "connect phase failed";
    fprintf(stderr,
            "jambench: only %" PRIu32 " of %" PRIu32 " WebSockets welcomed (limit %.1f s, %" PRIu32
            " failed)%s%s\n",
            g.welcomed, g.n, g.o.timeout_s, g.connect_failed, g.conn_error[0] ? "; first problem: " : "",
            g.conn_error);
    jamb_report();
    jamb_teardown();
    return 2;
  }
  g.t_connected = bench_now();
  if (jamb_join_all(buf) != 0) {
    g.stop_reason = "join phase failed";
    fprintf(stderr,
            "jambench: %" PRIu32 " of %" PRIu32 " rooms created, %" PRIu32 " of %" PRIu32
            " participants joined (limit %.1f s)%s%s%s%s\n",
            g.rooms_created, g.o.rooms, g.joined, g.n, g.o.timeout_s,
            g.setup_error[0] ? "; first problem: " : "", g.setup_error,
            g.conn_error[0] ? "; connection problem: " : "", g.conn_error);
    jamb_report();
    jamb_teardown();
    return 2;
  }
  g.t_joined = bench_now();
  if (g.o.server_pid) {
    g.rss_joined = bench_proc_rss_kib(g.o.server_pid);
    g.cpu_start = bench_proc_cpu_ticks(g.o.server_pid);
    g.sched_start = bench_proc_cpu_ns(g.o.server_pid);
  }
  jamb_run(buf);
  g.t_end = bench_now();
  jamb_server_end();
  jamb_count_gaps();
  jamb_report();
  jamb_teardown();
  return jamb_clean() ? 0 : 1;
}
