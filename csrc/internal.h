/* Internals shared by the C files: the handle, atomics on mapped memory, error reporting. */
#ifndef PSYNE_INTERNAL_H
#define PSYNE_INTERNAL_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "psyne.h"

/* Claims not yet committed, in claim order; a handle may have this many unsent messages or batches. */
#define PSY_MAX_PENDING 64u

typedef struct psy_waiter psy_waiter;

/* One claim: a single record, or a batch of `count` records of `record_span` bytes each. */
typedef struct psy_pending {
  uint32_t position;
  uint32_t span;   /* bytes of all its records */
  uint32_t length; /* payload bytes of all its records */
  uint32_t record_span;
  uint32_t count;
  uint32_t done; /* committed or abandoned */
} psy_pending;

struct psy_channel {
  int fd;
  uint8_t *base; /* control block; the ring is at base + PSY_RING_OFFSET */
  size_t map_size;
  uint32_t capacity, mask;
  int32_t mode;
  int32_t slot;
  uint32_t generation; /* of our slot, stamped into the records we own */
  uint32_t roles;
  double next_recovery_ms; /* crash recovery runs at most this often (see ring.c) */
  uint32_t polls_since_recovery;
  char path[PSY_NAME_MAX + 8];

  /* producer: positions are trusted local copies, never re-read from shared memory */
  uint32_t claim_pos;  /* next position to claim */
  uint32_t pub_pos;    /* published tail */
  uint32_t head_cache; /* last head seen; re-read only when it says full */
  uint32_t was_full;   /* the last claim found no room: count a full event once */
  psy_pending pending[PSY_MAX_PENDING];
  uint32_t pending_first, pending_count;

  /* consumer */
  uint32_t read_pos;   /* next record to read */
  uint32_t read_published; /* read_pos as last stored in the shared cursor */
  uint32_t tail_cache; /* last tail seen; re-read only when it says empty */
  uint32_t held;     /* holds the record at held_pos */
  uint32_t held_pos, held_span;
  uint32_t unpolled; /* the held record was put back: the next poll returns it again */
  psy_polled_record polled;  /* the record psy_poll/psy_peek returned */
  psy_polled_record claimed; /* the first record of the last claim (producer side) */

  /* observer (psy_peek) */
  uint32_t observing, observe_pos, peeked_pos;

  psy_waiter *waiters[2]; /* by psy_wait_kind; started on first asynchronous wait */
};

/* Every shared word is accessed with seq_cst atomics: JavaScript's Atomics on the same memory
 * are seq_cst, and the futex wake-up protocol needs a total order of publish and waiter check. */
static inline uint32_t *u32_at(const psy_channel *ch, uint32_t offset) {
  return (uint32_t *)(ch->base + offset);
}
static inline uint64_t *u64_at(const psy_channel *ch, uint32_t offset) {
  return (uint64_t *)(ch->base + offset);
}
static inline uint32_t load32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
/* Publishes a cursor others may be waiting on; notify_waiters() follows it. With membarrier the
 * store is a plain release store (waiters do the heavy fence); without, seq_cst. See wait.c. */
extern int psy_fast_publish;
static inline void publish_cursor(uint32_t *p, uint32_t v) {
  if (psy_fast_publish) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* the compiler keeps the waiters load after it */
  } else {
    store32(p, v);
  }
}
static inline int cas32(uint32_t *p, uint32_t expected, uint32_t desired) {
  return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static inline uint8_t *slot_at(const psy_channel *ch, uint32_t slot) {
  return ch->base + PSY_OFF_SLOTS + slot * PSY_SLOT_SIZE;
}
static inline uint8_t *record_at(const psy_channel *ch, uint32_t position) {
  return ch->base + PSY_RING_OFFSET + (position & ch->mask);
}
static inline uint32_t record_span(uint32_t length) {
  return (PSY_REC_HEADER + length + PSY_REC_ALIGN - 1) & ~(PSY_REC_ALIGN - 1);
}

int32_t psy_fail(int32_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs a channel event to stderr when PSYNE_DEBUG=1. */
void debug_log(const psy_channel *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* participants.c */
int owner_alive(const psy_channel *ch, uint32_t record_state);
int32_t participants_join(psy_channel *ch);
void participants_leave(psy_channel *ch);
int32_t participants_take_role(psy_channel *ch, uint32_t role);
int lock_byte(int fd, short type, long byte, int wait);
int byte_locked_by_other(int fd, long byte);

/* ring.c */
void ring_close(psy_channel *ch);
int ring_has_unread(psy_channel *ch);
int ring_has_data(psy_channel *ch);
int ring_has_space(psy_channel *ch, uint32_t length);
void ring_forget_participant(psy_channel *ch, uint32_t slot);
void ring_maybe_recover(psy_channel *ch);
int ring_may_be_stuck(const psy_channel *ch);

/* wait.c */
void notify_waiters(psy_channel *ch, int32_t kind);
void fences_init(void);
void waiters_stop(psy_channel *ch);

#endif
