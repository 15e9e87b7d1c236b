/*
 * Static files from the web root, read on the thread pool (uv_fs_*), never on
 * the loop thread. Answers carry a content type by extension, an ETag from
 * size and modification time, Last-Modified and Cache-Control: no-cache, and
 * If-None-Match gives 304.
 */
#include <fcntl.h>
#include <strings.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net_internal.h"

#define STATIC_MAX_FILE (16u << 20)

typedef struct static_req_s {
  uv_fs_t fs;
  net_conn_t *conn;
  uv_file fd;
  char *data;
  size_t size, got;
  int status;             /* set when the answer is known before reading */
  char etag[64];
  char last_modified[64];
  char if_none_match[128];
  const char *type;
  char path[];
} static_req_t;

static const char *web_root;

static const struct {
  const char *ext;
  const char *type;
} static_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".htm", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
    {".jpeg", "image/jpeg"},
    {".gif", "image/gif"},
    {".ico", "image/x-icon"},
    {".wasm", "application/wasm"},
    {".txt", "text/plain; charset=utf-8"},
    {".wav", "audio/wav"},
    {".ogg", "audio/ogg"},
    {".opus", "audio/ogg"},
    {".mp3", "audio/mpeg"},
    {".woff2", "font/woff2"},
    {".map", "application/json"},
};

static const char *static__type(const char *path) {
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  if (dot != NULL && (slash == NULL || dot > slash)) {
    for (size_t i = 0; i < TT_ARRAY_SIZE(static_types); i++)
      if (strcasecmp(dot, static_types[i].ext) == 0) return static_types[i].type;
  }
  return "application/octet-stream";
}

/* ================================================================ the read chain */

static void static__done(static_req_t *r, int status) {
  net_conn_t *c = r->conn;
  if (!net_conn_is_closing(c)) {
    if (status == 200) {
      char extra[256];
      snprintf(extra, sizeof(extra), "ETag: %s\r\nLast-Modified: %s\r\nCache-Control: no-cache\r\n", r->etag,
               r->last_modified);
      net_respond(c, 200, r->type, r->data, r->size, extra);
    } else if (status == 304) {
      char extra[160];
      snprintf(extra, sizeof(extra), "ETag: %s\r\nCache-Control: no-cache\r\n", r->etag);
      net_respond(c, 304, NULL, NULL, 0, extra);
    } else if (status == 404) {
      net_respond_error(c, 404, "NOT_FOUND", "no such route or file");
    } else {
      net_respond_error(c, 500, "INTERNAL", "could not read the file");
    }
  }
  net_conn_unref(c);
  free(r->data);
  free(r);
}

static void static__on_close(uv_fs_t *fs) {
  static_req_t *r = tt_container_of(fs, static_req_t, fs);
  uv_fs_req_cleanup(fs);
  static__done(r, r->status ? r->status : r->got == r->size ? 200 : 500);
}

static void static__close(static_req_t *r) {
  uv_fs_close(&net_conn_worker(r->conn)->loop, &r->fs, r->fd, static__on_close);
}

static void static__on_read(uv_fs_t *fs) {
  static_req_t *r = tt_container_of(fs, static_req_t, fs);
  ssize_t n = fs->result;
  uv_fs_req_cleanup(fs);
  if (n > 0) {
    r->got += (size_t)n;
    if (r->got < r->size) {
      uv_buf_t b = uv_buf_init(r->data + r->got, (unsigned)(r->size - r->got));
      uv_fs_read(&net_conn_worker(r->conn)->loop, &r->fs, r->fd, &b, 1, (int64_t)r->got, static__on_read);
      return;
    }
  }
  static__close(r);
}

static void static__on_stat(uv_fs_t *fs) {
  static_req_t *r = tt_container_of(fs, static_req_t, fs);
  int rc = (int)fs->result;
  uv_stat_t st = fs->statbuf;
  uv_fs_req_cleanup(fs);
  if (rc < 0 || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX_FILE) {
    r->status = rc < 0 || st.st_size > STATIC_MAX_FILE ? 500 : 404;
    static__close(r);
    return;
  }
  r->size = (size_t)st.st_size;
  snprintf(r->etag, sizeof(r->etag), "\"%llx-%llx\"", (unsigned long long)st.st_size,
           (unsigned long long)st.st_mtim.tv_sec * 1000000000ull + (unsigned long long)st.st_mtim.tv_nsec);
  time_t mt = (time_t)st.st_mtim.tv_sec;
  struct tm tm;
  gmtime_r(&mt, &tm);
  strftime(r->last_modified, sizeof(r->last_modified), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (r->if_none_match[0] != '\0' && strstr(r->if_none_match, r->etag) != NULL) {
    r->status = 304;
    static__close(r);
    return;
  }
  r->data = tt_malloc(r->size ? r->size : 1);
  if (r->size == 0) {
    static__close(r);
    return;
  }
  uv_buf_t b = uv_buf_init(r->data, (unsigned)r->size);
  uv_fs_read(&net_conn_worker(r->conn)->loop, &r->fs, r->fd, &b, 1, 0, static__on_read);
}

static void static__on_open(uv_fs_t *fs) {
  static_req_t *r = tt_container_of(fs, static_req_t, fs);
  int fd = (int)fs->result;
  uv_fs_req_cleanup(fs);
  if (fd < 0) {
    static__done(r, 404);
    return;
  }
  r->fd = fd;
  uv_fs_fstat(&net_conn_worker(r->conn)->loop, &r->fs, fd, static__on_stat);
}

/* ================================================================ entry */

void net_static_serve(net_request_t *req) {
  net_conn_t *c = req->conn;
  if (web_root == NULL) web_root = c->worker->pub.server->opts.web_root;
  char decoded[1024];
  if (req->path_len >= sizeof(decoded) - 16) {
    net_respond_error(c, 404, "NOT_FOUND", "no such route or file");
    return;
  }
  ssize_t dl = http_url_decode(req->path, req->path_len, decoded, false);
  if (dl <= 0 || decoded[0] != '/') {
    net_respond_error(c, 400, "BAD_REQUEST", "bad path");
    return;
  }
  decoded[dl] = '\0';
  /* No segment may be "..", "." or hidden, and no backslash tricks. */
  for (char *seg = decoded + 1; *seg;) {
    char *end = strchr(seg, '/');
    size_t n = end ? (size_t)(end - seg) : strlen(seg);
    if ((n > 0 && seg[0] == '.') || memchr(seg, '\\', n) != NULL) {
      net_respond_error(c, 404, "NOT_FOUND", "no such route or file");
      return;
    }
    seg += n + (end ? 1 : 0);
  }
  if (decoded[dl - 1] == '/') strcat(decoded, "index.html");

  size_t plen = strlen(web_root) + strlen(decoded) + 1;
  static_req_t *r = tt_calloc(1, sizeof(*r) + plen);
  snprintf(r->path, plen, "%s%s", web_root, decoded);
  r->conn = c;
  r->type = static__type(r->path);
  size_t inm_len = 0;
  const char *inm = http_head_get(&req->head, "If-None-Match", &inm_len);
  if (inm != NULL && inm_len < sizeof(r->if_none_match)) memcpy(r->if_none_match, inm, inm_len);
  net_conn_ref(c);
  net_request_defer(req);
  uv_fs_open(&c->worker->pub.loop, &r->fs, r->path, O_RDONLY | O_CLOEXEC, 0, static__on_open);
}
