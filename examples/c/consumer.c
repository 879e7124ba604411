/* The seed tutorial's IPC consumer in C: receives COUNT FloatVectors from any producer (C, Python
 * or Bun) on the same channel, prints a running average every 100 and checks every value.
 *   consumer [name] [count] [capacity]
 *   name without "ipc://" (default sensor_data), count default 1000, capacity default 4 MiB
 *   (peers must agree on it: the Bun examples use 4 MiB)
 * Exits 1 if a message is wrong or nothing arrives for 30 s. Build: see examples/c/README.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "layout.h" /* PSY_TYPE_FLOAT_VECTOR */
#include "psyne.h"

#define FLOATS 100
#define IDLE_LIMIT_MS 30000 /* give up if no message arrives for this long */

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "sensor_data";
  long total = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
  uint32_t capacity = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 4u << 20;

  int32_t err = 0;
  psy_channel *ch = psy_open(name, capacity, PSY_SPSC, 0600, PSY_CREATE_OR_ATTACH, &err);
  if (!ch) {
    fprintf(stderr, "consumer: psy_open(%s) failed (%d): %s\n", name, err, psy_last_error());
    return 1;
  }
  printf("Consumer started, processing sensor data...\n");
  fflush(stdout);

  long count = 0, mismatches = 0;
  int idle_ms = 0;
  while (count < total) {
    int32_t idx = psy_poll(ch);
    if (idx == PSY_E_EMPTY) {
      /* nothing yet: sleep until a producer publishes (0 may be spurious: poll again) */
      int32_t rc = psy_wait(ch, PSY_WAIT_DATA, 0, 1000);
      if (rc == PSY_E_TIMEOUT && (idle_ms += 1000) >= IDLE_LIMIT_MS) {
        fprintf(stderr, "consumer: nothing arrived for %d ms after %ld messages\n", idle_ms, count);
        break;
      }
      if (rc < 0 && rc != PSY_E_TIMEOUT && rc != PSY_E_INTERRUPTED) {
        fprintf(stderr, "consumer: psy_wait failed (%d): %s\n", rc, psy_last_error());
        break;
      }
      continue;
    }
    if (idx < 0) {
      fprintf(stderr, "consumer: psy_poll failed (%d): %s\n", idx, psy_last_error());
      break;
    }
    idle_ms = 0;
    const psy_polled_record *rec = psy_polled(ch);
    /* read exactly rec->length bytes at the payload: the record is ours until psy_release */
    const float *data = (const float *)psy_payload(ch, (uint32_t)idx);
    uint32_t n = rec->length / sizeof(float);
    int wrong = rec->type != PSY_TYPE_FLOAT_VECTOR || rec->length != FLOATS * sizeof(float);
    double sum = 0;
    for (uint32_t j = 0; j < n; ++j) {
      sum += data[j];
      if (!wrong && data[j] != (float)(sin(count * 0.1) * cos(j * 0.05))) wrong = 1;
    }
    if (wrong) mismatches++;
    if (count % 100 == 0) printf("Processed %ld messages, latest avg: %.6g\n", count, n ? sum / n : 0.0);
    count++;
    int32_t rc = psy_release(ch);
    if (rc < 0) {
      fprintf(stderr, "consumer: psy_release failed (%d): %s\n", rc, psy_last_error());
      break;
    }
  }

  int32_t rc = psy_close(ch);
  if (rc < 0) fprintf(stderr, "consumer: psy_close failed (%d): %s\n", rc, psy_last_error());
  printf("Consumer finished\n");
  if (mismatches == 0)
    printf("received %ld/%ld in order, every value checked\n", count, total);
  else
    printf("received %ld/%ld in order, %ld messages wrong\n", count, total, mismatches);
  return count == total && mismatches == 0 && rc >= 0 ? 0 : 1;
}
