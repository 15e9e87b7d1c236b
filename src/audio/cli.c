/*
 * `tutti render`: the renderer on the command line, for trying parameters
 * and for scripts. A progress bar on a terminal, none when stderr is piped.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audio.h"

static const char cli_usage[] =
    "usage: tutti render PARAMS.json -o OUT.wav|OUT.ogg [options]\n"
    "  PARAMS.json           MusicalParameters (docs/API.md); - reads stdin\n"
    "  -o, --output FILE     .wav (16-bit PCM) or .ogg/.opus (Ogg Opus); - writes WAV to stdout\n"
    "  --format wav|ogg      the output format, whatever the file name\n"
    "  --bitrate N           Opus bitrate, bits per second (default 96000)\n"
    "  --samples-dir DIR     folder of WAV samples the sampler may load\n"
    "  --max-duration S      longest render allowed, seconds (default 600)\n"
    "  --quiet               no progress bar or summary\n";

static void cli_progress(void *ctx, double done) {
  int *last = ctx;
  int pct = (int)(done * 100.0);
  if (pct == *last) return;
  *last = pct;
  char bar[41];
  int fill = pct * 40 / 100;
  for (int i = 0; i < 40; i++) bar[i] = i < fill ? '#' : '.';
  bar[40] = '\0';
  fprintf(stderr, "\rrendering [%s] %3d%%", bar, pct);
  fflush(stderr);
}

static int cli_read_all(const char *path, tt_str_t *out) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (f == NULL) return -errno;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) tt_str_append(out, buf, n);
  int rc = ferror(f) ? -EIO : 0;
  if (f != stdin) fclose(f);
  return rc;
}

static bool cli_ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

int audio_cli_render(int argc, char **argv) {
  const char *in = NULL, *out = NULL, *format = NULL;
  audio_limits_t limits = {.max_duration = AUDIO_DURATION_LIMIT, .sample_rate = 48000, .channels = 2};
  int bitrate = 96000;
  bool quiet = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(cli_usage, stdout);
      return 0;
    } else if (strcmp(a, "--quiet") == 0) {
      quiet = true;
    } else if ((strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) && v) {
      out = v, i++;
    } else if (strcmp(a, "--format") == 0 && v) {
      format = v, i++;
    } else if (strcmp(a, "--bitrate") == 0 && v) {
      bitrate = atoi(v), i++;
      if (bitrate < 6000 || bitrate > 510000) {
        fprintf(stderr, "tutti render: --bitrate must be from 6000 to 510000\n");
        return 2;
      }
    } else if (strcmp(a, "--samples-dir") == 0 && v) {
      limits.samples_dir = v, i++;
    } else if (strcmp(a, "--max-duration") == 0 && v) {
      limits.max_duration = atof(v), i++;
      if (!(limits.max_duration > 0 && limits.max_duration <= AUDIO_DURATION_LIMIT)) {
        fprintf(stderr, "tutti render: --max-duration must be from 0 to %g\n", AUDIO_DURATION_LIMIT);
        return 2;
      }
    } else if (a[0] == '-' && a[1] != '\0') {
      fprintf(stderr, "tutti render: unknown or incomplete option '%s'\n%s", a, cli_usage);
      return 2;
    } else if (in == NULL) {
      in = a;
    } else {
      fprintf(stderr, "tutti render: unexpected argument '%s'\n%s", a, cli_usage);
      return 2;
    }
  }
  if (in == NULL || out == NULL) {
    fputs(cli_usage, stderr);
    return 2;
  }
  bool ogg;
  if (format) ogg = strcmp(format, "ogg") == 0;
  else ogg = cli_ends_with(out, ".ogg") || cli_ends_with(out, ".opus");
  if (format && !ogg && strcmp(format, "wav") != 0) {
    fprintf(stderr, "tutti render: --format must be wav or ogg\n");
    return 2;
  }

  tt_str_t params = {0};
  int rc = cli_read_all(in, &params);
  if (rc != 0) {
    fprintf(stderr, "tutti render: cannot read %s: %s\n", in, strerror(-rc));
    tt_str_free(&params);
    return 1;
  }
  audio_score_t *score;
  audio_param_errors_t errs;
  rc = audio_params_parse(params.data ? params.data : "", params.len, &limits, &score, &errs);
  tt_str_free(&params);
  if (rc != 0) {
    for (size_t i = 0; i < TT_MIN(errs.count, AUDIO_PARAM_ERRORS_MAX); i++)
      fprintf(stderr, "tutti render: %s %s\n", errs.list[i].field[0] ? errs.list[i].field : "parameters",
              errs.list[i].message);
    if (errs.count > AUDIO_PARAM_ERRORS_MAX)
      fprintf(stderr, "tutti render: and %zu more\n", errs.count - AUDIO_PARAM_ERRORS_MAX);
    return 2;
  }

  bool bar = !quiet && isatty(STDERR_FILENO);
  int last = -1;
  audio_pcm_t pcm;
  uint64_t t0 = tt_mono_ns();
  rc = audio_render(score, &pcm, bar ? cli_progress : NULL, &last, NULL);
  double secs = (double)(tt_mono_ns() - t0) / 1e9;
  if (bar) fputs("\n", stderr);
  audio_score_free(score);
  if (rc != 0) {
    fprintf(stderr, "tutti render: the render failed: %s\n",
            rc == -ENOENT ? "a sample is not in the samples folder" : strerror(-rc));
    return 1;
  }
  tt_str_t file = {0};
  if (ogg) rc = audio_encode_opus(&pcm, bitrate, &file);
  else audio_encode_wav(&pcm, &file);
  double audio_s = (double)pcm.frames / pcm.sample_rate;
  audio_pcm_free(&pcm);
  if (rc != 0) {
    fprintf(stderr, "tutti render: Opus encoding failed\n");
    tt_str_free(&file);
    return 1;
  }
  FILE *f = strcmp(out, "-") == 0 ? stdout : fopen(out, "wb");
  if (f == NULL || fwrite(file.data, 1, file.len, f) != file.len || (f != stdout && fclose(f) != 0)) {
    fprintf(stderr, "tutti render: cannot write %s: %s\n", out, strerror(errno));
    tt_str_free(&file);
    return 1;
  }
  if (f == stdout) fflush(stdout);
  if (!quiet)
    fprintf(stderr, "tutti render: %.2f s of audio in %.3f s (%.0fx real time) -> %s (%zu bytes, %s)\n", audio_s,
            secs, secs > 0 ? audio_s / secs : 0.0, out, file.len, ogg ? "Ogg Opus" : "WAV");
  tt_str_free(&file);
  return 0;
}
