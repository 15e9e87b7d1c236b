/*
 * synth: a score becomes float PCM (audio_render).
 *
 * Everything runs in blocks of SYNTH_BLOCK frames. Each block, every track
 * renders its voices into a mono buffer, splitting the block at the frames
 * where its notes start; the buffer is panned onto the master bus, which
 * runs the delay, then the reverb, then the hard clamp to [-1, 1].
 *
 * A voice's note-off is not an event of its own: the voice's envelope counts
 * the frames to its gate end (synth_env_t.gate), so a note-off always belongs
 * to the note that set it. A monophonic synth that is retriggered forgets the
 * earlier note's note-off (Tone.js would release the new note with it).
 *
 * Levels: a voice at velocity 1 peaks at 0.5; the track gain (volume_db) and
 * an equal-power pan (cos/sin, as the Web Audio StereoPannerNode: -3 dB per
 * side at the centre) follow. Mono renders ignore the pan (gain 1).
 *
 * Deterministic: no clock and no global random state; the drum noise comes
 * from per-hit generators seeded from score->seed, the track and the note.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "audio.h"

#define SYNTH_BLOCK 128
#define SYNTH_TWO_PI 6.283185307179586476925
#define SYNTH_INV_TWO_PI 0.159154943091895335769

/* ================================================================ oscillators */

/*
 * Band-limited wavetables, mip-mapped by third of an octave. Level j holds
 * the first synth__harm[j] harmonics (1023 at level 0, falling by 2^(1/3)
 * per level down to 1), normalised to a peak of 1. A note plays the level
 * with the most harmonics that all stay below Nyquist for its frequency, so
 * no partial ever aliases. The tables depend on frequency / rate only, so one
 * set serves every sample rate; they are built once (pthread_once) on first
 * use and read-only after. Linear interpolation on 2048 points keeps its
 * images below -100 dB for the harmonics that matter.
 */
#define SYNTH_TABLE_BITS 11
#define SYNTH_TABLE_SIZE (1 << SYNTH_TABLE_BITS)
#define SYNTH_LEVELS 30

static float synth__sine[SYNTH_TABLE_SIZE + 1];                            /* + guard point */
static float synth__tables[3][SYNTH_LEVELS][SYNTH_TABLE_SIZE + 1];         /* triangle, square, sawtooth */
static int synth__harm[SYNTH_LEVELS];
static pthread_once_t synth__once = PTHREAD_ONCE_INIT;

/* Fourier coefficient of harmonic k (sine series) for wave w - 1. */
static double synth__coef(int w, int k) {
  switch (w) {
  case AUDIO_WAVE_TRIANGLE: return k % 2 ? ((k / 2) % 2 ? -1.0 : 1.0) / ((double)k * k) : 0.0;
  case AUDIO_WAVE_SQUARE: return k % 2 ? 1.0 / k : 0.0;
  default: return (k % 2 ? 1.0 : -1.0) / k; /* sawtooth, rising */
  }
}

static void synth__tables_build(void) {
  static double sintab[SYNTH_TABLE_SIZE], acc[SYNTH_TABLE_SIZE];
  for (int n = 0; n < SYNTH_TABLE_SIZE; n++) sintab[n] = sin(SYNTH_TWO_PI * n / SYNTH_TABLE_SIZE);
  for (int n = 0; n <= SYNTH_TABLE_SIZE; n++) synth__sine[n] = (float)sintab[n & (SYNTH_TABLE_SIZE - 1)];
  for (int j = 0; j < SYNTH_LEVELS; j++) {
    int h = (int)floor(1023.0 * pow(2.0, -j / 3.0));
    synth__harm[j] = h < 1 ? 1 : h;
  }
  /* Each wave's levels from the fewest harmonics up, adding to one sum. */
  for (int w = AUDIO_WAVE_TRIANGLE; w <= AUDIO_WAVE_SAWTOOTH; w++) {
    memset(acc, 0, sizeof(acc));
    int have = 0;
    for (int j = SYNTH_LEVELS - 1; j >= 0; j--) {
      for (int k = have + 1; k <= synth__harm[j]; k++) {
        double c = synth__coef(w, k);
        if (c == 0.0) continue;
        for (int n = 0; n < SYNTH_TABLE_SIZE; n++) acc[n] += c * sintab[(k * n) & (SYNTH_TABLE_SIZE - 1)];
      }
      have = synth__harm[j] > have ? synth__harm[j] : have;
      double peak = 0;
      for (int n = 0; n < SYNTH_TABLE_SIZE; n++) peak = fabs(acc[n]) > peak ? fabs(acc[n]) : peak;
      float *t = synth__tables[w - 1][j];
      for (int n = 0; n < SYNTH_TABLE_SIZE; n++) t[n] = (float)(acc[n] / peak);
      t[SYNTH_TABLE_SIZE] = t[0];
    }
  }
}

/* The table for wave `w` at `inc` cycles per sample (< 0.5). */
static const float *synth__table(audio_wave_t w, double inc) {
  if (w < AUDIO_WAVE_TRIANGLE || w > AUDIO_WAVE_SAWTOOTH) return synth__sine;
  int j = 0;
  while (j < SYNTH_LEVELS - 1 && synth__harm[j] * inc >= 0.5) j++;
  return synth__tables[w - 1][j];
}

/* Reads table `t` at phase `ph` in [0, 1). */
static inline float synth__read(const float *t, double ph) {
  double x = ph * SYNTH_TABLE_SIZE;
  int i = (int)x;
  float f = (float)(x - i);
  return t[i] + f * (t[i + 1] - t[i]);
}

/* `p` folded into [0, 1). */
static inline double synth__wrap(double p) {
  p -= (double)(int64_t)p;
  if (p < 0) p += 1.0;
  return p < 1.0 ? p : 0.0;
}

/* Cycles per sample for `hz`, kept below Nyquist. */
static double synth__inc(double hz, int rate) {
  double inc = hz / rate;
  if (!(inc > 0)) return 0;
  return inc < 0.499 ? inc : 0.499;
}

/* ================================================================ envelopes */

/*
 * ADSR in frames. The attack rises linearly from the current level to the
 * note's peak (its velocity); decay and release follow
 *   y = to + (from - to) * (exp(-K t/T) - exp(-K)) / (1 - exp(-K))
 * which starts at `from` and lands exactly on `to` at T. Every stage lasts at
 * least SYNTH_MIN_RAMP s, so a zero attack or release does not click; decays
 * and releases shorter than SYNTH_EXP_MIN are linear, as the exponential's
 * first step (K/T of the span) would be a click of its own.
 */
#define SYNTH_EXP_K 5.0
#define SYNTH_MIN_RAMP 0.001
#define SYNTH_EXP_MIN 0.005

typedef enum { ENV_IDLE, ENV_ATTACK, ENV_DECAY, ENV_SUSTAIN, ENV_RELEASE } synth_env_stage_t;

typedef struct synth_env_shape_s {
  int64_t att, dec, rel; /* frames, >= 1 */
  double sus;            /* 0..1 of the peak */
  double dec_r, rel_r;   /* per-frame factor exp(-K / frames); 1: linear */
} synth_env_shape_t;

typedef struct synth_env_s {
  synth_env_stage_t stage;
  double level;
  double peak;
  double a, b;        /* attack: level = a + b*j; decay, release: level = a + b*g */
  double g, r, d;     /* g = exp(-K j / frames) (g = g*r), or linear 1 -> e^-K (g = g + d) */
  double to;          /* the stage's target */
  int64_t j, left;    /* frames into / left in the stage */
  int64_t gate;       /* frames to the note-off; < 0: none pending */
  const synth_env_shape_t *shape; /* the track's, outlives the envelope */
} synth_env_t;

static int64_t synth__frames(double s, int rate) {
  double f = (s > SYNTH_MIN_RAMP ? s : SYNTH_MIN_RAMP) * rate;
  if (!(f < 1e12)) f = 1e12;
  int64_t n = (int64_t)llround(f);
  return n > 0 ? n : 1;
}

static void env_shape_init(synth_env_shape_t *sh, const audio_adsr_t *adsr, int rate) {
  sh->att = synth__frames(adsr->attack, rate);
  sh->dec = synth__frames(adsr->decay, rate);
  sh->rel = synth__frames(adsr->release, rate);
  sh->sus = adsr->sustain > 0 ? (adsr->sustain < 1 ? adsr->sustain : 1) : 0;
  double lin = SYNTH_EXP_MIN * rate;
  sh->dec_r = (double)sh->dec < lin ? 1.0 : exp(-SYNTH_EXP_K / (double)sh->dec);
  sh->rel_r = (double)sh->rel < lin ? 1.0 : exp(-SYNTH_EXP_K / (double)sh->rel);
}

static void env_exp_stage(synth_env_t *e, synth_env_stage_t stage, double to, int64_t frames, double r) {
  static const double end = 0.006737946999085467; /* exp(-K) */
  e->stage = stage;
  e->to = to;
  e->b = (e->level - to) / (1.0 - end);
  e->a = to - e->b * end;
  e->g = 1.0;
  e->r = r;
  e->d = r == 1.0 ? -(1.0 - end) / (double)frames : 0.0;
  e->left = frames;
}

/* Note-on: attack from the current level to `peak`; note-off after `gate`
 * frames (< 0: never). */
static void env_trigger(synth_env_t *e, const synth_env_shape_t *sh, double peak, int64_t gate) {
  e->shape = sh;
  e->stage = ENV_ATTACK;
  e->peak = peak;
  e->a = e->level;
  e->b = (peak - e->level) / (double)sh->att;
  e->j = 0;
  e->left = sh->att;
  e->gate = gate;
}

static void env_release(synth_env_t *e) {
  if (e->stage == ENV_IDLE || e->stage == ENV_RELEASE) return;
  env_exp_stage(e, ENV_RELEASE, 0.0, e->shape->rel, e->shape->rel_r);
}

/* The next `n` levels into `out`. */
static void env_run(synth_env_t *e, float *out, int n) {
  int i = 0;
  while (i < n) {
    if (e->gate == 0) {
      env_release(e);
      e->gate = -1;
    }
    int m = n - i;
    if (e->gate > 0 && e->gate < m) m = (int)e->gate;
    switch (e->stage) {
    case ENV_IDLE:
    case ENV_SUSTAIN: {
      float l = (float)e->level;
      for (int k = 0; k < m; k++) out[i + k] = l;
      break;
    }
    case ENV_ATTACK: {
      if (e->left < m) m = (int)e->left;
      double a = e->a, b = e->b;
      int64_t j = e->j;
      for (int k = 0; k < m; k++) out[i + k] = (float)(a + b * (double)++j);
      e->j = j;
      e->left -= m;
      e->level = a + b * (double)j;
      if (e->left == 0) {
        e->level = e->peak;
        out[i + m - 1] = (float)e->peak;
        env_exp_stage(e, ENV_DECAY, e->peak * e->shape->sus, e->shape->dec, e->shape->dec_r);
      }
      break;
    }
    case ENV_DECAY:
    case ENV_RELEASE: {
      if (e->left < m) m = (int)e->left;
      double a = e->a, b = e->b, g = e->g, r = e->r, d = e->d;
      for (int k = 0; k < m; k++) {
        g = g * r + d;
        out[i + k] = (float)(a + b * g);
      }
      e->g = g;
      e->left -= m;
      e->level = a + b * g;
      if (e->left == 0) {
        e->level = e->to;
        out[i + m - 1] = (float)e->to;
        e->stage = e->stage == ENV_DECAY && e->to > 0 ? ENV_SUSTAIN : ENV_IDLE;
      }
      break;
    }
    }
    if (e->gate > 0) e->gate -= m;
    i += m;
  }
}

/* A one-shot decay from 1 to exactly 0 over `frames` (the drums'). */
typedef struct synth_decay_s {
  double a, b, g, r;
  int64_t left;
} synth_decay_t;

static void decay_init(synth_decay_t *d, double seconds, int rate) {
  static const double end = 0.006737946999085467; /* exp(-K) */
  d->left = synth__frames(seconds, rate);
  d->r = exp(-SYNTH_EXP_K / (double)d->left);
  d->b = 1.0 / (1.0 - end);
  d->a = -d->b * end;
  d->g = 1.0;
}

static inline double decay_next(synth_decay_t *d) {
  if (d->left <= 0) return 0.0;
  d->g *= d->r;
  return --d->left ? d->a + d->b * d->g : 0.0;
}

/* ================================================================ filters */

/* RBJ biquads (transposed direct form II) and a one-pole lowpass. */
typedef struct synth_filter_s {
  audio_filter_kind_t kind;
  double b0, b1, b2, a1, a2; /* one-pole: b0 is the smoothing factor */
  double z1, z2;
} synth_filter_t;

static void filter_setup(synth_filter_t *f, audio_filter_kind_t kind, double hz, double q, int rate) {
  memset(f, 0, sizeof(*f));
  f->kind = kind;
  if (kind == AUDIO_FILTER_NONE) return;
  if (!(hz >= 10)) hz = 10;
  if (hz > 0.45 * rate) hz = 0.45 * rate;
  if (!(q >= 0.1)) q = q > 0 ? 0.1 : 0.70710678;
  if (q > 50) q = 50;
  double w0 = SYNTH_TWO_PI * hz / rate, c = cos(w0), alpha = sin(w0) / (2 * q), a0 = 1 + alpha;
  switch (kind) {
  case AUDIO_FILTER_ONEPOLE: f->b0 = 1 - exp(-w0); return;
  case AUDIO_FILTER_LOWPASS:
    f->b0 = f->b2 = (1 - c) / 2 / a0;
    f->b1 = (1 - c) / a0;
    break;
  case AUDIO_FILTER_HIGHPASS:
    f->b0 = f->b2 = (1 + c) / 2 / a0;
    f->b1 = -(1 + c) / a0;
    break;
  case AUDIO_FILTER_BANDPASS: /* 0 dB at the centre */
    f->b0 = alpha / a0;
    f->b1 = 0;
    f->b2 = -alpha / a0;
    break;
  default: f->kind = AUDIO_FILTER_NONE; return;
  }
  f->a1 = -2 * c / a0;
  f->a2 = (1 - alpha) / a0;
}

static inline double filter_tick(synth_filter_t *f, double x) {
  double y = f->b0 * x + f->z1;
  f->z1 = f->b1 * x - f->a1 * y + f->z2;
  f->z2 = f->b2 * x - f->a2 * y;
  return y;
}

static void filter_run(synth_filter_t *f, float *buf, int n) {
  if (f->kind == AUDIO_FILTER_NONE) return;
  if (f->kind == AUDIO_FILTER_ONEPOLE) {
    double y = f->z1, a = f->b0;
    for (int k = 0; k < n; k++) buf[k] = (float)(y += a * (buf[k] - y));
    f->z1 = y;
    return;
  }
  double b0 = f->b0, b1 = f->b1, b2 = f->b2, a1 = f->a1, a2 = f->a2, z1 = f->z1, z2 = f->z2;
  for (int k = 0; k < n; k++) {
    double x = buf[k], y = b0 * x + z1;
    z1 = b1 * x - a1 * y + z2;
    z2 = b2 * x - a2 * y;
    buf[k] = (float)y;
  }
  f->z1 = z1;
  f->z2 = z2;
}

/* ================================================================ voices */

typedef enum { VOICE_OSC, VOICE_FM, VOICE_SAMPLE, VOICE_DRUM } synth_voice_kind_t;

/* A stolen voice keeps sounding in its tail slot, fading out over this long. */
#define SYNTH_STEAL_FADE 0.003

typedef struct synth_voice_s {
  synth_voice_kind_t kind;
  bool busy;          /* sounding; a free voice is never rendered */
  int64_t on_frame;   /* note-on, for stealing the oldest */
  float gain;
  synth_env_t env;    /* amplitude, peak = velocity (not used by drums) */
  synth_filter_t filt;
  /* oscillator, or FM carrier and modulator */
  double phase, inc;
  const float *table;
  double mphase, minc, mindex;
  const float *mtable;
  synth_env_t menv;
  /* sample playback */
  const audio_sample_t *sample;
  double pos, step;
  /* drums */
  int drum;
  int64_t t, len;     /* frames since the hit, and its length */
  uint32_t rng;
  synth_decay_t d1, d2;
  double kp, kr;      /* kick: pitch-drop factor and its per-frame decay */
  /* stolen: linear fade-out, frames left of fade_len (0: not fading) */
  int fade_left, fade_len;
} synth_voice_t;

/* The oscillator's output (before the filter) into buf. */
static void voice_osc(synth_voice_t *v, float *buf, int n) {
  const float *t = v->table;
  double ph = v->phase, inc = v->inc;
  for (int k = 0; k < n; k++) {
    buf[k] = synth__read(t, ph);
    ph += inc;
    if (ph >= 1.0) ph -= 1.0;
  }
  v->phase = ph;
}

/* Two-operator FM: the modulator (times index and mod envelope) is the
 * carrier's phase deviation in radians. */
static void voice_fm(synth_voice_t *v, const float *menv, float *buf, int n) {
  const float *t = v->table, *mt = v->mtable;
  double ph = v->phase, inc = v->inc, mph = v->mphase, minc = v->minc, idx = v->mindex * SYNTH_INV_TWO_PI;
  for (int k = 0; k < n; k++) {
    double dev = synth__read(mt, mph) * idx * menv[k];
    buf[k] = synth__read(t, synth__wrap(ph + dev));
    ph += inc;
    if (ph >= 1.0) ph -= 1.0;
    mph += minc;
    if (mph >= 1.0) mph -= 1.0;
  }
  v->phase = ph;
  v->mphase = mph;
}

/* Resampled playback (linear interpolation); zeros past the end. */
static void voice_sample(synth_voice_t *v, float *buf, int n) {
  const float *d = v->sample->data;
  size_t frames = v->sample->frames;
  double pos = v->pos, step = v->step, end = (double)frames;
  for (int k = 0; k < n; k++) {
    if (pos >= end) {
      buf[k] = 0;
      continue;
    }
    size_t i = (size_t)pos;
    float f = (float)(pos - (double)i), a = d[i], b = i + 1 < frames ? d[i + 1] : 0.0f;
    buf[k] = a + f * (b - a);
    pos += step;
  }
  v->pos = pos;
}

/* ================================================================ drum kit */

/* Shared, per render: the drums' fixed filters (coefficients only). */
typedef struct synth_kit_s {
  synth_filter_t snare_bp, hat_hp, clap_bp;
  int rate;
  int64_t clap_gap;   /* frames between the clap's bursts */
} synth_kit_t;

static void kit_init(synth_kit_t *kit, int rate) {
  kit->rate = rate;
  filter_setup(&kit->snare_bp, AUDIO_FILTER_BANDPASS, 1500, 0.8, rate);
  filter_setup(&kit->hat_hp, AUDIO_FILTER_HIGHPASS, 7000, 0.7, rate);
  filter_setup(&kit->clap_bp, AUDIO_FILTER_BANDPASS, 1200, 1.2, rate);
  kit->clap_gap = (int64_t)llround(0.010 * rate);
}

static uint64_t synth__splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* xorshift32: uniform noise in [-1, 1). */
static inline float synth__noise(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *s = x;
  return (float)((int32_t)x * (1.0 / 2147483648.0));
}

/* Lengths in s and levels that bring each piece to a peak near 1. */
#define KIT_KICK_LEN 0.4
#define KIT_SNARE_LEN 0.2
#define KIT_SNARE_TONE_LEN 0.12
#define KIT_HAT_LEN 0.05
#define KIT_OPENHAT_LEN 0.3
#define KIT_CLAP_TAIL 0.15
#define KIT_SNARE_NOISE 1.3
#define KIT_SNARE_TONE 0.45
#define KIT_HAT_NOISE 0.85
#define KIT_CLAP_NOISE 2.0

static void drum_start(const synth_kit_t *kit, synth_voice_t *v, int drum, uint64_t seed) {
  int rate = kit->rate;
  v->kind = VOICE_DRUM;
  v->drum = drum;
  v->t = 0;
  v->phase = 0;
  uint32_t r = (uint32_t)synth__splitmix(seed);
  v->rng = r ? r : 0x9e3779b9u;
  switch (drum) {
  case AUDIO_DRUM_KICK:
    v->len = synth__frames(KIT_KICK_LEN, rate);
    decay_init(&v->d1, KIT_KICK_LEN, rate);
    v->kp = 1.0;
    v->kr = exp(-1.0 / (0.03 * rate)); /* 150 -> 50 Hz, time constant 30 ms */
    break;
  case AUDIO_DRUM_SNARE:
    v->len = synth__frames(KIT_SNARE_LEN, rate);
    decay_init(&v->d1, KIT_SNARE_LEN, rate);
    decay_init(&v->d2, KIT_SNARE_TONE_LEN, rate);
    v->filt = kit->snare_bp;
    v->inc = 180.0 / rate;
    break;
  case AUDIO_DRUM_HAT:
  case AUDIO_DRUM_OPENHAT: {
    double len = drum == AUDIO_DRUM_HAT ? KIT_HAT_LEN : KIT_OPENHAT_LEN;
    v->len = synth__frames(len, rate);
    decay_init(&v->d1, len, rate);
    v->filt = kit->hat_hp;
    break;
  }
  default: /* clap: three 10 ms bursts, then the tail */
    v->len = 3 * kit->clap_gap + synth__frames(KIT_CLAP_TAIL, rate);
    decay_init(&v->d2, 0.010, rate);
    v->filt = kit->clap_bp;
    break;
  }
}

/* The drum's output (envelopes included) into buf. */
static void voice_drum(const synth_kit_t *kit, synth_voice_t *v, float *buf, int n) {
  int64_t t = v->t;
  double inv_rate = 1.0 / kit->rate;
  switch (v->drum) {
  case AUDIO_DRUM_KICK:
    for (int k = 0; k < n; k++) {
      buf[k] = synth__read(synth__sine, v->phase) * (float)decay_next(&v->d1);
      v->phase += (50.0 + 100.0 * v->kp) * inv_rate;
      if (v->phase >= 1.0) v->phase -= 1.0;
      v->kp *= v->kr;
    }
    break;
  case AUDIO_DRUM_SNARE:
    for (int k = 0; k < n; k++) {
      double noise = filter_tick(&v->filt, synth__noise(&v->rng));
      double tone = synth__read(synth__sine, v->phase);
      v->phase += v->inc;
      if (v->phase >= 1.0) v->phase -= 1.0;
      buf[k] = (float)(KIT_SNARE_NOISE * noise * decay_next(&v->d1) + KIT_SNARE_TONE * tone * decay_next(&v->d2));
    }
    break;
  case AUDIO_DRUM_HAT:
  case AUDIO_DRUM_OPENHAT:
    for (int k = 0; k < n; k++)
      buf[k] = (float)(KIT_HAT_NOISE * filter_tick(&v->filt, synth__noise(&v->rng)) * decay_next(&v->d1));
    break;
  default:
    for (int k = 0; k < n; k++) {
      int64_t tk = t + k;
      double amp;
      if (tk < 3 * kit->clap_gap) {
        if (tk > 0 && tk % kit->clap_gap == 0) decay_init(&v->d2, 0.010, kit->rate);
        amp = decay_next(&v->d2);
      } else {
        if (tk == 3 * kit->clap_gap) decay_init(&v->d1, KIT_CLAP_TAIL, kit->rate);
        amp = 0.7 * decay_next(&v->d1);
      }
      buf[k] = (float)(KIT_CLAP_NOISE * filter_tick(&v->filt, synth__noise(&v->rng)) * amp);
    }
    break;
  }
  v->t = t + n;
}

/* ================================================================ instruments */

typedef struct synth_event_s {
  int64_t on, off; /* frames */
  size_t note;     /* index in the track's notes */
} synth_event_t;

typedef struct synth_track_s {
  const audio_track_t *src;
  audio_inst_kind_t kind;
  synth_voice_kind_t tone;        /* VOICE_OSC or VOICE_FM for melodic instruments */
  int nvoices;
  synth_env_shape_t env, menv;
  synth_filter_t filt;            /* coefficients, zero state */
  float gain[AUDIO_MAX_CHANNELS]; /* volume and pan */
  synth_event_t *events;          /* sorted by (on, note) */
  size_t nevents, next;
  int nearest[128];               /* sampler: index in inst.samples, -1: none */
  uint64_t seed;
  synth_voice_t voices[AUDIO_MAX_VOICES];
  synth_voice_t tails[AUDIO_MAX_VOICES]; /* tails[i]: what voices[i] played before it was stolen */
} synth_track_t;

static int synth__event_cmp(const void *pa, const void *pb) {
  const synth_event_t *a = pa, *b = pb;
  if (a->on != b->on) return a->on < b->on ? -1 : 1;
  return a->note < b->note ? -1 : a->note > b->note;
}

static int64_t synth__frame_at(double s, int rate) {
  if (!(s > 0)) return 0;
  double f = s * rate;
  return f < 9e15 ? (int64_t)llround(f) : (int64_t)9e15;
}

static void track_init(synth_track_t *t, const audio_track_t *src, size_t index, const audio_score_t *score) {
  const audio_instrument_t *inst = &src->inst;
  int rate = score->sample_rate;
  t->src = src;
  t->kind = inst->kind;
  t->tone = inst->kind == AUDIO_INST_FM || (inst->kind == AUDIO_INST_POLY && inst->voice.kind == AUDIO_INST_FM)
                ? VOICE_FM
                : VOICE_OSC;
  switch (inst->kind) {
  case AUDIO_INST_POLY: t->nvoices = inst->voices; break;
  case AUDIO_INST_SAMPLER: t->nvoices = inst->voices > 1 ? inst->voices : 16; break;
  default: t->nvoices = 1; break;
  }
  if (t->nvoices < 1) t->nvoices = 1;
  if (t->nvoices > AUDIO_MAX_VOICES) t->nvoices = AUDIO_MAX_VOICES;
  env_shape_init(&t->env, &inst->voice.env, rate);
  env_shape_init(&t->menv, &inst->voice.mod_env, rate);
  filter_setup(&t->filt, inst->voice.filter.kind, inst->voice.filter.frequency, inst->voice.filter.q, rate);

  double db = isfinite(inst->volume_db) ? inst->volume_db : 0;
  double vol = pow(10.0, (db > -120 ? (db < 60 ? db : 60) : -120) / 20.0);
  if (score->channels == 1) {
    t->gain[0] = (float)vol;
  } else {
    double pan = inst->pan > -1 ? (inst->pan < 1 ? inst->pan : 1) : -1;
    double th = (pan + 1) * (SYNTH_TWO_PI / 8);
    t->gain[0] = (float)(vol * cos(th));
    t->gain[1] = (float)(vol * sin(th));
  }

  t->events = tt_malloc((src->count ? src->count : 1) * sizeof(*t->events));
  for (size_t i = 0; i < src->count; i++) {
    const audio_note_t *n = &src->notes[i];
    t->events[i].on = synth__frame_at(n->time, rate);
    t->events[i].off = synth__frame_at(n->time + (n->length > 0 ? n->length : 0), rate);
    if (t->events[i].off < t->events[i].on) t->events[i].off = t->events[i].on;
    t->events[i].note = i;
  }
  t->nevents = src->count;
  qsort(t->events, t->nevents, sizeof(*t->events), synth__event_cmp); /* notes come sorted; ties stay in order */

  for (int m = 0; m < 128; m++) {
    int best = -1;
    for (size_t i = 0; i < inst->sample_count; i++) {
      int d = abs(inst->samples[i].midi - m);
      if (best < 0 || d < abs(inst->samples[best].midi - m)) best = (int)i;
    }
    t->nearest[m] = best;
  }
  t->seed = synth__splitmix(score->seed ^ synth__splitmix(index + 1));
}

/* A free voice, or the oldest one stolen: its sound moves to the tail slot
 * and fades out over SYNTH_STEAL_FADE (a tail still fading is cut). */
static synth_voice_t *track_voice(synth_track_t *t, int rate) {
  int oldest = 0;
  for (int i = 0; i < t->nvoices; i++) {
    if (!t->voices[i].busy) return &t->voices[i];
    if (t->voices[i].on_frame < t->voices[oldest].on_frame) oldest = i;
  }
  synth_voice_t *v = &t->voices[oldest], *tail = &t->tails[oldest];
  *tail = *v;
  tail->fade_len = tail->fade_left = (int)synth__frames(SYNTH_STEAL_FADE, rate);
  v->busy = false;
  return v;
}

/* A free voice starts from silence; a busy one (monophonic retrigger) keeps
 * its phase, filter and level, so the new attack starts where it was. */
static void voice_fresh(synth_voice_t *v, const synth_filter_t *filt) {
  if (v->busy) return;
  memset(v, 0, sizeof(*v));
  v->filt = *filt;
}

static void track_note_on(synth_track_t *t, const synth_kit_t *kit, const synth_event_t *ev) {
  const audio_note_t *n = &t->src->notes[ev->note];
  int rate = kit->rate;
  double vel = n->velocity > 0 ? (n->velocity < 1 ? n->velocity : 1) : 0;
  int64_t gate = ev->off - ev->on;
  synth_voice_t *v;

  if (t->kind == AUDIO_INST_SAMPLER) {
    if (n->drum >= 0 && n->drum < AUDIO_DRUM_COUNT) {
      v = track_voice(t, rate);
      memset(v, 0, sizeof(*v));
      drum_start(kit, v, n->drum, t->seed ^ synth__splitmix(ev->note));
    } else {
      if (n->drum != AUDIO_DRUM_NONE || n->midi < 0 || n->midi > 127 || t->nearest[n->midi] < 0) return;
      const audio_sample_t *smp = &t->src->inst.samples[t->nearest[n->midi]];
      v = track_voice(t, rate);
      voice_fresh(v, &t->filt);
      v->kind = VOICE_SAMPLE;
      v->sample = smp;
      v->pos = 0;
      v->step = n->hz > 0 ? n->hz / audio_midi_hz(smp->midi) : pow(2.0, (n->midi - smp->midi) / 12.0);
      if (!(v->step < 1e3)) v->step = 1e3;
      env_trigger(&v->env, &t->env, vel, gate);
    }
    v->gain = (float)(0.5 * (v->kind == VOICE_DRUM ? vel : 1.0));
  } else {
    const audio_voice_opts_t *o = &t->src->inst.voice;
    double hz = n->hz > 0 ? n->hz : audio_midi_hz(n->midi);
    v = t->kind == AUDIO_INST_POLY ? track_voice(t, rate) : &t->voices[0];
    voice_fresh(v, &t->filt);
    v->kind = t->tone;
    v->inc = synth__inc(hz, rate);
    v->table = synth__table(o->wave, v->inc);
    if (v->kind == VOICE_FM) {
      v->minc = synth__inc(hz * o->harmonicity, rate);
      v->mtable = synth__table(o->mod_wave, v->minc);
      v->mindex = fabs(o->modulation_index) < 1e4 ? o->modulation_index : 0;
      env_trigger(&v->menv, &t->menv, 1.0, gate);
    }
    env_trigger(&v->env, &t->env, vel, gate);
    v->gain = 0.5f;
  }
  v->on_frame = ev->on;
  v->busy = true;
  v->fade_len = 0;
}

/* Adds `n` frames of voice `v` to acc. */
static void voice_render(const synth_kit_t *kit, synth_voice_t *v, float *acc, int n) {
  float buf[SYNTH_BLOCK], env[SYNTH_BLOCK];
  switch (v->kind) {
  case VOICE_OSC:
  case VOICE_FM:
  case VOICE_SAMPLE:
    if (v->kind == VOICE_OSC) {
      voice_osc(v, buf, n);
    } else if (v->kind == VOICE_FM) {
      env_run(&v->menv, env, n);
      voice_fm(v, env, buf, n);
    } else {
      voice_sample(v, buf, n);
    }
    filter_run(&v->filt, buf, n);
    env_run(&v->env, env, n);
    for (int k = 0; k < n; k++) buf[k] *= env[k];
    v->busy = v->env.stage != ENV_IDLE && (v->kind != VOICE_SAMPLE || v->pos < (double)v->sample->frames);
    break;
  case VOICE_DRUM:
    voice_drum(kit, v, buf, n);
    v->busy = v->t < v->len;
    break;
  }
  float gain = v->gain;
  if (v->fade_len) {
    float inv = 1.0f / (float)v->fade_len;
    for (int k = 0; k < n; k++) {
      if (v->fade_left > 0) v->fade_left--;
      buf[k] *= (float)v->fade_left * inv;
    }
    if (v->fade_left == 0) v->busy = false;
  }
  for (int k = 0; k < n; k++) acc[k] += gain * buf[k];
}

static void track_voices(synth_track_t *t, const synth_kit_t *kit, float *acc, int n) {
  for (int i = 0; i < t->nvoices; i++) {
    if (t->voices[i].busy) voice_render(kit, &t->voices[i], acc, n);
    if (t->tails[i].busy) voice_render(kit, &t->tails[i], acc, n);
  }
}

/* Renders frames [b0, b0 + n) of track t into acc (zeroed by the caller);
 * returns whether anything sounded. */
static bool track_render(synth_track_t *t, const synth_kit_t *kit, int64_t b0, int n, float *acc) {
  bool any = false;
  int at = 0;
  while (t->next < t->nevents && t->events[t->next].on < b0 + n) {
    const synth_event_t *ev = &t->events[t->next++];
    int to = (int)(ev->on - b0);
    if (to > at) {
      track_voices(t, kit, acc + at, to - at);
      at = to;
    }
    track_note_on(t, kit, ev);
    any = true;
  }
  for (int i = 0; i < t->nvoices; i++) any = any || t->voices[i].busy || t->tails[i].busy;
  if (any && at < n) track_voices(t, kit, acc + at, n - at);
  return any;
}

/* ================================================================ effects */

/* Anti-denormal: values below ~1e-25 become 0 (no -ffast-math here, so the
 * compiler keeps the pair). Feedback loops decay towards denormals in long
 * silences otherwise, which are very slow on x86. */
#define SYNTH_FLUSH(x) ((x) + 1e-18f - 1e-18f)

typedef struct synth_delay_s {
  float *buf;
  size_t len, pos;
} synth_delay_t;

/* Feedback delay: y = line[n - D]; line[n] = x + fb * y; out = (1-wet) x + wet y. */
static void delay_run(synth_delay_t *d, float *x, int n, float fb, float wet) {
  float dry = 1.0f - wet;
  float *buf = d->buf;
  size_t pos = d->pos, len = d->len;
  for (int k = 0; k < n; k++) {
    float y = buf[pos];
    buf[pos] = SYNTH_FLUSH(x[k] + fb * y);
    if (++pos == len) pos = 0;
    x[k] = dry * x[k] + wet * y;
  }
  d->pos = pos;
}

/*
 * Freeverb (Jezar's public-domain design): 8 damped feedback combs in
 * parallel, then 4 allpasses in series, per channel, the right channel's
 * lines 23 samples longer. Each comb's feedback g = 10^(-3 L / (T rate))
 * makes its loop fall 60 dB in T = reverb_decay seconds (at low frequency;
 * the damping shortens the highs). The wet output is scaled by
 * sqrt(mean(1 - g^2)), the inverse of the combs' impulse-response energy, so
 * a broadband input comes out of the fully wet reverb at about its own level
 * whatever the decay (as a normalised convolution reverb does).
 */
#define REVERB_COMBS 8
#define REVERB_ALLPASSES 4
#define REVERB_GAIN 0.015f
#define REVERB_WET_SCALE 2.6
#define REVERB_DAMP 0.2f

typedef struct synth_line_s {
  float *buf;
  int len, pos;
  float fb, store; /* comb: feedback and damping state */
} synth_line_t;

typedef struct synth_reverb_s {
  synth_line_t comb[AUDIO_MAX_CHANNELS][REVERB_COMBS];
  synth_line_t ap[AUDIO_MAX_CHANNELS][REVERB_ALLPASSES];
  float scale; /* of the wet output */
} synth_reverb_t;

static void reverb_init(synth_reverb_t *r, int channels, int rate, double decay) {
  static const int comb_len[REVERB_COMBS] = {1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617};
  static const int ap_len[REVERB_ALLPASSES] = {556, 441, 341, 225};
  if (!(decay >= 0.05)) decay = 0.05;
  if (decay > 100) decay = 100;
  double scale = rate / 44100.0, energy = 0;
  for (int c = 0; c < channels; c++) {
    for (int i = 0; i < REVERB_COMBS; i++) {
      synth_line_t *l = &r->comb[c][i];
      l->len = (int)lround((comb_len[i] + 23 * c) * scale);
      l->buf = tt_calloc((size_t)l->len, sizeof(float));
      l->fb = (float)pow(10.0, -3.0 * l->len / (decay * rate));
      energy += 1.0 - (double)l->fb * l->fb;
    }
    for (int i = 0; i < REVERB_ALLPASSES; i++) {
      synth_line_t *l = &r->ap[c][i];
      l->len = (int)lround((ap_len[i] + 23 * c) * scale);
      l->buf = tt_calloc((size_t)l->len, sizeof(float));
    }
  }
  r->scale = (float)(REVERB_WET_SCALE * sqrt(energy / (channels * REVERB_COMBS)));
}

static void reverb_free(synth_reverb_t *r) {
  for (int c = 0; c < AUDIO_MAX_CHANNELS; c++) {
    for (int i = 0; i < REVERB_COMBS; i++) free(r->comb[c][i].buf);
    for (int i = 0; i < REVERB_ALLPASSES; i++) free(r->ap[c][i].buf);
  }
}

/* Mixes the reverb of `in` (already scaled by REVERB_GAIN) into x. The
 * combs run side by side, sample by sample: each one's damping state is a
 * serial chain, and eight independent chains keep the CPU busy where one
 * comb at a time would wait on each. */
static void reverb_run(synth_reverb_t *r, int c, const float *in, float *x, int n, float wet) {
  float out[SYNTH_BLOCK];
  float *buf[REVERB_COMBS], fb[REVERB_COMBS], store[REVERB_COMBS];
  int pos[REVERB_COMBS], len[REVERB_COMBS];
  for (int i = 0; i < REVERB_COMBS; i++) {
    synth_line_t *l = &r->comb[c][i];
    buf[i] = l->buf;
    fb[i] = l->fb;
    store[i] = l->store;
    pos[i] = l->pos;
    len[i] = l->len;
  }
  for (int k = 0; k < n; k++) {
    float acc = 0, v = in[k];
    for (int i = 0; i < REVERB_COMBS; i++) {
      float y = buf[i][pos[i]];
      store[i] = y * (1.0f - REVERB_DAMP) + store[i] * REVERB_DAMP;
      buf[i][pos[i]] = SYNTH_FLUSH(v + store[i] * fb[i]);
      if (++pos[i] == len[i]) pos[i] = 0;
      acc += y;
    }
    out[k] = acc;
  }
  for (int i = 0; i < REVERB_COMBS; i++) {
    r->comb[c][i].store = store[i];
    r->comb[c][i].pos = pos[i];
  }
  for (int i = 0; i < REVERB_ALLPASSES; i++) {
    synth_line_t *l = &r->ap[c][i];
    float *buf = l->buf;
    int pos = l->pos, len = l->len;
    for (int k = 0; k < n; k++) {
      float b = buf[pos];
      buf[pos] = SYNTH_FLUSH(out[k] + b * 0.5f);
      out[k] = b - out[k];
      if (++pos == len) pos = 0;
    }
    l->pos = pos;
  }
  float dry = 1.0f - wet, w = wet * r->scale;
  for (int k = 0; k < n; k++) x[k] = dry * x[k] + w * out[k];
}

/* ================================================================ samples */

static int synth__read_file(const char *path, char **data, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return errno == ENOENT || errno == ENOTDIR ? -ENOENT : -EINVAL;
  size_t cap = 1 << 16, n = 0;
  char *buf = tt_malloc(cap);
  for (;;) {
    if (n == cap) {
      if (cap >= ((size_t)1 << 30)) {
        free(buf);
        fclose(f);
        return -EINVAL;
      }
      cap *= 2;
      buf = tt_realloc(buf, cap);
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return -EINVAL;
  }
  *data = buf;
  *len = n;
  return 0;
}

static void synth__samples_drop(audio_instrument_t *inst) {
  for (size_t i = 0; i < inst->sample_count; i++) free(inst->samples[i].data);
  free(inst->samples);
  inst->samples = NULL;
  inst->sample_count = 0;
}

/* Loads every sampler's sample_names into inst.samples (kept by the score; a
 * second render of the same score reuses them). On failure the instrument
 * holds none. */
static int synth__load_samples(audio_score_t *score) {
  for (size_t ti = 0; ti < score->track_count; ti++) {
    audio_instrument_t *inst = &score->tracks[ti].inst;
    if (inst->kind != AUDIO_INST_SAMPLER || inst->samples != NULL) continue;
    size_t want = 0;
    for (int m = 0; m < 128; m++) want += inst->sample_names[m] != NULL;
    if (want == 0) continue;
    if (score->samples_dir == NULL) return -ENOENT;
    inst->samples = tt_calloc(want, sizeof(*inst->samples));
    inst->sample_count = 0;
    for (int m = 0; m < 128; m++) {
      if (inst->sample_names[m] == NULL) continue;
      char path[4096];
      int len = snprintf(path, sizeof(path), "%s/%s.wav", score->samples_dir, inst->sample_names[m]);
      char *data = NULL;
      size_t size = 0;
      int rc = len > 0 && (size_t)len < sizeof(path) ? synth__read_file(path, &data, &size) : -ENOENT;
      float *pcm = NULL;
      size_t frames = 0;
      if (rc == 0) {
        rc = audio_decode_wav(data, size, score->sample_rate, &pcm, &frames) == 0 ? 0 : -EINVAL;
        free(data);
      }
      if (rc != 0) {
        synth__samples_drop(inst);
        return rc;
      }
      inst->samples[inst->sample_count++] = (audio_sample_t){.midi = m, .data = pcm, .frames = frames};
    }
  }
  return 0;
}

/* ================================================================ render */

void audio_pcm_free(audio_pcm_t *pcm) {
  for (int c = 0; c < AUDIO_MAX_CHANNELS; c++) free(pcm->data[c]);
  memset(pcm, 0, sizeof(*pcm));
}

int audio_render(audio_score_t *score, audio_pcm_t *out, audio_progress_cb progress, void *ctx,
                 const atomic_bool *cancel) {
  memset(out, 0, sizeof(*out));
  int rate = score->sample_rate, channels = score->channels;
  if (rate < 8000 || rate > 192000 || channels < 1 || channels > AUDIO_MAX_CHANNELS ||
      !(score->duration >= 0 && score->duration <= AUDIO_DURATION_LIMIT) || score->track_count > AUDIO_MAX_TRACKS)
    return -EINVAL;
  int rc = synth__load_samples(score);
  if (rc != 0) return rc;
  pthread_once(&synth__once, synth__tables_build);

  size_t frames = (size_t)llround(score->duration * rate);
  synth_kit_t kit;
  kit_init(&kit, rate);
  synth_track_t *tracks = tt_calloc(score->track_count ? score->track_count : 1, sizeof(*tracks));
  for (size_t i = 0; i < score->track_count; i++) track_init(&tracks[i], &score->tracks[i], i, score);

  const audio_fx_t *fx = &score->fx;
  bool delay_on = fx->delay_wet > 0, reverb_on = fx->reverb_wet > 0;
  float delay_wet = (float)(fx->delay_wet < 1 ? fx->delay_wet : 1);
  float reverb_wet = (float)(fx->reverb_wet < 1 ? fx->reverb_wet : 1);
  float delay_fb = (float)(fx->delay_feedback > 0 ? (fx->delay_feedback < 0.95 ? fx->delay_feedback : 0.95) : 0);
  synth_delay_t delay[AUDIO_MAX_CHANNELS] = {{0}};
  if (delay_on) {
    int64_t d = synth__frame_at(fx->delay_time, rate);
    if (d < 1) d = 1;
    if (d > (int64_t)rate * 10) d = (int64_t)rate * 10;
    for (int c = 0; c < channels; c++) {
      delay[c].len = (size_t)d;
      delay[c].buf = tt_calloc((size_t)d, sizeof(float));
    }
  }
  synth_reverb_t *reverb = NULL;
  if (reverb_on) {
    reverb = tt_calloc(1, sizeof(*reverb));
    reverb_init(reverb, channels, rate, fx->reverb_decay);
  }

  out->sample_rate = rate;
  out->channels = channels;
  out->frames = frames;
  for (int c = 0; c < channels; c++) out->data[c] = tt_malloc((frames ? frames : 1) * sizeof(float));

  size_t every = (size_t)(0.1 * rate / SYNTH_BLOCK);
  if (every < 1) every = 1;
  size_t block = 0;
  for (size_t b0 = 0; b0 < frames; b0 += SYNTH_BLOCK, block++) {
    if (cancel != NULL && atomic_load_explicit(cancel, memory_order_relaxed)) {
      rc = -ECANCELED;
      break;
    }
    if (progress != NULL && block % every == 0 && b0 > 0) progress(ctx, (double)b0 / (double)frames);
    int n = frames - b0 < SYNTH_BLOCK ? (int)(frames - b0) : SYNTH_BLOCK;
    float bus[AUDIO_MAX_CHANNELS][SYNTH_BLOCK] = {{0}};
    for (size_t i = 0; i < score->track_count; i++) {
      float acc[SYNTH_BLOCK] = {0};
      if (!track_render(&tracks[i], &kit, (int64_t)b0, n, acc)) continue;
      for (int c = 0; c < channels; c++) {
        float g = tracks[i].gain[c];
        for (int k = 0; k < n; k++) bus[c][k] += g * acc[k];
      }
    }
    if (delay_on)
      for (int c = 0; c < channels; c++) delay_run(&delay[c], bus[c], n, delay_fb, delay_wet);
    if (reverb_on) {
      float in[SYNTH_BLOCK];
      for (int k = 0; k < n; k++) in[k] = (channels == 2 ? bus[0][k] + bus[1][k] : bus[0][k]) * REVERB_GAIN;
      for (int c = 0; c < channels; c++) reverb_run(reverb, c, in, bus[c], n, reverb_wet);
    }
    for (int c = 0; c < channels; c++) {
      float *dst = out->data[c] + b0;
      for (int k = 0; k < n; k++) {
        float x = bus[c][k];
        dst[k] = !(x >= -1.0f) ? -1.0f : x > 1.0f ? 1.0f : x; /* NaN -> -1 */
      }
    }
  }
  if (rc == 0 && progress != NULL) progress(ctx, 1.0);

  for (size_t i = 0; i < score->track_count; i++) free(tracks[i].events);
  free(tracks);
  for (int c = 0; c < AUDIO_MAX_CHANNELS; c++) free(delay[c].buf);
  if (reverb != NULL) {
    reverb_free(reverb);
    free(reverb);
  }
  if (rc != 0) audio_pcm_free(out);
  return rc;
}
