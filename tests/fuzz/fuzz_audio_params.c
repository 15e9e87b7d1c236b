/*
 * libFuzzer target for the MusicalParameters parser (src/audio/params.c).
 *
 * Invariants: a parse either succeeds with a score the renderer can take
 * (sample rate and channels allowed, duration within the limit, notes
 * sorted by track and inside the piece, MIDI numbers and velocities in
 * range) or fails with at least one error whose field and message are
 * NUL-terminated. Every invariant that fails aborts. Short durations keep
 * each input's note expansion small.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio/audio.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const audio_limits_t limits = {.max_duration = 4, .sample_rate = 48000, .channels = 2,
                                        .samples_dir = "/nonexistent"};
  audio_score_t *score = NULL;
  audio_param_errors_t errs;
  int rc = audio_params_parse((const char *)data, size, &limits, &score, &errs);
  if (rc != 0) {
    FUZZ_CHECK(rc == -EINVAL && score == NULL && errs.count > 0);
    for (size_t i = 0; i < errs.count && i < AUDIO_PARAM_ERRORS_MAX; i++) {
      FUZZ_CHECK(memchr(errs.list[i].field, '\0', sizeof(errs.list[i].field)) != NULL);
      FUZZ_CHECK(strlen(errs.list[i].message) > 0);
    }
    return 0;
  }
  FUZZ_CHECK(score != NULL && errs.count == 0);
  FUZZ_CHECK(score->sample_rate == 44100 || score->sample_rate == 48000);
  FUZZ_CHECK(score->channels == 1 || score->channels == 2);
  FUZZ_CHECK(score->duration > 0 && score->duration <= limits.max_duration);
  FUZZ_CHECK(score->track_count >= 1 && score->track_count <= AUDIO_MAX_TRACKS);
  for (size_t t = 0; t < score->track_count; t++) {
    const audio_track_t *tr = &score->tracks[t];
    FUZZ_CHECK(tr->inst.voices >= 1 && tr->inst.voices <= AUDIO_MAX_VOICES);
    for (size_t i = 0; i < tr->count; i++) {
      const audio_note_t *n = &tr->notes[i];
      FUZZ_CHECK(n->time >= 0 && n->time < score->duration);
      FUZZ_CHECK(i == 0 || n->time >= tr->notes[i - 1].time);
      FUZZ_CHECK(n->length > 0);
      FUZZ_CHECK(n->midi >= 0 && n->midi <= 127);
      FUZZ_CHECK(n->velocity >= 0 && n->velocity <= 1);
      FUZZ_CHECK(n->drum >= AUDIO_DRUM_NONE && n->drum < AUDIO_DRUM_COUNT);
    }
  }
  audio_score_free(score);
  return 0;
}
