/* Plain C single-producer single-consumer ring between two processes over shared memory: the
 * hardware limit the throughput benchmark compares psyne with. The parent produces, a forked child
 * consumes; fixed-size slots (the message size rounded up to 64 bytes), one cache line per cursor,
 * each side caching the other's cursor and reloading it only when the ring looks full/empty, a
 * release store of its own cursor per message. Same work per message as the TypeScript peers
 * (bench/peers/pattern.ts): the producer copies window `seq % 61` of the same pseudo-random pool
 * and stores seq in bytes 0..3; the consumer checks seq and memcmp()s the rest.
 * Prints a Report (pattern.ts) as one JSON line; times from the first message to the last.
 * Build: zig cc -O2 -o c-ring c-ring.c
 * Run: c-ring SIZE COUNT RING_BYTES TIMEOUT_S */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WINDOWS 61

struct cursors {
  _Alignas(64) uint64_t tail; /* messages published, written by the producer */
  _Alignas(64) uint64_t head; /* messages consumed, written by the consumer */
  _Alignas(64) uint8_t data[];
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s SIZE COUNT RING_BYTES TIMEOUT_S\n", argv[0]);
    return 2;
  }
  uint32_t size = (uint32_t)atol(argv[1]);
  uint64_t count = (uint64_t)atoll(argv[2]);
  uint64_t ring = (uint64_t)atoll(argv[3]);
  if (size < 8) return fprintf(stderr, "c-ring: size %u < 8\n", size), 2;
  alarm((unsigned)atoi(argv[4])); /* a hang ends with SIGALRM */

  /* the pool of pattern.ts: xorshift32 over the same alphabet */
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t pool_len = size + 8 * WINDOWS;
  uint8_t *pool = malloc(pool_len);
  uint32_t x = 0x9e3779b9u;
  for (size_t i = 0; i < pool_len; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    pool[i] = (uint8_t)alphabet[x & 63];
  }

  uint64_t slot = (size + 63) & ~(uint64_t)63, slots = ring / slot;
  if (slots < 2) return fprintf(stderr, "c-ring: ring of %llu bytes holds fewer than 2 slots\n", (unsigned long long)ring), 2;
  struct cursors *sh = mmap(NULL, sizeof *sh + slots * slot, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (!pool || sh == MAP_FAILED) return perror("c-ring: mmap/malloc"), 2;

  pid_t child = fork();
  if (child < 0) return perror("c-ring: fork"), 2;
  if (child == 0) { /* consumer */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    uint64_t head = 0, tail_cache = 0, errors = 0, first_bad = 0, index = 0;
    double t0 = 0;
    while (head < count) {
      if (head == tail_cache) {
        while ((tail_cache = __atomic_load_n(&sh->tail, __ATOMIC_ACQUIRE)) == head) __builtin_ia32_pause();
        if (head == 0) t0 = now_ms();
      }
      const uint8_t *m = sh->data + index * slot;
      uint32_t seq = (uint32_t)head, got;
      memcpy(&got, m, 4);
      if (got != seq || memcmp(m + 4, pool + 8 * (seq % WINDOWS) + 4, size - 4) != 0)
        if (!errors++) first_bad = head;
      if (++index == slots) index = 0;
      __atomic_store_n(&sh->head, ++head, __ATOMIC_RELEASE);
    }
    double elapsed = now_ms() - t0;
    printf("{\"messages\":%llu,\"errors\":%llu,%s%llu%s\"elapsedMs\":%.3f,\"note\":\"%llu slots of %llu bytes\"}\n",
           (unsigned long long)head, (unsigned long long)errors, errors ? "\"firstError\":\"message " : "\"firstBad\":",
           (unsigned long long)first_bad, errors ? "\"," : ",", elapsed, (unsigned long long)slots, (unsigned long long)slot);
    fflush(stdout);
    return 0;
  }

  /* producer */
  uint64_t tail = 0, head_cache = 0, index = 0;
  while (tail < count) {
    if (tail - head_cache == slots)
      while (tail - (head_cache = __atomic_load_n(&sh->head, __ATOMIC_ACQUIRE)) == slots) __builtin_ia32_pause();
    uint8_t *m = sh->data + index * slot;
    uint32_t seq = (uint32_t)tail;
    memcpy(m + 4, pool + 8 * (seq % WINDOWS) + 4, size - 4);
    memcpy(m, &seq, 4); /* little-endian, like pattern.ts */
    if (++index == slots) index = 0;
    __atomic_store_n(&sh->tail, ++tail, __ATOMIC_RELEASE);
  }
  int status = 0;
  if (waitpid(child, &status, 0) < 0) return perror("c-ring: waitpid"), 2;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
