/* Test hooks, compiled in only for the test build (zig build -Dtest-hooks=true defines
 * PSY_TEST_HOOKS; the shipped library has none of this). HOOK("name") in the core marks a window
 * between two shared stores. In a process started with
 *   PSY_HOOK=name [PSY_HOOK_HIT=n] [PSY_HOOK_STALL_MS=ms]
 * the n-th time (default 1st) execution passes that hook, the process dies by SIGKILL there, or
 * with PSY_HOOK_STALL_MS stalls there once for that long (a preemption at that exact line). It
 * says so on stderr first ("psyne-hook: kill name" / "psyne-hook: stall name"), so a test can
 * tell that its window was really reached.
 *
 * PSY_TEST_DISABLE=mechanism[,mechanism] switches recovery mechanisms off (DISABLED() in the
 * core), so a test can show that it fails without the mechanism it checks. */
#include "internal.h"

#ifdef PSY_TEST_HOOKS
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *wanted;
static long hit_at = 1, stall_ms = -1;
static int configured;
static long hits;

static void configure(void) {
  wanted = getenv("PSY_HOOK");
  const char *n = getenv("PSY_HOOK_HIT"), *ms = getenv("PSY_HOOK_STALL_MS");
  if (n) hit_at = atol(n);
  if (ms) stall_ms = atol(ms);
  configured = 1;
}

void psy_hook(const char *name) {
  if (!configured) configure();
  if (!wanted || strcmp(wanted, name) != 0) return;
  if (__atomic_add_fetch(&hits, 1, __ATOMIC_SEQ_CST) != hit_at) return;
  if (stall_ms >= 0) {
    fprintf(stderr, "psyne-hook: stall %s\n", name);
    struct timespec ts = {stall_ms / 1000, (stall_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    fprintf(stderr, "psyne-hook: resumed %s\n", name);
    return;
  }
  fprintf(stderr, "psyne-hook: kill %s\n", name);
  raise(SIGKILL);
}

int psy_test_disabled(const char *mechanism) {
  const char *list = getenv("PSY_TEST_DISABLE");
  if (!list) return 0;
  size_t n = strlen(mechanism);
  for (const char *at = strstr(list, mechanism); at; at = strstr(at + 1, mechanism))
    if ((at == list || at[-1] == ',') && (at[n] == 0 || at[n] == ',')) return 1;
  return 0;
}
#endif
