/* Waiting without spinning: a waiter registers on an event count in the segment (events.c), re-
 * checks the ring, and sleeps on the count; whoever publishes messages or frees space bumps it
 * when somebody waits. psy_wait blocks the calling thread; for event loops, a waiter thread per
 * handle and kind sleeps instead and calls back into JavaScript.
 *
 * In the total order of events.c either the waiter's re-check sees the new cursor, or the
 * publisher sees the waiter and bumps the count, which makes the futex wait return at once. A
 * slow safety re-poll (WAKE_SAFETY_MS) bounds the damage of anything unforeseen: it wakes
 * JavaScript only if a cursor moved, or once a second, or when a dead participant may hold the
 * ring (which also drives crash recovery).
 *
 * Arming and re-checking run on the handle's own thread (psy_waiter_arm); the waiter thread only
 * watches the event count and shared cursors, so it never touches the handle's ring state. */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define WAKE_SAFETY_MS 50   /* a parked waiter looks at the ring this often whatever happens... */
#define WAKE_FALLBACK_MS 1000 /* ...and calls back at least this often even if nothing moved */

enum { CTL_IDLE = 0, CTL_ARMED = 1, CTL_STOP = 2 };

struct psy_waiter {
  psy_channel *ch;
  int32_t kind;
  pthread_t thread;
  uint32_t ctl;        /* CTL_*: set by the handle's thread, read by the waiter thread */
  uint32_t armed_seq;  /* the event count seen when armed */
  uint64_t armed_print; /* the ring's cursors when armed (cursor_print) */
  psy_wake_callback callback;
};

static uint32_t waiting_bit(int32_t kind) {
  return kind == PSY_WAIT_DATA ? PSY_WAITING_DATA : kind == PSY_WAIT_SPACE ? PSY_WAITING_SPACE : PSY_WAITING_FLUSH;
}

/* A fingerprint of every shared cursor: if it has not changed, nothing a waiter could want has
 * happened, so a safety timeout need not wake JavaScript. Reads shared words only (the waiter
 * thread must not touch the handle's private state). */
uint64_t cursor_print(const psy_channel *ch) {
  uint64_t print = load32(u32_at(ch, PSY_OFF_RETURNED));
  const uint32_t offsets[] = {PSY_OFF_TAIL, PSY_OFF_CLAIM_TAIL, PSY_OFF_HEAD, PSY_OFF_CLAIM_HEAD};
  for (unsigned i = 0; i < sizeof offsets / sizeof *offsets; i++) print = print * 0x9e3779b97f4a7c15ull + load64(u64_at(ch, offsets[i]));
  return print;
}

/* Register as a waiter of `kind` (a sleeper: one that sleeps on the futex, not on a doorbell);
 * returns the event count to wait on. */
static uint32_t register_waiter(psy_channel *ch, int32_t kind, int sleeper) {
  uint32_t off = event_seq_offset(kind), bits = waiting_bit(kind) | (sleeper ? waiting_bit(kind) << PSY_WAITING_SLEEPS : 0);
  /* count first, then mark the slot (and the reverse to unregister): a crash in between leaves the
   * count too high (publishers wake nobody until the segment is made anew), never too low (a
   * lost wake-up) once the slot is retired. Sleepers before waiters: a publisher that sees this
   * waiter sees whether it needs the futex woken. */
  if (sleeper) __atomic_fetch_add(u32_at(ch, off + PSY_SLEEPERS_AFTER_SEQ), 1, __ATOMIC_SEQ_CST);
  __atomic_fetch_add(u32_at(ch, off + PSY_WAITERS_AFTER_SEQ), 1, __ATOMIC_SEQ_CST);
  __atomic_fetch_or(slot_u32(ch, (uint32_t)ch->slot, PSY_SLOT_WAITING), bits, __ATOMIC_SEQ_CST);
  waiter_fence(ch);
  return load32(u32_at(ch, off));
}

static void unregister_waiter(psy_channel *ch, int32_t kind, int sleeper) {
  uint32_t off = event_seq_offset(kind), bits = waiting_bit(kind) | (sleeper ? waiting_bit(kind) << PSY_WAITING_SLEEPS : 0);
  __atomic_fetch_and(slot_u32(ch, (uint32_t)ch->slot, PSY_SLOT_WAITING), ~bits, __ATOMIC_SEQ_CST);
  __atomic_fetch_sub(u32_at(ch, off + PSY_WAITERS_AFTER_SEQ), 1, __ATOMIC_SEQ_CST);
  if (sleeper) __atomic_fetch_sub(u32_at(ch, off + PSY_SLEEPERS_AFTER_SEQ), 1, __ATOMIC_SEQ_CST);
}

static int32_t check_kind(int32_t kind) {
  if (kind < PSY_WAIT_DATA || kind > PSY_WAIT_FLUSHED) return psy_fail(PSY_E_INVALID_ARG, "unknown wait kind %d", kind);
  return 0;
}

int32_t psy_wait(psy_channel *ch, int32_t kind, uint32_t length, int32_t timeout_ms) {
  int32_t rc = check_kind(kind);
  if (rc) return rc;
  /* sleep in slices: between them, look for dead participants that keep the ring stuck (the
   * recovery that polling would otherwise run) */
  int err = ETIMEDOUT;
  for (int32_t waited = 0; timeout_ms < 0 || waited < timeout_ms; waited += WAKE_SAFETY_MS) {
    ring_maybe_recover(ch);
    uint32_t seq = register_waiter(ch, kind, 1);
    int32_t slice = timeout_ms < 0 || timeout_ms - waited > WAKE_SAFETY_MS ? WAKE_SAFETY_MS : timeout_ms - waited;
    err = ring_is_ready(ch, kind, length) ? 0 : futex_wait_on(u32_at(ch, event_seq_offset(kind)), seq, slice, 1);
    unregister_waiter(ch, kind, 1);
    if (err != ETIMEDOUT) break;
  }
  if (err == ETIMEDOUT) return PSY_E_TIMEOUT;
  if (err == EINTR) return PSY_E_INTERRUPTED;
  return 0;
}

static void *waiter_main(void *arg) {
  psy_waiter *w = arg;
  uint32_t *seq = u32_at(w->ch, event_seq_offset(w->kind));
  for (;;) {
    uint32_t ctl = __atomic_load_n(&w->ctl, __ATOMIC_SEQ_CST);
    if (ctl == CTL_STOP) return NULL;
    if (ctl == CTL_IDLE) {
      futex_wait_on(&w->ctl, CTL_IDLE, -1, 0);
      continue;
    }
    int quiet_ms = 0;
    while (load32(seq) == w->armed_seq && __atomic_load_n(&w->ctl, __ATOMIC_SEQ_CST) == CTL_ARMED) {
      int err = futex_wait_on(seq, w->armed_seq, WAKE_SAFETY_MS, 1);
      if (err != ETIMEDOUT) continue; /* woken (re-checked above), or interrupted */
      quiet_ms += WAKE_SAFETY_MS;
      if (DISABLED("safety")) continue; /* tests: every wake-up must come from whoever published */
      if (cursor_print(w->ch) != w->armed_print || quiet_ms >= WAKE_FALLBACK_MS || ring_may_be_stuck(w->ch, w->kind)) break;
    }
    /* an event, something moved, or the fallback: either way JavaScript re-polls */
    if (__atomic_compare_exchange_n(&w->ctl, &ctl, CTL_IDLE, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
      unregister_waiter(w->ch, w->kind, 1);
      w->callback(w->kind);
    }
  }
}

int32_t psy_waiter_start(psy_channel *ch, int32_t kind, psy_wake_callback callback) {
  int32_t rc = check_kind(kind);
  if (rc) return rc;
  if (!callback) return psy_fail(PSY_E_INVALID_ARG, "waiter callback is null");
  if (ch->waiters[kind]) return 0;
  psy_waiter *w = calloc(1, sizeof *w);
  if (!w) return psy_fail(PSY_E_SYSTEM, "out of memory");
  w->ch = ch;
  w->kind = kind;
  w->callback = callback;
  if ((rc = pthread_create(&w->thread, NULL, waiter_main, w))) {
    free(w);
    return psy_fail(PSY_E_SYSTEM, "pthread_create: %s", strerror(rc));
  }
  ch->waiters[kind] = w;
  return 0;
}

/* Returns 1 if the condition already holds (nothing armed: poll again now), 0 once armed. */
int32_t psy_waiter_arm(psy_channel *ch, int32_t kind, uint32_t length) {
  int32_t rc = check_kind(kind);
  if (rc) return rc;
  psy_waiter *w = ch->waiters[kind];
  if (!w) return psy_fail(PSY_E_STATE, "no waiter thread for kind %d: call psy_waiter_start first", kind);
  if (__atomic_load_n(&w->ctl, __ATOMIC_SEQ_CST) == CTL_ARMED) return 0;
  uint32_t seq = register_waiter(ch, kind, 1);
  if (ring_is_ready(ch, kind, length)) {
    unregister_waiter(ch, kind, 1);
    return 1;
  }
  w->armed_seq = seq;
  w->armed_print = cursor_print(ch);
  __atomic_store_n(&w->ctl, CTL_ARMED, __ATOMIC_SEQ_CST);
  futex_wake_all(&w->ctl, 0);
  return 0;
}

int32_t psy_waiter_disarm(psy_channel *ch, int32_t kind) {
  int32_t rc = check_kind(kind);
  if (rc) return rc;
  psy_waiter *w = ch->waiters[kind];
  uint32_t armed = CTL_ARMED;
  if (w && __atomic_compare_exchange_n(&w->ctl, &armed, CTL_IDLE, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
    unregister_waiter(ch, kind, 1);
  return 0;
}

/* Stops and joins the waiter threads: after this no callback runs. */
void waiters_stop(psy_channel *ch) {
  for (int kind = 0; kind < PSY_WAIT_KINDS; kind++) {
    psy_waiter *w = ch->waiters[kind];
    if (!w) continue;
    psy_waiter_disarm(ch, kind);
    __atomic_store_n(&w->ctl, CTL_STOP, __ATOMIC_SEQ_CST);
    futex_wake_all(&w->ctl, 0);
    futex_wake_all(u32_at(ch, event_seq_offset(kind)), 1); /* others re-check and sleep again */
    pthread_join(w->thread, NULL);
    free(w);
    ch->waiters[kind] = NULL;
  }
}

int32_t psy_waiter_stop(psy_channel *ch) {
  waiters_stop(ch);
  return 0;
}

/* ---- doorbells: waiting from an event loop without a thread ----------------------------------
 * The loop listens on its bell (an abstract Unix socket, events.c); a handle arms a wait kind:
 * it registers as a waiter as psy_wait does, marks the kind ARMED in its slot's bell state and its
 * slot in the channel's bells word (both before the registration, so a publisher that sees the
 * registration sees them), and re-checks. The publisher that satisfies it turns ARMED into RUNG
 * and writes a byte to the bell. When bytes arrive, or on a slow safety timer, the loop asks
 * psy_bell_wake for each armed kind whether to look again. */

static uint32_t *bell_state(psy_channel *ch) { return slot_u32(ch, (uint32_t)ch->slot, PSY_SLOT_BELL_STATE); }
static uint32_t bell_of(uint32_t state, int32_t kind) { return (state >> (kind * PSY_BELL_BITS)) & ((1u << PSY_BELL_BITS) - 1); }

static void bell_set(psy_channel *ch, int32_t kind, uint32_t value) {
  uint32_t *state = bell_state(ch), seen = load32(state), mask = ((1u << PSY_BELL_BITS) - 1) << (kind * PSY_BELL_BITS);
  while (!__atomic_compare_exchange_n(state, &seen, (seen & ~mask) | (value << (kind * PSY_BELL_BITS)), 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
}

static void bell_disarm(psy_channel *ch, int32_t kind) {
  ch->bell_armed &= ~(1u << kind);
  unregister_waiter(ch, kind, 0);
  bell_set(ch, kind, PSY_BELL_IDLE);
  if (!ch->bell_armed) __atomic_fetch_and(u64_at(ch, PSY_OFF_BELLS), ~(1ull << ch->slot), __ATOMIC_SEQ_CST);
}

int32_t psy_bell_arm(psy_channel *ch, int32_t kind, uint32_t length, uint32_t bell) {
  int32_t rc = check_kind(kind);
  if (rc) return rc;
#ifndef __linux__
  (void)ch, (void)length, (void)bell;
  return psy_fail(PSY_E_STATE, "doorbells need Linux (abstract Unix sockets): wait with a waiter thread");
#else
  if (!bell) return psy_fail(PSY_E_INVALID_ARG, "doorbell 0");
  if (ch->bell_armed & (1u << kind)) return 0;
  store32(slot_u32(ch, (uint32_t)ch->slot, PSY_SLOT_BELL), bell);
  bell_set(ch, kind, PSY_BELL_ARMED);
  __atomic_fetch_or(u64_at(ch, PSY_OFF_BELLS), 1ull << ch->slot, __ATOMIC_SEQ_CST);
  ch->bell_armed |= 1u << kind;
  register_waiter(ch, kind, 0);
  if (ring_is_ready(ch, kind, length)) {
    bell_disarm(ch, kind);
    return 1;
  }
  ch->bell_print[kind] = cursor_print(ch);
  ch->bell_since_ms[kind] = monotonic_ms();
  return 0;
#endif
}

/* 1 (and disarmed) if the loop should look again now: the kind was rung, or (bell bytes came)
 * its wait may be over, or (the safety timer) a cursor moved, a second passed, or a dead
 * participant may hold the ring. 0: it stays armed. */
int32_t psy_bell_wake(psy_channel *ch, int32_t kind, uint32_t length, int32_t safety) {
  int32_t rc = check_kind(kind);
  if (rc) return rc;
  if (!(ch->bell_armed & (1u << kind))) return 1;
  int wake = bell_of(load32(bell_state(ch)), kind) == PSY_BELL_RUNG;
  if (!wake && !safety) wake = ring_is_ready(ch, kind, length);
  if (!wake && safety && !DISABLED("safety")) /* tests: every wake-up must come from whoever published */
    wake = cursor_print(ch) != ch->bell_print[kind] || monotonic_ms() - ch->bell_since_ms[kind] >= WAKE_FALLBACK_MS ||
           ring_may_be_stuck(ch, kind);
  if (wake) bell_disarm(ch, kind);
  return wake;
}

int32_t psy_bell_disarm(psy_channel *ch, int32_t kind) {
  int32_t rc = check_kind(kind);
  if (rc) return rc;
  if (ch->bell_armed & (1u << kind)) bell_disarm(ch, kind);
  return 0;
}
