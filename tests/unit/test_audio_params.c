/* MusicalParameters -> score: notes, scales, patterns, errors; and the
 * timing of a parsed pattern once rendered. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "audio/audio.h"
#include "test.h"

static const audio_limits_t limits = {.max_duration = 60, .sample_rate = 48000, .channels = 1};

static audio_score_t *parse_ok(const char *json) {
  audio_score_t *s = NULL;
  audio_param_errors_t errs;
  int rc = audio_params_parse(json, strlen(json), &limits, &s, &errs);
  if (rc != 0) {
    fprintf(stderr, "unexpected errors for %s:\n", json);
    for (size_t i = 0; i < errs.count && i < AUDIO_PARAM_ERRORS_MAX; i++)
      fprintf(stderr, "  %s: %s\n", errs.list[i].field, errs.list[i].message);
  }
  CHECK(rc == 0);
  return s;
}

static bool has_error(const audio_param_errors_t *e, const char *field) {
  for (size_t i = 0; i < e->count && i < AUDIO_PARAM_ERRORS_MAX; i++)
    if (strcmp(e->list[i].field, field) == 0) return true;
  return false;
}

static void test_note_names(void) {
  CHECK(audio_note_parse("C4", 2) == 60);
  CHECK(audio_note_parse("A4", 2) == 69);
  CHECK(audio_note_parse("C#4", 3) == 61);
  CHECK(audio_note_parse("Db4", 3) == 61);
  CHECK(audio_note_parse("Bb3", 3) == 58);
  CHECK(audio_note_parse("c-1", 3) == 0);
  CHECK(audio_note_parse("G9", 2) == 127);
  CHECK(audio_note_parse("G#9", 3) == -1);
  CHECK(audio_note_parse("H4", 2) == -1);
  CHECK(audio_note_parse("C", 1) == -1);
  CHECK(audio_note_parse("C44", 3) == -1);
  CHECK(fabs(audio_midi_hz(69) - 440.0) < 1e-9);
  CHECK(fabs(audio_midi_hz(81) - 880.0) < 1e-9);
}

static void test_defaults_and_up_pattern(void) {
  /* the document's example: the scale's notes in order, eighths at 120 BPM */
  audio_score_t *s = parse_ok("{\"tempo\":120,\"scale\":[\"C4\",\"E4\",\"G4\",\"B4\"],\"rootNote\":\"C4\","
                              "\"instrumentType\":\"synth\",\"duration\":2}");
  if (!s) return;
  CHECK(s->sample_rate == 48000 && s->channels == 1 && s->track_count == 1);
  const audio_track_t *t = &s->tracks[0];
  CHECK(t->inst.kind == AUDIO_INST_SYNTH && t->inst.voices == 1);
  CHECK(t->count == 8); /* 2 s of eighths at 120 BPM */
  static const int want[] = {60, 64, 67, 71, 60, 64, 67, 71};
  for (size_t i = 0; i < t->count && i < 8; i++) {
    CHECK(t->notes[i].midi == want[i]);
    CHECK(fabs(t->notes[i].time - 0.25 * (double)i) < 1e-12);
    CHECK(fabs(t->notes[i].length - 0.25) < 1e-12);
    CHECK(fabs(t->notes[i].velocity - 100.0 / 127.0) < 1e-12);
  }
  audio_score_free(s);
}

static void test_named_scales_and_generators(void) {
  audio_score_t *s = parse_ok("{\"scale\":\"minor pentatonic\",\"rootNote\":\"A3\",\"tempo\":60,\"duration\":4,"
                              "\"pattern\":{\"type\":\"upDown\",\"interval\":\"4n\"}}");
  if (s) {
    /* A3 C4 D4 E4 G4, then back down without repeating the ends */
    static const int want[] = {57, 60, 62, 64};
    CHECK(s->tracks[0].count == 4);
    for (size_t i = 0; i < 4 && i < s->tracks[0].count; i++) CHECK(s->tracks[0].notes[i].midi == want[i]);
    audio_score_free(s);
  }
  s = parse_ok("{\"scale\":[\"C4\",\"D4\",\"E4\"],\"tempo\":120,\"duration\":3,\"pattern\":{\"type\":\"upDown\"}}");
  if (s) {
    static const int want[] = {60, 62, 64, 62, 60, 62, 64, 62, 60, 62, 64, 62};
    CHECK(s->tracks[0].count == 12);
    for (size_t i = 0; i < 12 && i < s->tracks[0].count; i++) CHECK(s->tracks[0].notes[i].midi == want[i]);
    audio_score_free(s);
  }
  s = parse_ok("{\"scale\":\"major\",\"rootNote\":\"C4\",\"duration\":1,\"pattern\":{\"type\":\"down\"}}");
  if (s) {
    CHECK(s->tracks[0].count == 4);
    CHECK(s->tracks[0].notes[0].midi == 71 && s->tracks[0].notes[1].midi == 69);
    audio_score_free(s);
  }
  /* random: the seed decides, and the same seed repeats */
  const char *r1 = "{\"duration\":8,\"pattern\":{\"type\":\"random\",\"seed\":7}}";
  const char *r2 = "{\"duration\":8,\"pattern\":{\"type\":\"random\",\"seed\":8}}";
  audio_score_t *a = parse_ok(r1), *b = parse_ok(r1), *c = parse_ok(r2);
  if (a && b && c) {
    CHECK(a->tracks[0].count == 32 && b->tracks[0].count == 32 && c->tracks[0].count == 32);
    bool same_ab = true, same_ac = true;
    int distinct[128] = {0}, nd = 0;
    for (size_t i = 0; i < a->tracks[0].count; i++) {
      same_ab &= a->tracks[0].notes[i].midi == b->tracks[0].notes[i].midi;
      same_ac &= a->tracks[0].notes[i].midi == c->tracks[0].notes[i].midi;
      if (!distinct[a->tracks[0].notes[i].midi]++) nd++;
    }
    CHECK(same_ab);
    CHECK(!same_ac);
    CHECK(nd >= 4); /* it wanders over the scale */
  }
  audio_score_free(a);
  audio_score_free(b);
  audio_score_free(c);
}

static void test_steps_degrees_chords_rests(void) {
  audio_score_t *s = parse_ok("{\"scale\":\"major\",\"rootNote\":\"C4\",\"tempo\":120,\"duration\":2,"
                              "\"instrumentType\":\"polySynth\",\"instrumentOptions\":{\"maxPolyphony\":4},"
                              "\"pattern\":{\"loop\":false,\"steps\":[0, 7, -1, null, \"F#4\","
                              "{\"notes\":[0,2,4],\"length\":2,\"velocity\":127}]}}");
  if (!s) return;
  const audio_track_t *t = &s->tracks[0];
  CHECK(t->inst.kind == AUDIO_INST_POLY && t->inst.voices == 4);
  CHECK(t->count == 7);
  if (t->count == 7) {
    CHECK(t->notes[0].midi == 60);
    CHECK(t->notes[1].midi == 72);                    /* degree 7 = the root an octave up */
    CHECK(t->notes[2].midi == 59);                    /* degree -1 = B3 */
    CHECK(fabs(t->notes[3].time - 1.0) < 1e-12);      /* the rest took 0.25 s */
    CHECK(t->notes[3].midi == 66);
    for (int k = 4; k < 7; k++) {
      CHECK(fabs(t->notes[k].time - 1.25) < 1e-12);   /* a chord: together */
      CHECK(fabs(t->notes[k].length - 1.0) < 1e-12);  /* 2 beats */
      CHECK(t->notes[k].velocity == 1.0);
    }
  }
  audio_score_free(s);
}

static void test_drum_grid_and_tracks(void) {
  audio_score_t *s = parse_ok("{\"tempo\":120,\"duration\":2,\"tracks\":["
                              "{\"instrumentType\":\"sampler\",\"pattern\":{\"grid\":{\"kick\":\"x...x...\","
                              "\"hat\":\"X.x.\"}}},"
                              "{\"instrumentType\":\"fmSynth\",\"instrumentOptions\":{\"harmonicity\":2,"
                              "\"modulationIndex\":5},\"pan\":-0.5,\"volume\":-6}]}");
  if (!s) return;
  CHECK(s->track_count == 2);
  const audio_track_t *d = &s->tracks[0];
  CHECK(d->inst.kind == AUDIO_INST_SAMPLER);
  /* 16ths at 120 BPM = 0.125 s: kicks every 0.5 s, hats every 0.25 s */
  int kicks = 0, hats = 0, accents = 0;
  for (size_t i = 0; i < d->count; i++) {
    const audio_note_t *n = &d->notes[i];
    if (n->drum == AUDIO_DRUM_KICK) {
      CHECK(fabs(fmod(n->time, 0.5)) < 1e-9);
      kicks++;
    } else if (n->drum == AUDIO_DRUM_HAT) {
      CHECK(fabs(fmod(n->time, 0.25)) < 1e-9);
      hats++;
      if (n->velocity == 1.0) accents++;
    }
  }
  CHECK(kicks == 4);
  CHECK(hats == 8);
  CHECK(accents == 4);
  const audio_track_t *f = &s->tracks[1];
  CHECK(f->inst.kind == AUDIO_INST_FM && f->inst.voice.harmonicity == 2 && f->inst.voice.modulation_index == 5);
  CHECK(f->inst.pan == -0.5 && f->inst.volume_db == -6);
  audio_score_free(s);
}

static void test_errors_name_every_field(void) {
  const char *bad = "{\"tempo\":500,\"duration\":120,\"instrumentType\":\"banjo\",\"scale\":[\"C4\",\"H4\"],"
                    "\"sampleRate\":22050,\"pattern\":{\"type\":\"sideways\"},\"color\":\"blue\"}";
  audio_score_t *s = NULL;
  audio_param_errors_t errs;
  CHECK(audio_params_parse(bad, strlen(bad), &limits, &s, &errs) == -EINVAL);
  CHECK(s == NULL);
  CHECK(has_error(&errs, "tempo"));
  CHECK(has_error(&errs, "duration"));
  CHECK(has_error(&errs, "instrumentType"));
  CHECK(has_error(&errs, "scale[1]"));
  CHECK(has_error(&errs, "sampleRate"));
  CHECK(has_error(&errs, "pattern.type"));
  CHECK(has_error(&errs, "color"));
  for (size_t i = 0; i < errs.count && i < AUDIO_PARAM_ERRORS_MAX; i++)
    if (strcmp(errs.list[i].field, "tempo") == 0) CHECK(strstr(errs.list[i].message, "20 to 400") != NULL);

  const char *cases[][2] = {
      {"[1,2]", ""},
      {"{\"tempo\":\"fast\"}", "tempo"},
      {"{\"instrumentOptions\":{\"envelope\":{\"sustain\":2}}}", "instrumentOptions.envelope.sustain"},
      {"{\"instrumentOptions\":{\"oscillator\":{\"type\":\"noise\"}}}", "instrumentOptions.oscillator.type"},
      {"{\"pattern\":{\"steps\":[{\"note\":\"C4\",\"velocity\":200}]}}", "pattern.steps[0].velocity"},
      {"{\"pattern\":{\"interval\":\"3n\"}}", "pattern.interval"},
      {"{\"tracks\":[]}", "tracks"},
      {"{\"tracks\":[{\"instrumentType\":\"sampler\",\"pattern\":{\"grid\":{\"cowbell\":\"x...\"}}}]}",
       "tracks[0].pattern.grid.cowbell"},
      {"{\"instrumentType\":\"sampler\",\"instrumentOptions\":{\"samples\":{\"C4\":\"piano\"}}}",
       "instrumentOptions.samples"}, /* no --samples-dir */
      {"{\"effects\":{\"delay\":{\"feedback\":1.5}}}", "effects.delay.feedback"},
      {"{\"duration\":60,\"tempo\":400,\"tracks\":[{\"pattern\":{\"interval\":0.03125,\"steps\":[{\"notes\":"
       "[0,1,2,3,4,5,6,7]}]}},{\"pattern\":{\"interval\":0.03125,\"steps\":[{\"notes\":[0,1,2,3,4,5,6,7]}]}}]}",
       "tracks[1].pattern"}, /* too many notes in all */
      {"{\"tempo\":120", ""},
  };
  for (size_t i = 0; i < TT_ARRAY_SIZE(cases); i++) {
    s = NULL;
    int rc = audio_params_parse(cases[i][0], strlen(cases[i][0]), &limits, &s, &errs);
    if (!CHECK(rc == -EINVAL) || !CHECK(has_error(&errs, cases[i][1]))) {
      fprintf(stderr, "  case %s:", cases[i][0]);
      for (size_t k = 0; k < errs.count && k < AUDIO_PARAM_ERRORS_MAX; k++)
        fprintf(stderr, " [%s: %s]", errs.list[k].field, errs.list[k].message);
      fputc('\n', stderr);
    }
    audio_score_free(s);
  }
}

/* Onsets of a rendered pattern at 120 BPM within 1 ms of the grid. */
static void test_rendered_onsets_on_the_grid(void) {
  audio_score_t *s = parse_ok("{\"tempo\":120,\"duration\":2,\"scale\":[\"A4\"],\"instrumentType\":\"synth\","
                              "\"instrumentOptions\":{\"oscillator\":{\"type\":\"sine\"},\"envelope\":"
                              "{\"attack\":0.001,\"decay\":0.05,\"sustain\":0,\"release\":0.01}},"
                              "\"pattern\":{\"interval\":\"8n\",\"length\":\"32n\"}}");
  if (!s) return;
  audio_pcm_t pcm;
  CHECK(audio_render(s, &pcm, NULL, NULL, NULL) == 0);
  CHECK(pcm.frames == 96000);
  int found = 0;
  for (int k = 0; k < 8; k++) {
    size_t grid = (size_t)k * 12000; /* 0.25 s */
    size_t from = k ? grid - 2400 : 0;
    size_t i = from;
    while (i < pcm.frames && fabsf(pcm.data[0][i]) < 0.01f) i++;
    double err_ms = fabs((double)i - (double)grid) / 48.0;
    if (!CHECK(err_ms <= 1.0)) fprintf(stderr, "  onset %d at %zu, grid %zu (%.2f ms)\n", k, i, grid, err_ms);
    else found++;
  }
  CHECK(found == 8);
  audio_pcm_free(&pcm);
  audio_score_free(s);
}

int main(void) {
  RUN(test_note_names);
  RUN(test_defaults_and_up_pattern);
  RUN(test_named_scales_and_generators);
  RUN(test_steps_degrees_chords_rests);
  RUN(test_drum_grid_and_tracks);
  RUN(test_errors_name_every_field);
  RUN(test_rendered_onsets_on_the_grid);
  return test_report("test_audio_params");
}
