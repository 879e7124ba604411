/* psyne C API: named shared-memory channels that Bun, C and Python processes can share.
 *
 * Every function takes the channel handle first and returns 0 (or a non-negative value) on
 * success and a negative PSY_E_* code on failure; psy_last_error() then describes the failure
 * with the values involved. Handles are not thread-safe: use one per thread.
 *
 * Producer:  idx = psy_claim(ch, n, type);  write n bytes at psy_payload(ch, idx);  psy_commit(ch, idx);
 * Consumer:  idx = psy_poll(ch);  read psy_polled(ch)->length bytes at psy_payload(ch, idx);  psy_release(ch);
 */
#ifndef PSYNE_H
#define PSYNE_H

#include <stdint.h>

#include "layout.h" /* PSY_TYPE_* message type ids, PSY_ROLE_*, and the segment layout */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PSY_API __attribute__((visibility("default")))
#else
#define PSY_API
#endif

typedef struct psy_channel psy_channel;

enum psy_mode { PSY_SPSC = 0, PSY_MPSC = 1, PSY_SPMC = 2, PSY_MPMC = 3, PSY_BROADCAST = 4 };
enum psy_open_mode { PSY_CREATE_OR_ATTACH = 0, PSY_CREATE = 1, PSY_ATTACH = 2 };
/* Or'ed into open_mode: a channel in this process's memory only (memory:// in Bun), found by name
 * among this process's private channels and shared with its threads, never a name in /dev/shm. */
#define PSY_OPEN_PRIVATE 0x100

enum psy_error {
  PSY_E_EMPTY = -1,        /* nothing to receive (an outcome, not a failure) */
  PSY_E_FULL = -2,         /* no room now (an outcome, not a failure) */
  PSY_E_TOO_LARGE = -3,    /* the message can never fit */
  PSY_E_INVALID_NAME = -4, /* name is not 1..200 of [A-Za-z0-9._-], or starts with '.' */
  PSY_E_EXISTS = -5,       /* PSY_CREATE on a channel that exists */
  PSY_E_NOT_FOUND = -6,    /* PSY_ATTACH on a channel that does not exist */
  PSY_E_CONFIG = -7,       /* requested capacity or mode disagrees with the channel */
  PSY_E_CORRUPT = -8,      /* the segment is not a valid psyne channel */
  PSY_E_ROLE = -9,         /* the mode allows one producer/consumer and another holds it */
  PSY_E_SYSTEM = -10,      /* an operating-system call failed (errno in the message) */
  PSY_E_STATE = -11,       /* misuse: commit of a record not claimed, too many unsent, ... */
  PSY_E_INVALID_ARG = -12, /* a bad argument (capacity out of range, unknown mode) */
  PSY_E_SLOTS = -14,       /* every participant slot is taken by a live process */
  PSY_E_TIMEOUT = -15,     /* a wait ran out of time (an outcome, not a failure) */
  PSY_E_INTERRUPTED = -16, /* a wait was interrupted by a signal */
};

/* What a wait waits for: a message to receive, room to send, or everything this handle sent to
 * have been taken by the consumers (psy_unflushed() == 0). */
enum psy_wait_kind { PSY_WAIT_DATA = 0, PSY_WAIT_SPACE = 1, PSY_WAIT_FLUSHED = 2 };
typedef void (*psy_wake_callback)(int32_t kind);

/* The record a successful psy_poll() returned; process-local memory, safe to read. */
typedef struct psy_polled_record {
  uint32_t index;  /* ring index of the record header */
  uint32_t length; /* payload bytes */
  uint32_t type;   /* type id given to psy_claim */
  uint32_t span;   /* bytes the record occupies in the ring */
} psy_polled_record;

/* Opens (creates or attaches to) channel `name`. capacity 0 adopts the existing channel's size
 * (or the default when creating); mode -1 adopts the existing mode (or SPSC when creating).
 * capacity is rounded up to a power of two before it is compared with an existing channel's.
 * permissions: file mode of a new segment (0600). On failure returns NULL and stores a PSY_E_*
 * code in *error (error may be NULL if you do not need the code). */
PSY_API psy_channel *psy_open(const char *name, uint32_t capacity, int32_t mode, uint32_t permissions,
                      int32_t open_mode, int32_t *error);
/* Detaches; the last handle to detach removes an empty segment. Frees the handle. */
PSY_API int32_t psy_close(psy_channel *ch);
/* Ties the handle to the calling thread: if that thread ends with the handle open (a Bun Worker
 * terminated, say), the handle is dropped as if its process had crashed: its waiter threads stop
 * (no callback runs after), and the others recover what it held (its unsent claims are skipped, a
 * message it had taken is delivered again, its roles are free). Its memory stays mapped. */
PSY_API int32_t psy_bind_to_thread(psy_channel *ch);

/* Takes PSY_ROLE_PRODUCER or PSY_ROLE_CONSUMER now (claim and poll take them on first use). */
PSY_API int32_t psy_take_role(psy_channel *ch, uint32_t role);

/* Reserves a record of `length` payload bytes; returns its ring index, PSY_E_FULL or an error.
 * Write the payload at psy_payload(ch, index) until psy_commit() or psy_abandon(). */
PSY_API int32_t psy_claim(psy_channel *ch, uint32_t length, uint32_t type);
/* Claims up to `count` records of `length` payload bytes each, back to back: as many as fit now
 * (returns how many, or PSY_E_FULL if none). The first one's ring index is psy_claimed()->index,
 * each next one psy_claimed()->span bytes further (the ring is mapped twice, so they are
 * contiguous). psy_commit(first index) publishes them all at once; psy_abandon drops them all. */
PSY_API int32_t psy_claim_batch(psy_channel *ch, uint32_t count, uint32_t length, uint32_t type);
/* Publishes a claimed record (or batch). Records become visible in claim order. */
PSY_API int32_t psy_commit(psy_channel *ch, uint32_t index);
/* Drops a claimed record unsent; consumers skip it. */
PSY_API int32_t psy_abandon(psy_channel *ch, uint32_t index);

/* Retained reading, for a single consumer that forwards records (a network pump) and frees them
 * only once the far side has them. psy_poll_retained returns the next record after the one it
 * returned last, freeing nothing; psy_polled_end tells where that record ends (a position);
 * psy_release_to frees everything before such a position; psy_rewind goes back to the first
 * record not freed, to read them all again (a resend). Positions are doubles for FFI callers,
 * taken modulo 2^52 so that they stay exact (compare them modulo 2^52 too: a ring's positions
 * start anywhere). Not for work queues (SPMC/MPMC). */
PSY_API int32_t psy_poll_retained(psy_channel *ch);
PSY_API double psy_polled_end(const psy_channel *ch);
PSY_API int32_t psy_release_to(psy_channel *ch, double position);
PSY_API int32_t psy_rewind(psy_channel *ch);
/* Where this consumer has released up to (SPSC/MPSC: head; BROADCAST: its own cursor); low 52 bits. */
PSY_API double psy_released_position(const psy_channel *ch);

/* Looks at the next record without consuming it: its index, or PSY_E_EMPTY. Releases the record
 * this handle held before, if any, so a payload pointer is valid until psy_release(), the next
 * psy_poll() or psy_close(). Details (length, type) are in psy_polled(). */
PSY_API int32_t psy_poll(psy_channel *ch);
/* psy_poll for a consumer draining many records in a row: it publishes the space it frees only
 * every quarter of the ring (and when it finds the ring empty); end with psy_release(). */
PSY_API int32_t psy_poll_batch(psy_channel *ch);
/* Takes up to `max` messages (at most 256) at once and holds them all: returns how many (the
 * table at psy_block() then holds index, length, type and span of each, 4 u32 per message), or
 * PSY_E_EMPTY. Releases what this handle held before. SPSC/MPSC/BROADCAST: a run of records in
 * ring order; SPMC/MPMC: each taken as psy_poll would. psy_release (or the next poll) releases them
 * all; a consumer that dies holding them has them delivered again, as a single held record. */
PSY_API int32_t psy_poll_block(psy_channel *ch, uint32_t max);
PSY_API const uint32_t *psy_block(const psy_channel *ch);
/* Puts the polled record back: the next psy_poll returns it again. */
PSY_API int32_t psy_unpoll(psy_channel *ch);
/* Consumes the polled record; its space may be reused at once. */
PSY_API int32_t psy_release(psy_channel *ch);
PSY_API const psy_polled_record *psy_polled(const psy_channel *ch);
/* The last claim (psy_claim or psy_claim_batch): first ring index, length, type, span per record. */
PSY_API const psy_polled_record *psy_claimed(const psy_channel *ch);

/* The mapping: the segment starts at psy_base(); the ring at psy_base() + PSY_RING_OFFSET is
 * mapped twice in a row, so psy_map_size() = PSY_RING_OFFSET + 2 * capacity. */
PSY_API uint8_t *psy_base(const psy_channel *ch);
PSY_API uint8_t *psy_payload(const psy_channel *ch, uint32_t index);
PSY_API double psy_map_size(const psy_channel *ch); /* a double so that FFI callers get a plain number */
PSY_API uint32_t psy_capacity(const psy_channel *ch);
PSY_API int32_t psy_mode(const psy_channel *ch);
PSY_API int32_t psy_slot(const psy_channel *ch);
/* Bytes of the ring in use by records not yet released (may lag messages in flight). */
PSY_API uint32_t psy_used(const psy_channel *ch);
/* Bytes up to the end of the last message this handle sent that the consumers have not released
 * yet (BROADCAST: the slowest live subscriber); 0 once all of it was taken. A double so that FFI
 * callers get a plain number. */
PSY_API double psy_unflushed(psy_channel *ch);

/* Blocks until a message may be there (PSY_WAIT_DATA), `length` more payload bytes may fit
 * (PSY_WAIT_SPACE), or what this handle sent was taken (PSY_WAIT_FLUSHED): 0, PSY_E_TIMEOUT, or
 * PSY_E_INTERRUPTED. timeout_ms -1 waits forever. May
 * return 0 spuriously: poll or claim again. Sleeps in the kernel; costs no CPU while waiting.
 * Until the handle has its role (first psy_claim/psy_poll, or psy_take_role) it returns 0 at
 * once. length is payload bytes, as for psy_claim. */
PSY_API int32_t psy_wait(psy_channel *ch, int32_t kind, uint32_t length, int32_t timeout_ms);

/* Asynchronous waiting for event loops: a thread per kind sleeps in the kernel and calls
 * `callback(kind)` (from that thread) when the armed condition may hold, or at least once a second
 * while armed. Arm once per wait; arming returns 1 (and arms nothing) if the condition already holds.
 * psy_waiter_stop (also done by psy_close) joins the threads: no callback runs after it. */
PSY_API int32_t psy_waiter_start(psy_channel *ch, int32_t kind, psy_wake_callback callback);
PSY_API int32_t psy_waiter_arm(psy_channel *ch, int32_t kind, uint32_t length);
PSY_API int32_t psy_waiter_disarm(psy_channel *ch, int32_t kind);
PSY_API int32_t psy_waiter_stop(psy_channel *ch);

/* Asynchronous waiting without a thread (Linux): the event loop listens on an abstract Unix stream
 * socket named "psyne-bell-" and `bell` as 8 hex digits (its doorbell), and arms a kind: 1 if the
 * condition already holds (nothing armed), 0 once armed. Whoever then satisfies the wait writes a
 * byte to the bell (once per arming). When bytes arrive (safety 0), or from a slow timer (safety
 * 1, every 50 ms or so), psy_bell_wake tells for each armed kind whether to look again (1: it is
 * disarmed; poll, and arm again to wait on). */
PSY_API int32_t psy_bell_arm(psy_channel *ch, int32_t kind, uint32_t length, uint32_t bell);
PSY_API int32_t psy_bell_wake(psy_channel *ch, int32_t kind, uint32_t length, int32_t safety);
PSY_API int32_t psy_bell_disarm(psy_channel *ch, int32_t kind);

/* Observes without consuming: the next committed record after this handle's observer position
 * (which starts at the newest), details in psy_polled(); or PSY_E_EMPTY. The producer does not
 * wait for observers: check psy_peek_intact() after reading to know it was not overwritten. */
PSY_API int32_t psy_peek(psy_channel *ch);
PSY_API int32_t psy_peek_intact(const psy_channel *ch);

/* Looks for participants that died holding ring state and repairs it now (it also runs by
 * itself, at most every 5 ms, whenever the ring looks stuck). */
PSY_API int32_t psy_recover(psy_channel *ch);

/* 1 if participant slot `slot` is held by a live process (the kernel vouches), else 0. */
PSY_API int32_t psy_slot_alive(const psy_channel *ch, uint32_t slot);

/* Reads channel `name` without attaching: its first PSY_RING_OFFSET bytes (control block and
 * participant table) into header_out, and liveness into alive_out[1 + PSY_MAX_SLOTS]: [0] is 1 if
 * any handle is attached, [1 + i] if slot i's owner lives. 0, or PSY_E_NOT_FOUND, or
 * PSY_E_CORRUPT (header_out is still filled). */
PSY_API int32_t psy_inspect(const char *name, uint8_t *header_out, uint32_t *alive_out);
/* Removes channel `name` only if no live process is attached: 1 removed, 0 in use. With
 * `only_if_empty`, also only if it holds no message a consumer has not received (what
 * psyne's automatic cleanup removes). Race-free against processes attaching at that moment. */
PSY_API int32_t psy_remove_if_stale(const char *name, int32_t only_if_empty);

/* Removes the segment named `name` (0, or PSY_E_NOT_FOUND). Attached handles keep working. */
PSY_API int32_t psy_unlink(const char *name);

/* A description of the last failure on this thread, with the values involved. */
PSY_API const char *psy_last_error(void);
/* "NAME=VALUE;" for every constant of layout.h that other languages need. */
PSY_API const char *psy_layout(void);
PSY_API uint32_t psy_layout_hash(void);

#ifdef __cplusplus
}
#endif
#endif
