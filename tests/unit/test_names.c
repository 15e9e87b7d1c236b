/* Unit tests of channel and event name rules (src/hub/hub.c). */
#include <errno.h>
#include <stdlib.h>

#include "hub/hub.h"
#include "test.h"

static int chan(const char *s) { return hub_channel_check(s, strlen(s), NULL); }
static int event(const char *s) { return hub_event_check(s, strlen(s), NULL); }

/* A name of `n` copies of `c` (caller frees). */
static char *repeat(char c, size_t n) {
  char *s = tt_malloc(n + 1);
  memset(s, c, n);
  s[n] = '\0';
  return s;
}

static void test_channel_lengths(void) {
  const char *why = NULL;
  CHECK_EQ(hub_channel_check("", 0, &why), -EINVAL);
  CHECK(why != NULL && strstr(why, "channel") != NULL);
  CHECK_EQ(hub_channel_check("abc", 0, NULL), -EINVAL); /* empty, whatever follows */
  CHECK_EQ(chan("a"), 0);
  char *s255 = repeat('x', HUB_CHANNEL_MAX);
  CHECK_EQ(HUB_CHANNEL_MAX, 255);
  CHECK_EQ(chan(s255), 0);
  char *s256 = repeat('x', HUB_CHANNEL_MAX + 1);
  CHECK_EQ(chan(s256), -EINVAL);
  CHECK_EQ(hub_channel_check(s256, 255, NULL), 0);
  free(s255);
  free(s256);
}

static void test_channel_chars(void) {
  CHECK_EQ(chan("repo:owner/name"), 0);
  CHECK_EQ(chan("A-Z_a-z.0-9:/"), 0);
  CHECK_EQ(chan("/"), 0);
  CHECK_EQ(chan("news.sport-2024_q1"), 0);
  /* each allowed byte alone, and every other byte rejected */
  for (int c = 0; c < 256; c++) {
    char s[1] = {(char)c};
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                   c == '.' || c == ':' || c == '-' || c == '/';
    if (!CHECK(hub_channel_check(s, 1, NULL) == (allowed ? 0 : -EINVAL))) fprintf(stderr, "    byte 0x%02x\n", c);
    char t[3] = {'a', (char)c, 'b'};
    CHECK(hub_channel_check(t, 3, NULL) == (allowed ? 0 : -EINVAL));
  }
  static const char *const bad[] = {"a b", "a\tb", "a\nb", "a?b", "a#b", "a%2Fb", "a&b", "a=b", "a,b",
                                    "caf\xc3\xa9", "a*", "a\\b", "\"a\"", "a+b", "a@b"};
  for (size_t i = 0; i < TT_ARRAY_SIZE(bad); i++)
    if (!CHECK(chan(bad[i]) == -EINVAL)) fprintf(stderr, "    \"%s\"\n", bad[i]);
  CHECK_EQ(hub_channel_check("a\0b", 3, NULL), -EINVAL);
}

static void test_event_names(void) {
  const char *why = NULL;
  CHECK_EQ(hub_event_check("", 0, &why), -EINVAL);
  CHECK(why != NULL && strstr(why, "event") != NULL);
  CHECK_EQ(event("a"), 0);
  CHECK_EQ(event("message"), 0);
  CHECK_EQ(event("user.joined:v2-x_y"), 0);
  char *s = repeat('e', HUB_CHANNEL_MAX + 1);
  CHECK_EQ(hub_event_check(s, HUB_EVENT_MAX, NULL), 0);
  CHECK_EQ(hub_event_check(s, HUB_EVENT_MAX + 1, NULL), -EINVAL);
  CHECK_EQ(hub_event_check(s, 255, NULL), -EINVAL);
  CHECK_EQ(hub_event_check(s, 256, NULL), -EINVAL);
  free(s);
  /* the slash is for channels only */
  CHECK_EQ(event("a/b"), -EINVAL);
  CHECK_EQ(event("/"), -EINVAL);
  CHECK_EQ(event("a b"), -EINVAL);
  CHECK_EQ(event("a\nb"), -EINVAL); /* would break the SSE frame */
  CHECK_EQ(event("a\rb"), -EINVAL);
  CHECK_EQ(hub_event_check("a\0b", 3, NULL), -EINVAL);
  for (int c = 0; c < 256; c++) {
    char t[1] = {(char)c};
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                   c == '.' || c == ':' || c == '-';
    if (!CHECK(hub_event_check(t, 1, NULL) == (allowed ? 0 : -EINVAL))) fprintf(stderr, "    byte 0x%02x\n", c);
  }
}

int main(void) {
  RUN(test_channel_lengths);
  RUN(test_channel_chars);
  RUN(test_event_names);
  return test_report("test_names");
}
