/*
 * Unit tests of the audio codecs (src/audio/codec.c): int16 and Float32
 * SerializedBuffer JSON read back with jansson, PCM16, WAV written and read
 * (every sample format, odd chunks, resampling, truncation), Ogg Opus
 * decoded with opusfile, the files checked by ffprobe and soxi, base64.
 */
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <opusfile.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audio/audio.h"
#include "test.h"

/* ================================================================ helpers */

static uint64_t rng_state;

static void rng_seed(uint64_t s) { rng_state = s; }

/* splitmix64 */
static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static double rng_unit(void) { return (double)(rng_next() >> 11) / (double)(1ull << 52) - 1.0; }

static audio_pcm_t pcm_new(int rate, int channels, size_t frames) {
  audio_pcm_t p = {.sample_rate = rate, .channels = channels, .frames = frames};
  for (int c = 0; c < channels; c++) p.data[c] = tt_calloc(frames ? frames : 1, sizeof(float));
  return p;
}

static void pcm_release(audio_pcm_t *p) {
  for (int c = 0; c < p->channels; c++) free(p->data[c]);
}

static double clampd(double v) { return v > 1 ? 1 : v < -1 ? -1 : v; }

static const double PI = 3.14159265358979323846;

/* A chord of three sines plus a little noise, the "musical-ish" signal the
 * Opus tests encode; channel 1 plays another voicing. */
static double chord_at(int channel, double t) {
  static const double hz[2][3] = {{220.0, 277.18, 329.63}, {164.81, 246.94, 392.0}};
  double v = 0;
  for (int k = 0; k < 3; k++) v += 0.2 * sin(2 * PI * hz[channel][k] * t + k);
  return v;
}

static audio_pcm_t chord_pcm(int rate, int channels, double seconds) {
  audio_pcm_t p = pcm_new(rate, channels, (size_t)lround(seconds * rate));
  rng_seed(42);
  for (size_t i = 0; i < p.frames; i++)
    for (int c = 0; c < channels; c++) p.data[c][i] = (float)(chord_at(c, (double)i / rate) + 0.01 * rng_unit());
  return p;
}

/* An exact-size heap copy, so ASan sees any read past the end. */
static void *dup_exact(const void *p, size_t n) {
  void *q = tt_malloc(n);
  if (n) memcpy(q, p, n);
  return q;
}

static json_t *parse_json(const tt_str_t *s) {
  json_error_t err;
  json_t *j = json_loadb(s->data, s->len, 0, &err);
  if (!CHECK(j != NULL)) fprintf(stderr, "    jansson: %s at %d\n", err.text, err.position);
  return j;
}

/* ================================================================ encodings, base64 */

static void test_encoding_names(void) {
  static const char *names[] = {"opus", "pcm16", "json", "json16"};
  for (int e = 0; e < AUDIO_ENC_COUNT; e++) {
    CHECK_EQ(audio_encoding_parse(names[e], strlen(names[e])), e);
    const char *n = audio_encoding_name((audio_encoding_t)e);
    if (CHECK(n != NULL)) CHECK(strcmp(n, names[e]) == 0);
  }
  CHECK_EQ(audio_encoding_parse("json16x", 6), AUDIO_ENC_JSON16); /* length-delimited */
  CHECK_EQ(audio_encoding_parse("json16x", 4), AUDIO_ENC_JSON);
  CHECK_EQ(audio_encoding_parse("opus", 3), -1);
  CHECK_EQ(audio_encoding_parse("OPUS", 4), -1);
  CHECK_EQ(audio_encoding_parse("", 0), -1);
  CHECK_EQ(audio_encoding_parse("wav", 3), -1);
  CHECK(audio_encoding_name(AUDIO_ENC_COUNT) == NULL);
}

/* Bit by bit, to compare the table-driven encoder with. */
static void base64_slow(const uint8_t *p, size_t n, tt_str_t *out) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t bits = n * 8;
  for (size_t at = 0; at < bits; at += 6) {
    int v = 0;
    for (size_t b = at; b < at + 6; b++) v = v << 1 | (b < bits ? (p[b / 8] >> (7 - b % 8)) & 1 : 0);
    tt_str_append(out, &abc[v], 1);
  }
  while (out->len % 4) tt_str_append(out, "=", 1);
}

static void test_base64(void) {
  static const char *rfc[][2] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                 {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                                 {"foobar", "Zm9vYmFy"}};
  for (size_t i = 0; i < TT_ARRAY_SIZE(rfc); i++) {
    tt_str_t s = {0};
    tt_str_append_base64(&s, rfc[i][0], strlen(rfc[i][0]));
    CHECK_STR(s.data, s.len, rfc[i][1]);
    tt_str_free(&s);
  }
  /* appends */
  tt_str_t s = {0};
  tt_str_appends(&s, "x:");
  tt_str_append_base64(&s, "\xff\xfe\xfd", 3);
  CHECK_STR(s.data, s.len, "x://79");
  CHECK(s.data[s.len] == '\0');
  tt_str_free(&s);
  /* not base64 */
  tt_str_t bad = {0};
  CHECK(tt_base64_decode("Zm9v!A", 6, &bad) == -EINVAL && bad.len == 0);
  CHECK(tt_base64_decode("Z", 1, &bad) == -EINVAL);
  tt_str_free(&bad);
  /* every byte value, every tail length */
  uint8_t bytes[300];
  rng_seed(7);
  for (size_t i = 0; i < sizeof(bytes); i++) bytes[i] = i < 256 ? (uint8_t)i : (uint8_t)rng_next();
  for (size_t n = 0; n <= sizeof(bytes); n++) {
    tt_str_t a = {0}, b = {0};
    tt_str_append_base64(&a, bytes, n);
    base64_slow(bytes, n, &b);
    CHECK_MEM(a.data, a.len, b.data, b.len);
    tt_str_t d = {0};
    CHECK(tt_base64_decode(a.data ? a.data : "", a.len, &d) == 0);
    CHECK_MEM(d.data, d.len, bytes, n);
    tt_str_free(&d);
    tt_str_free(&a);
    tt_str_free(&b);
  }
}

/* ================================================================ int16 */

static void test_int16_roundtrip(void) {
  static const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 1.0f / 32767, -1.0f / 32767, 0.5f / 32767,
                                  -0.5f / 32767, 0.49f / 32767, 1.0000001f, -1.0000001f, 1.5f, -3.0f, 100.0f,
                                  FLT_MAX, -FLT_MAX, 1e-30f, 0.999985f, -0.999985f};
  size_t ns = TT_ARRAY_SIZE(special), nl = 4001;
  audio_pcm_t p = pcm_new(48000, 2, ns + nl);
  for (size_t i = 0; i < ns; i++) p.data[0][i] = special[i];
  for (size_t i = 0; i < nl; i++) p.data[0][ns + i] = (float)(-1.5 + 3.0 * (double)i / (double)(nl - 1));
  for (size_t i = 0; i < p.frames; i++) p.data[1][i] = -p.data[0][p.frames - 1 - i];

  tt_str_t js = {0}, raw = {0};
  audio_encode_serialized(&p, true, NULL, &js);
  audio_encode_pcm16(&p, &raw);
  CHECK_EQ(raw.len, p.frames * 2 * 2);
  json_t *j = parse_json(&js);
  if (j != NULL) {
    CHECK(json_is_true(json_object_get(j, "compressed")));
    json_t *chans = json_object_get(j, "channels");
    if (CHECK(json_is_array(chans) && json_array_size(chans) == 2)) {
      for (int c = 0; c < 2; c++) {
        json_t *a = json_array_get(chans, (size_t)c);
        if (!CHECK(json_is_array(a) && json_array_size(a) == p.frames)) continue;
        int bad = 0;
        for (size_t i = 0; i < p.frames && bad < 5; i++) {
          json_t *v = json_array_get(a, i);
          if (!json_is_integer(v)) {
            bad += !CHECK(json_is_integer(v));
            continue;
          }
          long long s = json_integer_value(v);
          double want = clampd(p.data[c][i]);
          /* within one LSB of the clamped input, and exactly audio_f2s16 */
          if (!CHECK(fabs((double)s / 32767.0 - want) <= 1.0 / 32767 + 1e-12 && s == audio_f2s16(p.data[c][i]))) {
            fprintf(stderr, "    channel %d [%zu]: %.9g -> %lld\n", c, i, (double)p.data[c][i], s);
            bad++;
          }
          /* the PCM16 bytes hold the same integer */
          const uint8_t *r = (const uint8_t *)raw.data + (i * 2 + (size_t)c) * 2;
          int16_t rs = (int16_t)(uint16_t)(r[0] | r[1] << 8);
          if (!CHECK(rs == s)) bad++;
        }
      }
    }
    json_decref(j);
  }
  tt_str_free(&js);
  tt_str_free(&raw);
  pcm_release(&p);
}

/* ================================================================ Float32 JSON */

static void expect_serialized(const float *v, size_t n, bool int16, const char *extra, const char *want) {
  audio_pcm_t p = pcm_new(48000, 1, n);
  if (n) memcpy(p.data[0], v, n * sizeof(float));
  tt_str_t s = {0};
  audio_encode_serialized(&p, int16, extra, &s);
  CHECK_STR(s.data, s.len, want);
  CHECK(s.data[s.len] == '\0');
  tt_str_free(&s);
  pcm_release(&p);
}

static void test_float_json_text(void) {
  const float v[] = {0.5f, -0.1234567f, 0.0f, -0.0000004f};
  expect_serialized(v, 4, false, "\"id\":\"x\"",
                    "{\"id\":\"x\",\"sampleRate\":48000,\"length\":4,\"duration\":0.000083,\"numberOfChannels\":1,"
                    "\"channels\":[[0.5,-0.123457,0,0]]}");
  expect_serialized(v, 4, true, "\"id\":\"x\"",
                    "{\"id\":\"x\",\"sampleRate\":48000,\"length\":4,\"duration\":0.000083,\"numberOfChannels\":1,"
                    "\"compressed\":true,\"channels\":[[16384,-4045,0,0]]}");
  const float w[] = {1.0f, -1.0f, 2.5f, 1e-6f, 5e-7f, -5e-7f, 0.1f, 123.456f, -0.0f, 0.999999f, 0.9999996f,
                     -12.000001f, NAN, INFINITY, -INFINITY, 1e10f, -3e9f, 999999.9f};
  expect_serialized(w, TT_ARRAY_SIZE(w), false, NULL,
                    "{\"sampleRate\":48000,\"length\":18,\"duration\":0.000375,\"numberOfChannels\":1,"
                    "\"channels\":[[1,-1,2.5,0.000001,0,0,0.1,123.456001,0,0.999999,1,-12.000001,0,0,0,1e+10,"
                    "-3e+09,999999.875]]}");
  expect_serialized(NULL, 0, false, "", "{\"sampleRate\":48000,\"length\":0,\"duration\":0,\"numberOfChannels\":1,"
                                        "\"channels\":[[]]}");
  expect_serialized(NULL, 0, true, NULL, "{\"sampleRate\":48000,\"length\":0,\"duration\":0,\"numberOfChannels\":1,"
                                         "\"compressed\":true,\"channels\":[[]]}");
  /* 48000 frames: "duration":1 */
  audio_pcm_t p = pcm_new(48000, 1, 48000);
  tt_str_t s = {0};
  audio_encode_serialized(&p, false, NULL, &s);
  CHECK(strstr(s.data, "\"duration\":1,") != NULL);
  tt_str_free(&s);
  pcm_release(&p);
}

static void test_float_json_parse(void) {
  /* Two channels of 50000 values; enough to cross the encoder's blocks, with
   * huge and non-finite values mixed in to force its slow path mid-block. */
  audio_pcm_t p = pcm_new(44100, 2, 50000);
  rng_seed(1);
  for (size_t i = 0; i < p.frames; i++) {
    p.data[0][i] = (float)(1.2 * rng_unit());
    p.data[1][i] = (float)(rng_unit() * pow(10, (double)(rng_next() % 8) - 7));
  }
  p.data[0][4095] = 3e20f;
  p.data[0][4096] = -FLT_MAX;
  p.data[1][777] = NAN;
  tt_str_t s = {0};
  tt_str_appends(&s, "prefix:"); /* the encoder appends */
  audio_encode_serialized(&p, false, "\"render_id\":\"r1\",\"n\":[1,2]", &s);
  CHECK(strncmp(s.data, "prefix:", 7) == 0);
  json_error_t err;
  json_t *j = json_loadb(s.data + 7, s.len - 7, 0, &err);
  if (!CHECK(j != NULL)) fprintf(stderr, "    jansson: %s at %d\n", err.text, err.position);
  if (j != NULL) {
    CHECK(json_is_object(j));
    CHECK_EQ(json_integer_value(json_object_get(j, "sampleRate")), 44100);
    CHECK_EQ(json_integer_value(json_object_get(j, "length")), 50000);
    CHECK_EQ(json_integer_value(json_object_get(j, "numberOfChannels")), 2);
    CHECK(fabs(json_number_value(json_object_get(j, "duration")) - 50000.0 / 44100) <= 5e-7);
    CHECK(json_object_get(j, "compressed") == NULL);
    CHECK(strcmp(json_string_value(json_object_get(j, "render_id")), "r1") == 0);
    CHECK_EQ(json_array_size(json_object_get(j, "n")), 2);
    json_t *chans = json_object_get(j, "channels");
    if (CHECK(json_is_array(chans) && json_array_size(chans) == 2)) {
      for (int c = 0; c < 2; c++) {
        json_t *a = json_array_get(chans, (size_t)c);
        if (!CHECK(json_is_array(a) && json_array_size(a) == p.frames)) continue;
        int bad = 0;
        for (size_t i = 0; i < p.frames && bad < 5; i++) {
          double want = isfinite(p.data[c][i]) ? p.data[c][i] : 0.0, got = json_number_value(json_array_get(a, i));
          double tol = fabs(want) < 1e9 ? 5e-7 + 1e-12 : fabs(want) * 1e-6;
          if (!CHECK(json_is_number(json_array_get(a, i)) && fabs(got - want) <= tol)) {
            fprintf(stderr, "    channel %d [%zu]: %.9g -> %.9g\n", c, i, want, got);
            bad++;
          }
        }
      }
    }
    json_decref(j);
  }
  tt_str_free(&s);
  pcm_release(&p);
}

/* ================================================================ WAV */

static void test_wav_header(void) {
  audio_pcm_t p = pcm_new(48000, 2, 3);
  const float l[] = {0.5f, -1.0f, 0.0f}, r[] = {2.0f, -0.25f, 1e-9f};
  memcpy(p.data[0], l, sizeof(l));
  memcpy(p.data[1], r, sizeof(r));
  tt_str_t s = {0};
  audio_encode_wav(&p, &s);
  static const uint8_t want[] = {
      'R', 'I', 'F', 'F', 48, 0, 0, 0, 'W', 'A', 'V', 'E',        /* RIFF size 36 + 12 */
      'f', 'm', 't', ' ', 16, 0, 0, 0,                            /* fmt, 16 bytes */
      1, 0, 2, 0, 0x80, 0xBB, 0, 0,                               /* PCM, stereo, 48000 Hz */
      0x00, 0xEE, 0x02, 0,                                        /* 192000 bytes/s */
      4, 0, 16, 0,                                                /* block 4, 16 bits */
      'd', 'a', 't', 'a', 12, 0, 0, 0,                            /* 12 bytes of samples */
      0x00, 0x40, 0xFF, 0x7F,                                     /* 16384, 32767 */
      0x01, 0x80, 0x00, 0xE0,                                     /* -32767, -8192 */
      0x00, 0x00, 0x00, 0x00,                                     /* 0, 0 */
  };
  CHECK_MEM(s.data, s.len, want, sizeof(want));
  tt_str_free(&s);
  pcm_release(&p);

  /* mono 44.1 kHz: the rate fields */
  audio_pcm_t m = pcm_new(44100, 1, 0);
  audio_encode_wav(&m, &s);
  static const uint8_t want_m[] = {'R', 'I', 'F', 'F', 36, 0, 0, 0, 'W', 'A', 'V', 'E', 'f', 'm', 't', ' ',
                                   16, 0, 0, 0, 1, 0, 1, 0, 0x44, 0xAC, 0, 0, 0x88, 0x58, 0x01, 0,
                                   2, 0, 16, 0, 'd', 'a', 't', 'a', 0, 0, 0, 0};
  CHECK_MEM(s.data, s.len, want_m, sizeof(want_m));
  tt_str_free(&s);
  pcm_release(&m);
}

static void test_wav_roundtrip(void) {
  audio_pcm_t p = pcm_new(48000, 1, 20000);
  rng_seed(3);
  for (size_t i = 0; i < p.frames; i++) p.data[0][i] = (float)(1.1 * rng_unit());
  p.data[0][0] = 1.0f;
  p.data[0][1] = -1.0f;
  p.data[0][2] = 0.0f;
  tt_str_t s = {0};
  audio_encode_wav(&p, &s);
  void *file = dup_exact(s.data, s.len);
  float *out = NULL;
  size_t n = 0;
  if (CHECK(audio_decode_wav(file, s.len, 48000, &out, &n) == 0) && CHECK(n == p.frames)) {
    int bad = 0;
    for (size_t i = 0; i < n && bad < 5; i++) {
      double want = clampd(p.data[0][i]);
      if (!CHECK(fabs(out[i] - want) <= 1.0 / 32767 && audio_f2s16(out[i]) == audio_f2s16(p.data[0][i]))) {
        fprintf(stderr, "    [%zu]: %.9g -> %.9g\n", i, want, (double)out[i]);
        bad++;
      }
    }
  }
  free(out);
  /* read at 44.1 kHz: the length scales */
  if (CHECK(audio_decode_wav(file, s.len, 44100, &out, &n) == 0)) CHECK_EQ(n, 18375); /* 20000 * 44100 / 48000 */
  free(out);
  /* every strict prefix is truncated */
  int bad = 0;
  for (size_t k = 0; k < s.len && bad < 5; k++) {
    void *cut = dup_exact(s.data, k);
    out = (float *)&bad; /* must be reset */
    n = 99;
    int rc = audio_decode_wav(cut, k, 48000, &out, &n);
    if (!CHECK(rc == -EINVAL && out == NULL && n == 0)) {
      fprintf(stderr, "    prefix of %zu bytes: %d\n", k, rc);
      bad++;
    }
    if (rc == 0) free(out);
    free(cut);
  }
  free(file);
  tt_str_free(&s);
  pcm_release(&p);
}

typedef struct {
  int tag;            /* 1 PCM, 3 float */
  int channels;
  uint32_t rate;
  int bits;
  bool extensible;
  bool junk;          /* odd-sized chunks before "fmt " and between it and "data" */
  bool data_first;    /* "data" before "fmt " */
} wav_spec_t;

static void put_le(tt_str_t *s, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; i++) {
    char c = (char)(v >> (8 * i));
    tt_str_append(s, &c, 1);
  }
}

static void put_chunk(tt_str_t *s, const char *id, const void *p, size_t n) {
  tt_str_append(s, id, 4);
  put_le(s, (uint32_t)n, 4);
  tt_str_append(s, p, n);
  if (n & 1) tt_str_append(s, "\0", 1);
}

/* A WAV file of `spec` around the sample bytes `data`. */
static void wav_build(tt_str_t *s, const wav_spec_t *spec, const void *data, size_t n) {
  tt_str_t fmt = {0};
  int bytes = (spec->bits + 7) / 8;
  put_le(&fmt, spec->extensible ? 0xFFFE : (uint32_t)spec->tag, 2);
  put_le(&fmt, (uint32_t)spec->channels, 2);
  put_le(&fmt, spec->rate, 4);
  put_le(&fmt, spec->rate * (uint32_t)(spec->channels * bytes), 4);
  put_le(&fmt, (uint32_t)(spec->channels * bytes), 2);
  put_le(&fmt, (uint32_t)spec->bits, 2);
  if (spec->extensible) {
    put_le(&fmt, 22, 2);
    put_le(&fmt, (uint32_t)spec->bits, 2);
    put_le(&fmt, 0x3, 4); /* FL | FR */
    put_le(&fmt, (uint32_t)spec->tag, 2);
    tt_str_append(&fmt, "\x00\x00\x00\x00\x10\x00\x80\x00\x00\xAA\x00\x38\x9B\x71", 14);
  }
  tt_str_append(s, "RIFF\0\0\0\0WAVE", 12);
  if (spec->junk) put_chunk(s, "LIST", "INFOx", 5);
  if (spec->data_first) put_chunk(s, "data", data, n);
  put_chunk(s, "fmt ", fmt.data, fmt.len);
  if (spec->junk) put_chunk(s, "junk", "abc", 3);
  if (!spec->data_first) put_chunk(s, "data", data, n);
  uint32_t riff = (uint32_t)s->len - 8;
  memcpy(s->data + 4, (char[4]){(char)riff, (char)(riff >> 8), (char)(riff >> 16), (char)(riff >> 24)}, 4);
  tt_str_free(&fmt);
}

/* Decodes `spec` + `data` at the file's own rate and compares with `want`. */
static void expect_decode(const wav_spec_t *spec, const void *data, size_t n, const double *want, size_t count,
                          int line) {
  tt_str_t s = {0};
  wav_build(&s, spec, data, n);
  void *file = dup_exact(s.data, s.len);
  float *out = NULL;
  size_t frames = 0;
  int rc = audio_decode_wav(file, s.len, (int)spec->rate, &out, &frames);
  if (!CHECK(rc == 0 && frames == count)) {
    fprintf(stderr, "    case at line %d: rc %d, %zu frames, want %zu\n", line, rc, frames, count);
  } else {
    for (size_t i = 0; i < count; i++)
      if (!CHECK(fabs(out[i] - want[i]) <= 1e-6 * fmax(1, fabs(want[i]))))
        fprintf(stderr, "    case at line %d [%zu]: %.9g, want %.9g\n", line, i, (double)out[i], want[i]);
  }
  free(out);
  free(file);
  tt_str_free(&s);
}

static void test_wav_formats(void) {
  /* 8-bit: unsigned, 128 is silence; 5 bytes, so the data chunk is padded */
  {
    const uint8_t d[] = {0, 64, 128, 192, 255};
    const double w[] = {-128 / 127.0, -64 / 127.0, 0, 64 / 127.0, 1};
    expect_decode(&(wav_spec_t){1, 1, 8000, 8, false, true, false}, d, sizeof(d), w, 5, __LINE__);
  }
  /* 16-bit stereo: mixed to mono */
  {
    const int16_t d[] = {32767, 32767, -32767, 32767, 16384, 0, -100, -300};
    const double w[] = {1, 0, 8192 / 32767.0, -200 / 32767.0};
    uint8_t b[sizeof(d)];
    for (size_t i = 0; i < TT_ARRAY_SIZE(d); i++) b[2 * i] = (uint8_t)d[i], b[2 * i + 1] = (uint8_t)((uint16_t)d[i] >> 8);
    expect_decode(&(wav_spec_t){1, 2, 48000, 16, false, false, false}, b, sizeof(b), w, 4, __LINE__);
    expect_decode(&(wav_spec_t){1, 2, 48000, 16, false, true, true}, b, sizeof(b), w, 4, __LINE__);
  }
  /* 24-bit: three samples, 9 bytes (odd: padded) */
  {
    const uint8_t d[] = {0xFF, 0xFF, 0x7F, 0x00, 0x00, 0x80, 0x00, 0x00, 0x40};
    const double w[] = {1, -8388608 / 8388607.0, 4194304 / 8388607.0};
    expect_decode(&(wav_spec_t){1, 1, 44100, 24, false, true, false}, d, sizeof(d), w, 3, __LINE__);
    expect_decode(&(wav_spec_t){1, 1, 44100, 24, true, false, false}, d, sizeof(d), w, 3, __LINE__);
  }
  /* 32-bit PCM */
  {
    const uint8_t d[] = {0xFF, 0xFF, 0xFF, 0x7F, 0x01, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0xC0, 0, 0, 0, 0};
    const double w[] = {1, -1, -0.5, 0};
    expect_decode(&(wav_spec_t){1, 1, 48000, 32, false, false, false}, d, sizeof(d), w, 4, __LINE__);
  }
  /* float 32, with NaN and infinity read as silence */
  {
    const float f[] = {0.25f, -0.75f, NAN, INFINITY, 1.5f, -2.0f};
    const double w[] = {0.25, -0.75, 0, 0, 1.5, -2.0};
    expect_decode(&(wav_spec_t){3, 1, 48000, 32, false, false, false}, f, sizeof(f), w, 6, __LINE__);
    /* stereo, extensible */
    const double w2[] = {-0.25, 0, 0.5 * 1.5 - 1.0};
    expect_decode(&(wav_spec_t){3, 2, 48000, 32, true, true, false}, f, sizeof(f), w2, 3, __LINE__);
  }
  /* float 64; what no float can hold reads as silence */
  {
    const double f[] = {0.125, -1.0, 1e300, -1e39, 3e38};
    const double w[] = {0.125, -1.0, 0, 0, 3e38};
    expect_decode(&(wav_spec_t){3, 1, 48000, 64, false, false, false}, f, sizeof(f), w, 5, __LINE__);
  }
  /* extensible 16-bit, three channels */
  {
    const uint8_t d[] = {0xFF, 0x7F, 0xFF, 0x7F, 0xFF, 0x7F, 0x01, 0x80, 0, 0, 0, 0};
    const double w[] = {1, -1 / 3.0};
    expect_decode(&(wav_spec_t){1, 3, 22050, 16, true, true, false}, d, sizeof(d), w, 2, __LINE__);
  }
  /* a partial last frame is dropped */
  {
    const uint8_t d[] = {0xFF, 0x7F, 0x00, 0x00, 0x00};
    const double w[] = {0.5};
    expect_decode(&(wav_spec_t){1, 2, 48000, 16, false, false, false}, d, sizeof(d), w, 1, __LINE__);
  }
  /* no samples at all: fine, and still a buffer to free */
  {
    tt_str_t s = {0};
    wav_build(&s, &(wav_spec_t){1, 1, 48000, 16, false, false, false}, "", 0);
    float *out = NULL;
    size_t n = 1;
    CHECK(audio_decode_wav(s.data, s.len, 48000, &out, &n) == 0 && n == 0 && out != NULL);
    free(out);
    tt_str_free(&s);
  }
}

static void test_wav_resample(void) {
  /* 0.1 s of a 441 Hz sine at 44.1 kHz, read at 48 kHz */
  size_t n = 4410;
  uint8_t *d = tt_malloc(n * 2);
  for (size_t i = 0; i < n; i++) {
    int16_t v = audio_f2s16((float)(0.8 * sin(2 * PI * 441 * (double)i / 44100)));
    d[2 * i] = (uint8_t)v;
    d[2 * i + 1] = (uint8_t)((uint16_t)v >> 8);
  }
  tt_str_t s = {0};
  wav_build(&s, &(wav_spec_t){1, 1, 44100, 16, false, false, false}, d, n * 2);
  float *out = NULL;
  size_t frames = 0;
  if (CHECK(audio_decode_wav(s.data, s.len, 48000, &out, &frames) == 0) && CHECK(frames == 4800)) {
    double worst = 0;
    for (size_t i = 0; i < frames - 1; i++) {
      double want = 0.8 * sin(2 * PI * 441 * (double)i / 48000);
      worst = fmax(worst, fabs(out[i] - want));
    }
    if (!CHECK(worst < 0.005)) fprintf(stderr, "    worst error %.6f\n", worst);
    CHECK(out[0] == 0.0f);
  }
  free(out);
  /* the length is rounded: 13 frames at 48 kHz are 11.94 at 44.1 kHz */
  {
    tt_str_t t = {0};
    wav_build(&t, &(wav_spec_t){1, 1, 48000, 16, false, false, false}, d, 26);
    if (CHECK(audio_decode_wav(t.data, t.len, 44100, &out, &frames) == 0)) CHECK_EQ(frames, 12);
    free(out);
    tt_str_free(&t);
  }
  /* and down to 22.05 kHz */
  if (CHECK(audio_decode_wav(s.data, s.len, 22050, &out, &frames) == 0)) {
    CHECK_EQ(frames, 2205);
    if (frames == 2205) CHECK(fabs(out[100] - 0.8 * sin(2 * PI * 441 * 100.0 / 22050)) < 0.001);
  }
  free(out);
  tt_str_free(&s);
  free(d);
}

/* A valid 16-bit mono file (no extra chunks) with one field changed:
 * offsets are those of wav_build's plain layout. */
static void expect_bad(bool extensible, size_t off, const void *bytes, size_t n, int line) {
  const uint8_t d[] = {1, 2, 3, 4, 5, 6, 7, 8};
  tt_str_t s = {0};
  wav_build(&s, &(wav_spec_t){1, 1, 48000, 16, extensible, false, false}, d, sizeof(d));
  memcpy(s.data + off, bytes, n);
  void *file = dup_exact(s.data, s.len);
  float *out = NULL;
  size_t frames = 0;
  int rc = audio_decode_wav(file, s.len, 48000, &out, &frames);
  if (!CHECK(rc == -EINVAL && out == NULL)) fprintf(stderr, "    case at line %d: %d\n", line, rc);
  if (rc == 0) free(out);
  free(file);
  tt_str_free(&s);
}

#define BAD(ext, off, lit) expect_bad(ext, off, lit, sizeof(lit) - 1, __LINE__)

static void test_wav_bad(void) {
  /* the unchanged file is fine */
  {
    const uint8_t d[] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (int ext = 0; ext < 2; ext++) {
      tt_str_t s = {0};
      wav_build(&s, &(wav_spec_t){1, 1, 48000, 16, ext, false, false}, d, sizeof(d));
      float *out = NULL;
      size_t n = 0;
      CHECK(audio_decode_wav(s.data, s.len, 48000, &out, &n) == 0 && n == 4);
      free(out);
      tt_str_free(&s);
    }
  }
  BAD(false, 0, "RIFX");
  BAD(false, 8, "WAVF");
  BAD(false, 12, "fmt_");              /* no fmt chunk */
  BAD(false, 36, "date");              /* no data chunk */
  BAD(false, 16, "\x0e\0\0\0");        /* fmt shorter than 16 */
  BAD(false, 16, "\x30\0\0\0");        /* fmt runs past the end */
  BAD(false, 40, "\x09\0\0\0");        /* data runs past the end */
  BAD(false, 40, "\xff\xff\xff\xff");
  BAD(false, 20, "\x02\0");            /* ADPCM */
  BAD(false, 20, "\x03\0");            /* float with 16 bits */
  BAD(false, 22, "\0\0");              /* no channels */
  BAD(false, 24, "\0\0\0\0");          /* rate 0 */
  BAD(false, 24, "\xe7\x03\0\0");      /* 999 Hz */
  BAD(false, 24, "\x81\x84\x1e\0");    /* 2 MHz */
  BAD(false, 32, "\x03\0");            /* block align */
  BAD(false, 34, "\0\0");              /* 0 bits */
  BAD(false, 34, "\x28\0");            /* 40 bits */
  BAD(false, 34, "\x08\0");            /* 8 bits in a 2-byte block */
  BAD(false, 12, "junk\xff\xff\xff\xff"); /* an unknown chunk that runs past the end hides the rest */
  BAD(true, 36, "\0\0");               /* cbSize */
  BAD(true, 38, "\x11\0");             /* more valid bits than bits */
  BAD(true, 44, "\x02\0");             /* sub-format ADPCM */
  BAD(true, 50, "\x11");               /* not the PCM GUID */
  BAD(true, 16, "\x24\0\0\0");         /* extensible fmt of 36 bytes */

  /* The RIFF size bounds the chunks: bytes after it (an appended ID3 tag)
   * are ignored, a data chunk that runs past it is truncated. */
  {
    const uint8_t d[] = {1, 2, 3, 4, 5, 6, 7, 8};
    tt_str_t s = {0};
    wav_build(&s, &(wav_spec_t){1, 1, 48000, 16, false, false, false}, d, sizeof(d));
    tt_str_append(&s, "ID3\x04\0\0\0\0\0\x7f", 10);
    void *file = dup_exact(s.data, s.len);
    float *out = NULL;
    size_t n = 0;
    CHECK(audio_decode_wav(file, s.len, 48000, &out, &n) == 0 && n == 4);
    free(out);
    free(file);
    s.data[4] -= 2;
    file = dup_exact(s.data, s.len);
    CHECK(audio_decode_wav(file, s.len, 48000, &out, &n) == -EINVAL);
    free(file);
    tt_str_free(&s);
  }
  /* the rate asked for */
  {
    const uint8_t d[] = {1, 2};
    tt_str_t s = {0};
    wav_build(&s, &(wav_spec_t){1, 1, 48000, 16, false, false, false}, d, sizeof(d));
    float *out = NULL;
    size_t n = 0;
    CHECK(audio_decode_wav(s.data, s.len, 0, &out, &n) == -EINVAL);
    CHECK(audio_decode_wav(s.data, s.len, -48000, &out, &n) == -EINVAL);
    CHECK(audio_decode_wav(s.data, s.len, 2000000, &out, &n) == -EINVAL);
    tt_str_free(&s);
  }
  /* garbage, bare and behind a RIFF header */
  rng_seed(11);
  for (int round = 0; round < 2000; round++) {
    size_t n = rng_next() % 200;
    uint8_t *g = tt_malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) g[i] = (uint8_t)rng_next();
    if (round % 2 && n >= 12) memcpy(g, "RIFF\xff\xff\xff\xffWAVE", 12);
    float *out = NULL;
    size_t frames = 0;
    int rc = audio_decode_wav(g, n, 48000, &out, &frames);
    CHECK(rc == -EINVAL || rc == 0);
    if (round % 2 == 0) CHECK(rc == -EINVAL);
    free(out);
    free(g);
  }
  /* at most AUDIO_DURATION_LIMIT seconds */
  {
    size_t n = (size_t)(AUDIO_DURATION_LIMIT * 1000);
    uint8_t *d = tt_malloc(n + 1);
    memset(d, 128, n + 1);
    tt_str_t s = {0};
    wav_build(&s, &(wav_spec_t){1, 1, 1000, 8, false, false, false}, d, n);
    float *out = NULL;
    size_t frames = 0;
    CHECK(audio_decode_wav(s.data, s.len, 1000, &out, &frames) == 0 && frames == n);
    free(out);
    tt_str_free(&s);
    wav_build(&s, &(wav_spec_t){1, 1, 1000, 8, false, false, false}, d, n + 1);
    CHECK(audio_decode_wav(s.data, s.len, 1000, &out, &frames) == -EINVAL);
    tt_str_free(&s);
    free(d);
  }
}

/* ================================================================ Opus */

/* Decodes Ogg Opus into planar 48 kHz float. Returns the channel count, or
 * -1 when opusfile refuses the stream. */
static int ogg_decode(const tt_str_t *s, float *planar[2], size_t *frames, char *encoder, size_t encoder_size) {
  int err = 0;
  OggOpusFile *of = op_open_memory((const unsigned char *)s->data, s->len, &err);
  if (of == NULL) return -1;
  int ch = op_channel_count(of, -1);
  const OpusTags *tags = op_tags(of, -1);
  const char *e = tags ? opus_tags_query(tags, "ENCODER", 0) : NULL;
  snprintf(encoder, encoder_size, "%s", e ? e : "");
  size_t cap = 48000, n = 0;
  planar[0] = tt_malloc(cap * sizeof(float));
  planar[1] = tt_malloc(cap * sizeof(float));
  float buf[5760 * 2];
  for (;;) {
    int got = op_read_float(of, buf, (int)TT_ARRAY_SIZE(buf), NULL);
    if (got < 0) {
      ch = -1;
      break;
    }
    if (got == 0) break;
    if (n + (size_t)got > cap) {
      while (n + (size_t)got > cap) cap *= 2;
      planar[0] = tt_realloc(planar[0], cap * sizeof(float));
      planar[1] = tt_realloc(planar[1], cap * sizeof(float));
    }
    for (int i = 0; i < got; i++)
      for (int c = 0; c < ch && c < 2; c++) planar[c][n + (size_t)i] = buf[i * ch + c];
    n += (size_t)got;
  }
  op_free(of);
  *frames = n;
  return ch;
}

/* The best normalised correlation of `y` against `x` over lags -max..max. */
static double best_correlation(const float *x, size_t nx, const float *y, size_t ny, int max, int *lag_out) {
  double best = -2;
  for (int lag = -max; lag <= max; lag++) {
    double xy = 0, xx = 0, yy = 0;
    for (size_t i = 0; i < nx; i++) {
      long j = (long)i + lag;
      if (j < 0 || (size_t)j >= ny) continue;
      xy += (double)x[i] * y[j];
      xx += (double)x[i] * x[i];
      yy += (double)y[j] * y[j];
    }
    double r = xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : 0;
    if (r > best) best = r, *lag_out = lag;
  }
  return best;
}

static void check_opus(int rate, int channels) {
  audio_pcm_t p = chord_pcm(rate, channels, 2.0);
  tt_str_t a = {0}, b = {0}, hi = {0};
  CHECK_EQ(audio_encode_opus(&p, 64000, &a), 0);
  CHECK_EQ(audio_encode_opus(&p, 64000, &b), 0);
  CHECK_EQ(audio_encode_opus(&p, 128000, &hi), 0);
  CHECK_MEM(a.data, a.len, b.data, b.len); /* reproducible */
  CHECK(hi.len > a.len);
  CHECK(a.len > 4 && memcmp(a.data, "OggS", 4) == 0);
  /* about 64 kbit/s over 2 s, plus headers */
  if (!CHECK(a.len > 12000 && a.len < 20000)) fprintf(stderr, "    %zu bytes at 64 kbit/s\n", a.len);

  float *dec[2] = {NULL, NULL};
  size_t n = 0;
  char encoder[64];
  int ch = ogg_decode(&a, dec, &n, encoder, sizeof(encoder));
  CHECK_EQ(ch, channels);
  CHECK(strcmp(encoder, "tutti") == 0);
  size_t want = (size_t)lround(2.0 * 48000);
  if (rate == 48000) CHECK_EQ(n, want);
  else if (!CHECK(n + 4 >= want && n <= want + 4)) fprintf(stderr, "    decoded %zu frames, want ~%zu\n", n, want);
  for (int c = 0; c < channels && ch == channels; c++) {
    float *ref = p.data[c];
    if (rate != 48000) { /* the noise-free chord at 48 kHz */
      ref = tt_malloc(want * sizeof(float));
      for (size_t i = 0; i < want; i++) ref[i] = (float)chord_at(c, (double)i / 48000);
    }
    int lag = 0;
    double r = best_correlation(ref, want, dec[c], n, 48, &lag);
    if (!CHECK(r > 0.9)) fprintf(stderr, "    %d Hz, channel %d: correlation %.4f at lag %d\n", rate, c, r, lag);
    if (rate == 48000) CHECK_EQ(lag, 0);
    if (ref != p.data[c]) free(ref);
  }
  free(dec[0]);
  free(dec[1]);
  tt_str_free(&a);
  tt_str_free(&b);
  tt_str_free(&hi);
  pcm_release(&p);
}

static void test_opus(void) {
  check_opus(48000, 1);
  check_opus(48000, 2);
  check_opus(44100, 1);
  check_opus(44100, 2);

  /* a few samples come back as exactly as many */
  audio_pcm_t tiny = chord_pcm(48000, 2, 0.002);
  tt_str_t s = {0};
  CHECK_EQ(audio_encode_opus(&tiny, 0, &s), 0);
  CHECK(memmem(s.data, s.len, "ENCODER=tuttiOggS", 17) != NULL); /* no padding after the tags */
  float *dec[2] = {NULL, NULL};
  size_t n = 0;
  char encoder[64];
  CHECK_EQ(ogg_decode(&s, dec, &n, encoder, sizeof(encoder)), 2);
  CHECK_EQ(n, 96);
  free(dec[0]);
  free(dec[1]);
  tt_str_free(&s);
  pcm_release(&tiny);

  /* refused, leaving the output as it was; no samples is refused too
   * (libopusenc 0.2.1 asserts when draining an empty stream) */
  audio_pcm_t empty = pcm_new(48000, 1, 0);
  tt_str_appends(&s, "keep");
  CHECK_EQ(audio_encode_opus(&empty, 64000, &s), -EINVAL);
  empty.frames = 1;
  empty.channels = 3;
  CHECK_EQ(audio_encode_opus(&empty, 64000, &s), -EINVAL);
  empty.channels = 1;
  CHECK_EQ(audio_encode_opus(&empty, -5, &s), -EINVAL);
  empty.sample_rate = 0;
  CHECK_EQ(audio_encode_opus(&empty, 64000, &s), -EINVAL);
  CHECK_STR(s.data, s.len, "keep");
  tt_str_free(&s);
  pcm_release(&empty);
}

/* ================================================================ ffprobe, soxi */

/* Runs `cmd` through the shell; returns its exit status, output in `out`. */
static int run(const char *cmd, char *out, size_t size) {
  FILE *f = popen(cmd, "r");
  if (f == NULL) return -1;
  size_t n = fread(out, 1, size - 1, f);
  out[n] = '\0';
  int st = pclose(f);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_file(const char *path, const tt_str_t *s) {
  FILE *f = fopen(path, "wb");
  if (!CHECK(f != NULL)) return;
  CHECK(fwrite(s->data, 1, s->len, f) == s->len);
  CHECK(fclose(f) == 0);
}

static void test_external_tools(void) {
  /* CI installs both: missing is a failure, not a skip */
  CHECK(system("command -v ffprobe >/dev/null 2>&1") == 0);
  CHECK(system("command -v soxi >/dev/null 2>&1") == 0);

  const char *tmp = getenv("TMPDIR");
  char dir[256];
  snprintf(dir, sizeof(dir), "%s/tutti-codec-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!CHECK(mkdtemp(dir) != NULL)) return;
  char wav[300], mono[300], stereo[300], cmd[700], out[4096];
  snprintf(wav, sizeof(wav), "%s/a.wav", dir);
  snprintf(mono, sizeof(mono), "%s/a.opus", dir);
  snprintf(stereo, sizeof(stereo), "%s/b.opus", dir);

  audio_pcm_t p1 = chord_pcm(48000, 1, 0.5), p2 = chord_pcm(44100, 2, 0.5);
  tt_str_t s = {0};
  audio_encode_wav(&p1, &s);
  write_file(wav, &s);
  tt_str_free(&s);
  CHECK_EQ(audio_encode_opus(&p1, 64000, &s), 0);
  write_file(mono, &s);
  tt_str_free(&s);
  CHECK_EQ(audio_encode_opus(&p2, 96000, &s), 0);
  write_file(stereo, &s);
  tt_str_free(&s);

  static const char probe[] = "ffprobe -v error -show_entries stream=codec_name,sample_rate,channels -of csv=p=0";
  const struct {
    const char *path, *want;
  } probes[] = {{wav, "pcm_s16le,48000,1\n"}, {mono, "opus,48000,1\n"}, {stereo, "opus,48000,2\n"}};
  for (size_t i = 0; i < TT_ARRAY_SIZE(probes); i++) {
    snprintf(cmd, sizeof(cmd), "%s '%s' 2>&1", probe, probes[i].path);
    CHECK_EQ(run(cmd, out, sizeof(out)), 0);
    CHECK_STR(out, strlen(out), probes[i].want);
  }
  /* soxi reads the WAV header as we meant it */
  snprintf(cmd, sizeof(cmd), "soxi '%s' 2>&1", wav);
  CHECK_EQ(run(cmd, out, sizeof(out)), 0);
  CHECK(strstr(out, "Channels       : 1") != NULL);
  CHECK(strstr(out, "Sample Rate    : 48000") != NULL);
  CHECK(strstr(out, "Precision      : 16-bit") != NULL);
  CHECK(strstr(out, "24000 samples") != NULL);
  /* soxi reads Ogg Opus only where sox was built with opusfile (Debian's
   * and Ubuntu's sox is not): check it where the format is there. */
  if (system("sox --help 2>/dev/null | grep -q 'FORMATS:.* opus'") == 0) {
    snprintf(cmd, sizeof(cmd), "soxi '%s' 2>&1", stereo);
    CHECK_EQ(run(cmd, out, sizeof(out)), 0);
    CHECK(strstr(out, "Channels       : 2") != NULL);
  }

  unlink(wav);
  unlink(mono);
  unlink(stereo);
  CHECK(rmdir(dir) == 0);
  pcm_release(&p1);
  pcm_release(&p2);
}

int main(void) {
  RUN(test_encoding_names);
  RUN(test_base64);
  RUN(test_int16_roundtrip);
  RUN(test_float_json_text);
  RUN(test_float_json_parse);
  RUN(test_wav_header);
  RUN(test_wav_roundtrip);
  RUN(test_wav_formats);
  RUN(test_wav_resample);
  RUN(test_wav_bad);
  RUN(test_opus);
  RUN(test_external_tools);
  return test_report("test_audio_codec");
}
