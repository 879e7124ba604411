/* The seed tutorial's IPC producer in C: COUNT FloatVectors of 100 simulated sensor readings,
 * written in place in the channel, for any consumer (C, Python or Bun) on the same channel.
 *   producer [name] [count] [capacity]
 *   name without "ipc://" (default sensor_data), count default 1000, capacity default 4 MiB
 *   (peers must agree on it: the Bun examples use 4 MiB)
 * Build: see examples/c/README.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "layout.h" /* PSY_TYPE_FLOAT_VECTOR */
#include "psyne.h"

#define FLOATS 100
#define STALL_LIMIT_MS 30000 /* give up if the consumer frees no space for this long */

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "sensor_data";
  long count = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
  uint32_t capacity = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 4u << 20;

  int32_t err = 0;
  psy_channel *ch = psy_open(name, capacity, PSY_SPSC, 0600, PSY_CREATE_OR_ATTACH, &err);
  if (!ch) {
    fprintf(stderr, "producer: psy_open(%s) failed (%d): %s\n", name, err, psy_last_error());
    return 1;
  }
  printf("Producer started, sending sensor data...\n");
  fflush(stdout);

  const uint32_t length = FLOATS * sizeof(float);
  for (long i = 0; i < count; ++i) {
    int32_t idx;
    int waited_ms = 0;
    while ((idx = psy_claim(ch, length, PSY_TYPE_FLOAT_VECTOR)) == PSY_E_FULL) {
      /* no room: sleep until the consumer releases enough (0 may be spurious: claim again) */
      int32_t rc = psy_wait(ch, PSY_WAIT_SPACE, length, 1000);
      if (rc == PSY_E_TIMEOUT && (waited_ms += 1000) >= STALL_LIMIT_MS) {
        fprintf(stderr, "producer: no space for %d ms at message %ld; is a consumer running?\n", waited_ms, i);
        psy_close(ch);
        return 1;
      }
      if (rc < 0 && rc != PSY_E_TIMEOUT && rc != PSY_E_INTERRUPTED) {
        fprintf(stderr, "producer: psy_wait failed (%d): %s\n", rc, psy_last_error());
        psy_close(ch);
        return 1;
      }
    }
    if (idx < 0) {
      fprintf(stderr, "producer: psy_claim failed (%d): %s\n", idx, psy_last_error());
      psy_close(ch);
      return 1;
    }
    /* payloads are 16-byte aligned: write the floats in place, no copy */
    float *data = (float *)psy_payload(ch, (uint32_t)idx);
    for (int j = 0; j < FLOATS; ++j) data[j] = (float)(sin(i * 0.1) * cos(j * 0.05));
    int32_t rc = psy_commit(ch, (uint32_t)idx);
    if (rc < 0) {
      fprintf(stderr, "producer: psy_commit failed (%d): %s\n", rc, psy_last_error());
      psy_close(ch);
      return 1;
    }
  }

  printf("Producer finished\n");
  /* the segment stays while it holds messages nobody received yet */
  int32_t rc = psy_close(ch);
  if (rc < 0) {
    fprintf(stderr, "producer: psy_close failed (%d): %s\n", rc, psy_last_error());
    return 1;
  }
  return 0;
}
