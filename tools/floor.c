/*
 * floor: the least CPU a server on this machine can spend to deliver one message to one
 * loopback subscriber, the reference the fan-out benchmarks divide each server's CPU
 * time per delivery by.
 *
 * What it measures. One process, libc only (plus the helpers of benchlib.c), bounded in
 * time, loopback only. It
 *   1. opens N TCP connection pairs on loopback: a listening socket on 127.0.0.1 (an
 *      ephemeral port), N non-blocking client sockets connecting to it (with --src-addrs
 *      K bound to 127.0.0.2 .. 127.0.0.(K+1) in turn, with IP_BIND_ADDRESS_NO_PORT), and
 *      the N accepted server-side sockets (TCP_NODELAY, as servers set it);
 *   2. prebuilds one byte stream of M WebSocket text frames (unmasked server frames, FIN
 *      set, the 2- or 4-byte header then a payload of exactly B bytes:
 *      {"seq":N,"t":T,"p":"pp.."} with T the build time in CLOCK_MONOTONIC ns, padded to
 *      B), so the bytes on the wire are those a server sends for a small JSON message;
 *   3. writes that stream to every server-side socket from the main thread:
 *        single     one write() per message per socket (the naive fan-out: M x N writes);
 *        coalesced  C consecutive messages per write() per socket (what a server that
 *                   batches per loop turn does: ceil(M / C) x N writes);
 *        paced      (with --rate R) one write() per message per socket, message m's
 *                   writes starting m / R s after the first: between messages the
 *                   readers sleep, so every write also wakes one, as when a server
 *                   fans out a low publish rate (the latency workload's pattern);
 *      in one run (single, coalesced, paced), after an untimed warm-up pass;
 *   4. drains the client sockets on a second thread (epoll, read() into a scratch buffer,
 *      counting bytes per socket), so the kernel buffers never fill, and checks that
 *      every client received exactly the stream's bytes.
 *
 * The figure is the main thread's CPU time (CLOCK_THREAD_CPUTIME_ID, the clock behind
 * /proc/PID/task/TID/schedstat that ssebench and jambench read a server's CPU from)
 * around the send loops only, divided by the deliveries N x M. The draining reads run
 * on the other thread and are not in it; the process CPU (both threads) per delivery is
 * printed beside it for reference. A socket that would block (none, normally) is caught
 * up on its next write and, at the end, through an EPOLLOUT wait, all inside the timed
 * part.
 *
 * Why it is a floor: no parsing, no framing or copying in user space per subscriber, no
 * queueing, no allocation, no timers, no locks: one prebuilt buffer written to N
 * sockets, one system call per write, with the kernel's copy into each socket the only
 * per-subscriber work. A server that sends with one system call per socket and write
 * does at least this much kernel work per delivery (and more in user space), so its CPU
 * per delivery divided by this one is its overhead factor; single and coalesced give
 * the floor for a server that writes each message as it comes and for one that batches
 * C messages per subscriber and loop turn, paced the floor at a low rate (back to back,
 * the readers are mostly awake and fewer writes pay for a wake-up: on this VM the paced
 * floor is ~1.5x the single one). (Submitting many sockets' writes in one call,
 * as io_uring can, or coalescing more than C messages, can go below it.)
 *
 * Loopback caveat: on loopback TCP the sender's write() also runs the receiver's kernel
 * work: the transmit path hands the segment to the loopback device, and the NET_RX
 * softirq that runs TCP receive, queues the data and wakes the reader runs in the
 * sender's context when the write re-enables bottom halves; ACK processing lands on
 * whichever side runs the softirq. So the floor is well above what a send to a real
 * NIC costs. Every server the benchmarks measure pays the same on the same loopback
 * (against ssebench / jambench as readers), so the ratio is fair. Two ways softirq work
 * escapes the figure, alike for this tool and for a server's schedstat figures: when
 * the kernel defers it to ksoftirqd (under heavy load, mostly pinned runs with many
 * subscribers; the CPU of the ksoftirqd threads during each pass is reported beside),
 * and on a kernel built with CONFIG_IRQ_TIME_ACCOUNTING, which accounts softirq time
 * apart from the task it interrupted.
 *
 * Pinned (taskset -c 0) the writer, the reader and all softirq work share one CPU: no
 * cross-CPU wakeups or cache-line transfers, so the figure is usually lower. Use
 * the same placement as the benchmark whose table shows the ratio.
 *
 * Output: a table on stdout and, with --json, one JSON line:
 *   {"tool":"floor","n":..,"messages":..,"payload":..,"frame":..,
 *    "single":{"cpu_ns_per_delivery":..,"send_cpu_ns":..,"wall_s":..,...},
 *    "coalesced":{"coalesce":8,"cpu_ns_per_delivery":..,...},
 *    "paced":{"rate":R,"cpu_ns_per_delivery":..,...}}
 * (a mode not run is absent; each also has send_wall_s, process_cpu_ns_per_delivery,
 * process_cpu_ns, deliveries, writes, stalls, ksoftirqd_ns). wall_s runs from the first
 * write to the last byte read.
 *
 * Exit status: 0 when every pass delivered every byte; 1 when a pass failed (a socket
 * error, a closed connection, bytes missing at --timeout); 2 on a usage or setup error.
 *
 * Build: cc -O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -pthread -o floor floor.c benchlib.c
 * (CMake builds it without -pthread: glibc 2.34+ has the pthread functions in libc.)
 */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "benchlib.h"

const char bench_prog[] = "floor"; /* named by bench_die */

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ------------------------------------------------------------------------------------
 * Limits and constants
 * ---------------------------------------------------------------------------------- */

#define FLOOR_MAX_SUBS 100000          /* --subscribers upper bound (fds allowing) */
#define FLOOR_MAX_SRC 254              /* 127.0.0.2 .. 127.0.0.255 */
#define FLOOR_MAX_PAYLOAD 65535        /* 16-bit WebSocket length at most */
#define FLOOR_STREAM_MAX (256u << 20)  /* bytes of prebuilt frames allowed */
#define FLOOR_CONNECT_BATCH 256        /* connects started before accepting them */
#define FLOOR_READ_CHUNK (64 * 1024)   /* bytes per read() on the draining thread */
#define FLOOR_MAX_EVENTS 1024          /* epoll_wait batch */
#define FLOOR_DRAIN_TICK_MS 100        /* longest epoll sleep of the draining thread */
#define FLOOR_SETTLE_NS (100 * 1000000ull) /* pause before each pass (delayed ACKs) */

/* ------------------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------------------- */

typedef struct floor_opts_s {
  uint32_t subs;      /* N */
  uint32_t messages;  /* M */
  uint32_t payload;   /* B: payload bytes per frame */
  uint32_t coalesce;  /* C */
  uint32_t src_addrs; /* K (0: no binding, source 127.0.0.1) */
  uint32_t warmup;    /* messages of the untimed warm-up pass */
  int single;         /* run the single pass */
  int coalesced;      /* run the coalesced pass */
  double rate;        /* > 0: also run the paced pass at this many messages/s */
  uint32_t paced;     /* messages of the paced pass */
  double timeout_s;   /* bounds the setup and each pass */
  int json;
  int writer_cpu;     /* -1: not pinned */
  int reader_cpu;
} floor_opts_t;

static void floor_usage(FILE *f) {
  fputs("usage: floor [options]\n"
        "  --subscribers N     loopback TCP connection pairs (1000)\n"
        "  --messages M        messages written to every subscriber per pass (200)\n"
        "  --payload B         payload bytes per WebSocket text frame (60)\n"
        "  --coalesce C        messages per write() in the coalesced pass (8)\n"
        "  --mode MODE         single, coalesced or both (both: single first)\n"
        "  --rate R            also run a paced pass: one write per message per socket, a\n"
        "                      message every 1/R s (a low-rate server's pattern) (off)\n"
        "  --paced-messages P  messages of the paced pass (20)\n"
        "  --src-addrs K       bind the clients to 127.0.0.2 .. 127.0.0.(K+1) in turn\n"
        "                      (0: no binding, source 127.0.0.1) (0)\n"
        "  --warmup W          messages of the untimed warm-up pass, one write each (10)\n"
        "  --timeout S         bounds the setup and each pass, in seconds (60)\n"
        "  --cpus W,R          pin the writing thread to CPU W and the reading one to CPU R\n"
        "                      (as a server and its load generator are pinned)\n"
        "  --json              also print one JSON line with the results\n",
        f);
}

static void floor_opts_parse(int argc, char **argv, floor_opts_t *o) {
  static const struct option longopts[] = {
      {"subscribers", required_argument, NULL, 'n'},
      {"messages", required_argument, NULL, 'm'},
      {"payload", required_argument, NULL, 'b'},
      {"coalesce", required_argument, NULL, 'c'},
      {"mode", required_argument, NULL, 'M'},
      {"rate", required_argument, NULL, 'r'},
      {"paced-messages", required_argument, NULL, 'P'},
      {"src-addrs", required_argument, NULL, 'k'},
      {"warmup", required_argument, NULL, 'w'},
      {"timeout", required_argument, NULL, 't'},
      {"json", no_argument, NULL, 'j'},
      {"cpus", required_argument, NULL, 'C'},
      {"help", no_argument, NULL, 'H'},
      {NULL, 0, NULL, 0},
  };
  *o = (floor_opts_t){
      .subs = 1000,
      .messages = 200,
      .payload = 60,
      .coalesce = 8,
      .warmup = 10,
      .single = 1,
      .coalesced = 1,
      .paced = 20,
      .timeout_s = 60,
      .writer_cpu = -1,
      .reader_cpu = -1,
  };
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case 'n':
        o->subs = (uint32_t)bench_parse_num("--subscribers", optarg, 1, FLOOR_MAX_SUBS);
        break;
      case 'm': o->messages = (uint32_t)bench_parse_num("--messages", optarg, 1, 1000000); break;
      case 'b':
        o->payload = (uint32_t)bench_parse_num("--payload", optarg, 1, FLOOR_MAX_PAYLOAD);
        break;
      case 'c': o->coalesce = (uint32_t)bench_parse_num("--coalesce", optarg, 1, 1000000); break;
      case 'M':
        if (strcmp(optarg, "single") == 0)
          o->single = 1, o->coalesced = 0;
        else if (strcmp(optarg, "coalesced") == 0)
          o->single = 0, o->coalesced = 1;
        else if (strcmp(optarg, "both") == 0)
          o->single = 1, o->coalesced = 1;
        else
          bench_die("--mode: '%s' is not single, coalesced or both", optarg);
        break;
      case 'r': o->rate = bench_parse_num("--rate", optarg, 0.01, 100000); break;
      case 'P': o->paced = (uint32_t)bench_parse_num("--paced-messages", optarg, 1, 1000000); break;
      case 'k':
        o->src_addrs = (uint32_t)bench_parse_num("--src-addrs", optarg, 0, FLOOR_MAX_SRC);
        break;
      case 'w': o->warmup = (uint32_t)bench_parse_num("--warmup", optarg, 0, 1000000); break;
      case 't': o->timeout_s = bench_parse_num("--timeout", optarg, 0.1, 3600); break;
      case 'j': o->json = 1; break;
      case 'C':
        if (sscanf(optarg, "%d,%d", &o->writer_cpu, &o->reader_cpu) != 2 || o->writer_cpu < 0 ||
            o->reader_cpu < 0 || o->writer_cpu >= CPU_SETSIZE || o->reader_cpu >= CPU_SETSIZE)
          bench_die("--cpus must be W,R (two CPU numbers)");
        break;
      case 'H': floor_usage(stdout); exit(0);
      default: floor_usage(stderr); exit(2);
    }
  }
  if (optind < argc)
    bench_die("unexpected argument '%s' (see --help)", argv[optind]);
  if (o->coalesced && o->coalesce > o->messages)
    bench_die("--coalesce %" PRIu32 " is over --messages %" PRIu32, o->coalesce, o->messages);
  if (o->rate > 0 && o->paced / o->rate > o->timeout_s)
    bench_die("the paced pass (%" PRIu32 " messages at %g/s) takes longer than --timeout %g s",
              o->paced, o->rate, o->timeout_s);
  if (o->rate > 0 && o->paced > o->messages)
    o->messages = o->paced; /* the stream must hold the paced pass's frames */
  if (o->warmup > o->messages)
    o->warmup = o->messages; /* the warm-up writes the stream's first W frames */
}

/* ------------------------------------------------------------------------------------
 * State
 * ---------------------------------------------------------------------------------- */

/* Figures of one pass. */
typedef struct floor_res_s {
  int ran;
  uint32_t per_write;    /* messages per write (1 or C) */
  double rate;           /* paced pass: messages/s (0: back to back) */
  uint64_t writes;       /* write() calls that wrote something */
  uint64_t stalls;       /* writes that would block or were short (0 normally) */
  uint64_t deliveries;   /* N x messages */
  uint64_t send_cpu_ns;  /* main thread, send loops only */
  uint64_t proc_cpu_ns;  /* both threads, first write to last byte read */
  uint64_t send_wall_ns; /* first write to last write */
  uint64_t wall_ns;      /* first write to last byte read */
  int64_t ksoftirqd_ns;  /* CPU of the ksoftirqd threads meanwhile (-1: unreadable) */
} floor_res_t;

static struct {
  floor_opts_t o;
  int lfd;    /* listening socket */
  int *cfd;   /* client sockets (read by the draining thread) */
  int *sfd;   /* accepted server-side sockets (written by the main thread) */
  char *stream;      /* M frames back to back */
  size_t frame_len;  /* every frame has the same size */
  uint64_t *sent;    /* per server-side socket: bytes of the current pass written */
  uint8_t *out_reg;  /* per server-side socket: registered in out_ep for EPOLLOUT */
  int out_ep;        /* EPOLLOUT waits of lagging server-side sockets */
  uint64_t per_client; /* bytes every client should have read so far (all passes) */
  long ksoftirqd[1024]; /* PIDs of the ksoftirqd/N threads */
  uint32_t n_ksoftirqd;
  char fail[160];      /* first failure of the main thread */

  /* shared with the draining thread */
  int in_ep;  /* the client sockets, EPOLLIN */
  int evfd;   /* the draining thread signals "target reached" or a failure */
  pthread_t drain;
  _Atomic uint64_t received; /* bytes read, all clients, all passes */
  _Atomic uint64_t target;   /* received value that completes the current pass */
  _Atomic int stop;
  _Atomic int drain_failed;
  char drain_fail[160];      /* set before drain_failed */
  uint64_t *got;             /* per client: bytes read (draining thread) */
} g;

static uint64_t floor_clock(clockid_t id) {
  struct timespec ts;
  if (clock_gettime(id, &ts) != 0)
    bench_die("clock_gettime: %s", strerror(errno));
  return (uint64_t)ts.tv_sec * BENCH_NS + (uint64_t)ts.tv_nsec;
}

/* Milliseconds left until deadline (ns), at least 0, at most INT32_MAX. */
static int floor_left_ms(uint64_t deadline) {
  uint64_t now = bench_now();
  if (now >= deadline)
    return 0;
  uint64_t ms = (deadline - now + 999999) / 1000000;
  return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

static void floor_sleep_ns(uint64_t ns) {
  struct timespec ts = {.tv_sec = (time_t)(ns / BENCH_NS), .tv_nsec = (long)(ns % BENCH_NS)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ------------------------------------------------------------------------------------
 * The frames
 * ---------------------------------------------------------------------------------- */

/* Writes the frame of message seq (payload exactly B bytes) at dst; returns its size,
 * or 0 when {"seq":N,"t":T} alone does not fit in B bytes. */
static size_t floor_frame(char *dst, uint32_t seq, uint64_t t, uint32_t b) {
  size_t hl = 0;
  dst[hl++] = (char)0x81; /* FIN, text */
  if (b < 126) {
    dst[hl++] = (char)b;
  } else {
    dst[hl++] = 126;
    dst[hl++] = (char)(b >> 8);
    dst[hl++] = (char)(b & 0xff);
  }
  char head[64];
  int base = snprintf(head, sizeof head, "{\"seq\":%" PRIu32 ",\"t\":%" PRIu64, seq, t);
  if (base < 0 || (size_t)base + 1 > b)
    return 0;
  char *p = dst + hl;
  memcpy(p, head, (size_t)base);
  size_t at = (size_t)base, pad = b - (size_t)base - 1; /* room left before the '}' */
  if (pad >= 7) {                                     /* ,"p":"..." */
    memcpy(p + at, ",\"p\":\"", 6);
    at += 6;
    memset(p + at, 'p', pad - 7);
    at += pad - 7;
    p[at++] = '"';
  } else { /* too short for a field: JSON whitespace */
    memset(p + at, ' ', pad);
    at += pad;
  }
  p[at++] = '}';
  return hl + at;
}

static void floor_build_stream(void) {
  const floor_opts_t *o = &g.o;
  size_t hl = o->payload < 126 ? 2 : 4;
  g.frame_len = hl + o->payload;
  if ((uint64_t)g.frame_len * o->messages > FLOOR_STREAM_MAX)
    bench_die("--messages x frame size is over %u MiB", FLOOR_STREAM_MAX >> 20);
  g.stream = bench_xcalloc(o->messages, g.frame_len);
  for (uint32_t m = 0; m < o->messages; m++) {
    size_t len = floor_frame(g.stream + (size_t)m * g.frame_len, m, bench_now(), o->payload);
    if (len != g.frame_len)
      bench_die("--payload %" PRIu32 " is too small for {\"seq\":N,\"t\":T} (message %" PRIu32
                ")",
                o->payload, m);
  }
}

/* ------------------------------------------------------------------------------------
 * Setup: N loopback connection pairs
 * ---------------------------------------------------------------------------------- */

static uint32_t floor_port_range(void) {
  unsigned lo = 32768, hi = 60999; /* the kernel's default */
  FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  if (f) {
    unsigned a, b;
    if (fscanf(f, "%u %u", &a, &b) == 2 && b >= a)
      lo = a, hi = b;
    fclose(f);
  }
  return hi - lo + 1;
}

static void floor_listen(struct sockaddr_in *addr) {
  g.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (g.lfd < 0)
    bench_die("socket: %s", strerror(errno));
  *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof *addr;
  if (bind(g.lfd, (struct sockaddr *)addr, sizeof *addr) != 0 || listen(g.lfd, 4096) != 0 ||
      getsockname(g.lfd, (struct sockaddr *)addr, &alen) != 0)
    bench_die("listen on 127.0.0.1: %s", strerror(errno));
}

static void floor_connect_one(uint32_t i, const struct sockaddr_in *dst) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0)
    bench_die("socket: %s (client %" PRIu32 ")", strerror(errno), i);
  if (g.o.src_addrs > 0) {
    /* NO_PORT defers the port choice to connect(), so the bind does not reserve a port
     * for every possible destination. */
    int one = 1;
    uint32_t k = 2 + i % g.o.src_addrs;
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000000u + k)};
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0)
      bench_die("bind 127.0.0.%" PRIu32 ": %s", k, strerror(errno));
  }
  if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) != 0 && errno != EINPROGRESS)
    bench_die("connect (client %" PRIu32 "): %s", i, strerror(errno));
  g.cfd[i] = fd;
}

/* Accepts until `upto` server-side sockets are open. */
static void floor_accept_upto(uint32_t *accepted, uint32_t upto, uint64_t deadline) {
  while (*accepted < upto) {
    int fd = accept4(g.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      g.sfd[(*accepted)++] = fd;
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      bench_die("accept: %s", strerror(errno));
    struct pollfd p = {.fd = g.lfd, .events = POLLIN};
    int left = floor_left_ms(deadline);
    if (left == 0)
      bench_die("setup: %" PRIu32 " of %" PRIu32 " connections accepted in --timeout %g s",
                *accepted, g.o.subs, g.o.timeout_s);
    if (poll(&p, 1, left) < 0 && errno != EINTR)
      bench_die("poll: %s", strerror(errno));
  }
}

/* ------------------------------------------------------------------------------------
 * ksoftirqd: softirq work the kernel defers to its per-CPU threads is charged to them,
 * not to the thread whose writes raised it (nor to a measured server). Their CPU time
 * during a pass is reported so that a floor lowered by deferral shows.
 * ---------------------------------------------------------------------------------- */

static void floor_find_ksoftirqd(void) {
  DIR *d = opendir("/proc");
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && g.n_ksoftirqd < sizeof g.ksoftirqd / sizeof g.ksoftirqd[0]) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9')
      continue;
    char path[64], comm[32] = "";
    snprintf(path, sizeof path, "/proc/%.16s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    if (fgets(comm, sizeof comm, f) && strncmp(comm, "ksoftirqd/", 10) == 0)
      g.ksoftirqd[g.n_ksoftirqd++] = strtol(e->d_name, NULL, 10);
    fclose(f);
  }
  closedir(d);
}

/* Sum of the ksoftirqd threads' time on CPU in ns (schedstat), or -1. */
static int64_t floor_ksoftirqd_ns(void) {
  if (g.n_ksoftirqd == 0)
    return -1;
  int64_t sum = 0;
  for (uint32_t i = 0; i < g.n_ksoftirqd; i++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/schedstat", g.ksoftirqd[i]);
    FILE *f = fopen(path, "r");
    long long v = -1;
    if (f) {
      if (fscanf(f, "%lld", &v) != 1)
        v = -1;
      fclose(f);
    }
    if (v < 0)
      return -1;
    sum += v;
  }
  return sum;
}

static void floor_setup(void) {
  const floor_opts_t *o = &g.o;
  uint64_t deadline = bench_now() + (uint64_t)(o->timeout_s * 1e9);
  uint32_t ports = floor_port_range();
  uint32_t addrs = o->src_addrs > 0 ? o->src_addrs : 1;
  if ((uint64_t)o->subs > (uint64_t)ports * addrs)
    bench_die("%" PRIu32 " subscribers need more than %" PRIu32 " source addresses x %" PRIu32
              " ephemeral ports (raise --src-addrs)",
              o->subs, addrs, ports);
  bench_raise_nofile(2 * (uint64_t)o->subs + 16, " (use fewer --subscribers)");

  g.cfd = bench_xcalloc(o->subs, sizeof *g.cfd);
  g.sfd = bench_xcalloc(o->subs, sizeof *g.sfd);
  g.sent = bench_xcalloc(o->subs, sizeof *g.sent);
  g.out_reg = bench_xcalloc(o->subs, 1);
  g.got = bench_xcalloc(o->subs, sizeof *g.got);

  struct sockaddr_in addr;
  floor_listen(&addr);
  uint32_t accepted = 0;
  for (uint32_t i = 0; i < o->subs; i += FLOOR_CONNECT_BATCH) {
    uint32_t end = o->subs - i < FLOOR_CONNECT_BATCH ? o->subs : i + FLOOR_CONNECT_BATCH;
    for (uint32_t j = i; j < end; j++)
      floor_connect_one(j, &addr);
    floor_accept_upto(&accepted, end, deadline);
  }
  close(g.lfd);
  g.lfd = -1;

  /* Every client is established once its peer was accepted; check each. */
  g.in_ep = epoll_create1(EPOLL_CLOEXEC);
  g.out_ep = epoll_create1(EPOLL_CLOEXEC);
  g.evfd = eventfd(0, EFD_CLOEXEC);
  if (g.in_ep < 0 || g.out_ep < 0 || g.evfd < 0)
    bench_die("epoll_create1/eventfd: %s", strerror(errno));
  for (uint32_t i = 0; i < o->subs; i++) {
    struct pollfd p = {.fd = g.cfd[i], .events = POLLOUT};
    int left = floor_left_ms(deadline);
    if (poll(&p, 1, left) != 1)
      bench_die("setup: client %" PRIu32 " not connected in --timeout %g s", i, o->timeout_s);
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(g.cfd[i], SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
      bench_die("connect (client %" PRIu32 "): %s", i, strerror(err ? err : errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    if (epoll_ctl(g.in_ep, EPOLL_CTL_ADD, g.cfd[i], &ev) != 0)
      bench_die("epoll_ctl: %s", strerror(errno));
  }
}

/* ------------------------------------------------------------------------------------
 * The draining thread: reads every client socket, counts bytes, signals the main
 * thread through evfd when `received` reaches `target` (or on a failure).
 * ---------------------------------------------------------------------------------- */

static void floor_signal(void) {
  uint64_t one = 1;
  while (write(g.evfd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

/* Keeps the draining thread's first failure and wakes the main thread. */
static void floor_drain_failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void floor_drain_failed(const char *fmt, ...) {
  if (atomic_load(&g.drain_failed))
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g.drain_fail, sizeof g.drain_fail, fmt, ap);
  va_end(ap);
  atomic_store(&g.drain_failed, 1);
  floor_signal();
}

static void floor_pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  int err = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (err != 0) bench_die("cannot pin to CPU %d: %s", cpu, strerror(err));
}

static void *floor_drain(void *arg) {
  (void)arg;
  floor_pin(g.o.reader_cpu);
  char *buf = bench_xrealloc(NULL, FLOOR_READ_CHUNK);
  struct epoll_event *evs = bench_xcalloc(FLOOR_MAX_EVENTS, sizeof *evs);
  uint64_t signaled = 0;
  while (!atomic_load(&g.stop)) {
    int k = epoll_wait(g.in_ep, evs, FLOOR_MAX_EVENTS, FLOOR_DRAIN_TICK_MS);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      floor_drain_failed("epoll_wait: %s", strerror(errno));
      break;
    }
    uint64_t add = 0;
    for (int e = 0; e < k; e++) {
      uint32_t i = evs[e].data.u32;
      for (;;) {
        ssize_t r = read(g.cfd[i], buf, FLOOR_READ_CHUNK);
        if (r > 0) {
          g.got[i] += (uint64_t)r;
          add += (uint64_t)r;
          if (r < FLOOR_READ_CHUNK)
            break; /* drained: level-triggered epoll reports anything newer */
          continue;
        }
        if (r < 0 && errno == EINTR)
          continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
          break;
        epoll_ctl(g.in_ep, EPOLL_CTL_DEL, g.cfd[i], NULL);
        if (r == 0)
          floor_drain_failed("client %" PRIu32 ": connection closed by the peer", i);
        else
          floor_drain_failed("read (client %" PRIu32 "): %s", i, strerror(errno));
        break;
      }
    }
    uint64_t total = atomic_fetch_add(&g.received, add) + add;
    uint64_t target = atomic_load(&g.target);
    if (target > signaled && total >= target) {
      signaled = target;
      floor_signal();
    }
  }
  free(evs);
  free(buf);
  return NULL;
}

/* ------------------------------------------------------------------------------------
 * One pass: msgs frames to every server-side socket, per_write frames per write(),
 * back to back or paced at a rate
 * ---------------------------------------------------------------------------------- */

/* Keeps the first failure of the main thread in g.fail. */
static void floor_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void floor_fail(const char *fmt, ...) {
  if (g.fail[0] != '\0')
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g.fail, sizeof g.fail, fmt, ap);
  va_end(ap);
}

/* Brings socket i up to `end` bytes of the pass's stream with one write(); a socket that
 * would block or takes less waits for EPOLLOUT in out_ep. Returns -1 on a send error. */
static int floor_write(uint32_t i, uint64_t end, floor_res_t *r) {
  uint64_t off = g.sent[i];
  if (off >= end)
    return 0;
  ssize_t w;
  do
    w = write(g.sfd[i], g.stream + off, (size_t)(end - off));
  while (w < 0 && errno == EINTR);
  if (w > 0) {
    r->writes++;
    g.sent[i] = off + (uint64_t)w;
    if ((uint64_t)w == end - off)
      return 0;
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    floor_fail("write (subscriber %" PRIu32 "): %s", i, strerror(errno));
    return -1;
  }
  r->stalls++;
  if (!g.out_reg[i]) {
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
    if (epoll_ctl(g.out_ep, EPOLL_CTL_ADD, g.sfd[i], &ev) != 0)
      bench_die("epoll_ctl: %s", strerror(errno));
    g.out_reg[i] = 1;
  }
  return 0;
}

/* Waits for the sockets still short of `total` bytes and finishes them. */
static int floor_flush(uint64_t total, floor_res_t *r, uint64_t deadline) {
  uint32_t lagging = 0;
  for (uint32_t i = 0; i < g.o.subs; i++)
    lagging += g.sent[i] < total;
  struct epoll_event evs[FLOOR_MAX_EVENTS];
  while (lagging > 0) {
    int left = floor_left_ms(deadline);
    if (left == 0) {
      floor_fail("%" PRIu32 " subscribers still blocked at --timeout", lagging);
      return -1;
    }
    int k = epoll_wait(g.out_ep, evs, FLOOR_MAX_EVENTS, left);
    if (k < 0 && errno != EINTR)
      bench_die("epoll_wait: %s", strerror(errno));
    for (int e = 0; e < k; e++) {
      uint32_t i = evs[e].data.u32;
      int was_short = g.sent[i] < total;
      if (floor_write(i, total, r) != 0)
        return -1;
      if (g.sent[i] >= total) {
        epoll_ctl(g.out_ep, EPOLL_CTL_DEL, g.sfd[i], NULL);
        g.out_reg[i] = 0;
        lagging -= was_short;
      }
    }
  }
  return 0;
}

/* Writes msgs frames to every socket, per_write per write(); with rate > 0 the writes of
 * message m start at m / rate s after the first (sleeping meanwhile, which costs the
 * writer no CPU: the readers then sleep between messages too, and every write has to
 * wake one, as at a low publish rate). Returns 0 when every client read every byte of
 * the pass, -1 otherwise (g.fail set). */
static int floor_pass(uint32_t msgs, uint32_t per_write, double rate, floor_res_t *r) {
  const uint32_t n = g.o.subs;
  const uint64_t total = (uint64_t)msgs * g.frame_len; /* bytes per subscriber */
  *r = (floor_res_t){
      .ran = 1, .per_write = per_write, .rate = rate, .deliveries = (uint64_t)n * msgs};
  memset(g.sent, 0, n * sizeof *g.sent);
  g.per_client += total;
  atomic_store(&g.target, atomic_load(&g.target) + total * n);
  floor_sleep_ns(FLOOR_SETTLE_NS);
  uint64_t deadline = bench_now() + (uint64_t)(g.o.timeout_s * 1e9);

  int64_t k0 = floor_ksoftirqd_ns();
  uint64_t p0 = floor_clock(CLOCK_PROCESS_CPUTIME_ID);
  uint64_t w0 = bench_now();
  uint64_t c0 = floor_clock(CLOCK_THREAD_CPUTIME_ID);
  int rc = 0;
  for (uint32_t m = 0; m < msgs && rc == 0; m += per_write) {
    uint64_t end = (uint64_t)(msgs - m < per_write ? msgs : m + per_write) * g.frame_len;
    if (rate > 0) {
      uint64_t due = w0 + (uint64_t)((double)m * 1e9 / rate), now = bench_now();
      if (due > now)
        floor_sleep_ns(due - now);
    }
    for (uint32_t i = 0; i < n; i++)
      if (floor_write(i, end, r) != 0) {
        rc = -1;
        break;
      }
    if (bench_now() > deadline) { /* bounded even when the writes are slow */
      floor_fail("sending took longer than --timeout (%" PRIu32 " messages in)", m);
      rc = -1;
    }
  }
  if (rc == 0)
    rc = floor_flush(total, r, deadline);
  uint64_t c1 = floor_clock(CLOCK_THREAD_CPUTIME_ID);
  uint64_t w1 = bench_now();
  r->send_cpu_ns = c1 - c0;
  r->send_wall_ns = w1 - w0;

  /* Wait for the draining thread to read everything. */
  while (rc == 0 && atomic_load(&g.received) < atomic_load(&g.target) &&
         !atomic_load(&g.drain_failed)) {
    struct pollfd p = {.fd = g.evfd, .events = POLLIN};
    int left = floor_left_ms(deadline);
    if (left == 0) {
      floor_fail("%" PRIu64 " bytes missing at --timeout",
                 atomic_load(&g.target) - atomic_load(&g.received));
      rc = -1;
      break;
    }
    if (poll(&p, 1, left) == 1) {
      uint64_t v;
      if (read(g.evfd, &v, sizeof v) < 0 && errno != EAGAIN && errno != EINTR)
        bench_die("read eventfd: %s", strerror(errno));
    }
  }
  uint64_t w2 = bench_now();
  uint64_t p2 = floor_clock(CLOCK_PROCESS_CPUTIME_ID);
  r->wall_ns = w2 - w0;
  r->proc_cpu_ns = p2 - p0;
  int64_t k2 = floor_ksoftirqd_ns();
  r->ksoftirqd_ns = k0 >= 0 && k2 >= k0 ? k2 - k0 : -1;
  if (atomic_load(&g.drain_failed)) {
    floor_fail("%s", g.drain_fail);
    return -1;
  }
  if (rc != 0)
    return -1;
  for (uint32_t i = 0; i < n; i++)
    if (g.got[i] != g.per_client) {
      floor_fail("client %" PRIu32 " read %" PRIu64 " bytes, %" PRIu64 " expected", i, g.got[i],
                 g.per_client);
      return -1;
    }
  return 0;
}

/* ------------------------------------------------------------------------------------
 * Report
 * ---------------------------------------------------------------------------------- */

static double floor_per(uint64_t ns, uint64_t deliveries) {
  return deliveries ? (double)ns / (double)deliveries : 0.0;
}

static void floor_row(const char *name, const floor_res_t *r) {
  if (!r->ran)
    return;
  printf("  %-10s %5" PRIu32 " %10" PRIu64 " %11" PRIu64 " %12.1f %9.1f %10.1f %9.3f %8.3f %7" PRIu64
         " %9.1f\n",
         name, r->per_write, r->writes, r->deliveries, (double)r->send_cpu_ns / 1e6,
         floor_per(r->send_cpu_ns, r->deliveries), floor_per(r->proc_cpu_ns, r->deliveries),
         (double)r->send_wall_ns / 1e9, (double)r->wall_ns / 1e9, r->stalls,
         r->ksoftirqd_ns >= 0 ? (double)r->ksoftirqd_ns / 1e6 : -1.0);
}

static void floor_json_mode(const char *name, const floor_res_t *r) {
  if (!r->ran)
    return;
  printf(",\"%s\":{", name);
  if (strcmp(name, "coalesced") == 0)
    printf("\"coalesce\":%" PRIu32 ",", r->per_write);
  if (r->rate > 0)
    printf("\"rate\":%g,", r->rate);
  printf("\"cpu_ns_per_delivery\":%.2f,\"send_cpu_ns\":%" PRIu64 ",\"wall_s\":%.6f,"
         "\"send_wall_s\":%.6f,\"process_cpu_ns_per_delivery\":%.2f,\"process_cpu_ns\":%" PRIu64
         ",\"deliveries\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"stalls\":%" PRIu64
         ",\"ksoftirqd_ns\":%" PRId64 "}",
         floor_per(r->send_cpu_ns, r->deliveries), r->send_cpu_ns, (double)r->wall_ns / 1e9,
         (double)r->send_wall_ns / 1e9, floor_per(r->proc_cpu_ns, r->deliveries), r->proc_cpu_ns,
         r->deliveries, r->writes, r->stalls, r->ksoftirqd_ns);
}

static void floor_report(const floor_res_t *single, const floor_res_t *coal,
                         const floor_res_t *paced, int ok) {
  const floor_opts_t *o = &g.o;
  cpu_set_t set;
  int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : -1;
  printf("floor: %" PRIu32 " loopback subscribers, %" PRIu32 " messages of %" PRIu32
         " B payload (%zu B WebSocket frames) each, source addresses %" PRIu32
         ", %d CPU(s) allowed\n",
         o->subs, o->messages, o->payload, g.frame_len, o->src_addrs ? o->src_addrs : 1, cpus);
  printf("  %-10s %5s %10s %11s %12s %9s %10s %9s %8s %7s %9s\n", "mode", "msg/w", "writes",
         "deliveries", "send_cpu_ms", "ns/deliv", "proc_ns/d", "send_wall", "wall_s", "stalls",
         "ksirqd_ms");
  floor_row("single", single);
  floor_row("coalesced", coal);
  floor_row("paced", paced);
  if (single->ran && coal->ran && coal->send_cpu_ns > 0)
    printf("  single / coalesced send CPU per delivery: %.2f\n",
           (double)single->send_cpu_ns / (double)coal->send_cpu_ns);
  printf("  ns/deliv: the writing thread's CPU only; proc_ns/d: both threads (writer and\n"
         "  reader). On loopback TCP the writer's CPU includes most of the receiver's kernel\n"
         "  work (softirq run on send), as it does for every server measured on loopback.\n"
         "  ksirqd_ms: CPU of the ksoftirqd threads during the pass (system-wide): softirq\n"
         "  work deferred there is charged to no one measured here (-1: unreadable).\n");
  if (!ok)
    printf("  FAILED: %s\n", g.fail);
  if (o->json) {
    printf("{\"tool\":\"floor\",\"n\":%" PRIu32 ",\"messages\":%" PRIu32 ",\"payload\":%" PRIu32
           ",\"frame\":%zu,\"src_addrs\":%" PRIu32 ",\"cpus\":%d,\"ok\":%s",
           o->subs, o->messages, o->payload, g.frame_len, o->src_addrs, cpus,
           ok ? "true" : "false");
    floor_json_mode("single", single);
    floor_json_mode("coalesced", coal);
    floor_json_mode("paced", paced);
    printf("}\n");
  }
}

/* ------------------------------------------------------------------------------------
 * main
 * ---------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  floor_opts_parse(argc, argv, &g.o);
  floor_pin(g.o.writer_cpu);
  signal(SIGPIPE, SIG_IGN);
  floor_build_stream();
  floor_setup();
  floor_find_ksoftirqd();
  int err = pthread_create(&g.drain, NULL, floor_drain, NULL);
  if (err != 0)
    bench_die("pthread_create: %s", strerror(err));

  floor_res_t warm = {0}, single = {0}, coal = {0}, paced = {0};
  int ok = 1;
  if (g.o.warmup > 0 && floor_pass(g.o.warmup, 1, 0, &warm) != 0)
    ok = 0;
  if (ok && g.o.single && floor_pass(g.o.messages, 1, 0, &single) != 0)
    ok = 0;
  if (ok && g.o.coalesced && floor_pass(g.o.messages, g.o.coalesce, 0, &coal) != 0)
    ok = 0;
  if (ok && g.o.rate > 0 && floor_pass(g.o.paced, 1, g.o.rate, &paced) != 0)
    ok = 0;

  atomic_store(&g.stop, 1);
  pthread_join(g.drain, NULL);
  floor_report(&single, &coal, &paced, ok);
  for (uint32_t i = 0; i < g.o.subs; i++) {
    close(g.sfd[i]);
    close(g.cfd[i]);
  }
  return ok ? 0 : 1;
}
