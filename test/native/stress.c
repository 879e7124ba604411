/* Thread stress of the C core: threads in one process, one handle each, every mode, checking every
 * message (intact, none lost, none twice, each producer's order where the mode promises it). Run
 * by test/native.test.ts (built with zig cc) and by scripts/tsan-stress.sh under ThreadSanitizer
 * (gcc: zig 0.11 cannot link TSan). BROADCAST also runs a subscriber that joins and leaves over
 * and over while the producer floods: it must never be lapped.
 *
 *   stress MODE PRODUCERS CONSUMERS MESSAGES [CAPACITY] [MAXLEN] [FLAGS]
 *   FLAGS: w = consumers wait with psy_wait (default: poll and yield), b = batch claim/poll,
 *          j = a joining-and-leaving subscriber (BROADCAST)
 * Exit 0 when every check passed; prints one line either way. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../csrc/psyne.h"

#define MAX_THREADS 16

static char name[64];
static int mode, producers, consumers, waiting, batching, joining;
static uint32_t messages, capacity = 65536, max_len = 512;
static volatile int done_producing, stop_joiner;
static uint8_t *seen[MAX_THREADS]; /* seen[producer][seq]: deliveries counted (per consumer for BROADCAST) */
static int failures;
static uint64_t joins, join_checked;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  if (__atomic_fetch_add(&failures, 1, __ATOMIC_SEQ_CST) < 5) {
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, args);
    fprintf(stderr, " (%s)\n", psy_last_error());
  }
  va_end(args);
}

/* [producer u32][seq u32][len u32][sum u32][bytes derived from producer, seq] */
static uint8_t byte_at(uint32_t producer, uint32_t seq, uint32_t i) { return (uint8_t)((producer * 131u + seq * 7u + i * 13u) ^ (i >> 3)); }
/* varied lengths; batches need one length for all their records */
static uint32_t length_of(uint32_t producer, uint32_t seq) {
  return batching ? 64 : 16 + (seq * 2654435761u + producer * 97u) % (max_len - 15);
}

static void fill(uint8_t *p, uint32_t producer, uint32_t seq, uint32_t len) {
  uint32_t sum = 0;
  for (uint32_t i = 16; i < len; i++) sum += (p[i] = byte_at(producer, seq, i));
  uint32_t head[4] = {producer, seq, len, sum};
  memcpy(p, head, 16);
}

/* 1 if intact; its producer and seq in *producer_out, *seq_out */
static int check(const uint8_t *p, uint32_t len, uint32_t *producer_out, uint32_t *seq_out) {
  uint32_t head[4];
  if (len < 16) return 0;
  memcpy(head, p, 16);
  if (head[2] != len || head[0] >= MAX_THREADS || head[1] >= messages || length_of(head[0], head[1]) != len) return 0;
  uint32_t sum = 0;
  for (uint32_t i = 16; i < len; i++) {
    if (p[i] != byte_at(head[0], head[1], i)) return 0;
    sum += p[i];
  }
  *producer_out = head[0];
  *seq_out = head[1];
  return sum == head[3];
}

static psy_channel *open_channel(void) {
  int32_t err;
  psy_channel *ch = psy_open(name, capacity, mode, 0600, PSY_CREATE_OR_ATTACH, &err);
  if (!ch) {
    fail("psy_open: %d", err);
    exit(2);
  }
  return ch;
}

static void *produce(void *arg) {
  uint32_t id = (uint32_t)(uintptr_t)arg;
  psy_channel *ch = open_channel();
  if (psy_take_role(ch, PSY_ROLE_PRODUCER)) fail("producer role");
  for (uint32_t seq = 0; seq < messages;) {
    uint32_t len = length_of(id, seq);
    if (batching) {
      uint32_t want = messages - seq < 8 ? messages - seq : 8;
      int32_t n = psy_claim_batch(ch, want, len, PSY_TYPE_BYTE_VECTOR);
      if (n > 0) {
        const psy_polled_record *c = psy_claimed(ch);
        for (int32_t k = 0; k < n; k++) fill(psy_payload(ch, c->index + (uint32_t)k * c->span), id, seq + (uint32_t)k, len);
        if (psy_commit(ch, c->index)) fail("commit batch");
        seq += (uint32_t)n;
        continue;
      }
      if (n != PSY_E_FULL) {
        fail("claim batch: %d", n);
        break;
      }
      if (waiting) psy_wait(ch, PSY_WAIT_SPACE, len, 200);
      else sched_yield();
      continue;
    }
    int32_t idx = psy_claim(ch, len, PSY_TYPE_BYTE_VECTOR);
    if (idx == PSY_E_FULL) {
      if (waiting) psy_wait(ch, PSY_WAIT_SPACE, len, 200);
      else sched_yield();
      continue;
    }
    if (idx < 0) {
      fail("claim: %d", idx);
      break;
    }
    fill(psy_payload(ch, (uint32_t)idx), id, seq, len);
    if (psy_commit(ch, (uint32_t)idx)) fail("commit");
    seq++;
  }
  psy_close(ch);
  return NULL;
}

static void *consume(void *arg) {
  uint32_t id = (uint32_t)(uintptr_t)arg;
  psy_channel *ch = open_channel();
  if (psy_take_role(ch, PSY_ROLE_CONSUMER)) fail("consumer role");
  uint32_t next[MAX_THREADS] = {0};
  int ordered = mode != PSY_SPMC && mode != PSY_MPMC;
  for (int idle = 0;;) {
    int32_t idx = batching ? psy_poll_batch(ch) : psy_poll(ch);
    if (idx == PSY_E_EMPTY) {
      if (__atomic_load_n(&done_producing, __ATOMIC_SEQ_CST) && ++idle > 3) break;
      if (waiting) psy_wait(ch, PSY_WAIT_DATA, 0, 20);
      else sched_yield();
      continue;
    }
    if (idx < 0) {
      fail("poll: %d", idx);
      break;
    }
    idle = 0;
    uint32_t producer, seq;
    if (!check(psy_payload(ch, (uint32_t)idx), psy_polled(ch)->length, &producer, &seq)) {
      fail("consumer %u: torn message of %u bytes", id, psy_polled(ch)->length);
      continue;
    }
    if (ordered && seq != next[producer]) fail("consumer %u: producer %u seq %u, expected %u", id, producer, seq, next[producer]);
    next[producer] = seq + 1;
    uint8_t *count = &seen[producer][mode == PSY_BROADCAST ? (size_t)id * messages + seq : seq];
    __atomic_fetch_add(count, 1, __ATOMIC_SEQ_CST);
  }
  psy_release(ch);
  psy_close(ch);
  return NULL;
}

/* BROADCAST: subscribe, read a few, check each (intact, consecutive), leave; again and again. */
static void *join_and_leave(void *arg) {
  (void)arg;
  while (!__atomic_load_n(&stop_joiner, __ATOMIC_SEQ_CST)) {
    psy_channel *ch = open_channel();
    if (psy_take_role(ch, PSY_ROLE_CONSUMER)) fail("joiner role");
    __atomic_fetch_add(&joins, 1, __ATOMIC_RELAXED);
    uint32_t previous = UINT32_MAX;
    for (int i = 0; i < 8; i++) {
      int32_t idx = psy_poll(ch);
      if (idx == PSY_E_EMPTY) {
        sched_yield();
        continue;
      }
      if (idx < 0) {
        fail("joiner poll: %d", idx);
        break;
      }
      uint32_t producer, seq;
      if (!check(psy_payload(ch, (uint32_t)idx), psy_polled(ch)->length, &producer, &seq)) fail("joiner: torn message (lapped)");
      else if (previous != UINT32_MAX && seq != previous + 1) fail("joiner: seq %u after %u (lapped)", seq, previous);
      else previous = seq, __atomic_fetch_add(&join_checked, 1, __ATOMIC_RELAXED);
    }
    psy_close(ch);
  }
  return NULL;
}

static int parse_mode(const char *s) {
  const char *names[] = {"SPSC", "MPSC", "SPMC", "MPMC", "BROADCAST"};
  for (int i = 0; i < 5; i++)
    if (!strcmp(s, names[i])) return i;
  fprintf(stderr, "unknown mode %s\n", s);
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: stress MODE PRODUCERS CONSUMERS MESSAGES [CAPACITY] [MAXLEN] [FLAGS]\n");
    return 2;
  }
  mode = parse_mode(argv[1]);
  producers = atoi(argv[2]);
  consumers = atoi(argv[3]);
  messages = (uint32_t)strtoul(argv[4], NULL, 0);
  if (argc > 5) capacity = (uint32_t)strtoul(argv[5], NULL, 0);
  if (argc > 6) max_len = (uint32_t)strtoul(argv[6], NULL, 0);
  const char *flags = argc > 7 ? argv[7] : "";
  waiting = strchr(flags, 'w') != NULL;
  batching = strchr(flags, 'b') != NULL;
  joining = strchr(flags, 'j') != NULL && mode == PSY_BROADCAST;
  if (producers < 1 || consumers < !joining || producers + consumers + joining > MAX_THREADS) return 2;
  snprintf(name, sizeof name, "stress-%d", (int)getpid());
  size_t per_producer = (size_t)messages * (mode == PSY_BROADCAST ? (size_t)consumers : 1);
  for (int p = 0; p < producers; p++) seen[p] = calloc(per_producer + 1, 1);
  pthread_t threads[MAX_THREADS];
  psy_channel *keeper = open_channel(); /* holds the channel open, and subscribers join before producing */
  for (int c = 0; c < consumers; c++) pthread_create(&threads[producers + c], NULL, consume, (void *)(uintptr_t)c);
  if (mode == PSY_BROADCAST) usleep(50000); /* subscribers get what is sent after they joined */
  pthread_t joiner;
  if (joining) pthread_create(&joiner, NULL, join_and_leave, NULL);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int p = 0; p < producers; p++) pthread_create(&threads[p], NULL, produce, (void *)(uintptr_t)p);
  for (int p = 0; p < producers; p++) pthread_join(threads[p], NULL);
  __atomic_store_n(&done_producing, 1, __ATOMIC_SEQ_CST);
  for (int c = 0; c < consumers; c++) pthread_join(threads[producers + c], NULL);
  __atomic_store_n(&stop_joiner, 1, __ATOMIC_SEQ_CST);
  if (joining) pthread_join(joiner, NULL);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  psy_close(keeper);
  psy_unlink(name);
  uint64_t missing = 0, twice = 0;
  for (int p = 0; p < producers; p++)
    for (size_t i = 0; i < per_producer; i++) {
      if (seen[p][i] == 0) missing++;
      if (seen[p][i] > 1) twice++;
    }
  if (missing) fail("%llu messages never delivered", (unsigned long long)missing);
  if (twice) fail("%llu messages delivered twice", (unsigned long long)twice);
  double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
  printf("%s %dP %dC %u msgs cap %u %s: %.0f ms, %llu joins (%llu messages checked by joiners), %d failures\n", argv[1], producers,
         consumers, messages, capacity, flags, ms, (unsigned long long)joins, (unsigned long long)join_checked, failures);
  return failures ? 1 : 0;
}
