/* Unit tests of the synthesiser (src/audio/synth.c): pitch, envelopes,
 * timing, FM, aliasing, polyphony, the drum kit, samples, effects. Scores
 * are built by hand; the output is measured with small analysis helpers. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "audio/audio.h"
#include "core/core.h"
#include "test.h"

#define PI 3.14159265358979323846

/* ================================================================ scores */

static audio_score_t *score_new(int rate, int channels, double duration, size_t ntracks) {
  audio_score_t *s = tt_calloc(1, sizeof(*s));
  s->sample_rate = rate;
  s->channels = channels;
  s->duration = duration;
  s->tempo = 120;
  s->seed = 1;
  s->tracks = tt_calloc(ntracks, sizeof(*s->tracks));
  s->track_count = ntracks;
  return s;
}

/* Sets track `i` to a melodic instrument of `kind` (SYNTH, FM, POLY with
 * synth voices, SAMPLER) with wave `w` and the given envelope. */
static audio_instrument_t *inst_set(audio_score_t *s, size_t i, audio_inst_kind_t kind, audio_wave_t w, double a,
                                    double d, double sus, double r) {
  audio_instrument_t *in = &s->tracks[i].inst;
  in->kind = kind;
  in->voice.kind = kind == AUDIO_INST_FM ? AUDIO_INST_FM : AUDIO_INST_SYNTH;
  in->voice.wave = w;
  in->voice.env = (audio_adsr_t){a, d, sus, r};
  in->voice.mod_wave = AUDIO_WAVE_SINE;
  in->voice.mod_env = (audio_adsr_t){0.01, 0.1, 1, 0.1};
  in->voice.harmonicity = 1;
  in->voice.modulation_index = 0;
  in->voices = 1;
  return in;
}

static audio_note_t *notes_new(audio_score_t *s, size_t i, size_t n) {
  s->tracks[i].notes = tt_calloc(n, sizeof(audio_note_t));
  s->tracks[i].count = n;
  return s->tracks[i].notes;
}

static audio_note_t note(double time, double length, int midi, double hz, double velocity) {
  return (audio_note_t){.time = time, .length = length, .midi = midi, .hz = hz, .drum = AUDIO_DRUM_NONE,
                        .velocity = velocity};
}

static audio_note_t drum(double time, int which) {
  return (audio_note_t){.time = time, .length = 0.1, .midi = 36, .drum = which, .velocity = 1};
}

/* One sine note (at `hz`, or `midi` when hz is 0) on a synth, mono. */
static audio_score_t *score_tone(int rate, double duration, int midi, double hz, double start, double length) {
  audio_score_t *s = score_new(rate, 1, duration, 1);
  inst_set(s, 0, AUDIO_INST_SYNTH, AUDIO_WAVE_SINE, 0.01, 0.1, 1, 0.05);
  notes_new(s, 0, 1)[0] = note(start, length, midi, hz, 1);
  return s;
}

static int render(audio_score_t *s, audio_pcm_t *pcm) { return audio_render(s, pcm, NULL, NULL, NULL); }

static size_t at(double t, int rate) { return (size_t)llround(t * rate); }

/* ================================================================ analysis */

/* Frequency from the upward zero crossings in [a, b), each placed between
 * its two samples by linear interpolation: (crossings - 1) periods over the
 * time between the first and the last. */
static double zc_freq(const float *x, size_t a, size_t b, int rate) {
  double first = -1, last = -1;
  size_t count = 0;
  for (size_t n = a + 1; n < b; n++) {
    if (x[n - 1] < 0 && x[n] >= 0) {
      double t = (double)(n - 1) + x[n - 1] / (double)(x[n - 1] - x[n]);
      if (first < 0) first = t;
      last = t;
      count++;
    }
  }
  return count > 1 ? (double)(count - 1) * rate / (last - first) : 0;
}

static double cents(double f, double ref) { return 1200.0 * log2(f / ref); }

/* Amplitude of the component at `f` in x[a, a + n): Goertzel on a
 * Hann-windowed stretch, scaled so a sine of amplitude A reads A. */
static double tone_amp(const float *x, size_t a, size_t n, double f, int rate) {
  double w = 2 * PI * f / rate, c = 2 * cos(w), s1 = 0, s2 = 0, wsum = 0;
  for (size_t k = 0; k < n; k++) {
    double win = 0.5 - 0.5 * cos(2 * PI * (double)k / (double)(n - 1));
    double v = x[a + k] * win + c * s1 - s2;
    s2 = s1;
    s1 = v;
    wsum += win;
  }
  double re = s1 - s2 * cos(w), im = s2 * sin(w);
  return 2 * sqrt(re * re + im * im) / wsum;
}

/* In-place radix-2 complex FFT; n a power of two. */
static void fft(double *re, double *im, size_t n) {
  for (size_t i = 1, j = 0; i < n; i++) {
    size_t bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      double t = re[i];
      re[i] = re[j];
      re[j] = t;
      t = im[i];
      im[i] = im[j];
      im[j] = t;
    }
  }
  for (size_t len = 2; len <= n; len <<= 1) {
    double ang = -2 * PI / (double)len;
    for (size_t i = 0; i < n; i += len) {
      for (size_t k = 0; k < len / 2; k++) {
        double wr = cos(ang * (double)k), wi = sin(ang * (double)k);
        double *ur = &re[i + k], *ui = &im[i + k], *vr = &re[i + k + len / 2], *vi = &im[i + k + len / 2];
        double tr = *vr * wr - *vi * wi, ti = *vr * wi + *vi * wr;
        *vr = *ur - tr;
        *vi = *ui - ti;
        *ur += tr;
        *ui += ti;
      }
    }
  }
}

#define SPEC_N 65536

/*
 * The strongest spectral component of x[a, a + SPEC_N) that is not within
 * 10 Hz of a harmonic k*f below Nyquist (nor of DC), relative to the
 * fundamental, in dB. Blackman-Harris window: its sidelobes (-92 dB) sit
 * far below the -60 dB the tests ask for.
 */
static double worst_spur_db(const float *x, size_t a, double f, int rate) {
  double *re = tt_malloc(SPEC_N * sizeof(double)), *im = tt_calloc(SPEC_N, sizeof(double));
  for (size_t k = 0; k < SPEC_N; k++) {
    double p = 2 * PI * (double)k / (SPEC_N - 1);
    double win = 0.35875 - 0.48829 * cos(p) + 0.14128 * cos(2 * p) - 0.01168 * cos(3 * p);
    re[k] = x[a + k] * win;
  }
  fft(re, im, SPEC_N);
  double fund = 0, spur = 0;
  for (size_t k = 1; k < SPEC_N / 2; k++) {
    double hz = (double)k * rate / SPEC_N, mag = sqrt(re[k] * re[k] + im[k] * im[k]);
    double h = round(hz / f), dist = fabs(hz - h * f);
    if (fabs(hz - f) < 10) {
      if (mag > fund) fund = mag;
    } else if (!(dist < 10 && h * f < rate / 2.0) && hz > 10) {
      if (mag > spur) spur = mag;
    }
  }
  free(re);
  free(im);
  return 20 * log10(spur / fund);
}

/* The amplitude envelope of a (slowly modulated) sinusoid of `hz`, from the
 * Teager-Kaiser operator x[n]^2 - x[n-1] x[n+1] = A^2 sin^2(w), exact for a
 * constant amplitude; divided by `peak`. env[0] and env[n-1] are 0. */
static double *tkeo_env(const float *x, size_t n, double hz, int rate, double peak) {
  double *env = tt_calloc(n, sizeof(double)), s = sin(2 * PI * hz / rate);
  for (size_t i = 1; i + 1 < n; i++) {
    double psi = (double)x[i] * x[i] - (double)x[i - 1] * x[i + 1];
    env[i] = sqrt(psi > 0 ? psi : 0) / s / peak;
  }
  return env;
}

static float max_step(const float *x, size_t a, size_t b) {
  float m = 0;
  for (size_t n = a + 1; n < b; n++) {
    float d = fabsf(x[n] - x[n - 1]);
    if (d > m) m = d;
  }
  return m;
}

static float max_abs(const float *x, size_t a, size_t b) {
  float m = 0;
  for (size_t n = a; n < b; n++) m = fabsf(x[n]) > m ? fabsf(x[n]) : m;
  return m;
}

/* The first n in [a, b) with |x[n]| > thr, or b. */
static size_t first_above(const float *x, size_t a, size_t b, float thr) {
  for (size_t n = a; n < b; n++)
    if (fabsf(x[n]) > thr) return n;
  return b;
}

/* ================================================================ pitch */

static void test_pitch(void) {
  static const int notes[] = {69, 60, 62, 64, 65, 67, 71, 72, 21, 108, 33, 96};
  for (size_t i = 0; i < TT_ARRAY_SIZE(notes); i++) {
    int rate = i % 2 ? 48000 : 44100;
    audio_score_t *s = score_tone(rate, 1.2, notes[i], 0, 0, 1.2);
    audio_pcm_t pcm;
    if (CHECK(render(s, &pcm) == 0)) {
      CHECK_EQ(pcm.frames, at(1.2, rate));
      double want = 440.0 * pow(2.0, (notes[i] - 69) / 12.0);
      double got = zc_freq(pcm.data[0], at(0.15, rate), at(1.15, rate), rate);
      if (!CHECK(fabs(cents(got, want)) < 1.0))
        fprintf(stderr, "    midi %d: %.4f Hz, want %.4f\n", notes[i], got, want);
      if (notes[i] == 69) CHECK(fabs(got - 440.0) < 0.5);
      audio_pcm_free(&pcm);
      CHECK(pcm.data[0] == NULL && pcm.frames == 0);
    }
    audio_score_free(s);
  }
  /* hz overrides midi */
  audio_score_t *s = score_tone(48000, 1.2, 60, 1234.5, 0, 1.2);
  audio_pcm_t pcm;
  if (CHECK(render(s, &pcm) == 0)) {
    CHECK(fabs(cents(zc_freq(pcm.data[0], 4800, 52800, 48000), 1234.5)) < 1.0);
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);
}

/* ================================================================ envelopes */

static void test_envelope(void) {
  /* A 2 kHz sine: note-on 0.1 s, note-off 0.5 s. Attack ends at 0.15, the
   * decay reaches sustain at 0.25, the release reaches 0 at 0.7. The
   * decay/release curve approaches its target with slope ~K*e^-K/T (of the
   * span) at the end, so "within 3e-5 of the target" is reached < 0.4 ms
   * before the end time: the 1 ms tolerance holds and a curve that does not
   * land (a plain exponential) fails. */
  const int rate = 48000;
  const double hz = 2000;
  audio_score_t *s = score_new(rate, 1, 1.0, 1);
  inst_set(s, 0, AUDIO_INST_SYNTH, AUDIO_WAVE_SINE, 0.05, 0.1, 0.5, 0.2);
  notes_new(s, 0, 1)[0] = note(0.1, 0.4, 0, hz, 1);
  audio_pcm_t pcm;
  if (!CHECK(render(s, &pcm) == 0)) {
    audio_score_free(s);
    return;
  }
  const float *x = pcm.data[0];
  double *env = tkeo_env(x, pcm.frames, hz, rate, 0.5);
  size_t n = 1;
  CHECK(max_abs(x, 0, at(0.1, rate)) == 0);
  while (n < pcm.frames && env[n] < 0.9999) n++;
  double attack_end = (double)n / rate;
  while (n < pcm.frames && fabs(env[n] - 0.5) > 3e-5) n++;
  double decay_end = (double)n / rate;
  bool steady = true;
  for (size_t k = n; k < at(0.5, rate) - 1; k++) steady = steady && fabs(env[k] - 0.5) < 3e-5;
  CHECK(steady);
  CHECK(env[at(0.25, rate) - 48] - 0.5 > 1e-4); /* 1 ms before the end, still above */
  /* halfway, the curve is at (e^-2.5 - e^-5) / (1 - e^-5) = 0.075858 of its
   * span (a plain exponential would be at 0.0821, a line at 0.5) */
  CHECK(fabs(env[at(0.2, rate)] - (0.5 + 0.5 * 0.075858)) < 5e-4);
  CHECK(fabs(env[at(0.6, rate)] - 0.5 * 0.075858) < 5e-4);
  CHECK(fabs(env[at(0.125, rate)] - 0.5) < 1e-3); /* the attack is linear */
  n = at(0.5, rate);
  CHECK(env[n + 480] < 0.45); /* releasing 10 ms after note-off */
  while (n < pcm.frames - 1 && env[n] > 3e-5) n++;
  double release_end = (double)n / rate;
  if (!CHECK(fabs(attack_end - 0.15) < 0.001)) fprintf(stderr, "    attack end %.5f\n", attack_end);
  if (!CHECK(fabs(decay_end - 0.25) < 0.001)) fprintf(stderr, "    decay end %.5f\n", decay_end);
  if (!CHECK(fabs(release_end - 0.7) < 0.001)) fprintf(stderr, "    release end %.5f\n", release_end);
  CHECK(max_abs(x, at(0.7, rate) + 1, pcm.frames) == 0);
  free(env);
  audio_pcm_free(&pcm);
  audio_score_free(s);
}

static void test_no_clicks(void) {
  /* A 440 Hz sine at peak 0.5 moves at most 0.5 * 2 sin(pi 440/44100) =
   * 0.031 per sample; a 1 ms linear ramp adds at most 0.5 / 44 = 0.011. A
   * hard gate or a phase reset would step by up to 0.5 (0.4 at sustain), a
   * 1 ms exponential release by 0.4 * 5/44 = 0.045 at its start. */
  const float limit = 0.045f;
  const int rate = 44100;
  audio_score_t *s = score_new(rate, 1, 1.0, 1);
  inst_set(s, 0, AUDIO_INST_SYNTH, AUDIO_WAVE_SINE, 0, 0.05, 0.8, 0);
  audio_note_t *n = notes_new(s, 0, 3);
  n[0] = note(0.1, 0.1234, 69, 0, 1);     /* ends mid-cycle */
  n[1] = note(0.4, 0.5, 69, 0, 1);
  n[2] = note(0.5117, 0.2, 76, 0, 0.5);   /* retriggers the held note */
  audio_pcm_t pcm;
  if (CHECK(render(s, &pcm) == 0)) {
    float step = max_step(pcm.data[0], 0, pcm.frames);
    if (!CHECK(step < limit)) fprintf(stderr, "    step %.4f\n", step);
    CHECK(max_abs(pcm.data[0], at(0.1, rate), at(0.2, rate)) > 0.3);
    /* the release after the first note is short: silent well before 0.4 */
    CHECK(max_abs(pcm.data[0], at(0.1234 + 0.1 + 0.002, rate), at(0.4, rate)) == 0);
    /* the retrigger sounds the new pitch at the new velocity */
    double f = zc_freq(pcm.data[0], at(0.58, rate), at(0.7, rate), rate);
    CHECK(fabs(cents(f, 659.2551)) < 5);
    CHECK(fabs(max_abs(pcm.data[0], at(0.58, rate), at(0.7, rate)) - 0.5 * 0.5 * 0.8) < 0.01);
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);
}

/* ================================================================ filters */

/* |H(e^jw)| of b0 + b1 z^-1 + b2 z^-2 over 1 + a1 z^-1 + a2 z^-2. */
static double biquad_gain(const double c[5], double w) {
  double nr = c[0] + c[1] * cos(w) + c[2] * cos(2 * w), ni = -c[1] * sin(w) - c[2] * sin(2 * w);
  double dr = 1 + c[3] * cos(w) + c[4] * cos(2 * w), di = -c[3] * sin(w) - c[4] * sin(2 * w);
  return sqrt((nr * nr + ni * ni) / (dr * dr + di * di));
}

static void test_filters(void) {
  /* Steady sines through each filter at 1 kHz, against the RBJ cookbook's
   * responses (and y += a (x - y), a = 1 - e^-w0, for the one-pole). */
  const int rate = 48000;
  const double hz[] = {125, 1000, 8000};
  const struct {
    audio_filter_kind_t kind;
    double q;
  } cases[] = {{AUDIO_FILTER_LOWPASS, 0.70710678}, {AUDIO_FILTER_HIGHPASS, 1}, {AUDIO_FILTER_BANDPASS, 2},
               {AUDIO_FILTER_ONEPOLE, 1}, {AUDIO_FILTER_NONE, 1}};
  for (size_t i = 0; i < TT_ARRAY_SIZE(cases); i++) {
    audio_score_t *s = score_new(rate, 1, 0.9, 1);
    audio_instrument_t *in = inst_set(s, 0, AUDIO_INST_SYNTH, AUDIO_WAVE_SINE, 0.005, 0.1, 1, 0.005);
    in->voice.filter = (audio_filter_t){cases[i].kind, 1000, cases[i].q};
    audio_note_t *n = notes_new(s, 0, 3);
    for (int k = 0; k < 3; k++) n[k] = note(0.3 * k, 0.28, 0, hz[k], 1);
    double w0 = 2 * PI * 1000 / rate, c = cos(w0), al = sin(w0) / (2 * cases[i].q), a0 = 1 + al;
    double co[5] = {1, 0, 0, 0, 0}; /* b0 b1 b2 a1 a2 */
    if (cases[i].kind == AUDIO_FILTER_ONEPOLE) {
      co[0] = 1 - exp(-w0);
      co[3] = -exp(-w0);
    } else if (cases[i].kind != AUDIO_FILTER_NONE) {
      co[3] = -2 * c / a0;
      co[4] = (1 - al) / a0;
      if (cases[i].kind == AUDIO_FILTER_LOWPASS) {
        co[0] = co[2] = (1 - c) / 2 / a0;
        co[1] = (1 - c) / a0;
      } else if (cases[i].kind == AUDIO_FILTER_HIGHPASS) {
        co[0] = co[2] = (1 + c) / 2 / a0;
        co[1] = -(1 + c) / a0;
      } else {
        co[0] = al / a0;
        co[2] = -al / a0;
      }
    }
    audio_pcm_t pcm;
    if (CHECK(render(s, &pcm) == 0)) {
      for (int k = 0; k < 3; k++) {
        double got = tone_amp(pcm.data[0], at(0.3 * k + 0.08, rate), at(0.18, rate), hz[k], rate);
        double want = 0.5 * biquad_gain(co, 2 * PI * hz[k] / rate);
        if (!CHECK(fabs(got - want) < 0.01 * want + 1e-4))
          fprintf(stderr, "    filter %d at %.0f Hz: %.5f, want %.5f\n", (int)cases[i].kind, hz[k], got, want);
      }
      audio_pcm_free(&pcm);
    }
    audio_score_free(s);
  }
}

/* ================================================================ timing */

static void test_timing(void) {
  /* 120 BPM eighths from 0.1 s, percussive: each note is silent again
   * long before the next. Onset: first sample above 0.01 after silence. */
  const int rate = 44100;
  audio_score_t *s = score_new(rate, 1, 3.0, 1);
  inst_set(s, 0, AUDIO_INST_SYNTH, AUDIO_WAVE_SINE, 0.001, 0.05, 0, 0.01);
  audio_note_t *n = notes_new(s, 0, 11);
  for (int i = 0; i < 11; i++) n[i] = note(0.1 + 0.25 * i, 0.05, 81, 0, 0.8);
  audio_pcm_t pcm;
  if (CHECK(render(s, &pcm) == 0)) {
    const float *x = pcm.data[0];
    int found = 0;
    size_t loud = 0; /* the last sample above the threshold, + 1 */
    for (size_t i = 0; i < pcm.frames; i++) {
      if (fabsf(x[i]) <= 0.01f) continue;
      if (loud == 0 || i - loud > at(0.005, rate)) {
        double t = (double)i / rate, grid = 0.1 + 0.25 * round((t - 0.1) / 0.25);
        if (!CHECK(fabs(t - grid) < 0.001)) fprintf(stderr, "    onset %.5f, grid %.5f\n", t, grid);
        found++;
      }
      loud = i + 1;
    }
    CHECK_EQ(found, 11);
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);
}

/* ================================================================ FM */

static void test_fm(void) {
  /* Carrier 1000 Hz, modulator 300 Hz, index 2 rad: peaks at 1000 +- 300k
   * with Bessel amplitudes J_k(2) (J0 .224, J1 .577, J2 .353), nothing
   * halfway between. J1/J0 pins the index down to radians. */
  const int rate = 48000;
  audio_score_t *s = score_new(rate, 1, 1.0, 1);
  audio_instrument_t *in = inst_set(s, 0, AUDIO_INST_FM, AUDIO_WAVE_SINE, 0.01, 0.1, 1, 0.1);
  in->voice.harmonicity = 0.3;
  in->voice.modulation_index = 2;
  in->voice.mod_env = (audio_adsr_t){0.01, 0.1, 1, 0.1};
  notes_new(s, 0, 1)[0] = note(0, 1.0, 0, 1000, 1);
  audio_pcm_t pcm;
  if (CHECK(render(s, &pcm) == 0)) {
    const float *x = pcm.data[0];
    size_t a = at(0.3, rate), len = at(0.5, rate);
    double peaks[] = {1000, 700, 1300, 400, 1600}, gaps[] = {850, 1150, 550, 1450, 250, 1750};
    double low = 1;
    for (size_t i = 0; i < TT_ARRAY_SIZE(peaks); i++) {
      double p = tone_amp(x, a, len, peaks[i], rate);
      low = p < low ? p : low;
    }
    for (size_t i = 0; i < TT_ARRAY_SIZE(gaps); i++) CHECK(tone_amp(x, a, len, gaps[i], rate) < low / 100);
    double j0 = tone_amp(x, a, len, 1000, rate), j1 = tone_amp(x, a, len, 1300, rate);
    CHECK(fabs(j0 - 0.5 * 0.22389) < 0.005);
    CHECK(fabs(j1 / j0 - 0.57672 / 0.22389) < 0.05);
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);
}

/* ================================================================ aliasing */

static void test_aliasing(void) {
  const int rate = 48000;
  const double f = 2093.004522; /* C7 */
  audio_score_t *s = score_new(rate, 1, 1.6, 1);
  inst_set(s, 0, AUDIO_INST_SYNTH, AUDIO_WAVE_SAWTOOTH, 0.01, 0.1, 1, 0.1);
  notes_new(s, 0, 1)[0] = note(0, 2, 96, 0, 1);
  audio_pcm_t pcm;
  if (CHECK(render(s, &pcm) == 0)) {
    double db = worst_spur_db(pcm.data[0], at(0.1, rate), f, rate);
    if (!CHECK(db < -60)) fprintf(stderr, "    band-limited saw: spur at %.1f dB\n", db);
    /* the same check on a naive sawtooth fails: its harmonics fold back */
    float *naive = tt_malloc(SPEC_N * sizeof(float));
    for (size_t n = 0; n < SPEC_N; n++) {
      double p = f * (double)n / rate;
      naive[n] = (float)(0.5 * (2 * (p - floor(p)) - 1));
    }
    CHECK(worst_spur_db(naive, 0, f, rate) > -60);
    free(naive);
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);
  /* square and triangle at C8, 44.1 kHz */
  for (audio_wave_t w = AUDIO_WAVE_TRIANGLE; w <= AUDIO_WAVE_SQUARE; w++) {
    s = score_new(44100, 1, 1.7, 1);
    inst_set(s, 0, AUDIO_INST_SYNTH, w, 0.01, 0.1, 1, 0.1);
    notes_new(s, 0, 1)[0] = note(0, 2, 108, 0, 1);
    if (CHECK(render(s, &pcm) == 0)) {
      double db = worst_spur_db(pcm.data[0], at(0.1, 44100), 4186.009, 44100);
      if (!CHECK(db < -60)) fprintf(stderr, "    wave %d: spur at %.1f dB\n", (int)w, db);
      audio_pcm_free(&pcm);
    }
    audio_score_free(s);
  }
}

/* ================================================================ polyphony */

static void test_polyphony(void) {
  /* 3 voices, notes at 0, 0.1, 0.2 s held; a 4th at 0.3 s steals the
   * first. The first note is at phase 0.75 (its negative peak) at 0.3 s, so
   * cutting it dead would step by 0.25. */
  const int rate = 48000;
  const double f[] = {202.5, 252.5, 302.5, 352.5};
  audio_score_t *s = score_new(rate, 1, 0.8, 1);
  audio_instrument_t *in = inst_set(s, 0, AUDIO_INST_POLY, AUDIO_WAVE_SINE, 0.005, 0.1, 1, 0.1);
  in->voices = 3;
  audio_note_t *n = notes_new(s, 0, 4);
  for (int i = 0; i < 4; i++) n[i] = note(0.1 * i, 2, 0, f[i], 0.5);
  audio_pcm_t pcm;
  if (CHECK(render(s, &pcm) == 0)) {
    const float *x = pcm.data[0];
    size_t before = at(0.205, rate), after = at(0.31, rate), len = at(0.2, rate);
    for (int i = 0; i < 3; i++) CHECK(tone_amp(x, before, at(0.095, rate), f[i], rate) > 0.2);
    CHECK(tone_amp(x, before, at(0.095, rate), f[3], rate) < 0.01);
    CHECK(tone_amp(x, after, len, f[0], rate) < 0.005);
    for (int i = 1; i < 4; i++) CHECK(tone_amp(x, after, len, f[i], rate) > 0.2);
    float step = max_step(x, at(0.29, rate), at(0.32, rate));
    /* four sines of 0.25 at <= 352.5 Hz move < 0.04 per sample together */
    if (!CHECK(step < 0.06f)) fprintf(stderr, "    steal step %.4f\n", step);
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);

  /* a voice whose release has finished is free again: no stealing */
  s = score_new(rate, 1, 1.0, 1);
  in = inst_set(s, 0, AUDIO_INST_POLY, AUDIO_WAVE_SINE, 0.005, 0.1, 1, 0.05);
  in->voices = 2;
  n = notes_new(s, 0, 3);
  n[0] = note(0, 0.1, 0, f[0], 0.5);
  n[1] = note(0.05, 2, 0, f[1], 0.5);
  n[2] = note(0.3, 2, 0, f[2], 0.5);
  if (CHECK(render(s, &pcm) == 0)) {
    CHECK(tone_amp(pcm.data[0], at(0.4, rate), at(0.3, rate), f[1], rate) > 0.2);
    CHECK(tone_amp(pcm.data[0], at(0.4, rate), at(0.3, rate), f[2], rate) > 0.2);
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);
}

/* ================================================================ drum kit */

static void test_kit(void) {
  const int rate = 48000;
  double length[AUDIO_DRUM_COUNT];
  for (int d = 0; d < AUDIO_DRUM_COUNT; d++) {
    audio_score_t *s = score_new(rate, 1, 1.0, 1);
    inst_set(s, 0, AUDIO_INST_SAMPLER, AUDIO_WAVE_SINE, 0, 0.1, 1, 0.1);
    notes_new(s, 0, 1)[0] = drum(0.1, d);
    audio_pcm_t pcm;
    length[d] = 0;
    if (CHECK(render(s, &pcm) == 0)) {
      const float *x = pcm.data[0];
      size_t on = at(0.1, rate);
      CHECK(max_abs(x, 0, on) == 0);
      size_t first = first_above(x, on, pcm.frames, 0.001f);
      if (!CHECK(first - on < at(0.001, rate))) fprintf(stderr, "    drum %d starts %zu late\n", d, first - on);
      float peak = max_abs(x, on, pcm.frames);
      if (!CHECK(peak > 0.1f && peak <= 0.6f)) fprintf(stderr, "    drum %d peak %.3f\n", d, peak);
      size_t last = on;
      for (size_t i = on; i < pcm.frames; i++)
        if (fabsf(x[i]) > 0.001f) last = i;
      length[d] = (double)(last - on) / rate;
      audio_pcm_free(&pcm);
    }
    audio_score_free(s);
  }
  CHECK(length[AUDIO_DRUM_OPENHAT] > 3 * length[AUDIO_DRUM_HAT]);
  CHECK(length[AUDIO_DRUM_HAT] > 0.02 && length[AUDIO_DRUM_HAT] <= 0.05);
  CHECK(length[AUDIO_DRUM_KICK] > 0.2 && length[AUDIO_DRUM_KICK] <= 0.4);
  CHECK(length[AUDIO_DRUM_SNARE] > 0.1 && length[AUDIO_DRUM_SNARE] <= 0.2);
  CHECK(length[AUDIO_DRUM_CLAP] > 0.1 && length[AUDIO_DRUM_CLAP] <= 0.2);
}

/* ================================================================ samples */

static void wav_write(const char *path, double hz, double seconds, int rate) {
  size_t frames = (size_t)(seconds * rate), bytes = frames * 2;
  unsigned char *b = tt_calloc(44 + bytes, 1);
  uint32_t v[] = {(uint32_t)(36 + bytes), 16, (uint32_t)rate, (uint32_t)rate * 2, (uint32_t)bytes};
  memcpy(b, "RIFF", 4);
  memcpy(b + 8, "WAVEfmt ", 8);
  memcpy(b + 36, "data", 4);
  for (int i = 0; i < 4; i++) {
    b[4 + i] = (unsigned char)(v[0] >> (8 * i));
    b[16 + i] = (unsigned char)(v[1] >> (8 * i));
    b[24 + i] = (unsigned char)(v[2] >> (8 * i));
    b[28 + i] = (unsigned char)(v[3] >> (8 * i));
    b[40 + i] = (unsigned char)(v[4] >> (8 * i));
  }
  b[20] = 1; /* PCM */
  b[22] = 1; /* mono */
  b[32] = 2; /* block align */
  b[34] = 16;
  for (size_t n = 0; n < frames; n++) {
    int16_t s = (int16_t)lround(26000 * sin(2 * PI * hz * (double)n / rate));
    b[44 + 2 * n] = (unsigned char)(s & 0xff);
    b[45 + 2 * n] = (unsigned char)((uint16_t)s >> 8);
  }
  FILE *f = fopen(path, "wb");
  if (CHECK(f != NULL)) {
    CHECK(fwrite(b, 1, 44 + bytes, f) == 44 + bytes);
    fclose(f);
  }
  free(b);
}

static audio_score_t *score_sampler(const char *dir, const char *name, int map_midi, int play_midi) {
  audio_score_t *s = score_new(48000, 1, 1.0, 1);
  audio_instrument_t *in = inst_set(s, 0, AUDIO_INST_SAMPLER, AUDIO_WAVE_SINE, 0.001, 0.1, 1, 0.05);
  in->sample_names[map_midi] = tt_strndup(name, strlen(name));
  s->samples_dir = tt_strndup(dir, strlen(dir));
  notes_new(s, 0, 1)[0] = note(0, 1, play_midi, 0, 1);
  return s;
}

static void test_samples(void) {
  char dir[] = "/tmp/tutti_synth_XXXXXX", path[512], bad[512];
  if (!CHECK(mkdtemp(dir) != NULL)) return;
  snprintf(path, sizeof(path), "%s/a4.wav", dir);
  snprintf(bad, sizeof(bad), "%s/junk.wav", dir);
  wav_write(path, 440, 2.0, 48000);
  FILE *f = fopen(bad, "wb");
  if (CHECK(f != NULL)) {
    fputs("not a wave file", f);
    fclose(f);
  }
  static const int play[] = {81, 76, 69};
  for (size_t i = 0; i < TT_ARRAY_SIZE(play); i++) {
    audio_score_t *s = score_sampler(dir, "a4", 69, play[i]);
    audio_pcm_t pcm;
    if (CHECK(render(s, &pcm) == 0)) {
      CHECK_EQ(s->tracks[0].inst.sample_count, 1);
      double want = 440.0 * pow(2.0, (play[i] - 69) / 12.0);
      double got = zc_freq(pcm.data[0], at(0.05, 48000), at(0.9, 48000), 48000);
      if (!CHECK(fabs(cents(got, want)) < 1.0)) fprintf(stderr, "    sample at %d: %.3f Hz\n", play[i], got);
      float peak = max_abs(pcm.data[0], 0, pcm.frames);
      CHECK(fabsf(peak - 0.5f * 26000 / 32768) < 0.01f);
      audio_pcm_free(&pcm);
      /* a second render reuses the loaded sample and gives the same audio */
      audio_pcm_t again;
      if (CHECK(render(s, &again) == 0)) {
        CHECK_EQ(s->tracks[0].inst.sample_count, 1);
        audio_pcm_free(&again);
      }
    }
    audio_score_free(s);
  }
  audio_pcm_t pcm;
  audio_score_t *s = score_sampler(dir, "missing", 60, 60);
  CHECK_EQ(render(s, &pcm), -ENOENT);
  CHECK(pcm.data[0] == NULL);
  audio_score_free(s);
  s = score_sampler(dir, "junk", 60, 60);
  CHECK_EQ(render(s, &pcm), -EINVAL);
  CHECK(s->tracks[0].inst.samples == NULL && s->tracks[0].inst.sample_count == 0);
  audio_score_free(s);
  s = score_sampler(dir, "a4", 69, 69);
  free(s->samples_dir);
  s->samples_dir = NULL;
  CHECK_EQ(render(s, &pcm), -ENOENT);
  audio_score_free(s);
  unlink(path);
  unlink(bad);
  rmdir(dir);
}

/* ================================================================ determinism */

static audio_score_t *score_band(uint64_t seed) {
  audio_score_t *s = score_new(48000, 2, 4.0, 4);
  s->seed = seed;
  s->fx = (audio_fx_t){.delay_time = 0.375, .delay_feedback = 0.4, .delay_wet = 0.3, .reverb_decay = 2.0,
                       .reverb_wet = 0.25};
  audio_instrument_t *in = inst_set(s, 0, AUDIO_INST_SYNTH, AUDIO_WAVE_SAWTOOTH, 0.01, 0.2, 0.6, 0.3);
  in->voice.filter = (audio_filter_t){AUDIO_FILTER_LOWPASS, 1200, 2};
  in->pan = -0.5;
  audio_note_t *n = notes_new(s, 0, 16);
  for (int i = 0; i < 16; i++) n[i] = note(0.25 * i, 0.2, 36 + (i * 5) % 12, 0, 0.8);
  in = inst_set(s, 1, AUDIO_INST_FM, AUDIO_WAVE_SINE, 0.005, 0.3, 0.3, 0.5);
  in->voice.harmonicity = 3;
  in->voice.modulation_index = 5;
  in->volume_db = -6;
  n = notes_new(s, 1, 8);
  for (int i = 0; i < 8; i++) n[i] = note(0.5 * i, 0.4, 60 + (i * 7) % 12, 0, 0.7);
  in = inst_set(s, 2, AUDIO_INST_POLY, AUDIO_WAVE_TRIANGLE, 0.05, 0.5, 0.5, 1.0);
  in->voices = 4;
  in->voice.filter = (audio_filter_t){AUDIO_FILTER_ONEPOLE, 3000, 1};
  in->pan = 0.5;
  n = notes_new(s, 2, 12);
  for (int i = 0; i < 12; i++) n[i] = note(0.33 * i, 1.0, 64 + (i * 4) % 12, 0, 0.6);
  in = inst_set(s, 3, AUDIO_INST_SAMPLER, AUDIO_WAVE_SINE, 0, 0.1, 1, 0.1);
  n = notes_new(s, 3, 20);
  for (int i = 0; i < 20; i++) n[i] = drum(0.2 * i, i % AUDIO_DRUM_COUNT);
  return s;
}

static void test_determinism(void) {
  audio_pcm_t a, b, c;
  audio_score_t *s = score_band(7), *t = score_band(7), *u = score_band(8);
  if (CHECK(render(s, &a) == 0 && render(t, &b) == 0 && render(u, &c) == 0)) {
    CHECK_EQ(a.frames, 192000);
    CHECK_EQ(a.channels, 2);
    CHECK_EQ(a.sample_rate, 48000);
    for (int ch = 0; ch < 2; ch++) {
      CHECK(memcmp(a.data[ch], b.data[ch], a.frames * sizeof(float)) == 0);
      CHECK(memcmp(a.data[ch], c.data[ch], a.frames * sizeof(float)) != 0);
      CHECK(max_abs(a.data[ch], 0, a.frames) > 0.1f);
    }
    /* rendering the same score again gives the same bytes */
    audio_pcm_free(&b);
    if (CHECK(render(s, &b) == 0)) CHECK(memcmp(a.data[1], b.data[1], a.frames * sizeof(float)) == 0);
  }
  audio_pcm_free(&a);
  audio_pcm_free(&b);
  audio_pcm_free(&c);
  audio_score_free(s);
  audio_score_free(t);
  audio_score_free(u);
}

/* ================================================================ gain, pan, clamp */

static void test_levels(void) {
  /* velocity 1 peaks at 0.5; velocity 0.5 at 0.25; full left is silent on
   * the right */
  audio_score_t *s = score_new(48000, 2, 0.5, 2);
  inst_set(s, 0, AUDIO_INST_SYNTH, AUDIO_WAVE_SINE, 0.01, 0.1, 1, 0.05)->pan = -1;
  notes_new(s, 0, 1)[0] = note(0, 0.4, 69, 0, 1);
  inst_set(s, 1, AUDIO_INST_SYNTH, AUDIO_WAVE_SINE, 0.01, 0.1, 1, 0.05)->volume_db = -6.0206;
  notes_new(s, 1, 1)[0] = note(0, 0.4, 57, 0, 1);
  audio_pcm_t pcm;
  if (CHECK(render(s, &pcm) == 0)) {
    CHECK(fabsf(max_abs(pcm.data[1], 0, pcm.frames) - 0.25f * 0.70711f) < 0.002f);
    CHECK(fabs(tone_amp(pcm.data[0], 4800, 9600, 440, 48000) - 0.5) < 0.005);
    CHECK(fabs(tone_amp(pcm.data[0], 4800, 9600, 220, 48000) - 0.25 * 0.70711) < 0.005);
    CHECK(tone_amp(pcm.data[1], 4800, 9600, 440, 48000) < 1e-4);
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);

  /* 16 loud voices: the master clamp holds */
  s = score_new(48000, 2, 0.5, 1);
  audio_instrument_t *in = inst_set(s, 0, AUDIO_INST_POLY, AUDIO_WAVE_SAWTOOTH, 0.001, 0.1, 1, 0.05);
  in->voices = 16;
  in->volume_db = 12;
  audio_note_t *n = notes_new(s, 0, 16);
  for (int i = 0; i < 16; i++) n[i] = note(0.01 * i, 0.4, 40 + i, 0, 1);
  if (CHECK(render(s, &pcm) == 0)) {
    size_t pinned = 0;
    bool inside = true;
    for (int ch = 0; ch < 2; ch++)
      for (size_t i = 0; i < pcm.frames; i++) {
        inside = inside && pcm.data[ch][i] >= -1.0f && pcm.data[ch][i] <= 1.0f;
        pinned += fabsf(pcm.data[ch][i]) == 1.0f;
      }
    CHECK(inside);
    CHECK(pinned > 100);
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);
}

/* ================================================================ effects */

static audio_score_t *score_click(audio_fx_t fx) {
  audio_score_t *s = score_new(48000, 2, 1.2, 1);
  inst_set(s, 0, AUDIO_INST_SYNTH, AUDIO_WAVE_SINE, 0, 0.005, 0, 0.001);
  notes_new(s, 0, 1)[0] = note(0.1, 0.005, 0, 1000, 1);
  s->fx = fx;
  return s;
}

static void test_effects(void) {
  const int rate = 48000;
  audio_pcm_t dry, echo, rev, off;
  audio_score_t *s0 = score_click((audio_fx_t){0});
  audio_score_t *s1 = score_click((audio_fx_t){.delay_time = 0.25, .delay_feedback = 0.3, .delay_wet = 0.5});
  audio_score_t *s2 = score_click((audio_fx_t){.reverb_decay = 1.0, .reverb_wet = 0.3});
  audio_score_t *s3 = score_click((audio_fx_t){.delay_time = 0.3, .delay_feedback = 0.5, .reverb_decay = 2.0});
  if (CHECK(render(s0, &dry) == 0 && render(s1, &echo) == 0 && render(s2, &rev) == 0 && render(s3, &off) == 0)) {
    for (int ch = 0; ch < 2; ch++) {
      const float *x = echo.data[ch];
      CHECK(max_abs(dry.data[ch], at(0.12, rate), dry.frames) == 0);
      CHECK(max_abs(x, at(0.12, rate), at(0.35, rate)) == 0);
      size_t e1 = first_above(x, at(0.12, rate), echo.frames, 0.001f);
      if (!CHECK(fabs((double)e1 / rate - 0.35) < 0.001)) fprintf(stderr, "    echo at %.5f\n", (double)e1 / rate);
      float p0 = max_abs(x, at(0.1, rate), at(0.12, rate)), p1 = max_abs(x, at(0.35, rate), at(0.37, rate));
      float p2 = max_abs(x, at(0.6, rate), at(0.62, rate));
      CHECK(fabsf(p1 / p0 - 1.0f) < 0.02f);          /* (wet y) / (dry x) = 0.5 / 0.5 */
      CHECK(fabsf(p2 / p1 - 0.3f) < 0.01f);          /* the feedback */
      /* the reverb: a tail long after the dry note ends */
      float tail = max_abs(rev.data[ch], at(0.5, rate), at(0.8, rate));
      if (!CHECK(tail > 1e-3f)) fprintf(stderr, "    reverb tail %.6f\n", tail);
      CHECK(max_abs(rev.data[ch], at(1.1, rate), rev.frames) < tail);
      /* wet 0: bit-exact dry */
      CHECK(memcmp(off.data[ch], dry.data[ch], dry.frames * sizeof(float)) == 0);
    }
  }
  audio_pcm_free(&dry);
  audio_pcm_free(&echo);
  audio_pcm_free(&rev);
  audio_pcm_free(&off);
  audio_score_free(s0);
  audio_score_free(s1);
  audio_score_free(s2);
  audio_score_free(s3);
}

/* ================================================================ control */

typedef struct {
  int calls;
  double last;
  bool monotonic;
} progress_t;

static void on_progress(void *ctx, double done) {
  progress_t *p = ctx;
  p->monotonic = p->monotonic && done > p->last && done <= 1.0;
  p->last = done;
  p->calls++;
}

static void test_control(void) {
  audio_score_t *s = score_band(1);
  audio_pcm_t pcm;
  atomic_bool stop = true;
  CHECK_EQ(audio_render(s, &pcm, NULL, NULL, &stop), -ECANCELED);
  CHECK(pcm.data[0] == NULL && pcm.data[1] == NULL && pcm.frames == 0);

  progress_t p = {0, 0, true};
  atomic_store(&stop, false);
  if (CHECK(audio_render(s, &pcm, on_progress, &p, &stop) == 0)) {
    CHECK(p.monotonic);
    CHECK(p.last == 1.0);
    CHECK(p.calls >= 38 && p.calls <= 42); /* every ~0.1 s of 4 s, and the end */
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);

  /* exactly round(duration * rate) frames; notes past the end are cut */
  s = score_tone(44100, 0.50001, 69, 0, 0.2, 5);
  if (CHECK(render(s, &pcm) == 0)) {
    CHECK_EQ(pcm.frames, 22050);
    CHECK(max_abs(pcm.data[0], 22000, 22050) > 0.3f);
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);
  s = score_tone(48000, 0, 69, 0, 0, 1);
  if (CHECK(render(s, &pcm) == 0)) {
    CHECK_EQ(pcm.frames, 0);
    audio_pcm_free(&pcm);
  }
  audio_score_free(s);
}

int main(void) {
  RUN(test_pitch);
  RUN(test_envelope);
  RUN(test_no_clicks);
  RUN(test_filters);
  RUN(test_timing);
  RUN(test_fm);
  RUN(test_aliasing);
  RUN(test_polyphony);
  RUN(test_kit);
  RUN(test_samples);
  RUN(test_determinism);
  RUN(test_levels);
  RUN(test_effects);
  RUN(test_control);
  return test_report("test_audio_synth");
}
