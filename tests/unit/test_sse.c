/* Unit tests of SSE framing and position parsing (src/transport/sse.c). */
#include <errno.h>

#include "test.h"
#include "transport/transport.h"

/* ================================================================ framing */

/* The frame of a message on channel "ch", event "message", epoch "abcdefgh",
 * offset 42, with data[0..len). */
static void check_frame(const char *data, size_t len, const char *data_lines, int line) {
  tt_msg_t *m = tt_msg_new("ch", 2, "message", 7, data, len, "abcdefgh", 42);
  tt_buf_t *f = sse_frame_build(m);
  tt_str_t want = {0};
  tt_str_appends(&want, "id: abcdefgh:42\nevent: message\n");
  tt_str_appends(&want, data_lines);
  tt_str_appends(&want, "\n");
  if (f->len != want.len || memcmp(f->data, want.data, want.len) != 0) fprintf(stderr, "  (frame case at line %d)\n", line);
  CHECK_MEM(f->data, f->len, want.data, want.len);
  tt_str_free(&want);
  tt_buf_unref(f);
  tt_msg_unref(m);
}

#define CHECK_FRAME(lit, lines) check_frame(lit, sizeof(lit) - 1, lines, __LINE__)

static void test_frame_build(void) {
  CHECK_FRAME("hello", "data: hello\n");
  CHECK_FRAME("{\"a\":1}", "data: {\"a\":1}\n");
  CHECK_FRAME("a\nb", "data: a\ndata: b\n");
  CHECK_FRAME("a\r\nb", "data: a\ndata: b\n");
  CHECK_FRAME("a\rb", "data: a\ndata: b\n");
  CHECK_FRAME("a\n", "data: a\ndata: \n");
  CHECK_FRAME("a\r\n", "data: a\ndata: \n");
  CHECK_FRAME("a\r", "data: a\ndata: \n");
  CHECK_FRAME("", "data: \n");
  CHECK_FRAME("\n", "data: \ndata: \n");
  CHECK_FRAME("\r", "data: \ndata: \n");
  CHECK_FRAME("\r\n", "data: \ndata: \n");
  CHECK_FRAME("\n\r", "data: \ndata: \ndata: \n");      /* LF then a lone CR: two line ends */
  CHECK_FRAME("a\r\n\r\nb", "data: a\ndata: \ndata: b\n");
  CHECK_FRAME("a\r\r\nb", "data: a\ndata: \ndata: b\n");
  CHECK_FRAME(" lead\tx ", "data:  lead\tx \n");        /* kept as is */
  CHECK_FRAME("data: x", "data: data: x\n");
}

static void test_frame_nul(void) {
  static const char data[] = {'a', '\0', 'b'};
  tt_msg_t *m = tt_msg_new("ch", 2, "e", 1, data, sizeof(data), "E", 7);
  tt_buf_t *f = sse_frame_build(m);
  static const char want[] = "id: E:7\nevent: e\ndata: a\0b\n\n";
  CHECK_MEM(f->data, f->len, want, sizeof(want) - 1);
  tt_buf_unref(f);
  tt_msg_unref(m);
}

static void test_frame_shared(void) {
  tt_msg_t *m = tt_msg_new("ch", 2, "update", 6, "x\ny", 3, "zz", 18446744073709551615ull);
  tt_buf_t *a = tt_msg_frame(m, TT_FRAME_SSE, sse_frame_build);
  tt_buf_t *b = tt_msg_frame(m, TT_FRAME_SSE, sse_frame_build);
  CHECK(a == b);
  CHECK_STR(a->data, a->len, "id: zz:18446744073709551615\nevent: update\ndata: x\ndata: y\n\n");
  tt_msg_unref(m); /* frees the frame too */
}

/* ================================================================ positions */

static void test_pos_parse(void) {
  engine_pos_t p;
  CHECK_EQ(sse_pos_parse("abc:12", 6, &p), 0);
  CHECK(strcmp(p.epoch, "abc") == 0);
  CHECK_EQ(p.offset, 12);
  CHECK_EQ(sse_pos_parse("A-z_9:0", 7, &p), 0);
  CHECK(strcmp(p.epoch, "A-z_9") == 0);
  CHECK_EQ(p.offset, 0);
  /* bare offset: empty epoch */
  memset(&p, 'x', sizeof(p));
  CHECK_EQ(sse_pos_parse("12", 2, &p), 0);
  CHECK_EQ(p.epoch[0], '\0');
  CHECK_EQ(p.offset, 12);
  CHECK_EQ(sse_pos_parse("007", 3, &p), 0);
  CHECK_EQ(p.offset, 7);
  /* the length bounds the input */
  CHECK_EQ(sse_pos_parse("ab:12", 4, &p), 0);
  CHECK_EQ(p.offset, 1);
  /* empty */
  CHECK_EQ(sse_pos_parse("", 0, &p), -EINVAL);
  CHECK_EQ(sse_pos_parse(":", 1, &p), -EINVAL);
  CHECK_EQ(sse_pos_parse(":5", 2, &p), -EINVAL);
  CHECK_EQ(sse_pos_parse("abc:", 4, &p), -EINVAL);
  /* epoch length: TT_EPOCH_MAX is the longest */
  char s[64];
  memset(s, 'e', TT_EPOCH_MAX);
  strcpy(s + TT_EPOCH_MAX, ":3");
  CHECK_EQ(sse_pos_parse(s, strlen(s), &p), 0);
  CHECK_EQ(strlen(p.epoch), TT_EPOCH_MAX);
  CHECK_EQ(p.offset, 3);
  memset(s, 'e', TT_EPOCH_MAX + 1);
  strcpy(s + TT_EPOCH_MAX + 1, ":3");
  CHECK_EQ(sse_pos_parse(s, strlen(s), &p), -EINVAL);
  /* non-digits and bad epoch characters */
  static const char *const bad[] = {"12a", "a12", "-1", "+1", " 1", "1 ", "1.5", "0x1", "a:1b", "a:-1", "a.b:1",
                                    "a b:1", "a/b:1", "a:b:1", "a::1", "\xc3\xa9:1", "1,2"};
  for (size_t i = 0; i < TT_ARRAY_SIZE(bad); i++)
    if (!CHECK(sse_pos_parse(bad[i], strlen(bad[i]), &p) == -EINVAL)) fprintf(stderr, "    \"%s\"\n", bad[i]);
  /* 19 digits always fit; 20 never are taken, not even UINT64_MAX */
  CHECK_EQ(sse_pos_parse("9999999999999999999", 19, &p), 0);
  CHECK(p.offset == 9999999999999999999ull);
  CHECK_EQ(sse_pos_parse("e:9999999999999999999", 21, &p), 0);
  CHECK(p.offset == 9999999999999999999ull);
  CHECK_EQ(sse_pos_parse("18446744073709551615", 20, &p), -EINVAL);
  CHECK_EQ(sse_pos_parse("18446744073709551616", 20, &p), -EINVAL);
  CHECK_EQ(sse_pos_parse("99999999999999999999", 20, &p), -EINVAL);
  CHECK_EQ(sse_pos_parse("e:00000000000000000001", 22, &p), -EINVAL);
}

int main(void) {
  RUN(test_frame_build);
  RUN(test_frame_nul);
  RUN(test_frame_shared);
  RUN(test_pos_parse);
  return test_report("test_sse");
}
