/*
 * audio: music rendered from parameters, and the codecs that ship it.
 *
 * A render goes in three steps, each usable on its own:
 *   1. audio_params_parse: the MusicalParameters JSON (tempo, scale,
 *      instrument, pattern, tracks, effects) becomes a score, a list of
 *      timed notes per track; every bad field is reported at once.
 *   2. audio_render: the score becomes float PCM (planar, 44.1 or 48 kHz,
 *      mono or stereo). Deterministic: the same score gives the same samples.
 *   3. audio_encode_*: PCM becomes WAV, Ogg Opus, PCM16 or the SerializedBuffer
 *      JSON (Float32 or Int16).
 * audio_job_submit runs 2 and 3 on the libuv thread pool, bounded in number
 * and in time; nothing here touches the network (the api publishes).
 */
#ifndef TUTTI_AUDIO_H
#define TUTTI_AUDIO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../core/core.h"

#define AUDIO_MAX_CHANNELS 2
#define AUDIO_MAX_TRACKS 16
#define AUDIO_MAX_VOICES 32
#define AUDIO_DURATION_LIMIT 600.0 /* s: no setting may allow longer renders */

/* ================================================================ scores */

typedef enum {
  AUDIO_WAVE_SINE,
  AUDIO_WAVE_TRIANGLE,
  AUDIO_WAVE_SQUARE,
  AUDIO_WAVE_SAWTOOTH,
} audio_wave_t;

typedef enum {
  AUDIO_INST_SYNTH,    /* one oscillator + envelope (+ filter), monophonic */
  AUDIO_INST_FM,       /* two-operator FM, monophonic */
  AUDIO_INST_POLY,     /* N voices of synth or fmSynth */
  AUDIO_INST_SAMPLER,  /* built-in drum kit and WAV samples */
} audio_inst_kind_t;

typedef enum {
  AUDIO_FILTER_NONE,
  AUDIO_FILTER_LOWPASS,
  AUDIO_FILTER_HIGHPASS,
  AUDIO_FILTER_BANDPASS,
  AUDIO_FILTER_ONEPOLE,  /* one-pole lowpass at `frequency` */
} audio_filter_kind_t;

/* The built-in drum kit's pieces; a sampler note plays one of these or a
 * loaded sample. */
typedef enum {
  AUDIO_DRUM_NONE = -1,
  AUDIO_DRUM_KICK,
  AUDIO_DRUM_SNARE,
  AUDIO_DRUM_HAT,       /* closed hi-hat */
  AUDIO_DRUM_OPENHAT,
  AUDIO_DRUM_CLAP,
  AUDIO_DRUM_COUNT,
} audio_drum_t;

/* Times in seconds; sustain a level 0..1. Attack rises linearly from the
 * current level to 1; decay and release are exponential-shaped curves that
 * land exactly on their target at their end. */
typedef struct audio_adsr_s {
  double attack, decay, sustain, release;
} audio_adsr_t;

typedef struct audio_filter_s {
  audio_filter_kind_t kind;
  double frequency;  /* Hz */
  double q;
} audio_filter_t;

/* One voice's sound: a synth or an FM pair. */
typedef struct audio_voice_opts_s {
  audio_inst_kind_t kind;       /* AUDIO_INST_SYNTH or AUDIO_INST_FM */
  audio_wave_t wave;            /* the oscillator (synth) or carrier (FM) */
  audio_adsr_t env;
  audio_filter_t filter;
  /* FM: modulator frequency = carrier * harmonicity; its peak phase
   * deviation (radians) = modulation_index * modulation envelope. */
  audio_wave_t mod_wave;
  audio_adsr_t mod_env;
  double harmonicity;
  double modulation_index;
} audio_voice_opts_t;

/* A loaded sample: mono float at the render's sample rate, and the MIDI note
 * it sounds at when played unshifted. */
typedef struct audio_sample_s {
  int midi;
  float *data;
  size_t frames;
} audio_sample_t;

typedef struct audio_instrument_s {
  audio_inst_kind_t kind;
  audio_voice_opts_t voice;   /* synth, fmSynth, and polySynth's voices */
  int voices;                 /* polySynth: voice count (1 for the monophonic ones);
                               * sampler: hits sounding at once (16 when 1) */
  double volume_db;           /* track gain */
  double pan;                 /* -1 (left) .. 1 (right), equal-power (-3 dB each side at 0,
                               * as Tone's panner); mono renders ignore it */
  /* sampler: files to load from the samples folder, by note (see params) */
  char *sample_names[128];    /* by MIDI note, NULL where none; owned */
  audio_sample_t *samples;    /* filled by audio_render from sample_names; owned by the score */
  size_t sample_count;
} audio_instrument_t;

typedef struct audio_note_s {
  double time;     /* s from the start */
  double length;   /* s from note-on to note-off (the release follows) */
  int midi;        /* 0..127; melodic instruments play midi_hz(midi) unless hz is set */
  double hz;       /* > 0: this frequency instead of the MIDI note's */
  int drum;        /* sampler: an audio_drum_t, or AUDIO_DRUM_NONE to play a sample by midi */
  double velocity; /* 0..1 */
} audio_note_t;

typedef struct audio_track_s {
  audio_instrument_t inst;
  audio_note_t *notes;   /* sorted by time; owned */
  size_t count;
} audio_track_t;

/* Master-bus effects; wet 0 turns one off. */
typedef struct audio_fx_s {
  double delay_time;      /* s */
  double delay_feedback;  /* 0..0.95 */
  double delay_wet;       /* 0..1 */
  double reverb_decay;    /* s to fall 60 dB */
  double reverb_wet;      /* 0..1 */
} audio_fx_t;

typedef struct audio_score_s {
  int sample_rate;        /* 44100 or 48000 */
  int channels;           /* 1 or 2 */
  double duration;        /* s; the render is exactly round(duration * rate) frames */
  double tempo;           /* BPM, for the record */
  uint64_t seed;          /* noise and random patterns */
  audio_fx_t fx;
  audio_track_t *tracks;  /* owned */
  size_t track_count;
  char *samples_dir;      /* where sample_names are looked up; owned, may be NULL */
} audio_score_t;

void audio_score_free(audio_score_t *score);
double audio_midi_hz(double midi); /* 440 * 2^((midi - 69) / 12) */
/* "C4", "F#3", "Bb5", "c-1" -> MIDI number; -1 when not a note. */
int audio_note_parse(const char *s, size_t len);

/* ================================================================ parameters */

/* Limits and defaults that come from the configuration. */
typedef struct audio_limits_s {
  double max_duration;  /* s, at most AUDIO_DURATION_LIMIT */
  int sample_rate;      /* default when the parameters name none */
  int channels;         /* default */
  const char *samples_dir;  /* NULL: samplers play only the built-in kit */
} audio_limits_t;

/* What was wrong, one entry per bad field. */
typedef struct audio_param_error_s {
  char field[64];     /* a JSON path: "tempo", "tracks[1].pattern.steps[3].note" */
  char message[160];  /* what is allowed: "must be a number from 20 to 400" */
} audio_param_error_t;

#define AUDIO_PARAM_ERRORS_MAX 16

typedef struct audio_param_errors_s {
  audio_param_error_t list[AUDIO_PARAM_ERRORS_MAX];
  size_t count;       /* how many were found (list holds the first ones) */
} audio_param_errors_t;

/* Parses MusicalParameters (docs/API.md) into `*out`. Returns 0, or -EINVAL
 * with `errs` filled (and *out NULL). */
int audio_params_parse(const char *json, size_t len, const audio_limits_t *limits, audio_score_t **out,
                       audio_param_errors_t *errs);

/* ================================================================ rendering */

/* Planar float PCM. */
typedef struct audio_pcm_s {
  int sample_rate;
  int channels;
  size_t frames;
  float *data[AUDIO_MAX_CHANNELS];  /* owned */
} audio_pcm_t;

void audio_pcm_free(audio_pcm_t *pcm);

/* Called now and then during a render with the fraction done (0..1). */
typedef void (*audio_progress_cb)(void *ctx, double done);

/*
 * Renders `score` into `out`. Loads the score's samples first (once: a score
 * rendered again reuses them). `cancel`, if not NULL, is polled between
 * blocks: when it becomes true the render stops with -ECANCELED. Returns 0,
 * -EINVAL for a score out of range or a sample file that is unreadable,
 * -ENOENT for one that is missing (or samples without a samples_dir), or
 * -ECANCELED. Any thread.
 */
int audio_render(audio_score_t *score, audio_pcm_t *out, audio_progress_cb progress, void *ctx,
                 const atomic_bool *cancel);

/* ================================================================ codecs */

/* RIFF WAVE, 16-bit PCM, interleaved. */
void audio_encode_wav(const audio_pcm_t *pcm, tt_str_t *out);
/* Reads a WAV file's bytes (PCM 8/16/24/32-bit or float 32, any channel
 * count) into mono float at `rate` (resampled linearly when it differs). */
int audio_decode_wav(const void *data, size_t len, int rate, float **samples, size_t *frames);
/* Interleaved little-endian int16. */
void audio_encode_pcm16(const audio_pcm_t *pcm, tt_str_t *out);
/* Ogg Opus at `bitrate` bits per second (0: the encoder's choice). Returns 0
 * or a negative errno. */
int audio_encode_opus(const audio_pcm_t *pcm, int bitrate, tt_str_t *out);
/* The SerializedBuffer JSON object {"sampleRate","length","duration",
 * "numberOfChannels","channels"}: Float32 values with 6 decimals, or with
 * `int16` the "compressed" form (integers -32768..32767, "compressed":true).
 * `extra` (may be NULL) is inserted as more members: "\"id\":\"x\"". */
void audio_encode_serialized(const audio_pcm_t *pcm, bool int16, const char *extra, tt_str_t *out);
/* Float to int16 as every encoder here does it: clamp, scale by 32767, round. */
static inline int16_t audio_f2s16(float v) {
  if (v != v) return 0; /* NaN */
  if (v > 1.0f) v = 1.0f;
  if (v < -1.0f) v = -1.0f;
  float s = v * 32767.0f;
  return (int16_t)(s >= 0 ? s + 0.5f : s - 0.5f);
}

/* ================================================================ encodings */

/* What a subscriber may choose; each render builds every one once. */
typedef enum {
  AUDIO_ENC_OPUS,    /* Ogg Opus: base64 in JSON, a binary frame over WebSocket (default) */
  AUDIO_ENC_PCM16,   /* interleaved int16: base64 in JSON, a binary frame over WebSocket */
  AUDIO_ENC_JSON,    /* SerializedBuffer, Float32 */
  AUDIO_ENC_JSON16,  /* SerializedBuffer, Int16 ("compressed") */
  AUDIO_ENC_COUNT,
} audio_encoding_t;

/* "opus", "pcm16", "json", "json16"; -1 when unknown. */
int audio_encoding_parse(const char *s, size_t len);
const char *audio_encoding_name(audio_encoding_t e);

/* ================================================================ jobs */

typedef struct audio_job_s audio_job_t;

/* What a job builds besides the PCM. */
enum {
  AUDIO_OUT_MESSAGES = 1, /* every audio_encoding_t, as message data */
  AUDIO_OUT_WAV = 2,      /* a WAV file */
  AUDIO_OUT_OGG = 4,      /* an Ogg Opus file */
};

typedef struct audio_job_limits_s {
  int max_queued;       /* jobs waiting or running at once, process-wide (<= 256) */
  int concurrency;      /* renders running at once; the others wait on a pool thread
                         * (so the pool needs max_queued threads beyond its usual 4) */
  double timeout;       /* s of wall time a render may take (<= AUDIO_DURATION_LIMIT) */
  int opus_bitrate;     /* bits per second */
  int outputs;          /* AUDIO_OUT_* */
} audio_job_limits_t;

typedef struct audio_job_result_s {
  int status;                    /* 0, -ETIMEDOUT, -ENOENT/-EINVAL (samples), ... */
  const audio_pcm_t *pcm;        /* the rendered audio */
  /* AUDIO_OUT_MESSAGES: the message data for each encoding (JSON objects,
   * see docs/PROTOCOL.md) */
  tt_str_t encoded[AUDIO_ENC_COUNT];
  tt_str_t file;                 /* AUDIO_OUT_WAV or AUDIO_OUT_OGG */
  double render_seconds;         /* wall time the render took */
  double encode_seconds;         /* and the encoding */
} audio_job_result_t;

/* Called on `loop`'s thread when the job is done; `result` is borrowed. */
typedef void (*audio_job_cb)(void *ctx, const char *id, const audio_job_result_t *result);

/*
 * Queues a render of `score` (taken over, also on failure) on the thread
 * pool. Returns 0 or -EBUSY when max_queued jobs are already waiting or
 * running. `id` (up to 32 characters) names the job in the encoded messages
 * ("render_id") and in audio_job_info.
 */
int audio_job_submit(uv_loop_t *loop, audio_score_t *score, const char *id, const audio_job_limits_t *limits,
                     audio_job_cb cb, void *ctx);

typedef enum {
  AUDIO_JOB_UNKNOWN,
  AUDIO_JOB_QUEUED,
  AUDIO_JOB_RUNNING,
  AUDIO_JOB_DONE,
  AUDIO_JOB_FAILED,
} audio_job_state_t;

typedef struct audio_job_info_s {
  audio_job_state_t state;
  double progress;         /* 0..1 */
  int status;              /* when failed: the negative errno */
  double duration;         /* s of audio */
  double render_seconds;
} audio_job_info_t;

/* What is known of job `id`: the running ones and the last 256 ended. */
audio_job_info_t audio_job_info(const char *id);
const char *audio_job_state_name(audio_job_state_t s);
/* Jobs waiting or running now, process-wide. */
int audio_jobs_active(void);
/* Shutdown: running renders stop at their next block and waiting ones never
 * start; their callbacks still run, with -ECANCELED. */
void audio_jobs_stop(void);

/* ================================================================ command line */

/* `tutti render PARAMS.json -o OUT.wav|OUT.ogg [options]`: argv[0] is
 * "render". Returns the process's exit status. */
int audio_cli_render(int argc, char **argv);

#endif
