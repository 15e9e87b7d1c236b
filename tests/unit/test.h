/*
 * A tiny assertion kit for tutti's unit tests. Each test file is one
 * executable: it defines `static void test_*(void)` functions, runs them with
 * RUN() from main, and returns test_report(), which is non-zero when any
 * CHECK failed. A failed CHECK prints file:line and the expression, and the
 * test goes on, so one run shows every failure.
 */
#ifndef TUTTI_TEST_H
#define TUTTI_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int test__failures;
static int test__checks;

/* Prints `len` bytes with C escapes for what is not printable. */
static inline void test__print_bytes(const char *p, size_t len) {
  fputc('"', stderr);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\n') fputs("\\n", stderr);
    else if (c == '\r') fputs("\\r", stderr);
    else if (c == '\t') fputs("\\t", stderr);
    else if (c == '"' || c == '\\') fprintf(stderr, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f) fprintf(stderr, "\\x%02x", c);
    else fputc(c, stderr);
  }
  fputc('"', stderr);
}

static inline int test__fail(const char *file, int line, const char *expr) {
  fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, expr);
  test__failures++;
  return 0;
}

static inline int test__check(int ok, const char *file, int line, const char *expr) {
  test__checks++;
  return ok ? 1 : test__fail(file, line, expr);
}

/* CHECK(cond): evaluates to 1 when cond holds, so it can guard what follows:
 * if (CHECK(p != NULL)) use(p); */
#define CHECK(cond) test__check(!!(cond), __FILE__, __LINE__, #cond)

/* Integer equality with both values shown on failure. */
#define CHECK_EQ(a, b)                                                                              \
  do {                                                                                              \
    long long test__a = (long long)(a), test__b = (long long)(b);                                   \
    test__checks++;                                                                                 \
    if (test__a != test__b) {                                                                       \
      test__fail(__FILE__, __LINE__, #a " == " #b);                                                 \
      fprintf(stderr, "    left:  %lld\n    right: %lld\n", test__a, test__b);                     \
    }                                                                                               \
  } while (0)

/* Byte-exact comparison of (p, len) with (q, qlen), both shown on failure. */
#define CHECK_MEM(p, len, q, qlen)                                                                  \
  do {                                                                                              \
    const char *test__p = (const char *)(p), *test__q = (const char *)(q);                          \
    size_t test__pl = (size_t)(len), test__ql = (size_t)(qlen);                                     \
    test__checks++;                                                                                 \
    if (test__pl != test__ql || (test__pl && memcmp(test__p, test__q, test__pl) != 0)) {           \
      test__fail(__FILE__, __LINE__, #p " == " #q);                                                 \
      fputs("    got:      ", stderr);                                                              \
      test__print_bytes(test__p, test__pl);                                                         \
      fputs("\n    expected: ", stderr);                                                            \
      test__print_bytes(test__q, test__ql);                                                         \
      fputc('\n', stderr);                                                                          \
    }                                                                                               \
  } while (0)

/* (p, len) equals the C string s. */
#define CHECK_STR(p, len, s) CHECK_MEM(p, len, s, strlen(s))

/* Runs one test function, naming it when it added failures. */
#define RUN(fn)                                                                                     \
  do {                                                                                              \
    int test__before = test__failures;                                                              \
    fn();                                                                                           \
    if (test__failures != test__before) fprintf(stderr, "FAIL %s\n", #fn);                        \
  } while (0)

/* main's return value: 0 when every CHECK held. */
static inline int test_report(const char *name) {
  fprintf(stderr, "%s: %d checks, %d failed\n", name, test__checks, test__failures);
  return test__failures ? 1 : 0;
}

#endif
