/*
 * Configuration: one table of settings, read from defaults, the JSON config
 * file, TUTTI_* environment variables and command-line flags, in rising
 * precedence. Each setting is named once; its flag, variable and JSON key are
 * derived from that name (history_size: --history-size, TUTTI_HISTORY_SIZE,
 * "history_size").
 */
#include "core.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TUTTI_DEFAULT_WEB_ROOT
#define TUTTI_DEFAULT_WEB_ROOT "web"
#endif

typedef enum { TT_SET_STR, TT_SET_INT, TT_SET_I64, TT_SET_DBL } tt_set_type_t;

typedef struct {
  const char *name;   /* snake_case */
  tt_set_type_t type;
  size_t offset;      /* into tt_config_t */
  double min, max;    /* numbers only */
  const char *def;    /* default as text; NULL: unset */
  const char *help;
} tt_setting_t;

#define F(field) offsetof(tt_config_t, field)
static const tt_setting_t tt__settings[] = {
    {"host", TT_SET_STR, F(host), 0, 0, "127.0.0.1", "address to listen on"},
    {"port", TT_SET_INT, F(port), 0, 65535, "8080", "TCP port (0: any free port)"},
    {"workers", TT_SET_INT, F(workers), 1, 256, NULL, "event-loop threads (default: number of CPUs)"},
    {"config", TT_SET_STR, F(config_file), 0, 0, NULL, "JSON configuration file"},
    {"log_level", TT_SET_STR, F(log_level), 0, 0, "info", "debug, info, warn or error"},
    {"engine", TT_SET_STR, F(engine), 0, 0, "memory", "channel engine: memory or redis"},
    {"redis_url", TT_SET_STR, F(redis_url), 0, 0, "redis://127.0.0.1:6379/0", "Redis for --engine redis"},
    {"redis_bridge", TT_SET_STR, F(redis_bridge), 0, 0, NULL,
     "plain Redis channels relayed into tutti channels: redis-channel=channel,..."},
    {"redis_meta_ttl", TT_SET_DBL, F(redis_meta_ttl), 1, 31536000, "604800",
     "seconds an idle channel keeps its epoch in Redis"},
    {"presence_ttl", TT_SET_DBL, F(presence_ttl), 1, 86400, "30",
     "seconds a presence entry lives without renewal (a dead node's members vanish after it)"},
    {"api_key", TT_SET_STR, F(api_key), 0, 0, NULL, "require Authorization: Bearer KEY to publish"},
    {"cors_origins", TT_SET_STR, F(cors_origins), 0, 0, NULL, "allowed CORS origins, comma-separated, or *"},
    {"web_root", TT_SET_STR, F(web_root), 0, 0, TUTTI_DEFAULT_WEB_ROOT, "folder of static files served at /"},
    {"heartbeat_interval", TT_SET_DBL, F(heartbeat_interval), 0.05, 3600, "15", "seconds between SSE heartbeats"},
    {"stale_timeout", TT_SET_DBL, F(stale_timeout), 0.1, 86400, "300",
     "seconds a connection may make no write progress before it is dropped"},
    {"header_timeout", TT_SET_DBL, F(header_timeout), 0.1, 3600, "10", "seconds to receive a request's headers"},
    {"drain_timeout", TT_SET_DBL, F(drain_timeout), 0, 600, "5", "seconds to flush clients on shutdown"},
    {"history_size", TT_SET_INT, F(history_size), 0, 1000000, "100", "messages kept per channel for recovery"},
    {"history_ttl", TT_SET_DBL, F(history_ttl), 1, 31536000, "300", "seconds a message stays in history"},
    {"sse_retry", TT_SET_INT, F(sse_retry), 0, 3600000, "2000", "reconnection delay hint sent to SSE clients, ms"},
    {"max_channels_per_stream", TT_SET_INT, F(max_channels_per_stream), 1, 256, "16",
     "channels one SSE stream may subscribe to"},
    {"max_connections", TT_SET_INT, F(max_connections), 1, 10000000, "100000", "open connections per server"},
    {"metrics_buoy_names", TT_SET_INT, F(metrics_buoy_names), 0, 1, "1",
     "1: /metrics also has sse_connections_total and sse_broadcast_latency_ms (which promtool's lint flags)"},
    {"client_publish", TT_SET_STR, F(client_publish), 0, 0, NULL,
     "channel prefixes WebSocket clients may publish to, comma-separated, or *"},
    {"ws_max_message", TT_SET_I64, F(ws_max_message), 125, 1073741824, "1048576", "largest WebSocket message, bytes"},
    {"ws_ping_interval", TT_SET_DBL, F(ws_ping_interval), 0.05, 3600, "30",
     "seconds of silence before the server pings a WebSocket client"},
    {"ws_ping_timeout", TT_SET_DBL, F(ws_ping_timeout), 0.05, 3600, "10", "seconds a pinged client has to answer"},
    {"ws_deflate", TT_SET_INT, F(ws_deflate), 0, 1, "1", "1: accept permessage-deflate"},
    {"ws_deflate_threshold", TT_SET_INT, F(ws_deflate_threshold), 0, 1073741824, "256",
     "smaller WebSocket messages are sent uncompressed, bytes"},
    {"ws_rate", TT_SET_INT, F(ws_rate), 0, 1000000, "1000",
     "WebSocket messages per second per connection (0: no limit); rooms have their own --room-rate"},
    {"ws_burst", TT_SET_INT, F(ws_burst), 1, 1000000, "2000", "WebSocket messages a connection may send at once"},
    {"room_grace", TT_SET_DBL, F(room_grace), 0.1, 86400, "60", "seconds a jam room lives with nobody in it"},
    {"room_max_participants", TT_SET_INT, F(room_max_participants), 1, 1000, "16",
     "participants per room unless its creator says otherwise"},
    {"room_rate", TT_SET_INT, F(room_rate), 0, 100000, "100", "events per second a participant may relay (0: no limit)"},
    {"room_burst", TT_SET_INT, F(room_burst), 1, 100000, "100", "events a participant may relay at once"},
    {"room_max_payload", TT_SET_I64, F(room_max_payload), 16, 1048576, "16384", "largest event payload, bytes"},
    {"recording_size", TT_SET_INT, F(recording_size), 0, 1000000, "10000", "events a room's recording keeps"},
    {"recording_ttl", TT_SET_DBL, F(recording_ttl), 1, 31536000, "3600", "seconds a recorded event is kept"},
    {"room_code_words", TT_SET_STR, F(room_code_words), 0, 0, NULL,
     "words room codes are made of, comma-separated (MUSIC,JAM,BEAT,...)"},
    {"room_code_digits", TT_SET_INT, F(room_code_digits), 1, 8, "2", "digits of the number in a room code"},
    {"render_max_duration", TT_SET_DBL, F(render_max_duration), 0.1, 600, "60", "longest render, seconds of audio"},
    {"render_queue", TT_SET_INT, F(render_queue), 1, 256, "16", "render jobs waiting or running at once"},
    {"render_concurrency", TT_SET_INT, F(render_concurrency), 1, 64, "1", "renders running at once (thread pool)"},
    {"render_timeout", TT_SET_DBL, F(render_timeout), 1, 600, "120", "seconds of wall time a render may take"},
    {"render_sample_rate", TT_SET_INT, F(render_sample_rate), 44100, 48000, "48000",
     "sample rate of renders that name none: 44100 or 48000"},
    {"render_channels", TT_SET_INT, F(render_channels), 1, 2, "2", "channels of renders that name none"},
    {"opus_bitrate", TT_SET_INT, F(opus_bitrate), 6000, 510000, "96000", "Opus bitrate of renders, bits per second"},
    {"samples_dir", TT_SET_STR, F(samples_dir), 0, 0, NULL, "folder of WAV samples the sampler may load by name"},
    {"max_body", TT_SET_I64, F(max_body), 0, 1073741824, "1048576", "largest request body, bytes"},
    {"max_queue", TT_SET_I64, F(max_queue), 1024, 1073741824, "4194304",
     "largest output queue per connection, bytes; a slower client is dropped"},
};
#undef F

/* ================================================================ setting values */

static int tt__set(tt_config_t *cfg, const tt_setting_t *s, const char *value, const char *source) {
  void *field = (char *)cfg + s->offset;
  if (s->type == TT_SET_STR) {
    char **p = field;
    free(*p);
    *p = strdup(value);
    return 0;
  }
  errno = 0;
  char *end = NULL;
  double d = strtod(value, &end);
  bool ok = errno == 0 && end != value && *end == '\0' && isfinite(d) && !isspace((unsigned char)value[0]);
  if (ok && s->type != TT_SET_DBL && d != floor(d)) ok = false;
  if (!ok || d < s->min || d > s->max) {
    fprintf(stderr, "tutti: invalid value for setting '%s' (from %s): '%s'; expected %s from %g to %g\n", s->name,
            source, value, s->type == TT_SET_DBL ? "a number" : "an integer", s->min, s->max);
    return -EINVAL;
  }
  switch (s->type) {
    case TT_SET_INT: *(int *)field = (int)d; break;
    case TT_SET_I64: *(int64_t *)field = (int64_t)d; break;
    case TT_SET_DBL: *(double *)field = d; break;
    default: break;
  }
  return 0;
}

static const tt_setting_t *tt__find(const char *name, size_t len, bool dashes) {
  for (size_t i = 0; i < TT_ARRAY_SIZE(tt__settings); i++) {
    const char *n = tt__settings[i].name;
    if (strlen(n) != len) continue;
    size_t j = 0;
    for (; j < len; j++) {
      char c = name[j];
      if (dashes && c == '-') c = '_';
      if (c != n[j]) break;
    }
    if (j == len) return &tt__settings[i];
  }
  return NULL;
}

/* ================================================================ sources */

static int tt__load_file(tt_config_t *cfg, const char *path) {
  json_error_t err;
  json_t *root = json_load_file(path, 0, &err);
  if (root == NULL) {
    fprintf(stderr, "tutti: invalid value for setting 'config': cannot read '%s': %s (line %d)\n", path, err.text,
            err.line);
    return -EINVAL;
  }
  if (!json_is_object(root)) {
    fprintf(stderr, "tutti: invalid value for setting 'config': '%s' must hold a JSON object\n", path);
    json_decref(root);
    return -EINVAL;
  }
  int rc = 0;
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    const tt_setting_t *s = tt__find(key, strlen(key), false);
    if (s == NULL || s->offset == offsetof(tt_config_t, config_file)) {
      fprintf(stderr, "tutti: unknown setting '%s' in config file '%s'\n", key, path);
      rc = -EINVAL;
      break;
    }
    char num[64];
    const char *text;
    if (json_is_string(val)) {
      text = json_string_value(val);
    } else if (json_is_integer(val)) {
      snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(val));
      text = num;
    } else if (json_is_real(val)) {
      snprintf(num, sizeof(num), "%.17g", json_real_value(val));
      text = num;
    } else {
      fprintf(stderr, "tutti: invalid value for setting '%s' in config file '%s': expected a string or number\n",
              key, path);
      rc = -EINVAL;
      break;
    }
    char source[300];
    snprintf(source, sizeof(source), "config file %s", path);
    if ((rc = tt__set(cfg, s, text, source)) != 0) break;
  }
  json_decref(root);
  return rc;
}

static int tt__load_env(tt_config_t *cfg) {
  for (size_t i = 0; i < TT_ARRAY_SIZE(tt__settings); i++) {
    const tt_setting_t *s = &tt__settings[i];
    char var[64] = "TUTTI_";
    size_t n = strlen(var);
    for (const char *p = s->name; *p && n < sizeof(var) - 1; p++) var[n++] = (char)toupper((unsigned char)*p);
    var[n] = '\0';
    const char *v = getenv(var);
    if (v != NULL && tt__set(cfg, s, v, var) != 0) return -EINVAL;
  }
  return 0;
}

static void tt__usage(FILE *out) {
  fprintf(out,
          "tutti %s: a real-time streaming server for music applications\n\n"
          "usage: tutti [options]\n"
          "       tutti render PARAMS.json -o OUT.wav|OUT.ogg   (tutti render --help)\n\n"
          "Every option can also be set as TUTTI_<NAME> in the environment or as \"<name>\"\n"
          "in the JSON file given by --config; flags win over the environment, which wins\n"
          "over the file.\n\n",
          TUTTI_VERSION);
  for (size_t i = 0; i < TT_ARRAY_SIZE(tt__settings); i++) {
    const tt_setting_t *s = &tt__settings[i];
    char flag[64];
    size_t n = 0;
    for (const char *p = s->name; *p && n < sizeof(flag) - 1; p++) flag[n++] = *p == '_' ? '-' : *p;
    flag[n] = '\0';
    fprintf(out, "  --%-26s %s", flag, s->help);
    if (s->def != NULL) fprintf(out, " [%s]", s->def);
    fputc('\n', out);
  }
  fprintf(out, "  --%-26s %s\n  --%-26s %s\n", "help", "print this help", "version", "print the version");
}

/* ================================================================ entry point */

int tt_config_load(tt_config_t *cfg, int argc, char **argv) {
  memset(cfg, 0, sizeof(*cfg));
  for (size_t i = 0; i < TT_ARRAY_SIZE(tt__settings); i++) {
    if (tt__settings[i].def != NULL) tt__set(cfg, &tt__settings[i], tt__settings[i].def, "default");
  }
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  cfg->workers = ncpu > 0 ? (int)TT_MIN(ncpu, 256) : 1;

  /* First pass over the flags: help, version, and where the config file is. */
  const char *file = getenv("TUTTI_CONFIG");
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      tt__usage(stdout);
      return 1;
    }
    if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
      printf("tutti %s\n", TUTTI_VERSION);
      return 1;
    }
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) file = argv[i + 1];
    if (strncmp(argv[i], "--config=", 9) == 0) file = argv[i] + 9;
  }
  if (file != NULL && tt__load_file(cfg, file) != 0) return 2;
  if (tt__load_env(cfg) != 0) return 2;

  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0) {
      fprintf(stderr, "tutti: unexpected argument '%s' (see tutti --help)\n", arg);
      return 2;
    }
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const tt_setting_t *s = tt__find(name, len, true);
    if (s == NULL) {
      fprintf(stderr, "tutti: unknown option '%.*s' (see tutti --help)\n", (int)(len + 2), arg);
      return 2;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (value == NULL) {
      if (i + 1 >= argc) {
        fprintf(stderr, "tutti: option '--%.*s' (setting '%s') needs a value\n", (int)len, name, s->name);
        return 2;
      }
      value = argv[++i];
    }
    if (tt__set(cfg, s, value, "command line") != 0) return 2;
  }

  tt_log_level_t level;
  if (tt_log_level_parse(cfg->log_level, &level) != 0) {
    fprintf(stderr, "tutti: invalid value for setting 'log_level': '%s'; expected debug, info, warn or error\n",
            cfg->log_level);
    return 2;
  }
  tt_log_level = level;
  if (strcmp(cfg->engine, "memory") != 0 && strcmp(cfg->engine, "redis") != 0) {
    fprintf(stderr, "tutti: invalid value for setting 'engine': '%s'; expected memory or redis\n", cfg->engine);
    return 2;
  }
  if (cfg->render_sample_rate != 44100 && cfg->render_sample_rate != 48000) {
    fprintf(stderr, "tutti: invalid value for setting 'render_sample_rate': '%d'; expected 44100 or 48000\n",
            cfg->render_sample_rate);
    return 2;
  }
  if (cfg->api_key != NULL && cfg->api_key[0] == '\0') {
    free(cfg->api_key);
    cfg->api_key = NULL;
  }
  return 0;
}

void tt_config_free(tt_config_t *cfg) {
  for (size_t i = 0; i < TT_ARRAY_SIZE(tt__settings); i++) {
    if (tt__settings[i].type == TT_SET_STR) {
      char **p = (char **)((char *)cfg + tt__settings[i].offset);
      free(*p);
      *p = NULL;
    }
  }
}
