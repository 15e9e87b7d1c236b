/*
 * Render jobs on the libuv thread pool: bounded in number process-wide and
 * in wall time each, with a small registry so that clients can ask how a
 * job is going. The callback runs on the submitting loop's thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "audio.h"

/* ================================================================ registry */

#define REGISTRY_SIZE 512 /* >= 2 * the most jobs that may be active */
#define MAX_ACTIVE 256

typedef struct slot_s {
  char id[33];
  audio_job_state_t state;
  double progress;
  int status;
  double duration;
  double render_seconds;
} slot_t;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t render_turn = PTHREAD_COND_INITIALIZER;
static int rendering; /* renders running now; under registry_lock */
static atomic_bool stopping;
static slot_t registry[REGISTRY_SIZE];
static size_t registry_next;
static int active;

static bool slot_active(const slot_t *s) { return s->state == AUDIO_JOB_QUEUED || s->state == AUDIO_JOB_RUNNING; }

/* Takes a slot for a new job, or NULL when `max` are active. Locked. */
static slot_t *slot_take(const char *id, double duration, int max) {
  if (active >= TT_MIN(max, MAX_ACTIVE)) return NULL;
  slot_t *s;
  do {
    s = &registry[registry_next];
    registry_next = (registry_next + 1) % REGISTRY_SIZE;
  } while (slot_active(s));
  memset(s, 0, sizeof(*s));
  snprintf(s->id, sizeof(s->id), "%s", id);
  s->state = AUDIO_JOB_QUEUED;
  s->duration = duration;
  active++;
  return s;
}

audio_job_info_t audio_job_info(const char *id) {
  audio_job_info_t info = {.state = AUDIO_JOB_UNKNOWN};
  pthread_mutex_lock(&registry_lock);
  for (size_t i = 0; i < REGISTRY_SIZE; i++) {
    const slot_t *s = &registry[i];
    if (s->state != AUDIO_JOB_UNKNOWN && strcmp(s->id, id) == 0) {
      info = (audio_job_info_t){.state = s->state,
                                .progress = s->progress,
                                .status = s->status,
                                .duration = s->duration,
                                .render_seconds = s->render_seconds};
      break;
    }
  }
  pthread_mutex_unlock(&registry_lock);
  return info;
}

const char *audio_job_state_name(audio_job_state_t s) {
  switch (s) {
  case AUDIO_JOB_QUEUED: return "queued";
  case AUDIO_JOB_RUNNING: return "running";
  case AUDIO_JOB_DONE: return "done";
  case AUDIO_JOB_FAILED: return "failed";
  default: return "unknown";
  }
}

int audio_jobs_active(void) {
  pthread_mutex_lock(&registry_lock);
  int n = active;
  pthread_mutex_unlock(&registry_lock);
  return n;
}

/* ================================================================ jobs */

struct audio_job_s {
  uv_work_t work;
  audio_score_t *score;
  char id[33];
  audio_job_limits_t limits;
  audio_job_cb cb;
  void *ctx;
  slot_t *slot;
  audio_pcm_t pcm;
  audio_job_result_t result;
  atomic_bool cancel;
  uint64_t deadline_ns;
  uint64_t last_progress_ns;
};

static void job_progress(void *ctx, double done) {
  audio_job_t *job = ctx;
  uint64_t now = tt_mono_ns();
  if (now > job->deadline_ns || atomic_load(&stopping)) atomic_store(&job->cancel, true);
  if (now - job->last_progress_ns < 50000000 && done < 1) return; /* 20 updates a second at most */
  job->last_progress_ns = now;
  pthread_mutex_lock(&registry_lock);
  job->slot->progress = done;
  pthread_mutex_unlock(&registry_lock);
}

/* A binary encoding as message data: its description and the bytes in base64. */
static void encode_binary_message(const audio_job_t *job, audio_encoding_t enc, const tt_str_t *bytes,
                                  tt_str_t *out) {
  const audio_pcm_t *pcm = &job->pcm;
  tt_str_reserve(out, bytes->len / 3 * 4 + 512);
  tt_str_appendf(out,
                 "{\"render_id\":\"%s\",\"encoding\":\"%s\",\"mimeType\":\"%s\",\"sampleRate\":%d,\"length\":%zu,"
                 "\"duration\":%.6f,\"numberOfChannels\":%d,\"bytes\":%zu,\"data\":\"",
                 job->id, audio_encoding_name(enc),
                 enc == AUDIO_ENC_OPUS ? "audio/ogg; codecs=opus" : "audio/pcm; format=s16le", pcm->sample_rate,
                 pcm->frames, (double)pcm->frames / pcm->sample_rate, pcm->channels, bytes->len);
  tt_str_append_base64(out, bytes->data, bytes->len);
  tt_str_appends(out, "\"}");
}

static int job_encode(audio_job_t *job) {
  audio_job_result_t *r = &job->result;
  const audio_pcm_t *pcm = &job->pcm;
  int rc = 0;
  tt_str_t opus = {0};
  if (job->limits.outputs & (AUDIO_OUT_MESSAGES | AUDIO_OUT_OGG)) {
    rc = audio_encode_opus(pcm, job->limits.opus_bitrate, &opus);
    if (rc) goto out;
  }
  if (job->limits.outputs & AUDIO_OUT_MESSAGES) {
    encode_binary_message(job, AUDIO_ENC_OPUS, &opus, &r->encoded[AUDIO_ENC_OPUS]);
    tt_str_t pcm16 = {0};
    audio_encode_pcm16(pcm, &pcm16);
    encode_binary_message(job, AUDIO_ENC_PCM16, &pcm16, &r->encoded[AUDIO_ENC_PCM16]);
    tt_str_free(&pcm16);
    char extra[96];
    snprintf(extra, sizeof(extra), "\"render_id\":\"%s\",\"encoding\":\"json\"", job->id);
    audio_encode_serialized(pcm, false, extra, &r->encoded[AUDIO_ENC_JSON]);
    snprintf(extra, sizeof(extra), "\"render_id\":\"%s\",\"encoding\":\"json16\"", job->id);
    audio_encode_serialized(pcm, true, extra, &r->encoded[AUDIO_ENC_JSON16]);
  }
  if (job->limits.outputs & AUDIO_OUT_WAV) audio_encode_wav(pcm, &r->file);
  else if (job->limits.outputs & AUDIO_OUT_OGG) tt_str_append(&r->file, opus.data, opus.len);
out:
  tt_str_free(&opus);
  return rc;
}

static void job_work(uv_work_t *w) {
  audio_job_t *job = tt_container_of(w, audio_job_t, work);
  pthread_mutex_lock(&registry_lock);
  while (rendering >= TT_MAX(1, job->limits.concurrency) && !atomic_load(&stopping))
    pthread_cond_wait(&render_turn, &registry_lock);
  rendering++;
  job->slot->state = AUDIO_JOB_RUNNING;
  pthread_mutex_unlock(&registry_lock);

  uint64_t t0 = tt_mono_ns();
  job->deadline_ns = t0 + (uint64_t)(job->limits.timeout * 1e9);
  int rc = -ECANCELED;
  if (!atomic_load(&stopping)) rc = audio_render(job->score, &job->pcm, job_progress, job, &job->cancel);
  if (rc == -ECANCELED && !atomic_load(&stopping)) rc = -ETIMEDOUT;
  uint64_t t1 = tt_mono_ns();
  if (rc == 0) rc = job_encode(job);
  job->result.status = rc;
  job->result.pcm = &job->pcm;
  job->result.render_seconds = (double)(t1 - t0) / 1e9;
  job->result.encode_seconds = (double)(tt_mono_ns() - t1) / 1e9;
  pthread_mutex_lock(&registry_lock);
  rendering--;
  pthread_cond_signal(&render_turn);
  pthread_mutex_unlock(&registry_lock);
}

static void job_done(uv_work_t *w, int status) {
  audio_job_t *job = tt_container_of(w, audio_job_t, work);
  if (status == UV_ECANCELED) job->result.status = -ECANCELED;
  pthread_mutex_lock(&registry_lock);
  job->slot->state = job->result.status ? AUDIO_JOB_FAILED : AUDIO_JOB_DONE;
  job->slot->status = job->result.status;
  job->slot->progress = job->result.status ? job->slot->progress : 1;
  job->slot->render_seconds = job->result.render_seconds;
  active--;
  pthread_mutex_unlock(&registry_lock);

  job->cb(job->ctx, job->id, &job->result);
  for (int i = 0; i < AUDIO_ENC_COUNT; i++) tt_str_free(&job->result.encoded[i]);
  tt_str_free(&job->result.file);
  audio_pcm_free(&job->pcm);
  audio_score_free(job->score);
  free(job);
}

void audio_jobs_stop(void) {
  atomic_store(&stopping, true);
  pthread_mutex_lock(&registry_lock);
  pthread_cond_broadcast(&render_turn);
  pthread_mutex_unlock(&registry_lock);
}

int audio_job_submit(uv_loop_t *loop, audio_score_t *score, const char *id, const audio_job_limits_t *limits,
                     audio_job_cb cb, void *ctx) {
  pthread_mutex_lock(&registry_lock);
  slot_t *slot = slot_take(id, score->duration, limits->max_queued);
  pthread_mutex_unlock(&registry_lock);
  if (!slot) {
    audio_score_free(score);
    return -EBUSY;
  }
  audio_job_t *job = tt_calloc(1, sizeof(*job));
  job->score = score;
  snprintf(job->id, sizeof(job->id), "%s", id);
  job->limits = *limits;
  job->cb = cb;
  job->ctx = ctx;
  job->slot = slot;
  atomic_init(&job->cancel, false);
  int rc = uv_queue_work(loop, &job->work, job_work, job_done);
  if (rc) { /* cannot happen with a valid loop; undo */
    pthread_mutex_lock(&registry_lock);
    slot->state = AUDIO_JOB_FAILED;
    active--;
    pthread_mutex_unlock(&registry_lock);
    audio_score_free(score);
    free(job);
    return rc;
  }
  return 0;
}
