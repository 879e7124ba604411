/* Internals shared by the C files: the handle, atomics on mapped memory, error reporting, test
 * hooks, and the interface of each layer.
 *
 * Layers, each calling only those below it (no file calls back up):
 *   segment.c       open, close, inspect, remove: wires the layers together
 *   wait.c          psy_wait and the waiter threads (asks the ring whether a wait is over)
 *   ring.c          the fast path of every mode: claim, commit, poll, release, cursors
 *   recovery.c      repairs what dead participants left (the ring calls it when it finds itself stuck)
 *   participants.c  slots, liveness by the kernel's locks, roles
 *   events.c        futex event counts and the fences that order publishers against waiters
 */
#ifndef PSYNE_INTERNAL_H
#define PSYNE_INTERNAL_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "psyne.h"

/* Claims not yet committed, in claim order; a handle may have this many unsent messages or batches. */
#define PSY_MAX_PENDING 64u
/* Messages psy_poll_block takes at most at once. */
#define PSY_BLOCK_MAX 256u
#define PSY_WAIT_KINDS 3

typedef struct psy_waiter psy_waiter;

/* One claim: a single record, or a batch of `count` records of `record_span` bytes each. */
typedef struct psy_pending {
  uint64_t position;
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
  uint32_t salt; /* the channel's tag salt */
  int private_memory; /* memory:// (no name in /dev/shm) */
  double next_recovery_ms; /* crash recovery runs at most this often (see ring.c) */
  uint32_t polls_since_recovery;
  char path[PSY_NAME_MAX + 8]; /* "/psyne.NAME"; path + 7 is the name */

  /* producer: positions are trusted local copies, never re-read from shared memory */
  uint64_t claim_pos;  /* next position to claim (single producer) */
  uint64_t pub_pos;    /* published tail (single producer) */
  uint64_t head_cache; /* last limit seen; re-read only when it says full */
  uint64_t sent_end;   /* end of the last record this handle committed (for psy_unflushed) */
  uint32_t has_sent;
  uint32_t was_full;   /* the last claim found no room: count a full event once */
  psy_pending pending[PSY_MAX_PENDING];
  uint32_t pending_first, pending_count;

  /* consumer */
  uint64_t read_pos;       /* next record to read */
  uint64_t read_published; /* read_pos as last stored in the shared cursor */
  uint64_t tail_cache;     /* last tail seen; re-read only when it says empty */
  uint64_t held_pos;
  uint32_t held; /* holds the record at held_pos */
  uint32_t held_span;
  uint32_t unpolled; /* the held record was put back: the next poll returns it again */
  uint32_t retained; /* reads with psy_poll_retained: what it read is freed by psy_release_to only */
  uint32_t held_count;     /* messages held: 1, or a block's (psy_poll_block) */
  uint64_t held_bytes;     /* their payload bytes (counted at release) */
  uint32_t block[PSY_BLOCK_MAX][4]; /* the held block: index, length, type, span of each message */
  uint64_t block_pos[PSY_BLOCK_MAX]; /* SPMC/MPMC: each one's position (taken one by one) */
  psy_polled_record polled;  /* the record psy_poll/psy_peek returned */
  psy_polled_record claimed; /* the first record of the last claim (producer side) */

  /* observer (psy_peek) */
  uint32_t observing;
  uint64_t observe_pos, peeked_pos;

  psy_waiter *waiters[PSY_WAIT_KINDS]; /* by psy_wait_kind; started on first asynchronous wait */
  /* doorbells (psy_bell_arm): the kinds this handle waits for with its bell, and when armed */
  uint32_t bell_armed; /* bit per wait kind */
  uint64_t bell_print[PSY_WAIT_KINDS];
  double bell_since_ms[PSY_WAIT_KINDS];
  /* ...and, as a publisher, a connection to each other slot's bell it rang: fd + 1 (0: none) */
  int bell_fd[PSY_MAX_SLOTS];
  uint32_t bell_id[PSY_MAX_SLOTS];
  struct psy_channel *next_open;       /* every open handle of this process (fork handling) */
  int bound;                           /* psy_bind_to_thread: its thread's end is this handle's */
  unsigned long owner_thread;          /* pthread_t of that thread */
};

/* Every shared word is accessed atomically. seq_cst unless a comment says why less is enough:
 * JavaScript's Atomics on the same memory are seq_cst, and the wake-up protocol needs a total
 * order of publish and waiter check (events.c). */
static inline uint32_t *u32_at(const psy_channel *ch, uint32_t offset) { return (uint32_t *)(ch->base + offset); }
static inline uint64_t *u64_at(const psy_channel *ch, uint32_t offset) { return (uint64_t *)(ch->base + offset); }
static inline uint32_t load32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline uint64_t load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline void store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline int cas32(uint32_t *p, uint32_t expected, uint32_t desired) {
  return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline int cas64(uint64_t *p, uint64_t expected, uint64_t desired) {
  return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static inline uint8_t *slot_at(const psy_channel *ch, uint32_t slot) { return ch->base + PSY_OFF_SLOTS + slot * PSY_SLOT_SIZE; }
static inline uint32_t *slot_u32(const psy_channel *ch, uint32_t slot, uint32_t field) { return (uint32_t *)(slot_at(ch, slot) + field); }
static inline uint64_t *slot_u64(const psy_channel *ch, uint32_t slot, uint32_t field) { return (uint64_t *)(slot_at(ch, slot) + field); }

/* ---- records --------------------------------------------------------------------------- */

static inline uint8_t *record_at(const psy_channel *ch, uint64_t position) {
  return ch->base + PSY_RING_OFFSET + (position & ch->mask);
}
static inline uint32_t *rec_u32(uint8_t *rec, uint32_t field) { return (uint32_t *)(rec + field); }
static inline uint64_t *rec_word(uint8_t *rec) { return (uint64_t *)(rec + PSY_REC_STATE); } /* state | tag << 32 */
static inline uint32_t record_span(uint32_t length) {
  return (PSY_REC_HEADER + length + PSY_REC_ALIGN - 1) & ~(PSY_REC_ALIGN - 1);
}
/* The tag of a record at `position`: its 64-bit position mixed with the salt, so stale bytes
 * (an older lap, a payload, a zeroed ring) match only by a 1 in 2^32 accident. */
static inline uint32_t tag_of(const psy_channel *ch, uint64_t position) {
  return (uint32_t)position ^ ((uint32_t)(position >> 32) * 0x9e3779b1u) ^ ch->salt;
}
static inline uint32_t state_of(uint32_t stamp) { return stamp & PSY_REC_STATE_MASK; }
static inline uint64_t rec_word_of(const psy_channel *ch, uint64_t position, uint32_t stamp) {
  return ((uint64_t)tag_of(ch, position) << 32) | stamp;
}
/* A state stamped with the owner `slot` in generation `generation`. */
static inline uint32_t stamp_for(uint32_t state, uint32_t slot, uint32_t generation) {
  return state | (slot << PSY_REC_OWNER_SHIFT) | ((generation & PSY_REC_GENERATION_MASK) << PSY_REC_GENERATION_SHIFT);
}
static inline uint32_t mine(const psy_channel *ch, uint32_t state) { return stamp_for(state, (uint32_t)ch->slot, ch->generation); }
static inline uint32_t stamp_with_state(uint32_t stamp, uint32_t state) { return (stamp & ~PSY_REC_STATE_MASK) | state; }
static inline uint32_t skipped_stamp(uint32_t span) { return PSY_REC_SKIPPED | ((span / PSY_REC_ALIGN) << PSY_REC_SKIP_SHIFT); }
/* Finished from the producers' side: consumers pass over it (a message, or nothing to deliver). */
static inline int finished(uint32_t state) { return state == PSY_REC_COMMITTED || state == PSY_REC_ABANDONED || state == PSY_REC_SKIPPED; }
static inline int skippable(uint32_t state) { return state == PSY_REC_ABANDONED || state == PSY_REC_SKIPPED; }

/* A record header as read from the ring (valid only if read_header said so). */
typedef struct {
  uint32_t length, type, state, span;
  uint32_t stamp; /* the whole state word, owner included */
  uint64_t word;  /* state and tag as one word, for compare-and-swap */
} record_header;

/* Is `word` (state and tag) this lap's header at `position`? */
static inline int header_written(const psy_channel *ch, uint64_t word, uint64_t position) {
  uint32_t state = state_of((uint32_t)word);
  return (uint32_t)(word >> 32) == tag_of(ch, position) && state >= PSY_REC_CLAIMED && state <= PSY_REC_SKIPPED;
}

/* Reads the header at `position` if it was written this lap and its span fits `available`. */
static inline int read_header(const psy_channel *ch, uint64_t position, uint64_t available, record_header *h) {
  uint8_t *rec = record_at(ch, position);
  h->word = __atomic_load_n(rec_word(rec), __ATOMIC_ACQUIRE); /* the fields below are this lap's */
  if (!header_written(ch, h->word, position)) return 0;
  h->stamp = (uint32_t)h->word;
  h->state = state_of(h->stamp);
  if (h->state == PSY_REC_SKIPPED) { /* the span is in the state word (layout.h) */
    h->span = (h->stamp >> PSY_REC_SKIP_SHIFT) * PSY_REC_ALIGN;
    h->length = h->span - PSY_REC_HEADER;
    h->type = 0;
    return h->span >= PSY_REC_HEADER && h->span <= available;
  }
  h->length = __atomic_load_n(rec_u32(rec, PSY_REC_LENGTH), __ATOMIC_RELAXED);
  h->type = __atomic_load_n(rec_u32(rec, PSY_REC_TYPE), __ATOMIC_RELAXED);
  h->span = h->length > ch->capacity - PSY_REC_HEADER ? 0 : record_span(h->length);
  return h->span != 0 && h->span <= available;
}

static inline int multi_producer(const psy_channel *ch) { return ch->mode == PSY_MPSC || ch->mode == PSY_MPMC; }
static inline int work_queue(const psy_channel *ch) { return ch->mode == PSY_SPMC || ch->mode == PSY_MPMC; }

/* ---- diagnostics ----------------------------------------------------------------------- */

int32_t psy_fail(int32_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs a channel event to stderr when PSYNE_DEBUG=1. */
void debug_log(const psy_channel *ch, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double monotonic_ms(void);

/* Test hooks: HOOK("name") marks a window between two shared stores where a test may make this
 * process die or stall (hooks.c). Compiled in only for the test build (-DPSY_TEST_HOOKS). */
#ifdef PSY_TEST_HOOKS
void psy_hook(const char *name);
int psy_test_disabled(const char *mechanism); /* PSY_TEST_DISABLE=a,b: switch a recovery mechanism off */
#define HOOK(name) psy_hook(name)
#define DISABLED(mechanism) psy_test_disabled(mechanism)
#else
#define HOOK(name) ((void)0)
#define DISABLED(mechanism) 0
#endif

/* ---- events.c: event counts and fences ------------------------------------------------- */

void events_init(void); /* once per process, before the first publish */
void events_attach(psy_channel *ch, int creating); /* decides or adapts the channel's fence mode */
void waiter_fence(psy_channel *ch); /* the waiter's half of the publish/wait ordering */
static inline uint32_t event_seq_offset(int32_t kind) { return kind == PSY_WAIT_DATA ? PSY_OFF_DATA_SEQ : PSY_OFF_SPACE_SEQ; }
void wake_waiters(psy_channel *ch, int32_t kind);
void bells_close(psy_channel *ch); /* drops this handle's connections to other slots' bells */
extern int psy_membarrier_target; /* this process is registered: membarrier() fences its threads */

/* Publishes a cursor others may wait on; notify_waiters() follows it. In a PSY_FENCE_ASYMMETRIC
 * channel a plain release store (waiters run membarrier), else seq_cst (events.c). */
static inline void publish_position(psy_channel *ch, uint64_t *cursor, uint64_t value) {
  if (psy_membarrier_target && __atomic_load_n(u32_at(ch, PSY_OFF_FENCE_MODE), __ATOMIC_RELAXED) == PSY_FENCE_ASYMMETRIC) {
    __atomic_store_n(cursor, value, __ATOMIC_RELEASE);
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* the compiler keeps the waiters load after it */
  } else {
    __atomic_store_n(cursor, value, __ATOMIC_SEQ_CST);
  }
}

/* Called after a cursor store that may satisfy waiters. Costs one load when nobody waits. */
static inline void notify_waiters(psy_channel *ch, int32_t kind) {
  if (__atomic_load_n(u32_at(ch, event_seq_offset(kind) + PSY_WAITERS_AFTER_SEQ), __ATOMIC_SEQ_CST) != 0) wake_waiters(ch, kind);
}
/* futex on a word (shared: in the segment, or private: in this process); 0, ETIMEDOUT, EINTR or EAGAIN */
int futex_wait_on(uint32_t *word, uint32_t expected, int32_t timeout_ms, int shared);
void futex_wake_all(uint32_t *word, int shared);

/* ---- participants.c: slots, liveness and roles ----------------------------------------- */

/* Called with a dead participant's slot locked, before the slot is reused (segment.c passes the
 * ring's settle function): 1 once nothing of the dead participant's is left half-done, 0 if that
 * cannot be done yet (the joiner then takes another slot). */
typedef int (*settle_slot_fn)(psy_channel *ch, uint32_t slot);
int32_t participants_join(psy_channel *ch, settle_slot_fn settle);
void participants_leave(psy_channel *ch);
int32_t participants_take_role(psy_channel *ch, uint32_t role);
int owner_alive(const psy_channel *ch, uint32_t stamp); /* is the owner stamped in a record alive? */
int slot_alive(const psy_channel *ch, uint32_t slot);
/* Clears a dead subscriber's consumer role, unless its slot was taken again meanwhile. */
int participants_reap_subscriber(psy_channel *ch, uint32_t slot, uint64_t roles_word);
int lock_byte(int fd, short type, long byte, int wait);
/* F_UNLCK, F_RDLCK or F_WRLCK: the lock another open file description holds on a byte. */
short byte_lock_held(int fd, long byte);
int byte_locked_by_other(int fd, long byte);

/* ---- recovery.c: repairs what dead participants left ------------------------------------ */

int recovery_lock(psy_channel *ch, int wait); /* 0 when held by this handle */
void recovery_unlock(psy_channel *ch);
/* Each returns 1 if it changed something the ring should act on (advance a cursor, wake waiters).
 * All but recover_slot take the recovery lock themselves and do nothing if another holds it. */
int recover_claims(psy_channel *ch);  /* MPSC/MPMC: dead producers' claims in [tail, claim_tail) */
int recover_takers(psy_channel *ch);  /* SPMC/MPMC: messages dead consumers had taken */
int recover_orphans(psy_channel *ch); /* single producer: a dead producer's committed, unpublished records */
int recover_slot(psy_channel *ch, uint32_t slot); /* a joiner settles a dead slot (settle_slot_fn contract) */
int orphans_possible(const psy_channel *ch); /* cheap: may a dead single producer have left records at tail? */
/* A new single producer (it holds the role) publishes what a dead predecessor left: returns tail. */
uint64_t recover_for_new_producer(psy_channel *ch);

/* ---- ring.c (called by segment.c and wait.c) -------------------------------------------- */

int ring_settle_slot(psy_channel *ch, uint32_t slot);
void ring_close(psy_channel *ch);
int ring_has_unread(psy_channel *ch);
int ring_is_ready(psy_channel *ch, int32_t kind, uint32_t length);
void ring_maybe_recover(psy_channel *ch);
int ring_may_be_stuck(const psy_channel *ch, int32_t kind);
uint64_t cursor_print(const psy_channel *ch); /* wait.c: a fingerprint of every shared cursor */
uint64_t ring_unflushed(psy_channel *ch);

/* ---- wait.c (called by segment.c) ------------------------------------------------------- */

void waiters_stop(psy_channel *ch);

#endif
