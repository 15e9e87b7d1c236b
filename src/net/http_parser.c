/*
 * The HTTP/1.1 request parser: strict, stateless over the head (the caller
 * re-runs it when more bytes arrive), zero-copy (slices of the caller's
 * buffer), and an incremental chunked-body decoder.
 */
#include <string.h>
#include <strings.h>

#include "net.h"

/* ================================================================ character classes */

/* RFC 9110 tchar: token characters of methods and header names. */
static bool http__is_tchar(unsigned char c) {
  if (c >= 'a' && c <= 'z') return true;
  if (c >= 'A' && c <= 'Z') return true;
  if (c >= '0' && c <= '9') return true;
  return strchr("!#$%&'*+-.^_`|~", c) != NULL && c != '\0';
}

/* Visible characters allowed in a request target. */
static bool http__is_target_char(unsigned char c) { return c > 0x20 && c < 0x7f; }

/* Field values: visible characters, space, tab and obs-text. */
static bool http__is_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

/* ================================================================ head */

/* Finds the end of the line starting at p; returns a pointer to its '\n' or
 * NULL. Sets *eol_len to 1 or 2 ("\n" or "\r\n"); a bare '\r' is an error
 * (returned as *bad). */
static const char *http__line_end(const char *p, const char *end, size_t *eol_len, bool *bad) {
  if (p >= end) return NULL;
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  if (nl == NULL) return NULL;
  *eol_len = (nl > p && nl[-1] == '\r') ? 2 : 1;
  const char *cr = memchr(p, '\r', (size_t)(nl - p));
  if (cr != NULL && cr != nl - 1) *bad = true;
  return nl;
}

int http_parse_head(const char *buf, size_t len, http_head_t *head) {
  const char *p = buf, *end = buf + len;
  size_t eol;
  bool bad = false;

  /* Tolerate empty lines before the request line (RFC 9112 2.2). */
  while (p < end && (*p == '\r' || *p == '\n')) {
    if (*p == '\r' && (p + 1 >= end)) return HTTP_PARSE_INCOMPLETE;
    if (*p == '\r' && p[1] != '\n') return HTTP_PARSE_BAD;
    p += *p == '\r' ? 2 : 1;
  }

  /* Request line: method SP target SP HTTP/1.x */
  const char *nl = http__line_end(p, end, &eol, &bad);
  if (nl == NULL) {
    /* Reject early what can never become a request line. */
    for (const char *q = p; q < end && *q != ' '; q++)
      if (!http__is_tchar((unsigned char)*q)) return HTTP_PARSE_BAD;
    return HTTP_PARSE_INCOMPLETE;
  }
  if (bad) return HTTP_PARSE_BAD;
  const char *line_end = nl + 1 - eol;
  const char *sp1 = memchr(p, ' ', (size_t)(line_end - p));
  if (sp1 == NULL || sp1 == p) return HTTP_PARSE_BAD;
  for (const char *q = p; q < sp1; q++)
    if (!http__is_tchar((unsigned char)*q)) return HTTP_PARSE_BAD;
  head->method = p;
  head->method_len = (size_t)(sp1 - p);
  const char *t = sp1 + 1;
  const char *sp2 = memchr(t, ' ', (size_t)(line_end - t));
  if (sp2 == NULL || sp2 == t) return HTTP_PARSE_BAD;
  for (const char *q = t; q < sp2; q++)
    if (!http__is_target_char((unsigned char)*q)) return HTTP_PARSE_BAD;
  head->target = t;
  head->target_len = (size_t)(sp2 - t);
  const char *v = sp2 + 1;
  size_t vlen = (size_t)(line_end - v);
  if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
      v[7] > '9')
    return HTTP_PARSE_BAD;
  if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return HTTP_PARSE_VERSION;
  head->minor_version = v[7] - '0';
  p = nl + 1;

  /* Header fields, up to the blank line. */
  head->num_headers = 0;
  for (;;) {
    if (p >= end) return HTTP_PARSE_INCOMPLETE;
    nl = http__line_end(p, end, &eol, &bad);
    if (nl == NULL) {
      if (*p == '\r' && p + 1 < end) return HTTP_PARSE_BAD;
      return HTTP_PARSE_INCOMPLETE;
    }
    if (bad) return HTTP_PARSE_BAD;
    line_end = nl + 1 - eol;
    if (line_end == p) return (int)(nl + 1 - buf); /* blank line: done */
    if (*p == ' ' || *p == '\t') return HTTP_PARSE_BAD; /* obsolete line folding */
    const char *colon = memchr(p, ':', (size_t)(line_end - p));
    if (colon == NULL || colon == p) return HTTP_PARSE_BAD;
    for (const char *q = p; q < colon; q++)
      if (!http__is_tchar((unsigned char)*q)) return HTTP_PARSE_BAD;
    const char *val = colon + 1, *vend = line_end;
    while (val < vend && (*val == ' ' || *val == '\t')) val++;
    while (vend > val && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
    for (const char *q = val; q < vend; q++)
      if (!http__is_value_char((unsigned char)*q)) return HTTP_PARSE_BAD;
    if (head->num_headers == HTTP_MAX_HEADERS) return HTTP_PARSE_TOO_MANY_HEADERS;
    http_header_t *h = &head->headers[head->num_headers++];
    h->name = p;
    h->name_len = (size_t)(colon - p);
    h->value = val;
    h->value_len = (size_t)(vend - val);
    p = nl + 1;
  }
}

const char *http_head_get(const http_head_t *head, const char *name, size_t *value_len) {
  size_t n = strlen(name);
  for (size_t i = 0; i < head->num_headers; i++) {
    const http_header_t *h = &head->headers[i];
    if (h->name_len == n && strncasecmp(h->name, name, n) == 0) {
      if (value_len) *value_len = h->value_len;
      return h->value;
    }
  }
  return NULL;
}

/* ================================================================ chunked bodies */

enum {
  CH_SIZE,       /* hex digits of the chunk size */
  CH_SIZE_WS,    /* optional whitespace after the size, before ';' or CRLF */
  CH_EXT,        /* chunk extension, up to the line end */
  CH_SIZE_LF,    /* '\n' after the size line's '\r' */
  CH_DATA,
  CH_DATA_CR,    /* '\r' after the chunk data */
  CH_DATA_LF,
  CH_TRAILER,    /* start of a trailer line (or the final blank line) */
  CH_TRAILER_LINE,
  CH_TRAILER_LF,
  CH_END_LF,     /* '\n' of the final blank line */
};

#define CH_MAX_EXT 256        /* bytes of extensions on one size line */
#define CH_MAX_TRAILERS 16384 /* bytes of the whole trailer section */

static int http__hex(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

ssize_t http_chunked_decode(http_chunked_t *st, const char *in, size_t len, tt_str_t *out, bool *done) {
  size_t i = 0;
  *done = false;
  while (i < len) {
    unsigned char c = (unsigned char)in[i];
    switch (st->state) {
      case CH_SIZE: {
        int d = http__hex(c);
        if (d >= 0) {
          if (st->digits == 15) return HTTP_PARSE_BAD; /* absurd size */
          st->remaining = st->remaining * 16 + (uint64_t)d;
          st->digits++;
          i++;
          break;
        }
        if (st->digits == 0) return HTTP_PARSE_BAD;
        st->state = CH_SIZE_WS;
        break; /* look at c again */
      }
      case CH_SIZE_WS:
        if (c == ' ' || c == '\t') {
          /* optional whitespace before ';' only */
        } else if (c == ';') {
          st->state = CH_EXT;
          st->extra = 0;
        } else if (c == '\r') {
          st->state = CH_SIZE_LF;
        } else if (c == '\n') {
          st->state = st->remaining ? CH_DATA : CH_TRAILER;
          st->extra = 0;
        } else {
          return HTTP_PARSE_BAD;
        }
        i++;
        break;
      case CH_EXT:
        if (c == '\r') {
          st->state = CH_SIZE_LF;
        } else if (c == '\n') {
          st->state = st->remaining ? CH_DATA : CH_TRAILER;
          st->extra = 0;
        } else if ((c < 0x20 && c != '\t') || c == 0x7f || ++st->extra > CH_MAX_EXT) {
          return HTTP_PARSE_BAD;
        }
        i++;
        break;
      case CH_SIZE_LF:
        if (c != '\n') return HTTP_PARSE_BAD;
        st->state = st->remaining ? CH_DATA : CH_TRAILER;
        st->extra = 0;
        i++;
        break;
      case CH_DATA: {
        size_t n = (size_t)TT_MIN((uint64_t)(len - i), st->remaining);
        tt_str_append(out, in + i, n);
        st->remaining -= n;
        i += n;
        if (st->remaining == 0) st->state = CH_DATA_CR;
        break;
      }
      case CH_DATA_CR:
        if (c == '\r') {
          st->state = CH_DATA_LF;
        } else if (c == '\n') {
          st->state = CH_SIZE;
          st->digits = 0;
        } else {
          return HTTP_PARSE_BAD;
        }
        i++;
        break;
      case CH_DATA_LF:
        if (c != '\n') return HTTP_PARSE_BAD;
        st->state = CH_SIZE;
        st->digits = 0;
        i++;
        break;
      case CH_TRAILER:
        if (c == '\r') {
          st->state = CH_END_LF;
        } else if (c == '\n') {
          *done = true;
          return (ssize_t)(i + 1);
        } else if (c < 0x20 || c == 0x7f) {
          return HTTP_PARSE_BAD;
        } else {
          st->state = CH_TRAILER_LINE;
        }
        if (++st->extra > CH_MAX_TRAILERS) return HTTP_PARSE_BAD;
        i++;
        break;
      case CH_TRAILER_LINE:
        if (c == '\r') st->state = CH_TRAILER_LF;
        else if (c == '\n') st->state = CH_TRAILER;
        else if ((c < 0x20 && c != '\t') || c == 0x7f) return HTTP_PARSE_BAD;
        if (++st->extra > CH_MAX_TRAILERS) return HTTP_PARSE_BAD;
        i++;
        break;
      case CH_TRAILER_LF:
        if (c != '\n') return HTTP_PARSE_BAD;
        st->state = CH_TRAILER;
        i++;
        break;
      case CH_END_LF:
        if (c != '\n') return HTTP_PARSE_BAD;
        *done = true;
        return (ssize_t)(i + 1);
      default:
        return HTTP_PARSE_BAD;
    }
  }
  return (ssize_t)i;
}

/* ================================================================ URLs */

ssize_t http_url_decode(const char *src, size_t len, char *dst, bool plus_is_space) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char c = src[i];
    if (c == '%') {
      if (i + 2 >= len) return -1;
      int hi = http__hex((unsigned char)src[i + 1]), lo = http__hex((unsigned char)src[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      c = (char)(hi * 16 + lo);
      if (c == '\0') return -1;
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    dst[o++] = c;
  }
  return (ssize_t)o;
}

bool http_query_next(const char **q, size_t *qlen, const char **key, size_t *klen, const char **val, size_t *vlen) {
  while (*qlen > 0 && **q == '&') {
    (*q)++;
    (*qlen)--;
  }
  if (*qlen == 0) return false;
  const char *p = *q, *end = *q + *qlen;
  const char *amp = memchr(p, '&', *qlen);
  if (amp == NULL) amp = end;
  const char *eq = memchr(p, '=', (size_t)(amp - p));
  *key = p;
  *klen = (size_t)((eq ? eq : amp) - p);
  *val = eq ? eq + 1 : amp;
  *vlen = (size_t)(amp - *val);
  *qlen -= (size_t)(amp - p);
  *q = amp;
  return true;
}
