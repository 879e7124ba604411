/* Plain C ping-pong between two processes over shared memory: the floor psyne's latency is
 * compared with. The parent pings, a forked child pongs; each side publishes a sequence number in
 * its own cache line and waits for the other's, either parked in the kernel (futex: a shared
 * FUTEX_WAIT, woken by FUTEX_WAKE after every store) or busy-polling (spin: no syscall at all).
 * Prints one JSON line: one-way latency (round trip / 2) percentiles in ns over ROUNDS rounds.
 * Build: zig cc -O2 -o lat-pingpong lat-pingpong.c
 * Run: lat-pingpong futex|spin ROUNDS WARMUP TIMEOUT_S [PING_CPU PONG_CPU] (optional: pin each side) */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct shared {
  _Alignas(64) uint32_t ping; /* written by the parent */
  _Alignas(64) uint32_t pong; /* written by the child */
};

static int parked;

static void publish(uint32_t *word, uint32_t value) {
  __atomic_store_n(word, value, __ATOMIC_SEQ_CST);
  if (parked) syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* Waits until *word == want and returns what it read (another value only on a protocol error). */
static uint32_t await_value(uint32_t *word, uint32_t want) {
  uint32_t seen;
  while ((seen = __atomic_load_n(word, __ATOMIC_SEQ_CST)) != want) {
    if (seen > want) return seen;
    if (parked) syscall(SYS_futex, word, FUTEX_WAIT, seen, NULL, NULL, 0); /* returns at once if it changed */
  }
  return seen;
}

static void pin(const char *cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(atoi(cpu), &set);
  if (sched_setaffinity(0, sizeof set, &set)) perror("sched_setaffinity"), exit(2);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int by_value(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if ((argc != 5 && argc != 7) || (strcmp(argv[1], "futex") && strcmp(argv[1], "spin"))) {
    fprintf(stderr, "usage: %s futex|spin ROUNDS WARMUP TIMEOUT_S [PING_CPU PONG_CPU]\n", argv[0]);
    return 2;
  }
  parked = strcmp(argv[1], "futex") == 0;
  uint32_t rounds = (uint32_t)atol(argv[2]), warmup = (uint32_t)atol(argv[3]), total = rounds + warmup;
  alarm((unsigned)atoi(argv[4])); /* a hang ends with SIGALRM */
  struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int64_t *samples = malloc(sizeof(int64_t) * (rounds ? rounds : 1));
  if (sh == MAP_FAILED || !samples) return perror("mmap/malloc"), 2;

  pid_t child = fork();
  if (child < 0) return perror("fork"), 2;
  if (child == 0) { /* pong: echo each sequence number */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc == 7) pin(argv[6]);
    for (uint32_t seq = 1; seq <= total; seq++) {
      uint32_t got = await_value(&sh->ping, seq);
      publish(&sh->pong, got);
      if (got != seq) return 1;
    }
    return 0;
  }

  if (argc == 7) pin(argv[5]);
  uint32_t errors = 0, first_bad = 0;
  for (uint32_t seq = 1; seq <= total; seq++) {
    int64_t t0 = now_ns();
    publish(&sh->ping, seq);
    uint32_t got = await_value(&sh->pong, seq);
    int64_t t1 = now_ns();
    if (got != seq) {
      if (!errors++) first_bad = seq;
      break;
    }
    if (seq > warmup) samples[seq - warmup - 1] = (t1 - t0) / 2;
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (errors || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "lat-pingpong %s: wrong reply at round %u (child status %d)\n", argv[1], first_bad, status);
    return 1;
  }
  qsort(samples, rounds, sizeof *samples, by_value);
#define AT(p) samples[(size_t)((p) * rounds) < rounds ? (size_t)((p) * rounds) : rounds - 1]
  printf("{\"rounds\":%u,\"errors\":0,\"p50\":%lld,\"p99\":%lld,\"max\":%lld}\n", rounds, (long long)AT(0.50), (long long)AT(0.99),
         (long long)samples[rounds - 1]);
  return 0;
}
