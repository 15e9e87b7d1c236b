/* Unit tests of the JSON scanner (src/core/json.c). */
#include <errno.h>
#include <stdlib.h>

#include "core/core.h"
#include "test.h"

/* ================================================================ validation */

typedef struct {
  const char *text;
  size_t len; /* 0: strlen(text) */
} json_case_t;

static const json_case_t json_ok[] = {
    {"0", 0}, {"-0", 0}, {"1", 0}, {"-1", 0}, {"123", 0}, {"1e5", 0}, {"1E5", 0}, {"1e+5", 0}, {"1E-05", 0},
    {"-0.0", 0}, {"0.5", 0}, {"-12.34e+56", 0}, {"0e0", 0}, {"1.0E-0", 0}, {"true", 0}, {"false", 0},
    {"null", 0}, {"\"\"", 0}, {"\"abc\"", 0}, {"\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", 0}, {"\"\\u00e9\\u00E9\"", 0},
    {"\"\\ud83d\\ude00\"", 0},
    {"\"\\ud800\"", 0},                /* lone surrogate escapes fit the grammar */
    {"\"\xc3\xa9\"", 0},               /* U+00E9 */
    {"\"\xe2\x82\xac\"", 0},           /* U+20AC */
    {"\"\xef\xbf\xbf\"", 0},           /* U+FFFF */
    {"\"\xf0\x9f\x98\x80\"", 0},       /* U+1F600 */
    {"\"\xf4\x8f\xbf\xbf\"", 0},       /* U+10FFFF */
    {"\"\x7f\"", 0},                   /* DEL is not a control char in JSON */
    {"[]", 0}, {"{}", 0}, {"[ ]", 0}, {"{ }", 0}, {"[1,2,3]", 0}, {" [1 , 2 ,3] ", 0}, {"\t\r\n 1 \n", 0},
    {"{\"a\":1}", 0}, {"{ \"a\" : 1 , \"b\" : [ true , null ] }", 0}, {"{\"a\":{\"b\":[null,{}]}}", 0},
    {"{\"a\":1,\"a\":2}", 0}, /* duplicate keys are valid JSON */
    {"[\"\\u0000\"]", 0},
};

static const json_case_t json_bad[] = {
    {"", 0}, {" ", 0}, {"\n\t", 0},
    /* numbers */
    {"01", 0}, {"-01", 0}, {"00", 0}, {"1.", 0}, {".5", 0}, {"-", 0}, {"+1", 0}, {"1e", 0}, {"1e+", 0},
    {"1E-", 0}, {"1.e5", 0}, {"0x1", 0}, {"NaN", 0}, {"Infinity", 0}, {"-Infinity", 0}, {"1.5.", 0},
    {"- 1", 0}, {"--1", 0},
    /* literals */
    {"tru", 0}, {"nul", 0}, {"truex", 0}, {"True", 0}, {"nulll", 0}, {"f", 0},
    /* strings */
    {"\"abc", 0}, {"\"", 0}, {"'a'", 0}, {"\"\\x\"", 0}, {"\"\\u12\"", 0}, {"\"\\u12g4\"", 0}, {"\"\\U0041\"", 0},
    {"\"\\\"", 0}, {"\"a\\\"", 0}, {"\"\\", 0}, {"\"\\u\"", 0},
    {"\"a\x01\"", 0}, {"\"a\x1f\"", 0}, {"\"\t\"", 0}, {"\"\n\"", 0}, {"\"a\0b\"", 5},
    /* invalid UTF-8 */
    {"\"\x80\"", 0}, {"\"\xbf\"", 0}, {"\"\xff\"", 0}, {"\"\xfe\"", 0}, {"\"\xc3\"", 0}, {"\"\xc3", 0},
    {"\"\xe2\x82\"", 0}, {"\"\xf0\x9f\x98\"", 0}, {"\"\xc3\xc3\"", 0},
    {"\"\xc0\xaf\"", 0},           /* overlong '/' */
    {"\"\xc1\xbf\"", 0},           /* overlong */
    {"\"\xe0\x80\xaf\"", 0},       /* overlong, 3 bytes */
    {"\"\xe0\x9f\xbf\"", 0},       /* overlong U+07FF */
    {"\"\xf0\x80\x80\xaf\"", 0},   /* overlong, 4 bytes */
    {"\"\xf0\x8f\xbf\xbf\"", 0},   /* overlong U+FFFF */
    {"\"\xed\xa0\x80\"", 0},       /* UTF-16 surrogate D800 */
    {"\"\xed\xbf\xbf\"", 0},       /* UTF-16 surrogate DFFF */
    {"\"\xf4\x90\x80\x80\"", 0},   /* above U+10FFFF */
    {"\"\xf5\x80\x80\x80\"", 0},
    /* structure */
    {"[", 0}, {"]", 0}, {"{", 0}, {"[1,]", 0}, {"[,1]", 0}, {"[1 2]", 0}, {"{\"a\"}", 0}, {"{\"a\":}", 0},
    {"{a:1}", 0}, {"{\"a\":1,}", 0}, {"{,}", 0}, {"{\"a\" 1}", 0}, {"{1:1}", 0}, {"[}", 0}, {"{]", 0},
    {"{\"a\":1", 0}, {"[1", 0}, {"[1,", 0},
    /* trailing garbage */
    {"1 2", 0}, {"{} x", 0}, {"[]]", 0}, {"{}}", 0}, {"\"a\"\"b\"", 0}, {"\"a\"\0", 4}, {"null,", 0},
    {"1\v", 0}, {"\f1", 0},
};

static void test_validate_table(void) {
  for (size_t i = 0; i < TT_ARRAY_SIZE(json_ok); i++) {
    const json_case_t *c = &json_ok[i];
    size_t len = c->len ? c->len : strlen(c->text);
    char *copy = tt_malloc(len); /* exact size, for ASan */
    memcpy(copy, c->text, len);
    if (!CHECK(tt_json_validate(copy, len) == 0)) {
      fputs("    should accept: ", stderr);
      test__print_bytes(c->text, len);
      fputc('\n', stderr);
    }
    free(copy);
  }
  for (size_t i = 0; i < TT_ARRAY_SIZE(json_bad); i++) {
    const json_case_t *c = &json_bad[i];
    size_t len = c->len ? c->len : strlen(c->text);
    char *copy = tt_malloc(len);
    memcpy(copy, c->text, len);
    if (!CHECK(tt_json_validate(copy, len) == -EINVAL)) {
      fputs("    should reject: ", stderr);
      test__print_bytes(c->text, len);
      fputc('\n', stderr);
    }
    free(copy);
  }
}

/* `n` arrays nested, each opened and closed: [[[...]]] */
static char *nested(int n, size_t *len) {
  char *s = tt_malloc((size_t)n * 2 + 1);
  for (int i = 0; i < n; i++) {
    s[i] = '[';
    s[2 * n - 1 - i] = ']';
  }
  s[2 * n] = '\0';
  *len = (size_t)n * 2;
  return s;
}

static void test_depth(void) {
  size_t len;
  char *ok = nested(TT_JSON_MAX_DEPTH, &len);
  CHECK_EQ(tt_json_validate(ok, len), 0);
  free(ok);
  char *deep = nested(TT_JSON_MAX_DEPTH + 1, &len);
  CHECK_EQ(tt_json_validate(deep, len), -EINVAL);
  free(deep);
  /* far deeper than any stack frame budget: still a clean rejection */
  char *huge = nested(100000, &len);
  CHECK_EQ(tt_json_validate(huge, len), -EINVAL);
  free(huge);
  /* objects count too */
  tt_str_t s = {0};
  for (int i = 0; i < TT_JSON_MAX_DEPTH; i++) tt_str_appends(&s, "{\"a\":");
  tt_str_appends(&s, "1");
  for (int i = 0; i < TT_JSON_MAX_DEPTH; i++) tt_str_appends(&s, "}");
  CHECK_EQ(tt_json_validate(s.data, s.len), 0);
  tt_str_free(&s);
  for (int i = 0; i <= TT_JSON_MAX_DEPTH; i++) tt_str_appends(&s, "{\"a\":");
  tt_str_appends(&s, "1");
  for (int i = 0; i <= TT_JSON_MAX_DEPTH; i++) tt_str_appends(&s, "}");
  CHECK_EQ(tt_json_validate(s.data, s.len), -EINVAL);
  tt_str_free(&s);
}

/* ================================================================ object scan */

typedef struct {
  int n;
  tt_json_span_t keys[16], values[16];
  int stop_at; /* return 42 on that member (1-based); 0: never */
} members_t;

static int collect(void *ctx, tt_json_span_t key, tt_json_span_t value) {
  members_t *m = ctx;
  if (m->n < 16) {
    m->keys[m->n] = key;
    m->values[m->n] = value;
  }
  m->n++;
  return m->n == m->stop_at ? 42 : 0;
}

static void test_object_scan(void) {
  const char *text = " { \"data\" : {\"x\": [1, 2.5e3, \"y\\n\"], \"z\" :{}} ,\"event\":\"e\\u00e9\",\"n\": -0 , "
                     "\"t\":true,\"a\\\"b\":null, \"arr\" : [ ] ,\"s\":\"\"}\n";
  size_t len = strlen(text);
  char *buf = tt_malloc(len);
  memcpy(buf, text, len);
  members_t m = {0};
  CHECK_EQ(tt_json_object_scan(buf, len, collect, &m), 0);
  static const char *const keys[] = {"data", "event", "n", "t", "a\\\"b", "arr", "s"};
  static const char *const values[] = {"{\"x\": [1, 2.5e3, \"y\\n\"], \"z\" :{}}", "\"e\\u00e9\"", "-0", "true",
                                       "null", "[ ]", "\"\""};
  CHECK_EQ(m.n, 7);
  for (int i = 0; i < m.n && i < 7; i++) {
    CHECK_STR(m.keys[i].p, m.keys[i].len, keys[i]);
    CHECK_STR(m.values[i].p, m.values[i].len, values[i]);
    /* spans are slices of the buffer, not copies */
    CHECK(m.keys[i].p > buf && m.keys[i].p + m.keys[i].len < buf + len);
    CHECK(m.values[i].p > buf && m.values[i].p + m.values[i].len < buf + len);
    const char *where = strstr(text, values[i]);
    CHECK(where != NULL && m.values[i].p == buf + (where - text));
  }
  free(buf);

  /* the data span is the input slice byte for byte, whitespace and escapes kept */
  const char *pub = "{\"channel\":\"c\",\"data\":{ \"k\" :\t[1 ,\"\\u0041\\/\"] }\n}";
  m = (members_t){0};
  CHECK_EQ(tt_json_object_scan(pub, strlen(pub), collect, &m), 0);
  CHECK_EQ(m.n, 2);
  CHECK_STR(m.values[1].p, m.values[1].len, "{ \"k\" :\t[1 ,\"\\u0041\\/\"] }");
  CHECK(m.values[1].p == pub + 22);

  m = (members_t){0};
  CHECK_EQ(tt_json_object_scan("{}", 2, collect, &m), 0);
  CHECK_EQ(m.n, 0);
  CHECK_EQ(tt_json_object_scan(" { } ", 5, collect, &m), 0);
  CHECK_EQ(m.n, 0);

  /* duplicates are all passed on */
  m = (members_t){0};
  CHECK_EQ(tt_json_object_scan("{\"a\":1,\"a\":2}", 13, collect, &m), 0);
  CHECK_EQ(m.n, 2);

  /* the callback's non-zero return stops the scan and is returned */
  m = (members_t){.stop_at = 2};
  CHECK_EQ(tt_json_object_scan("{\"a\":1,\"b\":2,\"c\":3}", 19, collect, &m), 42);
  CHECK_EQ(m.n, 2);

  /* valid, not an object */
  static const char *const notobj[] = {"[]", "[{\"a\":1}]", "1", "\"s\"", "null", " true "};
  for (size_t i = 0; i < TT_ARRAY_SIZE(notobj); i++) {
    m = (members_t){0};
    CHECK_EQ(tt_json_object_scan(notobj[i], strlen(notobj[i]), collect, &m), -ENOTSUP);
    CHECK_EQ(m.n, 0);
  }
  /* invalid: nothing is reported, not even the members before the error */
  static const char *const invalid[] = {"", "{", "{\"a\":1,}", "{\"a\":1} x", "{\"a\":01}", "[", "{\"a\":1,\"b\"}",
                                        "{\"a\":\"\x80\"}"};
  for (size_t i = 0; i < TT_ARRAY_SIZE(invalid); i++) {
    m = (members_t){0};
    CHECK_EQ(tt_json_object_scan(invalid[i], strlen(invalid[i]), collect, &m), -EINVAL);
    CHECK_EQ(m.n, 0);
  }
}

/* ================================================================ string decoding */

#define CHECK_DECODE(lit, want)                                                                     \
  do {                                                                                              \
    tt_str_t o_ = {0};                                                                              \
    tt_json_span_t s_ = {lit, sizeof(lit) - 1};                                                     \
    CHECK_EQ(tt_json_string_decode(s_, &o_), 0);                                                    \
    CHECK_MEM(o_.data, o_.len, want, sizeof(want) - 1);                                             \
    tt_str_free(&o_);                                                                               \
  } while (0)

static void test_string_decode(void) {
  CHECK_DECODE("\"\"", "");
  CHECK_DECODE("\"abc\"", "abc");
  CHECK_DECODE("\"a\\\"b\\\\c\\/d\"", "a\"b\\c/d");
  CHECK_DECODE("\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t");
  CHECK_DECODE("\"\\u0041\\u0062\"", "Ab");
  CHECK_DECODE("\"\\u00e9\\u00E9\"", "\xc3\xa9\xc3\xa9");
  CHECK_DECODE("\"\\u07ff\\u0800\"", "\xdf\xbf\xe0\xa0\x80");
  CHECK_DECODE("\"\\u20ac\"", "\xe2\x82\xac");
  CHECK_DECODE("\"\\uffff\"", "\xef\xbf\xbf");
  CHECK_DECODE("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80");
  CHECK_DECODE("\"\\uD83D\\uDE00!\"", "\xf0\x9f\x98\x80!");
  CHECK_DECODE("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
  CHECK_DECODE("\"\\u0000\"", "\0");
  /* lone surrogates become U+FFFD */
  CHECK_DECODE("\"\\ud83dx\"", "\xef\xbf\xbdx");
  CHECK_DECODE("\"\\ude00\"", "\xef\xbf\xbd");
  CHECK_DECODE("\"\\ud83d\\u0041\"", "\xef\xbf\xbd" "A");
  CHECK_DECODE("\"\\ud83d\\ud83d\\ude00\"", "\xef\xbf\xbd\xf0\x9f\x98\x80");
  CHECK_DECODE("\"\\ud83d\"", "\xef\xbf\xbd");
  /* raw UTF-8 passes through */
  CHECK_DECODE("\"caf\xc3\xa9 \xf0\x9f\x98\x80\"", "caf\xc3\xa9 \xf0\x9f\x98\x80");

  /* not strings */
  static const char *const bad[] = {"", "\"", "abc", "\"abc", "abc\"", "1", "\"\\u12\"", "\"\\u\""};
  for (size_t i = 0; i < TT_ARRAY_SIZE(bad); i++) {
    tt_str_t o = {0};
    tt_json_span_t s = {bad[i], strlen(bad[i])};
    if (!CHECK(tt_json_string_decode(s, &o) == -EINVAL)) fprintf(stderr, "    \"%s\"\n", bad[i]);
    tt_str_free(&o);
  }

  /* on the spans the scanner hands out */
  const char *obj = "{\"k\\u0041\":\"v\\n\\u00e9\"}";
  members_t m = {0};
  CHECK_EQ(tt_json_object_scan(obj, strlen(obj), collect, &m), 0);
  if (CHECK(m.n == 1)) {
    tt_str_t o = {0};
    CHECK_EQ(tt_json_string_decode(m.values[0], &o), 0);
    CHECK_STR(o.data, o.len, "v\n\xc3\xa9");
    tt_str_free(&o);
    /* a key span is inside the quotes: widen it by one each side */
    tt_json_span_t key = {m.keys[0].p - 1, m.keys[0].len + 2};
    CHECK_EQ(tt_json_string_decode(key, &o), 0);
    CHECK_STR(o.data, o.len, "kA");
    tt_str_free(&o);
  }
}

int main(void) {
  RUN(test_validate_table);
  RUN(test_depth);
  RUN(test_object_scan);
  RUN(test_string_decode);
  return test_report("test_json");
}
