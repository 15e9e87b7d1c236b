/*
 * MusicalParameters -> score. The parameters are a small control document,
 * so they are parsed into a tree (jansson); every field is checked and every
 * bad one reported with its JSON path and what it allows. Patterns are
 * expanded here into timed notes, so the renderer sees only notes.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "audio.h"

/* ================================================================ notes and scales */

double audio_midi_hz(double midi) { return 440.0 * pow(2.0, (midi - 69.0) / 12.0); }

int audio_note_parse(const char *s, size_t len) {
  static const int letter[7] = {9, 11, 0, 2, 4, 5, 7}; /* A..G */
  size_t i = 0;
  if (len < 2) return -1;
  char c = (char)toupper((unsigned char)s[i++]);
  if (c < 'A' || c > 'G') return -1;
  int pc = letter[c - 'A'];
  if (i < len && (s[i] == '#' || s[i] == 's')) pc++, i++;
  else if (i < len && s[i] == 'b') pc--, i++;
  bool neg = false;
  if (i < len && s[i] == '-') neg = true, i++;
  if (i >= len || len - i > 1 || !isdigit((unsigned char)s[i])) return -1;
  int octave = s[i] - '0';
  if (neg) octave = -octave;
  int midi = (octave + 1) * 12 + pc;
  return midi >= 0 && midi <= 127 ? midi : -1;
}

typedef struct named_scale_s {
  const char *name;
  int steps[12];
  int count;
} named_scale_t;

static const named_scale_t named_scales[] = {
    {"major", {0, 2, 4, 5, 7, 9, 11}, 7},
    {"minor", {0, 2, 3, 5, 7, 8, 10}, 7},
    {"harmonic minor", {0, 2, 3, 5, 7, 8, 11}, 7},
    {"melodic minor", {0, 2, 3, 5, 7, 9, 11}, 7},
    {"dorian", {0, 2, 3, 5, 7, 9, 10}, 7},
    {"phrygian", {0, 1, 3, 5, 7, 8, 10}, 7},
    {"lydian", {0, 2, 4, 6, 7, 9, 11}, 7},
    {"mixolydian", {0, 2, 4, 5, 7, 9, 10}, 7},
    {"locrian", {0, 1, 3, 5, 6, 8, 10}, 7},
    {"major pentatonic", {0, 2, 4, 7, 9}, 5},
    {"minor pentatonic", {0, 3, 5, 7, 10}, 5},
    {"blues", {0, 3, 5, 6, 7, 10}, 6},
    {"whole tone", {0, 2, 4, 6, 8, 10}, 6},
    {"chromatic", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 12},
};

/* ================================================================ errors */

typedef struct parser_s {
  const audio_limits_t *limits;
  audio_param_errors_t *errs;
  double tempo;
  uint64_t seed;
  double duration;
  size_t total_notes;
} parser_t;

#define AUDIO_MAX_NOTES 200000 /* over all tracks: bounds a render's memory */

static void bad(parser_t *p, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void bad(parser_t *p, const char *field, const char *fmt, ...) {
  audio_param_errors_t *e = p->errs;
  if (e->count < AUDIO_PARAM_ERRORS_MAX) {
    audio_param_error_t *x = &e->list[e->count];
    snprintf(x->field, sizeof(x->field), "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->message, sizeof(x->message), fmt, ap);
    va_end(ap);
  }
  e->count++;
}

/* path + "." + key, or path + "[i]"; a path too long for the buffer
 * (a long unknown key) is cut. */
static void path_key(char *out, size_t n, const char *path, const char *key) {
  if (snprintf(out, n, "%s%s%s", path, *path ? "." : "", key) >= (int)n) out[n - 1] = '\0';
}
static void path_index(char *out, size_t n, const char *path, size_t i) {
  if (snprintf(out, n, "%s[%zu]", path, i) >= (int)n) out[n - 1] = '\0';
}

/* A number field in [lo, hi]; `*out` keeps its default when absent. */
static void num_field(parser_t *p, json_t *obj, const char *path, const char *key, double lo, double hi,
                      double *out) {
  json_t *v = json_object_get(obj, key);
  if (!v) return;
  char f[64];
  path_key(f, sizeof(f), path, key);
  if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi || isnan(json_number_value(v))) {
    bad(p, f, "must be a number from %g to %g", lo, hi);
    return;
  }
  *out = json_number_value(v);
}

/* One of `names` (NULL-terminated); returns its index or keeps *out. */
static void enum_field(parser_t *p, json_t *obj, const char *path, const char *key, const char *const *names,
                       int *out) {
  json_t *v = json_object_get(obj, key);
  if (!v) return;
  char f[64];
  path_key(f, sizeof(f), path, key);
  if (json_is_string(v)) {
    for (int i = 0; names[i]; i++)
      if (strcmp(json_string_value(v), names[i]) == 0) {
        *out = i;
        return;
      }
  }
  char allowed[160] = "";
  for (int i = 0; names[i]; i++)
    snprintf(allowed + strlen(allowed), sizeof(allowed) - strlen(allowed), "%s\"%s\"", i ? ", " : "", names[i]);
  bad(p, f, "must be one of %s", allowed);
}

static void unknown_keys(parser_t *p, json_t *obj, const char *path, const char *const *known) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    bool ok = false;
    for (int i = 0; known[i] && !ok; i++) ok = strcmp(key, known[i]) == 0;
    if (!ok) {
      char f[64];
      path_key(f, sizeof(f), path, key);
      bad(p, f, "is not a known field");
    }
  }
}

/* ================================================================ instruments */

static const char *const wave_names[] = {"sine", "triangle", "square", "sawtooth", NULL};
static const char *const inst_names[] = {"synth", "fmSynth", "polySynth", "sampler", NULL};
static const char *const filter_names[] = {"none", "lowpass", "highpass", "bandpass", "onepole", NULL};

static void parse_wave(parser_t *p, json_t *opts, const char *path, const char *key, audio_wave_t *w) {
  json_t *osc = json_object_get(opts, key);
  if (!osc) return;
  char f[64];
  path_key(f, sizeof(f), path, key);
  if (!json_is_object(osc)) {
    bad(p, f, "must be an object like {\"type\":\"sine\"}");
    return;
  }
  int t = (int)*w;
  enum_field(p, osc, f, "type", wave_names, &t);
  *w = (audio_wave_t)t;
}

static void parse_adsr(parser_t *p, json_t *opts, const char *path, const char *key, audio_adsr_t *env) {
  json_t *e = json_object_get(opts, key);
  if (!e) return;
  char f[64];
  path_key(f, sizeof(f), path, key);
  if (!json_is_object(e)) {
    bad(p, f, "must be an object with attack, decay, sustain, release");
    return;
  }
  static const char *const known[] = {"attack", "decay", "sustain", "release", NULL};
  unknown_keys(p, e, f, known);
  num_field(p, e, f, "attack", 0, 10, &env->attack);
  num_field(p, e, f, "decay", 0, 10, &env->decay);
  num_field(p, e, f, "sustain", 0, 1, &env->sustain);
  num_field(p, e, f, "release", 0, 10, &env->release);
}

/* Defaults as Tone.js has them, so parameters written for it sound alike. */
static void voice_defaults(audio_voice_opts_t *v, audio_inst_kind_t kind) {
  memset(v, 0, sizeof(*v));
  v->kind = kind;
  v->filter.kind = AUDIO_FILTER_NONE;
  v->filter.frequency = 1000;
  v->filter.q = 1;
  if (kind == AUDIO_INST_FM) {
    v->wave = AUDIO_WAVE_SINE;
    v->env = (audio_adsr_t){0.01, 0.01, 1, 0.5};
    v->mod_wave = AUDIO_WAVE_SQUARE;
    v->mod_env = (audio_adsr_t){0.5, 0, 1, 0.5};
    v->harmonicity = 3;
    v->modulation_index = 10;
  } else {
    v->wave = AUDIO_WAVE_TRIANGLE;
    v->env = (audio_adsr_t){0.005, 0.1, 0.3, 1};
  }
}

static bool sample_name_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 64) return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-') return false;
  return true;
}

static void parse_instrument(parser_t *p, json_t *track, const char *path, audio_instrument_t *inst) {
  int kind = AUDIO_INST_SYNTH;
  enum_field(p, track, path, "instrumentType", inst_names, &kind);
  inst->kind = (audio_inst_kind_t)kind;
  inst->voices = kind == AUDIO_INST_POLY ? 8 : kind == AUDIO_INST_SAMPLER ? 16 : 1;
  num_field(p, track, path, "volume", -60, 12, &inst->volume_db);
  num_field(p, track, path, "pan", -1, 1, &inst->pan);

  json_t *opts = json_object_get(track, "instrumentOptions");
  char f[64];
  path_key(f, sizeof(f), path, "instrumentOptions");
  int voice_kind = AUDIO_INST_SYNTH;
  if (kind == AUDIO_INST_FM) voice_kind = AUDIO_INST_FM;
  if (opts && !json_is_object(opts)) {
    bad(p, f, "must be an object");
    opts = NULL;
  }
  if (opts && kind == AUDIO_INST_POLY) {
    static const char *const voice_names[] = {"synth", "fmSynth", NULL};
    enum_field(p, opts, f, "voice", voice_names, &voice_kind);
    voice_kind = voice_kind == 1 ? AUDIO_INST_FM : AUDIO_INST_SYNTH;
  }
  voice_defaults(&inst->voice, (audio_inst_kind_t)voice_kind);
  if (kind == AUDIO_INST_SAMPLER) inst->voice.env = (audio_adsr_t){0, 0, 1, 0.1};
  if (!opts) return;

  static const char *const known[] = {"oscillator", "envelope", "filter", "harmonicity", "modulationIndex",
                                      "modulation", "modulationEnvelope", "voice", "maxPolyphony", "samples",
                                      "volume", NULL};
  unknown_keys(p, opts, f, known);
  audio_voice_opts_t *v = &inst->voice;
  parse_wave(p, opts, f, "oscillator", &v->wave);
  parse_adsr(p, opts, f, "envelope", &v->env);
  parse_wave(p, opts, f, "modulation", &v->mod_wave);
  parse_adsr(p, opts, f, "modulationEnvelope", &v->mod_env);
  num_field(p, opts, f, "harmonicity", 0.01, 20, &v->harmonicity);
  num_field(p, opts, f, "modulationIndex", 0, 100, &v->modulation_index);
  num_field(p, opts, f, "volume", -60, 12, &inst->volume_db);
  if (kind == AUDIO_INST_POLY) {
    double n = inst->voices;
    num_field(p, opts, f, "maxPolyphony", 1, AUDIO_MAX_VOICES, &n);
    inst->voices = (int)n;
  }

  json_t *filter = json_object_get(opts, "filter");
  if (filter) {
    char ff[64];
    path_key(ff, sizeof(ff), f, "filter");
    if (!json_is_object(filter)) {
      bad(p, ff, "must be an object like {\"type\":\"lowpass\",\"frequency\":2000,\"Q\":1}");
    } else {
      int t = AUDIO_FILTER_LOWPASS;
      enum_field(p, filter, ff, "type", filter_names, &t);
      v->filter.kind = (audio_filter_kind_t)t;
      num_field(p, filter, ff, "frequency", 20, 20000, &v->filter.frequency);
      num_field(p, filter, ff, "Q", 0.1, 30, &v->filter.q);
    }
  }

  json_t *samples = json_object_get(opts, "samples");
  if (samples) {
    char sf[64];
    path_key(sf, sizeof(sf), f, "samples");
    if (kind != AUDIO_INST_SAMPLER) {
      bad(p, sf, "is for the sampler only");
    } else if (!p->limits->samples_dir) {
      bad(p, sf, "needs the server's --samples-dir");
    } else if (!json_is_object(samples)) {
      bad(p, sf, "must map note names to sample names: {\"C4\":\"piano-c4\"}");
    } else {
      const char *note;
      json_t *name;
      json_object_foreach(samples, note, name) {
        char nf[64];
        path_key(nf, sizeof(nf), sf, note);
        int midi = audio_note_parse(note, strlen(note));
        if (midi < 0) bad(p, nf, "is not a note name (C4, F#3, Bb5)");
        else if (!json_is_string(name) || !sample_name_valid(json_string_value(name)))
          bad(p, nf, "must be a sample name of 1-64 letters, digits, '-' or '_'");
        else {
          free(inst->sample_names[midi]);
          inst->sample_names[midi] = tt_strndup(json_string_value(name), strlen(json_string_value(name)));
        }
      }
    }
  }
}

/* ================================================================ scales */

typedef struct scale_s {
  int notes[64];
  int count;
} scale_t;

static int parse_note_value(parser_t *p, json_t *v, const char *f) {
  int midi = json_is_string(v) ? audio_note_parse(json_string_value(v), json_string_length(v)) : -1;
  if (midi < 0) bad(p, f, "must be a note name from C-1 to G9 (C4, F#3, Bb5)");
  return midi;
}

static void parse_scale(parser_t *p, json_t *obj, const char *path, scale_t *scale) {
  char f[64];
  json_t *root = json_object_get(obj, "rootNote");
  if (root) {
    path_key(f, sizeof(f), path, "rootNote");
    int midi = parse_note_value(p, root, f);
    if (midi >= 0 && scale->count > 0) {
      int shift = midi - scale->notes[0];
      for (int i = 0; i < scale->count; i++) scale->notes[i] += shift;
    }
  }
  json_t *s = json_object_get(obj, "scale");
  if (!s) return;
  path_key(f, sizeof(f), path, "scale");
  int root_midi = scale->count ? scale->notes[0] : 60;
  if (json_is_string(s)) {
    for (size_t i = 0; i < TT_ARRAY_SIZE(named_scales); i++) {
      if (strcmp(json_string_value(s), named_scales[i].name) != 0) continue;
      scale->count = named_scales[i].count;
      for (int k = 0; k < scale->count; k++) scale->notes[k] = TT_MIN(127, root_midi + named_scales[i].steps[k]);
      return;
    }
    bad(p, f, "must be a list of notes or one of \"major\", \"minor\", \"harmonic minor\", \"melodic minor\", "
              "\"dorian\", \"phrygian\", \"lydian\", \"mixolydian\", \"locrian\", \"major pentatonic\", "
              "\"minor pentatonic\", \"blues\", \"whole tone\", \"chromatic\"");
    return;
  }
  if (!json_is_array(s) || json_array_size(s) == 0 || json_array_size(s) > 64) {
    bad(p, f, "must be a list of 1 to 64 notes or a scale name");
    return;
  }
  scale_t out = {.count = 0};
  size_t i;
  json_t *v;
  json_array_foreach(s, i, v) {
    char nf[64];
    path_index(nf, sizeof(nf), f, i);
    int midi = parse_note_value(p, v, nf);
    out.notes[out.count++] = midi < 0 ? 60 : midi;
  }
  *scale = out;
}

/* Scale degree d (0-based; beyond the scale it wraps by octaves). */
static int degree_midi(const scale_t *s, long d) {
  long n = s->count;
  long oct = d >= 0 ? d / n : -((-d + n - 1) / n);
  long idx = d - oct * n;
  long midi = s->notes[idx] + 12 * oct;
  return (int)(midi < 0 ? 0 : midi > 127 ? 127 : midi);
}

/* ================================================================ patterns */

/* Beats from a number or Tone-style notation: "4n", "8n", "16n", "8t", "4n." */
static bool parse_beats(json_t *v, double *out) {
  if (json_is_number(v)) {
    *out = json_number_value(v);
    return true;
  }
  if (!json_is_string(v)) return false;
  const char *s = json_string_value(v);
  char *end;
  long n = strtol(s, &end, 10);
  if (end == s || n <= 0 || n > 64 || (n & (n - 1)) != 0) return false;
  double beats = 4.0 / (double)n;
  if (strcmp(end, "n") == 0) *out = beats;
  else if (strcmp(end, "t") == 0) *out = beats * 2.0 / 3.0;
  else if (strcmp(end, "n.") == 0) *out = beats * 1.5;
  else return false;
  return true;
}

static void beats_field(parser_t *p, json_t *obj, const char *path, const char *key, double lo, double hi,
                        double *out) {
  json_t *v = json_object_get(obj, key);
  if (!v) return;
  char f[64];
  path_key(f, sizeof(f), path, key);
  double b;
  if (!parse_beats(v, &b) || !(b >= lo && b <= hi))
    bad(p, f, "must be beats from %g to %g, as a number or \"4n\", \"8n\", \"16n\", \"8t\", \"4n.\"", lo, hi);
  else *out = b;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* One step of a pattern: up to 8 notes sounding together. */
typedef struct step_s {
  int midi[8];
  int count;           /* 0: a rest */
  int drum;            /* AUDIO_DRUM_NONE or a drum (count 1) */
  double velocity;     /* 0..1 */
  double length;       /* beats */
} step_t;

typedef struct steps_s {
  step_t *list;
  size_t count, cap;
} steps_t;

static step_t *steps_push(steps_t *s) {
  if (s->count == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 16;
    s->list = tt_realloc(s->list, s->cap * sizeof(*s->list));
  }
  step_t *st = &s->list[s->count++];
  memset(st, 0, sizeof(*st));
  st->drum = AUDIO_DRUM_NONE;
  return st;
}

/* A note given as a name or a scale degree. */
static int parse_pitch(parser_t *p, json_t *v, const scale_t *scale, const char *f) {
  if (json_is_integer(v)) {
    json_int_t d = json_integer_value(v);
    if (d < -64 || d > 64) {
      bad(p, f, "must be a scale degree from -64 to 64 or a note name");
      return -1;
    }
    return degree_midi(scale, (long)d);
  }
  if (json_is_string(v)) return parse_note_value(p, v, f);
  bad(p, f, "must be a note name (C4) or a scale degree (0 = the first note of the scale)");
  return -1;
}

static void parse_step(parser_t *p, json_t *v, const scale_t *scale, const char *f, double velocity, double length,
                       steps_t *out) {
  step_t *st = steps_push(out);
  st->velocity = velocity;
  st->length = length;
  if (json_is_null(v) || (json_is_string(v) && strcmp(json_string_value(v), "rest") == 0)) return;
  if (!json_is_object(v)) {
    int midi = parse_pitch(p, v, scale, f);
    if (midi >= 0) st->midi[st->count++] = midi;
    return;
  }
  static const char *const known[] = {"note", "degree", "notes", "velocity", "length", NULL};
  unknown_keys(p, v, f, known);
  double vel = velocity * 127.0;
  num_field(p, v, f, "velocity", 0, 127, &vel);
  st->velocity = vel / 127.0;
  beats_field(p, v, f, "length", 1.0 / 64, 64, &st->length);
  char nf[64];
  json_t *n;
  if ((n = json_object_get(v, "note")) || (n = json_object_get(v, "degree"))) {
    path_key(nf, sizeof(nf), f, json_object_get(v, "note") ? "note" : "degree");
    int midi = parse_pitch(p, n, scale, nf);
    if (midi >= 0) st->midi[st->count++] = midi;
  } else if ((n = json_object_get(v, "notes"))) {
    path_key(nf, sizeof(nf), f, "notes");
    if (!json_is_array(n) || json_array_size(n) == 0 || json_array_size(n) > 8) {
      bad(p, nf, "must be a list of 1 to 8 notes (a chord)");
      return;
    }
    size_t i;
    json_t *x;
    json_array_foreach(n, i, x) {
      char xf[64];
      path_index(xf, sizeof(xf), nf, i);
      int midi = parse_pitch(p, x, scale, xf);
      if (midi >= 0) st->midi[st->count++] = midi;
    }
  } else {
    bad(p, f, "needs \"note\", \"degree\" or \"notes\" (or null for a rest)");
  }
}

static const char *const drum_names[] = {"kick", "snare", "hat", "openhat", "clap", NULL};
static const char *const pattern_types[] = {"up", "down", "upDown", "downUp", "random", "randomWalk", "steps",
                                            "drums", NULL};
enum { PAT_UP, PAT_DOWN, PAT_UPDOWN, PAT_DOWNUP, PAT_RANDOM, PAT_RANDOMWALK, PAT_STEPS, PAT_DRUMS };

/* The values a generator walks: the pattern's own notes or the scale over `octaves`. */
static int generator_values(parser_t *p, json_t *pat, const char *f, const scale_t *scale, int *vals) {
  json_t *notes = json_object_get(pat, "notes");
  if (notes) {
    char nf[64];
    path_key(nf, sizeof(nf), f, "notes");
    if (!json_is_array(notes) || json_array_size(notes) == 0 || json_array_size(notes) > 64) {
      bad(p, nf, "must be a list of 1 to 64 notes or scale degrees");
      return 0;
    }
    int n = 0;
    size_t i;
    json_t *x;
    json_array_foreach(notes, i, x) {
      char xf[64];
      path_index(xf, sizeof(xf), nf, i);
      int midi = parse_pitch(p, x, scale, xf);
      vals[n++] = midi < 0 ? 60 : midi;
    }
    return n;
  }
  double octaves = 1;
  num_field(p, pat, f, "octaves", 1, 4, &octaves);
  int n = 0;
  for (int o = 0; o < (int)octaves; o++)
    for (int i = 0; i < scale->count && n < 256; i++) vals[n++] = TT_MIN(127, scale->notes[i] + 12 * o);
  return n;
}

/* Expands a track's pattern into steps; returns the step interval in beats. */
static double parse_pattern(parser_t *p, json_t *pat, const char *path, const scale_t *scale, audio_inst_kind_t kind,
                            steps_t *out, double *start, bool *loop) {
  char f[64];
  path_key(f, sizeof(f), path, "pattern");
  json_t *wrapped = NULL;
  if (json_is_array(pat)) { /* shorthand: the list of steps */
    wrapped = json_pack("{sO}", "steps", pat);
    pat = wrapped;
  }
  int type = kind == AUDIO_INST_SAMPLER ? PAT_DRUMS : PAT_UP;
  double interval = kind == AUDIO_INST_SAMPLER ? 0.25 : 0.5;
  double velocity = 100;
  uint64_t seed = p->seed;
  json_t *empty = NULL;
  if (!pat) pat = empty = json_object();
  if (!json_is_object(pat)) {
    bad(p, f, "must be an object or a list of steps");
    return interval;
  }
  static const char *const known[] = {"type", "notes", "octaves", "interval", "length", "velocity", "seed", "steps",
                                      "grid", "stepsPerBeat", "start", "loop", NULL};
  unknown_keys(p, pat, f, known);
  if (json_object_get(pat, "steps") && !json_object_get(pat, "type")) type = PAT_STEPS;
  if (json_object_get(pat, "grid") && !json_object_get(pat, "type")) type = PAT_DRUMS;
  enum_field(p, pat, f, "type", pattern_types, &type);
  if (type == PAT_DRUMS) {
    double spb = 4;
    num_field(p, pat, f, "stepsPerBeat", 1, 16, &spb);
    interval = 1.0 / (int)spb;
  }
  beats_field(p, pat, f, "interval", 1.0 / 32, 16, &interval);
  double length = interval;
  beats_field(p, pat, f, "length", 1.0 / 64, 64, &length);
  num_field(p, pat, f, "velocity", 0, 127, &velocity);
  velocity /= 127.0;
  beats_field(p, pat, f, "start", 0, 4096, start);
  json_t *lp = json_object_get(pat, "loop");
  if (lp && !json_is_boolean(lp)) {
    char lf[64];
    path_key(lf, sizeof(lf), f, "loop");
    bad(p, lf, "must be true or false");
  } else if (lp) {
    *loop = json_is_true(lp);
  }
  json_t *sv = json_object_get(pat, "seed");
  if (sv) {
    char sf[64];
    path_key(sf, sizeof(sf), f, "seed");
    if (!json_is_integer(sv) || json_integer_value(sv) < 0) bad(p, sf, "must be an integer of 0 or more");
    else seed = (uint64_t)json_integer_value(sv);
  }
  if (kind == AUDIO_INST_SAMPLER && type != PAT_DRUMS && type != PAT_STEPS)
    bad(p, f, "of a sampler must be \"drums\" (a grid) or \"steps\"");
  if (kind != AUDIO_INST_SAMPLER && type == PAT_DRUMS) bad(p, f, "\"drums\" needs instrumentType \"sampler\"");

  if (type == PAT_STEPS) {
    json_t *steps = json_object_get(pat, "steps");
    char sf[64];
    path_key(sf, sizeof(sf), f, "steps");
    if (!json_is_array(steps) || json_array_size(steps) == 0 || json_array_size(steps) > 4096) {
      bad(p, sf, "must be a list of 1 to 4096 steps");
    } else {
      size_t i;
      json_t *x;
      json_array_foreach(steps, i, x) {
        char xf[64];
        path_index(xf, sizeof(xf), sf, i);
        if (kind == AUDIO_INST_SAMPLER && json_is_string(x) && strcmp(json_string_value(x), "rest") != 0) {
          step_t *st = steps_push(out);
          st->velocity = velocity;
          st->length = length;
          int d = -1;
          for (int k = 0; drum_names[k]; k++)
            if (strcmp(json_string_value(x), drum_names[k]) == 0) d = k;
          if (d < 0) bad(p, xf, "must be a drum: \"kick\", \"snare\", \"hat\", \"openhat\", \"clap\"");
          st->drum = d;
          st->count = d < 0 ? 0 : 1;
          continue;
        }
        parse_step(p, x, scale, xf, velocity, length, out);
      }
    }
  } else if (type == PAT_DRUMS) {
    json_t *grid = json_object_get(pat, "grid");
    char gf[64];
    path_key(gf, sizeof(gf), f, "grid");
    json_t *def = NULL;
    if (!grid) grid = def = json_pack("{ssssss}", "kick", "x.......x.......", "snare", "....x.......x...", "hat",
                                      "x.x.x.x.x.x.x.x.");
    if (!json_is_object(grid) || json_object_size(grid) == 0) {
      bad(p, gf, "must map drums to step strings: {\"kick\":\"x...x...\"}");
    } else {
      size_t len = 0;
      const char *name;
      json_t *row;
      json_object_foreach(grid, name, row) {
        char rf[64];
        path_key(rf, sizeof(rf), gf, name);
        int d = -1;
        for (int k = 0; drum_names[k]; k++)
          if (strcmp(name, drum_names[k]) == 0) d = k;
        if (d < 0) bad(p, rf, "is not a drum: \"kick\", \"snare\", \"hat\", \"openhat\", \"clap\"");
        size_t n = json_is_string(row) ? json_string_length(row) : 0;
        const char *s = json_is_string(row) ? json_string_value(row) : "";
        bool ok = n > 0 && n <= 1024 && strspn(s, "xX.-") == n;
        if (!ok) bad(p, rf, "must be 1 to 1024 of 'x' (hit), 'X' (accent) and '.' or '-' (rest)");
        if (ok && n > len) len = n;
      }
      /* a grid step holds one hit per drum: rows become consecutive steps
       * of the same time, marked by length < 0 ("same time as the last") */
      for (size_t i = 0; i < len; i++) {
        bool first = true;
        json_object_foreach(grid, name, row) {
          int d = -1;
          for (int k = 0; drum_names[k]; k++)
            if (strcmp(name, drum_names[k]) == 0) d = k;
          const char *s = json_is_string(row) ? json_string_value(row) : "";
          size_t n = strlen(s);
          char c = n ? s[i % n] : '.';
          if (d < 0 || (c != 'x' && c != 'X')) continue;
          step_t *st = steps_push(out);
          st->drum = d;
          st->count = 1;
          st->velocity = c == 'X' ? 1.0 : velocity;
          st->length = first ? length : -length;
          first = false;
        }
        if (first) steps_push(out)->length = length; /* a rest */
      }
    }
    json_decref(def);
  } else {
    int vals[256];
    int n = generator_values(p, pat, f, scale, vals);
    if (n > 0) {
      /* one cycle of the generator, as Tone.Pattern walks it */
      int order[512];
      int m = 0;
      if (type == PAT_UP || type == PAT_RANDOM || type == PAT_RANDOMWALK)
        for (int i = 0; i < n; i++) order[m++] = i;
      else if (type == PAT_DOWN)
        for (int i = n - 1; i >= 0; i--) order[m++] = i;
      else if (type == PAT_UPDOWN) {
        for (int i = 0; i < n; i++) order[m++] = i;
        for (int i = n - 2; i >= 1; i--) order[m++] = i;
      } else {
        for (int i = n - 1; i >= 0; i--) order[m++] = i;
        for (int i = 1; i <= n - 2; i++) order[m++] = i;
      }
      if (type == PAT_RANDOM || type == PAT_RANDOMWALK) {
        /* random patterns do not repeat a cycle: lay out the whole piece */
        size_t total = (size_t)ceil(p->duration * p->tempo / 60.0 / interval) + 1;
        total = TT_MIN(total, (size_t)AUDIO_MAX_NOTES + 1);
        uint64_t s = seed;
        int at = (int)(splitmix(&s) % (uint64_t)n);
        for (size_t i = 0; i < total; i++) {
          if (type == PAT_RANDOM) at = (int)(splitmix(&s) % (uint64_t)n);
          else if (i > 0) at = TT_MAX(0, TT_MIN(n - 1, at + ((splitmix(&s) & 1) ? 1 : -1)));
          step_t *st = steps_push(out);
          st->midi[st->count++] = vals[at];
          st->velocity = velocity;
          st->length = length;
        }
        *loop = false;
      } else {
        for (int i = 0; i < m; i++) {
          step_t *st = steps_push(out);
          st->midi[st->count++] = vals[order[i]];
          st->velocity = velocity;
          st->length = length;
        }
      }
    }
  }
  json_decref(empty);
  json_decref(wrapped);
  return interval;
}

/* ================================================================ tracks */

static void push_note(audio_track_t *t, size_t *cap, const audio_note_t *n) {
  if (t->count == *cap) {
    *cap = *cap ? *cap * 2 : 64;
    t->notes = tt_realloc(t->notes, *cap * sizeof(*t->notes));
  }
  t->notes[t->count++] = *n;
}

static void parse_track(parser_t *p, json_t *obj, const char *path, const scale_t *base_scale, audio_track_t *t) {
  parse_instrument(p, obj, path, &t->inst);
  scale_t scale = *base_scale;
  if (*path) parse_scale(p, obj, path, &scale); /* the top level's was parsed already */

  steps_t steps = {0};
  double start = 0;
  bool loop = true;
  double interval =
      parse_pattern(p, json_object_get(obj, "pattern"), path, &scale, t->inst.kind, &steps, &start, &loop);
  if (steps.count == 0 || p->errs->count) goto out;

  /* lay the steps on the timeline, looping until the piece ends */
  double beat = 60.0 / p->tempo;
  size_t cap = 0;
  double at = start;
  for (size_t i = 0;; i++) {
    if (i == steps.count) {
      if (!loop) break;
      i = 0;
    }
    const step_t *st = &steps.list[i];
    bool same_time = st->length < 0;
    double when = same_time ? at - interval : at;
    if (when * beat >= p->duration) break;
    for (int k = 0; k < st->count; k++) {
      if (++p->total_notes > AUDIO_MAX_NOTES) {
        char f[64];
        path_key(f, sizeof(f), path, "pattern");
        bad(p, f, "makes more than %d notes in all: fewer tracks, a longer interval or a shorter duration",
            AUDIO_MAX_NOTES);
        goto out;
      }
      audio_note_t n = {.time = when * beat,
                        .length = fabs(st->length) * beat,
                        .midi = st->count ? st->midi[k] : 0,
                        .drum = st->drum,
                        .velocity = st->velocity};
      push_note(t, &cap, &n);
    }
    if (!same_time) at += interval;
  }
out:
  free(steps.list);
}

/* ================================================================ parameters */

static const char *const top_known[] = {"tempo", "duration", "sampleRate", "channels", "seed", "scale", "rootNote",
                                        "instrumentType", "instrumentOptions", "pattern", "tracks", "effects",
                                        "volume", "pan", "repoId", "channel", NULL};
static const char *const track_known[] = {"instrumentType", "instrumentOptions", "pattern", "scale", "rootNote",
                                          "volume", "pan", NULL};

static void parse_effects(parser_t *p, json_t *fx, audio_fx_t *out) {
  out->delay_time = 0.375;
  out->delay_feedback = 0.3;
  out->reverb_decay = 1.5;
  if (!fx) return;
  if (!json_is_object(fx)) {
    bad(p, "effects", "must be an object with \"delay\" and/or \"reverb\"");
    return;
  }
  static const char *const known[] = {"delay", "reverb", NULL};
  unknown_keys(p, fx, "effects", known);
  json_t *d = json_object_get(fx, "delay");
  if (d && !json_is_object(d)) bad(p, "effects.delay", "must be an object with time, feedback, wet");
  else if (d) {
    static const char *const dk[] = {"time", "feedback", "wet", NULL};
    unknown_keys(p, d, "effects.delay", dk);
    json_t *tv = json_object_get(d, "time");
    double beats;
    if (tv && json_is_string(tv)) {
      if (!parse_beats(tv, &beats)) bad(p, "effects.delay.time", "must be seconds (0.01 to 2) or \"8n\", \"4n.\"");
      else out->delay_time = beats * 60.0 / p->tempo;
    } else {
      num_field(p, d, "effects.delay", "time", 0.01, 2, &out->delay_time);
    }
    if (out->delay_time > 2) bad(p, "effects.delay.time", "must be at most 2 s at this tempo");
    num_field(p, d, "effects.delay", "feedback", 0, 0.95, &out->delay_feedback);
    out->delay_wet = 0.25;
    num_field(p, d, "effects.delay", "wet", 0, 1, &out->delay_wet);
  }
  json_t *r = json_object_get(fx, "reverb");
  if (r && !json_is_object(r)) bad(p, "effects.reverb", "must be an object with decay, wet");
  else if (r) {
    static const char *const rk[] = {"decay", "wet", NULL};
    unknown_keys(p, r, "effects.reverb", rk);
    num_field(p, r, "effects.reverb", "decay", 0.1, 10, &out->reverb_decay);
    out->reverb_wet = 0.25;
    num_field(p, r, "effects.reverb", "wet", 0, 1, &out->reverb_wet);
  }
}

int audio_params_parse(const char *json, size_t len, const audio_limits_t *limits, audio_score_t **out,
                       audio_param_errors_t *errs) {
  memset(errs, 0, sizeof(*errs));
  *out = NULL;
  parser_t p = {.limits = limits, .errs = errs, .tempo = 120, .seed = 1, .duration = TT_MIN(5.0, limits->max_duration)};
  json_error_t jerr;
  json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    bad(&p, "", "is not valid JSON: %s (at character %d)", jerr.text, jerr.position);
    return -EINVAL;
  }
  /* the event-driven form {"repoId": ..., "musicalParams": {...}} */
  json_t *params = json_object_get(root, "musicalParams");
  if (!params) params = root;
  if (!json_is_object(params)) {
    bad(&p, "", "must be a JSON object of musical parameters");
    json_decref(root);
    return -EINVAL;
  }
  unknown_keys(&p, params, "", top_known);

  audio_score_t *score = tt_calloc(1, sizeof(*score));
  score->sample_rate = limits->sample_rate;
  score->channels = limits->channels;
  if (limits->samples_dir) score->samples_dir = tt_strndup(limits->samples_dir, strlen(limits->samples_dir));
  num_field(&p, params, "", "tempo", 20, 400, &p.tempo);
  num_field(&p, params, "", "duration", 0.01, limits->max_duration, &p.duration);
  json_t *v = json_object_get(params, "sampleRate");
  if (v && !(json_is_integer(v) && (json_integer_value(v) == 44100 || json_integer_value(v) == 48000)))
    bad(&p, "sampleRate", "must be 44100 or 48000");
  else if (v) score->sample_rate = (int)json_integer_value(v);
  v = json_object_get(params, "channels");
  if (v && !(json_is_integer(v) && (json_integer_value(v) == 1 || json_integer_value(v) == 2)))
    bad(&p, "channels", "must be 1 (mono) or 2 (stereo)");
  else if (v) score->channels = (int)json_integer_value(v);
  v = json_object_get(params, "seed");
  if (v && !(json_is_integer(v) && json_integer_value(v) >= 0)) bad(&p, "seed", "must be an integer of 0 or more");
  else if (v) p.seed = (uint64_t)json_integer_value(v);
  score->tempo = p.tempo;
  score->duration = p.duration;
  score->seed = p.seed;
  parse_effects(&p, json_object_get(params, "effects"), &score->fx);

  scale_t scale = {.count = 0};
  scale.notes[0] = 60;
  scale.count = 1;
  json_t *named = json_object_get(params, "scale");
  if (!named) { /* the default: a major scale on the root note */
    json_t *major = json_pack("{ss}", "scale", "major");
    parse_scale(&p, params, "", &scale); /* moves the root */
    parse_scale(&p, major, "", &scale);
    json_decref(major);
  } else {
    parse_scale(&p, params, "", &scale);
  }

  json_t *tracks = json_object_get(params, "tracks");
  if (tracks) {
    if (!json_is_array(tracks) || json_array_size(tracks) == 0 || json_array_size(tracks) > AUDIO_MAX_TRACKS) {
      bad(&p, "tracks", "must be a list of 1 to %d tracks", AUDIO_MAX_TRACKS);
    } else {
      score->track_count = json_array_size(tracks);
      score->tracks = tt_calloc(score->track_count, sizeof(*score->tracks));
      size_t i;
      json_t *t;
      json_array_foreach(tracks, i, t) {
        char f[64];
        path_index(f, sizeof(f), "tracks", i);
        if (!json_is_object(t)) {
          bad(&p, f, "must be an object");
          continue;
        }
        unknown_keys(&p, t, f, track_known);
        parse_track(&p, t, f, &scale, &score->tracks[i]);
      }
    }
  } else {
    score->track_count = 1;
    score->tracks = tt_calloc(1, sizeof(*score->tracks));
    parse_track(&p, params, "", &scale, &score->tracks[0]);
  }
  json_decref(root);
  if (errs->count) {
    audio_score_free(score);
    return -EINVAL;
  }
  *out = score;
  return 0;
}

void audio_score_free(audio_score_t *score) {
  if (!score) return;
  for (size_t i = 0; i < score->track_count; i++) {
    audio_instrument_t *inst = &score->tracks[i].inst;
    for (int k = 0; k < 128; k++) free(inst->sample_names[k]);
    for (size_t k = 0; k < inst->sample_count; k++) free(inst->samples[k].data);
    free(inst->samples);
    free(score->tracks[i].notes);
  }
  free(score->tracks);
  free(score->samples_dir);
  free(score);
}
