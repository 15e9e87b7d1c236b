/* What the transports share. */
#include <string.h>

#include "transport.h"

void transport_members_json(tt_str_t *out, const engine_member_t *members, size_t count) {
  tt_str_append(out, "[", 1);
  for (size_t i = 0; i < count; i++) {
    tt_str_appends(out, i ? ",{\"id\":\"" : "{\"id\":\"");
    tt_str_append_json(out, members[i].id, strlen(members[i].id));
    tt_str_appends(out, "\",\"info\":");
    tt_str_appends(out, members[i].info[0] ? members[i].info : "null");
    tt_str_append(out, "}", 1);
  }
  tt_str_append(out, "]", 1);
}
