/*
 * audio codecs: float PCM out as WAV, raw int16, Ogg Opus, the
 * SerializedBuffer JSON; WAV files in as mono float.
 *
 * Every encoder appends to the caller's tt_str_t (it is not cleared first)
 * and reserves before writing, so the inner loops store bytes directly. Every
 * float that becomes an integer goes through audio_f2s16, so all the int16
 * encodings agree sample for sample. Integer samples read back are scaled by
 * 1 / (2^(bits-1) - 1), the inverse of audio_f2s16's 32767, so a WAV this
 * file wrote decodes to the same int16 values (full-scale negative samples
 * of other files land a hair below -1).
 */
#include "audio.h"

#include <assert.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <opus/opusenc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ byte helpers */

static inline uint16_t codec__le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static inline uint32_t codec__le32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint8_t *codec__put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  return p + 2;
}

static inline uint8_t *codec__put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
  return p + 4;
}

static void codec__check_pcm(const audio_pcm_t *pcm) {
  assert(pcm->channels >= 1 && pcm->channels <= AUDIO_MAX_CHANNELS);
  assert(pcm->sample_rate > 0);
  (void)pcm;
}

/* Writes every sample as interleaved little-endian int16 at `p`, which has
 * room for frames * channels * 2 bytes. */
static void codec__interleave_s16(const audio_pcm_t *pcm, uint8_t *p) {
  if (pcm->channels == 1) {
    const float *a = pcm->data[0];
    for (size_t i = 0; i < pcm->frames; i++) p = codec__put16(p, (uint16_t)audio_f2s16(a[i]));
    return;
  }
  for (size_t i = 0; i < pcm->frames; i++)
    for (int c = 0; c < pcm->channels; c++) p = codec__put16(p, (uint16_t)audio_f2s16(pcm->data[c][i]));
}

/* ================================================================ PCM16 and WAV out */

void audio_encode_pcm16(const audio_pcm_t *pcm, tt_str_t *out) {
  codec__check_pcm(pcm);
  size_t n = pcm->frames * (size_t)pcm->channels * 2;
  tt_str_reserve(out, n);
  codec__interleave_s16(pcm, (uint8_t *)out->data + out->len);
  out->len += n;
  out->data[out->len] = '\0';
}

#define CODEC_WAV_HEADER 44

void audio_encode_wav(const audio_pcm_t *pcm, tt_str_t *out) {
  codec__check_pcm(pcm);
  size_t data = pcm->frames * (size_t)pcm->channels * 2;
  assert(data <= UINT32_MAX - (CODEC_WAV_HEADER - 8)); /* renders are capped far below 4 GiB */
  uint32_t block = (uint32_t)pcm->channels * 2;
  tt_str_reserve(out, CODEC_WAV_HEADER + data);
  uint8_t *h = (uint8_t *)out->data + out->len;
  memcpy(h, "RIFF", 4);
  codec__put32(h + 4, (uint32_t)(CODEC_WAV_HEADER - 8 + data));
  memcpy(h + 8, "WAVEfmt ", 8);
  codec__put32(h + 16, 16);                                   /* fmt chunk size */
  codec__put16(h + 20, 1);                                    /* WAVE_FORMAT_PCM */
  codec__put16(h + 22, (uint16_t)pcm->channels);
  codec__put32(h + 24, (uint32_t)pcm->sample_rate);
  codec__put32(h + 28, (uint32_t)pcm->sample_rate * block);  /* bytes per second */
  codec__put16(h + 32, (uint16_t)block);
  codec__put16(h + 34, 16);                                   /* bits per sample */
  memcpy(h + 36, "data", 4);
  codec__put32(h + 40, (uint32_t)data);
  codec__interleave_s16(pcm, h + CODEC_WAV_HEADER);
  out->len += CODEC_WAV_HEADER + data;
  out->data[out->len] = '\0';
}

/* ================================================================ WAV in */

#define CODEC_WAVE_PCM 1
#define CODEC_WAVE_FLOAT 3
#define CODEC_WAVE_EXTENSIBLE 0xFFFE
#define CODEC_WAV_MIN_RATE 1000     /* Hz: below this a file is taken as broken */
#define CODEC_WAV_MAX_RATE 1000000

typedef struct codec__fmt_s {
  int format;         /* CODEC_WAVE_PCM or CODEC_WAVE_FLOAT */
  uint32_t channels;
  uint32_t rate;
  uint32_t bytes;     /* per sample: 1-4 (PCM), 4 or 8 (float) */
} codec__fmt_t;

/* The tail of the KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT GUIDs, after the
 * two bytes that hold the format tag. */
static const uint8_t codec__guid_tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                             0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

static int codec__parse_fmt(const uint8_t *f, size_t n, codec__fmt_t *fmt) {
  if (n < 16) return -EINVAL;
  int tag = codec__le16(f);
  uint32_t channels = codec__le16(f + 2);
  uint32_t rate = codec__le32(f + 4);
  uint32_t block = codec__le16(f + 12);
  uint32_t bits = codec__le16(f + 14);
  if (tag == CODEC_WAVE_EXTENSIBLE) {
    /* cbSize, valid bits, channel mask, then the sub-format GUID */
    if (n < 40 || codec__le16(f + 16) < 22) return -EINVAL;
    if (memcmp(f + 26, codec__guid_tail, sizeof(codec__guid_tail)) != 0) return -EINVAL;
    uint32_t valid = codec__le16(f + 18);
    if (valid > bits) return -EINVAL;
    tag = codec__le16(f + 24);
  }
  if (channels == 0 || rate < CODEC_WAV_MIN_RATE || rate > CODEC_WAV_MAX_RATE) return -EINVAL;
  uint32_t bytes = (bits + 7) / 8;
  if (tag == CODEC_WAVE_PCM) {
    if (bits == 0 || bits > 32) return -EINVAL;
  } else if (tag == CODEC_WAVE_FLOAT) {
    if (bits != 32 && bits != 64) return -EINVAL;
  } else {
    return -EINVAL;
  }
  if (block != channels * bytes) return -EINVAL;
  fmt->format = tag;
  fmt->channels = channels;
  fmt->rate = rate;
  fmt->bytes = bytes;
  return 0;
}

/* One sample at `p`; non-finite floats, and doubles that no float can
 * hold, read as silence. */
static inline double codec__sample(const codec__fmt_t *fmt, const uint8_t *p) {
  if (fmt->format == CODEC_WAVE_FLOAT) {
    double v;
    if (fmt->bytes == 4) {
      uint32_t u = codec__le32(p);
      float f;
      memcpy(&f, &u, sizeof(f));
      v = f;
    } else {
      uint64_t u = codec__le32(p) | ((uint64_t)codec__le32(p + 4) << 32);
      memcpy(&v, &u, sizeof(v));
    }
    return fabs(v) <= FLT_MAX ? v : 0.0; /* NaN too */
  }
  switch (fmt->bytes) {
    case 1: return ((int)p[0] - 128) / 127.0; /* 8-bit WAV is unsigned */
    case 2: return (int16_t)codec__le16(p) / 32767.0;
    case 3: {
      int32_t v = (int32_t)(p[0] | (p[1] << 8) | (p[2] << 16));
      if (v & 0x800000) v -= 0x1000000;
      return v / 8388607.0;
    }
    default: {
      uint32_t u = codec__le32(p);
      int64_t v = (int64_t)u - ((u & 0x80000000u) ? INT64_C(0x100000000) : 0);
      return (double)v / 2147483647.0;
    }
  }
}

/* Linear interpolation from `in_rate` to `rate`; the output has
 * round(frames * rate / in_rate) frames. */
static float *codec__resample(const float *in, size_t frames, uint32_t in_rate, uint32_t rate, size_t *out_frames) {
  uint64_t n = ((uint64_t)frames * rate + in_rate / 2) / in_rate;
  float *out = tt_malloc((size_t)n * sizeof(float));
  for (uint64_t i = 0; i < n; i++) {
    uint64_t pos = i * in_rate;
    uint64_t k = pos / rate;
    if (k >= frames) k = frames - 1;
    double frac = (double)(pos - k * rate) / rate;
    double a = in[k], b = k + 1 < frames ? in[k + 1] : a;
    out[i] = (float)(a + (b - a) * frac);
  }
  *out_frames = (size_t)n;
  return out;
}

/*
 * The chunk walk: "RIFF" <size> "WAVE", then chunks of <id> <size> <bytes>
 * padded to an even length. The first "fmt " and "data" chunks count, in
 * either order; others are skipped. The walk ends at the RIFF size when it
 * lies inside the input (bytes after it, such as an appended ID3 tag, are
 * ignored), else at the end of the input (streaming writers leave the size
 * 0 or 0xFFFFFFFF). A "fmt " or "data" chunk that runs past the end is a
 * truncated file (-EINVAL); an unknown chunk that does, or a few stray bytes
 * at the end, only ends the walk. Decoded audio is capped at
 * AUDIO_DURATION_LIMIT seconds; anything longer is refused as -EINVAL too.
 * Reads only data[0..len). On success *samples is a tt_malloc'd block the
 * caller frees, never NULL even when *frames is 0; on failure it is NULL.
 */
int audio_decode_wav(const void *data, size_t len, int rate, float **samples, size_t *frames) {
  const uint8_t *b = data;
  *samples = NULL;
  *frames = 0;
  if (rate < CODEC_WAV_MIN_RATE || rate > CODEC_WAV_MAX_RATE) return -EINVAL;
  if (len < 12 || memcmp(b, "RIFF", 4) != 0 || memcmp(b + 8, "WAVE", 4) != 0) return -EINVAL;
  size_t end = len;
  uint64_t riff = (uint64_t)codec__le32(b + 4) + 8;
  if (riff >= 12 && riff < end) end = (size_t)riff;

  const uint8_t *fmt_p = NULL, *data_p = NULL;
  size_t fmt_n = 0, data_n = 0;
  size_t off = 12;
  while (end - off >= 8) {
    const uint8_t *id = b + off;
    size_t n = codec__le32(b + off + 4);
    off += 8;
    bool is_fmt = memcmp(id, "fmt ", 4) == 0, is_data = memcmp(id, "data", 4) == 0;
    if (n > end - off) {
      if (is_fmt || is_data) return -EINVAL;
      break;
    }
    if (is_fmt && fmt_p == NULL) {
      fmt_p = b + off;
      fmt_n = n;
    }
    if (is_data && data_p == NULL) {
      data_p = b + off;
      data_n = n;
    }
    off += n;
    if ((n & 1) && off < end) off++;
  }
  if (fmt_p == NULL || data_p == NULL) return -EINVAL;

  codec__fmt_t fmt;
  int rc = codec__parse_fmt(fmt_p, fmt_n, &fmt);
  if (rc != 0) return rc;
  size_t block = (size_t)fmt.channels * fmt.bytes;
  size_t count = data_n / block; /* a partial last frame is dropped */
  if ((double)count > AUDIO_DURATION_LIMIT * fmt.rate) return -EINVAL;

  float *mono = tt_malloc(count * sizeof(float));
  const uint8_t *p = data_p;
  if (fmt.channels == 1) {
    for (size_t i = 0; i < count; i++, p += fmt.bytes) mono[i] = (float)codec__sample(&fmt, p);
  } else {
    for (size_t i = 0; i < count; i++) {
      double sum = 0;
      for (uint32_t c = 0; c < fmt.channels; c++, p += fmt.bytes) sum += codec__sample(&fmt, p);
      mono[i] = (float)(sum / fmt.channels);
    }
  }
  if (fmt.rate != (uint32_t)rate && count > 0) {
    size_t n;
    float *r = codec__resample(mono, count, fmt.rate, (uint32_t)rate, &n);
    free(mono);
    mono = r;
    count = n;
  }
  *samples = mono;
  *frames = count;
  return 0;
}

/* ================================================================ Ogg Opus */

static int codec__opus_write(void *user, const unsigned char *ptr, opus_int32 len) {
  tt_str_append(user, ptr, (size_t)len);
  return 0;
}

static int codec__opus_close(void *user) {
  (void)user;
  return 0;
}

static int codec__ope_err(int e) { return e == OPE_ALLOC_FAIL ? -ENOMEM : -EINVAL; }

#define CODEC_OPUS_CHUNK 1920         /* frames handed to the encoder at a time */
#define CODEC_OPUS_SERIAL 0x74757474  /* "tutt": a fixed serial, so output is reproducible */

/*
 * No samples is -EINVAL: libopusenc 0.2.1 aborts on an assertion when a
 * stream is drained without audio (xiph/libopusenc#24). The tags carry no
 * padding (the default reserves 512 bytes for editing them in place, which
 * nobody does with a streamed message).
 */
int audio_encode_opus(const audio_pcm_t *pcm, int bitrate, tt_str_t *out) {
  if (pcm->channels < 1 || pcm->channels > AUDIO_MAX_CHANNELS || pcm->sample_rate <= 0 || bitrate < 0 ||
      pcm->frames == 0)
    return -EINVAL;
  size_t start = out->len;
  int err = OPE_OK;
  OggOpusComments *comments = ope_comments_create();
  if (comments == NULL) return -ENOMEM;
  err = ope_comments_add(comments, "ENCODER", "tutti");
  if (err != OPE_OK) goto fail_comments;

  static const OpusEncCallbacks callbacks = {.write = codec__opus_write, .close = codec__opus_close};
  OggOpusEnc *enc = ope_encoder_create_callbacks(&callbacks, out, comments, pcm->sample_rate, pcm->channels, 0, &err);
  if (enc == NULL) goto fail_comments;
  ope_comments_destroy(comments); /* the encoder keeps its own copy */
  err = ope_encoder_ctl(enc, OPE_SET_SERIALNO(CODEC_OPUS_SERIAL));
  if (err == OPE_OK) err = ope_encoder_ctl(enc, OPE_SET_COMMENT_PADDING(0));
  if (err == OPE_OK && bitrate > 0) err = ope_encoder_ctl(enc, OPUS_SET_BITRATE(bitrate));
  if (err != OPE_OK) goto fail_encoder;

  float buf[CODEC_OPUS_CHUNK * AUDIO_MAX_CHANNELS];
  for (size_t at = 0; at < pcm->frames; at += CODEC_OPUS_CHUNK) {
    size_t n = TT_MIN((size_t)CODEC_OPUS_CHUNK, pcm->frames - at);
    for (size_t i = 0; i < n; i++)
      for (int c = 0; c < pcm->channels; c++) buf[i * (size_t)pcm->channels + (size_t)c] = pcm->data[c][at + i];
    err = ope_encoder_write_float(enc, buf, (int)n);
    if (err != OPE_OK) goto fail_encoder;
  }
  err = ope_encoder_drain(enc);
  if (err != OPE_OK) goto fail_encoder;
  ope_encoder_destroy(enc);
  return 0;

fail_encoder:
  ope_encoder_destroy(enc);
  out->len = start; /* drop the pages of a stream that will never end */
  if (out->data != NULL) out->data[start] = '\0';
  return codec__ope_err(err);
fail_comments:
  ope_comments_destroy(comments);
  return codec__ope_err(err);
}

/* ================================================================ SerializedBuffer JSON */

/* Worst case of one fast-path value and its comma: "-999999999.999999,". */
#define CODEC_JSON_VALUE_MAX 20
#define CODEC_JSON_BLOCK 4096 /* values reserved for at a time */

static inline char *codec__put_uint(char *p, uint64_t v) {
  if (v < 10) {
    *p++ = (char)('0' + v);
    return p;
  }
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) *p++ = tmp[--n];
  return p;
}

/* Writes `v` rounded to 6 decimals, trailing zeros trimmed: "0.5",
 * "-0.123457", "0" (never "-0"). Needs |v| < 1e9; the caller checks. */
static inline char *codec__put_micro(char *p, double v) {
  double x = v * 1e6; /* exact for a float times 1e6: 24 + 14 significant bits */
  bool neg = x < 0;
  if (neg) x = -x;
  uint64_t m = (uint64_t)(x + 0.5);
  if (m == 0) {
    *p++ = '0';
    return p;
  }
  if (neg) *p++ = '-';
  p = codec__put_uint(p, m / 1000000);
  uint32_t frac = (uint32_t)(m % 1000000);
  if (frac != 0) {
    int digits = 6;
    while (frac % 10 == 0) frac /= 10, digits--;
    *p++ = '.';
    for (int i = digits - 1; i >= 0; i--) {
      p[i] = (char)('0' + frac % 10);
      frac /= 10;
    }
    p += digits;
  }
  return p;
}

/* The rare value the fast path cannot take: non-finite becomes 0 (JSON has
 * no NaN), huge goes through printf with an exponent ("1e+10": a float's 9
 * significant digits; no 40-digit integers that some parsers refuse). Returns the new write position; may
 * move the string, so `out->len` is synced first and `left` values more are
 * reserved for. */
static char *codec__put_big(tt_str_t *out, char *p, float v, size_t left) {
  out->len = (size_t)(p - out->data);
  if (!isfinite(v)) {
    tt_str_reserve(out, 1 + left * CODEC_JSON_VALUE_MAX);
    p = out->data + out->len;
    *p++ = '0';
    return p;
  }
  char tmp[32];
  int n = snprintf(tmp, sizeof(tmp), "%.9g", (double)v);
  assert(n > 0 && (size_t)n < sizeof(tmp));
  tt_str_reserve(out, (size_t)n + left * CODEC_JSON_VALUE_MAX);
  p = out->data + out->len;
  memcpy(p, tmp, (size_t)n);
  return p + n;
}

static void codec__json_floats(tt_str_t *out, const float *a, size_t n) {
  for (size_t at = 0; at < n; at += CODEC_JSON_BLOCK) {
    size_t m = TT_MIN((size_t)CODEC_JSON_BLOCK, n - at);
    tt_str_reserve(out, m * CODEC_JSON_VALUE_MAX);
    char *p = out->data + out->len;
    for (size_t i = 0; i < m; i++) {
      float v = a[at + i];
      if (at + i > 0) *p++ = ',';
      if (v > -1e9f && v < 1e9f) p = codec__put_micro(p, v);
      else p = codec__put_big(out, p, v, m - i);
    }
    out->len = (size_t)(p - out->data);
  }
}

static void codec__json_s16(tt_str_t *out, const float *a, size_t n) {
  tt_str_reserve(out, n * 7); /* "-32767," */
  char *p = out->data + out->len;
  for (size_t i = 0; i < n; i++) {
    int v = audio_f2s16(a[i]);
    if (i > 0) *p++ = ',';
    if (v < 0) *p++ = '-', v = -v;
    p = codec__put_uint(p, (uint64_t)v);
  }
  out->len = (size_t)(p - out->data);
}

void audio_encode_serialized(const audio_pcm_t *pcm, bool int16, const char *extra, tt_str_t *out) {
  codec__check_pcm(pcm);
  char head[160], *p = head;
  tt_str_append(out, "{", 1);
  if (extra != NULL && extra[0] != '\0') {
    tt_str_appends(out, extra);
    tt_str_append(out, ",", 1);
  }
  p += snprintf(head, sizeof(head), "\"sampleRate\":%d,\"length\":%zu,\"duration\":", pcm->sample_rate, pcm->frames);
  p = codec__put_micro(p, (double)pcm->frames / pcm->sample_rate);
  p += snprintf(p, sizeof(head) - (size_t)(p - head), ",\"numberOfChannels\":%d,%s\"channels\":[", pcm->channels,
                int16 ? "\"compressed\":true," : "");
  tt_str_append(out, head, (size_t)(p - head));
  for (int c = 0; c < pcm->channels; c++) {
    tt_str_append(out, c > 0 ? ",[" : "[", c > 0 ? 2 : 1);
    if (int16) codec__json_s16(out, pcm->data[c], pcm->frames);
    else codec__json_floats(out, pcm->data[c], pcm->frames);
    tt_str_append(out, "]", 1);
  }
  tt_str_append(out, "]}", 2);
}

/* ================================================================ encodings */

static const char *const codec__names[AUDIO_ENC_COUNT] = {
    [AUDIO_ENC_OPUS] = "opus",
    [AUDIO_ENC_PCM16] = "pcm16",
    [AUDIO_ENC_JSON] = "json",
    [AUDIO_ENC_JSON16] = "json16",
};

int audio_encoding_parse(const char *s, size_t len) {
  for (int e = 0; e < AUDIO_ENC_COUNT; e++)
    if (strlen(codec__names[e]) == len && memcmp(codec__names[e], s, len) == 0) return e;
  return -1;
}

const char *audio_encoding_name(audio_encoding_t e) {
  return (unsigned)e < AUDIO_ENC_COUNT ? codec__names[e] : NULL;
}
