/* What the fuzz targets share: an invariant check that aborts (so libFuzzer
 * keeps the input) after naming the invariant. */
#ifndef TUTTI_FUZZ_H
#define TUTTI_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                            \
  do {                                                                                              \
    if (!(cond)) {                                                                                  \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                 \
      abort();                                                                                      \
    }                                                                                               \
  } while (0)

#endif
