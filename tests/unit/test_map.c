/* Unit tests of core's maps, buffers, strings and message frames
 * (src/core/core.c). */
#include <stdlib.h>

#include "core/core.h"
#include "test.h"

/* ================================================================ maps */

typedef struct {
  tt_map_entry_t entry;
  int value;
  char key[24];
} item_t;

static item_t *item_new(const char *fmt, int i) {
  item_t *it = tt_calloc(1, sizeof(*it));
  snprintf(it->key, sizeof(it->key), fmt, i);
  it->value = i;
  it->entry.key = it->key;
  it->entry.key_len = strlen(it->key);
  it->entry.hash = tt_hash(it->key, it->entry.key_len);
  return it;
}

static item_t *lookup(const tt_map_t *m, const char *key) {
  tt_map_entry_t *e = tt_map_get(m, key, strlen(key), tt_hash(key, strlen(key)));
  return e ? tt_container_of(e, item_t, entry) : NULL;
}

static size_t map_walk_count(const tt_map_t *m) {
  size_t n = 0;
  for (size_t i = 0; i <= m->mask; i++)
    for (tt_map_entry_t *e = m->buckets[i]; e; e = e->next) n++;
  return n;
}

static void test_map_many(void) {
  enum { N = 5000 };
  static item_t *items[N];
  tt_map_t m;
  tt_map_init(&m);
  CHECK_EQ(m.count, 0);
  CHECK(lookup(&m, "k0") == NULL);
  size_t mask0 = m.mask;
  for (int i = 0; i < N; i++) {
    items[i] = item_new("k%d", i);
    tt_map_put(&m, &items[i]->entry);
    /* every key put so far is still found while the table grows */
    if (i % 500 == 0)
      for (int j = 0; j <= i; j += 7) CHECK(lookup(&m, items[j]->key) == items[j]);
  }
  CHECK_EQ(m.count, N);
  CHECK(m.mask > mask0);
  CHECK(((m.mask + 1) & m.mask) == 0); /* a power of two */
  CHECK(m.count <= m.mask + 1);       /* load factor at most 1 */
  CHECK_EQ(map_walk_count(&m), N);
  for (int i = 0; i < N; i++) {
    item_t *it = lookup(&m, items[i]->key);
    if (CHECK(it == items[i])) CHECK_EQ(it->value, i);
  }
  CHECK(lookup(&m, "k5000") == NULL);
  CHECK(lookup(&m, "") == NULL);
  CHECK(lookup(&m, "k") == NULL);
  /* same bytes, other length */
  CHECK(tt_map_get(&m, "k12", 2, tt_hash("k12", 2)) == &items[1]->entry);

  /* remove the even ones */
  for (int i = 0; i < N; i += 2) tt_map_remove(&m, &items[i]->entry);
  CHECK_EQ(m.count, N / 2);
  CHECK_EQ(map_walk_count(&m), N / 2);
  for (int i = 0; i < N; i++) {
    item_t *it = lookup(&m, items[i]->key);
    CHECK(it == (i % 2 ? items[i] : NULL));
  }
  /* removing what is not there changes nothing */
  tt_map_remove(&m, &items[0]->entry);
  CHECK_EQ(m.count, N / 2);
  /* put back */
  for (int i = 0; i < N; i += 2) tt_map_put(&m, &items[i]->entry);
  CHECK_EQ(m.count, N);
  for (int i = 0; i < N; i++) CHECK(lookup(&m, items[i]->key) == items[i]);
  for (int i = 0; i < N; i++) {
    tt_map_remove(&m, &items[i]->entry);
    free(items[i]);
  }
  CHECK_EQ(m.count, 0);
  CHECK_EQ(map_walk_count(&m), 0);
  tt_map_free(&m);
  CHECK(m.buckets == NULL);
}

static void test_map_collisions(void) {
  /* entries with equal hashes are told apart by their keys */
  tt_map_t m;
  tt_map_init(&m);
  item_t a = {.key = "alpha"}, b = {.key = "beta"}, c = {.key = "gamma"};
  item_t *all[] = {&a, &b, &c};
  for (int i = 0; i < 3; i++) {
    all[i]->entry.key = all[i]->key;
    all[i]->entry.key_len = strlen(all[i]->key);
    all[i]->entry.hash = 42;
    tt_map_put(&m, &all[i]->entry);
  }
  CHECK(tt_map_get(&m, "beta", 4, 42) == &b.entry);
  CHECK(tt_map_get(&m, "alpha", 5, 42) == &a.entry);
  CHECK(tt_map_get(&m, "beta", 4, 43) == NULL);
  tt_map_remove(&m, &b.entry);
  CHECK(tt_map_get(&m, "beta", 4, 42) == NULL);
  CHECK(tt_map_get(&m, "gamma", 5, 42) == &c.entry);
  CHECK(tt_map_get(&m, "alpha", 5, 42) == &a.entry);
  tt_map_free(&m);
  /* the hash depends on every byte and on the length only through them */
  CHECK(tt_hash("abc", 3) == tt_hash("abcd", 3));
  CHECK(tt_hash("abc", 3) != tt_hash("abd", 3));
  CHECK(tt_hash("ab", 2) != tt_hash("ba", 2));
  CHECK(tt_hash("a", 1) != tt_hash("a\0", 2));
}

/* ================================================================ lists */

static void test_list(void) {
  tt_list_t head, a, b, c;
  tt_list_init(&head);
  CHECK(tt_list_empty(&head));
  tt_list_insert_tail(&head, &a);
  tt_list_insert_tail(&head, &b);
  tt_list_insert_tail(&head, &c);
  CHECK(head.next == &a && a.next == &b && b.next == &c && c.next == &head);
  CHECK(head.prev == &c && c.prev == &b && b.prev == &a && a.prev == &head);
  tt_list_remove(&b);
  CHECK(a.next == &c && c.prev == &a);
  CHECK(b.next == &b && b.prev == &b); /* a removed node is self-linked */
  tt_list_remove(&a);
  tt_list_remove(&c);
  CHECK(tt_list_empty(&head));
}

/* ================================================================ buffers */

static void test_buf_refs(void) {
  tt_buf_t *b = tt_buf_from("hello", 5);
  CHECK_EQ(b->len, 5);
  CHECK_STR(b->data, b->len, "hello");
  CHECK_EQ(atomic_load(&b->refs), 1);
  CHECK(tt_buf_ref(b) == b);
  tt_buf_ref(b);
  CHECK_EQ(atomic_load(&b->refs), 3);
  tt_buf_unref(b);
  tt_buf_unref(b);
  CHECK_EQ(atomic_load(&b->refs), 1);
  CHECK_STR(b->data, b->len, "hello"); /* still alive */
  tt_buf_unref(b);                      /* freed (ASan would report a leak or a double free) */
  tt_buf_unref(NULL);                   /* harmless */

  tt_buf_t *z = tt_buf_new(0);
  CHECK_EQ(z->len, 0);
  tt_buf_unref(z);
  tt_buf_t *e = tt_buf_from("", 0);
  CHECK_EQ(e->len, 0);
  tt_buf_unref(e);
}

/* ================================================================ strings */

static void test_str(void) {
  tt_str_t s = {0};
  tt_str_append(&s, "ab", 2);
  tt_str_appends(&s, "cd");
  tt_str_appendf(&s, "%d-%s", 12, "x");
  CHECK_STR(s.data, s.len, "abcd12-x");
  CHECK_EQ(s.data[s.len], '\0'); /* always NUL-terminated */
  /* longer than appendf's stack buffer */
  char big[1000];
  memset(big, 'q', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  tt_str_appendf(&s, "[%s]", big);
  CHECK_EQ(s.len, 8 + 2 + 999);
  CHECK_EQ(s.data[8], '[');
  CHECK_EQ(s.data[s.len - 1], ']');
  CHECK_EQ(s.data[s.len], '\0');
  CHECK(s.cap > s.len);
  tt_str_free(&s);
  CHECK(s.data == NULL && s.len == 0 && s.cap == 0);
  /* many small appends */
  for (int i = 0; i < 10000; i++) tt_str_append(&s, "x", 1);
  CHECK_EQ(s.len, 10000);
  tt_str_free(&s);
}

#define CHECK_JSON_ESC(in, want)                                                                    \
  do {                                                                                              \
    tt_str_t s_ = {0};                                                                              \
    tt_str_append_json(&s_, in, sizeof(in) - 1);                                                    \
    CHECK_MEM(s_.data, s_.len, want, sizeof(want) - 1);                                             \
    if (s_.data) CHECK_EQ(s_.data[s_.len], '\0');                                                   \
    tt_str_free(&s_);                                                                               \
  } while (0)

static void test_append_json(void) {
  CHECK_JSON_ESC("plain text", "plain text");
  CHECK_JSON_ESC("a\"b", "a\\\"b");
  CHECK_JSON_ESC("a\\b", "a\\\\b");
  CHECK_JSON_ESC("\n\r\t", "\\n\\r\\t");
  CHECK_JSON_ESC("\b\f", "\\u0008\\u000c");
  CHECK_JSON_ESC("\x01\x1f", "\\u0001\\u001f");
  CHECK_JSON_ESC("a\0b", "a\\u0000b");
  CHECK_JSON_ESC("\x7f", "\x7f");
  CHECK_JSON_ESC(" /<>", " /<>");
  CHECK_JSON_ESC("caf\xc3\xa9", "caf\xc3\xa9");
  /* appends to what is there */
  tt_str_t s = {0};
  tt_str_appends(&s, "{\"m\":\"");
  tt_str_append_json(&s, "x\"y", 3);
  tt_str_appends(&s, "\"}");
  CHECK_STR(s.data, s.len, "{\"m\":\"x\\\"y\"}");
  /* every byte below 0x80 makes a valid JSON string */
  tt_str_free(&s);
  char all[128];
  for (int i = 0; i < 128; i++) all[i] = (char)i;
  tt_str_appends(&s, "\"");
  tt_str_append_json(&s, all, sizeof(all));
  tt_str_appends(&s, "\"");
  CHECK_EQ(tt_json_validate(s.data, s.len), 0);
  tt_str_t back = {0};
  CHECK_EQ(tt_json_string_decode((tt_json_span_t){s.data, s.len}, &back), 0);
  CHECK_MEM(back.data, back.len, all, sizeof(all));
  tt_str_free(&back);
  tt_str_free(&s);
}

/* ================================================================ messages */

static int builds;

static tt_buf_t *count_build(const tt_msg_t *m) {
  builds++;
  tt_str_t s = {0};
  tt_str_appendf(&s, "[%s#%" PRIu64 "]", m->epoch, m->offset);
  tt_str_append(&s, m->data, m->data_len);
  tt_buf_t *b = tt_buf_from(s.data, s.len);
  tt_str_free(&s);
  return b;
}

static void test_msg(void) {
  tt_msg_t *m = tt_msg_new("chan", 4, "ev", 2, "payload", 7, "epoch123", 9);
  CHECK_STR(m->channel, m->channel_len, "chan");
  CHECK_STR(m->event, m->event_len, "ev");
  CHECK_STR(m->data, m->data_len, "payload");
  CHECK_EQ(m->channel[m->channel_len], '\0');
  CHECK_EQ(m->event[m->event_len], '\0');
  CHECK_EQ(m->data[m->data_len], '\0');
  CHECK(strcmp(m->epoch, "epoch123") == 0);
  CHECK_EQ(m->offset, 9);
  CHECK(m->time_ms > 0);
  CHECK_EQ(atomic_load(&m->refs), 1);

  builds = 0;
  tt_buf_t *a = tt_msg_frame(m, TT_FRAME_SSE, count_build);
  tt_buf_t *b = tt_msg_frame(m, TT_FRAME_SSE, count_build);
  CHECK_EQ(builds, 1);
  CHECK(a == b);
  CHECK_STR(a->data, a->len, "[epoch123#9]payload");
  CHECK_EQ(atomic_load(&a->refs), 1); /* borrowed: the message holds the only ref */
  /* another kind is built on its own */
  tt_buf_t *w = tt_msg_frame(m, TT_FRAME_WS, count_build);
  CHECK_EQ(builds, 2);
  CHECK(w != a);
  CHECK(tt_msg_frame(m, TT_FRAME_WS, count_build) == w);
  CHECK_EQ(builds, 2);

  /* a frame kept past the message */
  tt_buf_t *kept = tt_buf_ref(a);
  tt_msg_ref(m);
  tt_msg_unref(m);
  CHECK_EQ(atomic_load(&m->refs), 1);
  tt_msg_unref(m); /* frees the message and drops its frame refs */
  CHECK_EQ(atomic_load(&kept->refs), 1);
  CHECK_STR(kept->data, kept->len, "[epoch123#9]payload");
  tt_buf_unref(kept);
  tt_msg_unref(NULL);

  /* empty fields; a too long epoch is cut to TT_EPOCH_MAX */
  char long_epoch[80];
  memset(long_epoch, 'e', sizeof(long_epoch) - 1);
  long_epoch[sizeof(long_epoch) - 1] = '\0';
  tt_msg_t *e = tt_msg_new("", 0, "", 0, "", 0, long_epoch, 0);
  CHECK_EQ(e->channel_len + e->event_len + e->data_len, 0);
  CHECK_EQ(strlen(e->epoch), TT_EPOCH_MAX);
  tt_msg_unref(e);
}

int main(void) {
  RUN(test_map_many);
  RUN(test_map_collisions);
  RUN(test_list);
  RUN(test_buf_refs);
  RUN(test_str);
  RUN(test_append_json);
  RUN(test_msg);
  return test_report("test_map");
}
