/*
 * libFuzzer target for the WAV reader (src/audio/codec.c, audio_decode_wav),
 * which parses files users supply, and for the SerializedBuffer number
 * formatter, fed with whatever floats those files hold.
 *
 * The input is a file's bytes, read at 48 kHz and at 44.1 kHz: both must
 * succeed or fail together, with -EINVAL as the only failure, finite samples
 * and lengths in proportion. What decodes is written back as WAV and read
 * again (the same int16 values), and its first samples go through the JSON
 * encoders: the output must be valid JSON whose numbers read back within
 * half a millionth (Float32) or exactly as audio_f2s16 (Int16). Every
 * invariant that fails aborts, so libFuzzer keeps the input.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio/audio.h"
#include "fuzz.h"

#define FUZZ_JSON_FRAMES 2048 /* samples sent through the JSON encoders */

/* Reads back the numbers of the last "channels" array of `s`. */
static void fuzz_json_numbers(const tt_str_t *s, const float *v, size_t n, bool int16) {
  FUZZ_CHECK(tt_json_validate(s->data, s->len) == 0);
  const char *p = strstr(s->data, "\"channels\":[[");
  FUZZ_CHECK(p != NULL);
  p += 13;
  for (size_t i = 0; i < n; i++) {
    char *end;
    double got = strtod(p, &end);
    FUZZ_CHECK(end > p && (*end == ',' || *end == ']'));
    FUZZ_CHECK(!(end - p == 2 && p[0] == '-' && p[1] == '0')); /* never "-0" */
    if (int16) {
      FUZZ_CHECK(got == audio_f2s16(v[i]));
    } else {
      double want = v[i];
      /* half a millionth, plus the doubles' own rounding at this magnitude */
      double tol = fabs(want) < 1e9 ? 5e-7 + 1e-12 + fabs(want) * 1e-15 : fabs(want) * 1e-8;
      if (!(fabs(got - want) <= tol)) fprintf(stderr, "value %zu: %.9g written as %.*s\n", i, want, (int)(end - p), p);
      FUZZ_CHECK(fabs(got - want) <= tol);
    }
    p = end + 1;
  }
  if (n == 0) FUZZ_CHECK(strcmp(p, "]]}") == 0);
  else FUZZ_CHECK(p[-1] == ']' && strcmp(p, "]}") == 0);
}

static void fuzz_reencode(const float *v, size_t n) {
  audio_pcm_t pcm = {.sample_rate = 48000, .channels = 1, .frames = n, .data = {(float *)v}};
  tt_str_t wav = {0};
  audio_encode_wav(&pcm, &wav);
  FUZZ_CHECK(wav.len == 44 + n * 2);
  float *again = NULL;
  size_t m = 0;
  FUZZ_CHECK(audio_decode_wav(wav.data, wav.len, 48000, &again, &m) == 0);
  FUZZ_CHECK(m == n);
  for (size_t i = 0; i < n; i++) FUZZ_CHECK(audio_f2s16(again[i]) == audio_f2s16(v[i]));
  free(again);
  tt_str_free(&wav);

  pcm.frames = TT_MIN(n, (size_t)FUZZ_JSON_FRAMES);
  for (int int16 = 0; int16 < 2; int16++) {
    tt_str_t js = {0};
    audio_encode_serialized(&pcm, int16, "\"id\":\"f\"", &js);
    fuzz_json_numbers(&js, v, pcm.frames, int16);
    tt_str_free(&js);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size copy, so ASan sees any read past the end. */
  uint8_t *buf = tt_malloc(size ? size : 1);
  if (size) memcpy(buf, data, size);

  float *a = NULL, *b = NULL;
  size_t na = 99, nb = 99;
  int ra = audio_decode_wav(buf, size, 48000, &a, &na);
  int rb = audio_decode_wav(buf, size, 44100, &b, &nb);
  FUZZ_CHECK(ra == 0 || ra == -EINVAL);
  FUZZ_CHECK(ra == rb);
  if (ra != 0) {
    FUZZ_CHECK(a == NULL && na == 0 && b == NULL && nb == 0);
  } else {
    FUZZ_CHECK(a != NULL && b != NULL);
    FUZZ_CHECK(na <= AUDIO_DURATION_LIMIT * 48000 + 1);
    /* the same file at two rates: lengths in proportion, to rounding */
    FUZZ_CHECK(fabs((double)nb - (double)na * 44100 / 48000) <= 1.5);
    for (size_t i = 0; i < na; i++) FUZZ_CHECK(isfinite(a[i]));
    for (size_t i = 0; i < nb; i++) FUZZ_CHECK(isfinite(b[i]));
    fuzz_reencode(a, na);
  }
  free(a);
  free(b);
  free(buf);
  return 0;
}
