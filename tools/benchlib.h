/*
 * benchlib: code shared by the benchmark tools (ssebench, jambench).
 *
 * Single-threaded helpers with no hidden state except the PRNG (bench_rand). Every
 * function that cannot fail sensibly (allocation) ends the process through bench_die,
 * which names the program by bench_prog, a string each tool defines itself:
 *
 *   const char bench_prog[] = "ssebench";
 *
 * Build: compiled into each tool (see CMakeLists.txt), C11 with -D_GNU_SOURCE.
 */
#ifndef TUTTI_TOOLS_BENCHLIB_H
#define TUTTI_TOOLS_BENCHLIB_H

#include <stddef.h>
#include <stdint.h>

#define BENCH_NS 1000000000ull

/* The program name bench_die prints; defined by each tool (not by benchlib). */
extern const char bench_prog[];

/* ------------------------------------------------------------------------------------
 * Time, fatal errors, allocation
 * ---------------------------------------------------------------------------------- */

/* Monotonic time in ns (CLOCK_MONOTONIC), the clock the tools stamp messages with. */
uint64_t bench_now(void);

/* Prints "<bench_prog>: msg" and a newline to stderr and exits with status 2 (setup
 * error). Never returns. */
void bench_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* realloc / calloc that never return NULL: on out-of-memory they call bench_die. A
 * size of 0 is allocated as 1 byte, so the result is always a distinct pointer. */
void *bench_xrealloc(void *p, size_t n);
void *bench_xcalloc(size_t count, size_t size);

/* ------------------------------------------------------------------------------------
 * Growable byte buffer
 * ---------------------------------------------------------------------------------- */

/* `p` is owned by the buffer and may move on every reserve or append; a zeroed
 * bench_buf_t is a valid empty buffer. */
typedef struct bench_buf_s {
  char *p;
  size_t len;
  size_t cap;
} bench_buf_t;

/* Makes room for at least `extra` more bytes (capacity doubles from 256). */
void bench_buf_reserve(bench_buf_t *b, size_t extra);

/* Appends n bytes; returns 0, or -ENOSPC when the result would exceed max bytes (the
 * buffer is then unchanged). Pass (size_t)-1 for no limit. */
int bench_buf_append(bench_buf_t *b, const char *src, size_t n, size_t max);

/* Drops the first n (<= len) bytes, keeping the rest at the front. */
void bench_buf_consume(bench_buf_t *b, size_t n);

/* Releases the memory; the buffer is empty and reusable afterwards. */
void bench_buf_free(bench_buf_t *b);

/* ------------------------------------------------------------------------------------
 * JSON field lookups (flat scans for known keys, not a parser). Keys are at most 29
 * bytes; values are not unescaped.
 * ---------------------------------------------------------------------------------- */

/* Finds `"key":` in [p, p+n) and parses the unsigned integer after it (spaces allowed
 * around the colon). Occurrences not followed by a colon and a number are skipped.
 * Returns 0, or -ENOENT when absent or when the number overflows uint64_t. */
int bench_json_u64(const char *p, size_t n, const char *key, uint64_t *out);

/* As bench_json_u64, but looks only at the first occurrence of `"key"`: -ENOENT when
 * that one is not followed by a colon and a number. */
int bench_json_u64_first(const char *p, size_t n, const char *key, uint64_t *out);

/* The first occurrence of pat (plen > 0 bytes) in [p, p+n), or NULL: memmem for the
 * short needles and haystacks of a message. */
const char *bench_find(const char *p, size_t n, const char *pat, size_t plen);

/* Finds `"key":"` in [p, p+n) (spaces allowed around the colon) and sets *val, *vlen
 * to the string value up to the next quote (for values that need no escapes).
 * Occurrences not followed by a colon and a string (e.g. the key as a value) are
 * skipped. Returns 0, or -ENOENT. */
int bench_json_str(const char *p, size_t n, const char *key, const char **val, size_t *vlen);

/* ------------------------------------------------------------------------------------
 * PRNG, SHA-1, base64, WebSocket handshake
 * ---------------------------------------------------------------------------------- */

/* xorshift64*: plenty for handshake nonces and frame masks of a benchmark client, not
 * for anything secret. bench_rand_seed seeds it from getrandom (falling back to the
 * time and PID); call it once before the first bench_rand. */
uint64_t bench_rand(void);
void bench_rand_seed(void);

/* SHA-1 of len bytes (FIPS 180-4); meant for short inputs (the handshake string). */
void bench_sha1(const void *data, size_t len, uint8_t out[20]);

/* Standard base64 with padding, NUL-terminated; out needs 4 * ceil(n / 3) + 1 bytes. */
void bench_base64(const uint8_t *in, size_t n, char *out);

/* A fresh Sec-WebSocket-Key: base64 of 16 bytes from bench_rand (two calls), exactly
 * 24 characters, not NUL-terminated. */
void bench_ws_key(char key[24]);

/* Sec-WebSocket-Accept for a 24-character key: base64(SHA-1(key + RFC 6455 GUID)),
 * 28 characters and a NUL. */
void bench_ws_accept(const char key[24], char out[29]);

/* Appends one masked client frame (FIN set, opcode op, a mask from one bench_rand call)
 * carrying [p, p+len) to out; writes nothing to any socket. */
void bench_ws_queue(bench_buf_t *out, unsigned op, const void *p, size_t len);

/* Reads the header of one server frame at the start of [p, p+n). Sets *hl to the
 * header size and *len to the payload size once the header is complete. Returns 1 when
 * the whole frame (header and payload) is there; 0 when more bytes are needed (*hl,
 * *len untouched while the header itself is incomplete); -1 on a protocol violation (a
 * masked frame, a non-minimal length, the 64-bit high bit, a payload over max bytes),
 * setting *err to a static description. Opcode and flags are left to the caller. */
int bench_ws_frame_head(const uint8_t *p, size_t n, uint64_t max, size_t *hl, uint64_t *len,
                        const char **err);

/* ------------------------------------------------------------------------------------
 * Socket.IO v4 EVENT packets (Engine.IO v4 message `4` carrying Socket.IO packet `2`):
 * 42[/nsp,][ackid]["name",args...]. Flat scans, not a JSON parser.
 * ---------------------------------------------------------------------------------- */

/* [p, p+n) is one whole Engine.IO text message. Returns 0 for an EVENT of the default
 * namespace, setting *name, *nlen to the event name (up to its closing quote, not
 * unescaped) and *rest, *rlen to what follows that quote up to the end of the message
 * (e.g. `,"room",{..}]`); 1 for an EVENT of another namespace (`42/nsp,..`); -1 when
 * it is not an EVENT or is malformed (no `["` after "42" and an optional ack id, or no
 * closing quote). */
int bench_sio_event(const char *p, size_t n, const char **name, size_t *nlen, const char **rest,
                    size_t *rlen);

/* The arguments after the event name: [rest, rest+rlen) must be `,` ... `]` (trailing
 * spaces and line ends ignored). Returns 0 with *arg, *alen the bytes between them (all
 * the arguments, e.g. `"room",{..}` or one payload), or -1. */
int bench_sio_arg(const char *rest, size_t rlen, const char **arg, size_t *alen);

/* The Engine.IO pong answering ping packet [p, p+n) (`2` + optional data): the same
 * data behind `3`, cut to `cap` bytes. Returns its length. */
size_t bench_eio_pong(const char *p, size_t n, char *out, size_t cap);

/* ------------------------------------------------------------------------------------
 * HTTP response head
 * ---------------------------------------------------------------------------------- */

typedef struct bench_head_s {
  int status;          /* status code, 0 if the status line is unreadable */
  int chunked;         /* Transfer-Encoding: chunked */
  int event_stream;    /* Content-Type: text/event-stream */
  long content_length; /* -1 when absent */
  /* WebSocket upgrade answers */
  int upgrade_ws;   /* Upgrade: websocket */
  int conn_upgrade; /* Connection: has the upgrade token */
  int ext_deflate;  /* Sec-WebSocket-Extensions: permessage-deflate */
  int ext_snct;     /* ... with server_no_context_takeover */
  int ext_other;    /* an extension header naming anything else */
  char accept[64];  /* Sec-WebSocket-Accept, trimmed; "" when absent */
} bench_head_t;

/* Parses a response head of `len` bytes (status line and headers, without the final
 * empty line) into *h (every field set). Header names are matched case-insensitively;
 * header lines are looked at up to 255 bytes. */
void bench_head_parse(const char *p, size_t len, bench_head_t *h);

/* Returns the offset just past "\r\n\r\n" in [p, p+n), or 0 when not there yet. */
size_t bench_head_end(const char *p, size_t n);

/* Gathers the n bytes just read into carry while a response head of at most head_max
 * bytes is awaited; read_max is the most one read returns. Returns 1 with *hend set to
 * the head's length (with the empty line) once "\r\n\r\n" is in carry, 0 while it is
 * not, -1 when the head is too large. The body bytes that followed the head are then
 * the last carry->len - *hend bytes of [buf, buf+n). */
int bench_head_collect(bench_buf_t *carry, const char *buf, size_t n, size_t head_max,
                       size_t read_max, size_t *hend);

/* ------------------------------------------------------------------------------------
 * Sockets and process limits
 * ---------------------------------------------------------------------------------- */

/* Writes [p, p+len) from *off on, advancing *off. Returns 0 when all is written, 1 when
 * the socket would block, or -errno on a send error. EINTR is retried; SIGPIPE is not
 * raised (MSG_NOSIGNAL). */
int bench_send_from(int fd, const char *p, size_t len, uint32_t *off);

/* Writes what is queued in out, consuming what was sent, until it is empty or the
 * socket would block. Returns 0, or -errno on a send error. */
int bench_flush(int fd, bench_buf_t *out);

/* Raises RLIMIT_NOFILE's soft limit to the hard one; dies when `need` descriptors do
 * not fit, with `hint` (may be "") appended to the message. */
void bench_raise_nofile(uint64_t need, const char *hint);

/* ------------------------------------------------------------------------------------
 * Server figures from /proc (Linux)
 * ---------------------------------------------------------------------------------- */

/* VmRSS of pid in KiB, or -1 when unreadable. */
long bench_proc_rss_kib(long pid);

/* utime + stime of pid (all its threads, live and exited) in clock ticks, or -1. */
long long bench_proc_cpu_ticks(long pid);

/* Time on CPU of all live threads of pid in ns, summed from /proc/PID/task/TID/schedstat
 * (first field), or -1 when unreadable. Far finer than the clock ticks of /proc/PID/stat,
 * but a thread that exits between two readings takes its time with it. */
long long bench_proc_cpu_ns(long pid);

/* ------------------------------------------------------------------------------------
 * Latency histogram: log-linear buckets, 64 per power of two (error under 1.6 %),
 * covering every uint64_t value of nanoseconds in 3776 counters.
 * ---------------------------------------------------------------------------------- */

#define BENCH_HIST_SUB 64
#define BENCH_HIST_BUCKETS (59 * BENCH_HIST_SUB)

/* A zeroed bench_hist_t is an empty histogram. */
typedef struct bench_hist_s {
  uint64_t count[BENCH_HIST_BUCKETS];
  uint64_t n;   /* samples */
  uint64_t max; /* exact largest sample */
} bench_hist_t;

void bench_hist_add(bench_hist_t *h, uint64_t v);

/* Value (ns) at quantile q in [0, 1]: the middle of the bucket holding that rank, never
 * above the exact maximum. 0 when empty. */
uint64_t bench_hist_quantile(const bench_hist_t *h, double q);

/* ------------------------------------------------------------------------------------
 * Report helpers
 * ---------------------------------------------------------------------------------- */

/* ns as milliseconds. */
double bench_ms(uint64_t ns);

/* Parses s as a number in [min, max] for option opt; dies with a usage message when it
 * is not one. */
double bench_parse_num(const char *opt, const char *s, double min, double max);

/* Keeps the first note: writes the formatted text to dst (cap bytes) only when dst is
 * still empty, then makes it safe inside the table and a JSON string (quotes become
 * apostrophes, backslashes and control characters spaces). */
void bench_note(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
