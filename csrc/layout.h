/* psyne shared-memory layout: the one map of a channel segment, for C and (through psy_layout())
 * for TypeScript. Any change here bumps PSY_LAYOUT_VERSION; the layout hash catches the rest.
 *
 *   file offset
 *   0       control block (4 KiB): identity, config, role owners, cursors, event counts, totals.
 *           Every cursor and event count sits on its own 64-byte cache line.
 *   4096    participant table: PSY_MAX_SLOTS slots of 128 bytes, one per attached handle.
 *   16384   ring: `capacity` bytes (a power of two) of records.
 *
 * The ring is mapped twice, back to back, so a record that runs past the ring's end is still
 * contiguous in memory: no padding records, and any message up to the capacity fits.
 *
 * Vocabulary: a *position* is a u64 byte count that grows forever (it would take centuries to
 * wrap, and every comparison is a wrapping difference anyway); an *index* is a position masked
 * into the ring; an *offset* counts bytes from the segment start.
 *
 * A record:
 *
 *    0               4               8              12              16
 *   +---------------+---------------+---------------+---------------+---------------...
 *   | length (u32)  | type (u32)    | state (u32)   | tag (u32)     | payload, length bytes
 *   +---------------+---------------+---------------+---------------+---------------...
 *
 *   span = 16 + length rounded up to 16 (so payloads are 16-aligned for every typed array).
 *   state = record state (bits 0..3) | owner slot (4..9) | the owner slot's generation (10..31),
 *   so a record whose owner died is recognized even after its slot was taken again.
 *   tag = a hash of the record's 64-bit position and the channel's salt, stored last: it tells
 *   this lap's header from stale bytes (older laps, payloads, a fresh zeroed ring). State and tag
 *   form one 8-byte word, compared-and-swapped together where consumers race.
 *
 * Who moves what (all u64 positions):
 *   tail        positions below it are committed records. SPSC/SPMC/BROADCAST: the producer stores
 *               it; MPSC/MPMC: whoever commits the record at tail advances it over finished ones.
 *   claim_tail  MPSC/MPMC: producers take space with a CAS on it. Single-producer modes: unused.
 *   head        positions below it are free for producers. SPSC/MPSC: the consumer stores it on
 *               release. SPMC/MPMC: advanced over DONE or ABANDONED records by whoever passes.
 *               BROADCAST: the slowest subscriber's read_pos as last seen (for stats only).
 *   claim_head  SPMC/MPMC: consumers take the next record with a CAS on it; a record given back
 *               returns to COMMITTED behind it and `returned` hints at it.
 *
 * Liveness: each slot is owned by whoever holds an OFD write lock on byte PSY_LOCK_SLOT(i) of the
 * segment file; the kernel drops it when the owner dies. Byte PSY_LOCK_ATTACH is read-locked by
 * every attached handle and write-locked only while initializing or removing the segment. Byte
 * PSY_LOCK_RECOVERY is write-locked by whoever repairs what a dead participant left (recovery.c).
 */
#ifndef PSYNE_LAYOUT_H
#define PSYNE_LAYOUT_H

#include <stdint.h>

#define PSY_MAGIC 0x31454e5953505350ull /* "PSPSYNE1" little-endian */
#define PSY_LAYOUT_VERSION 3u
#define PSY_INIT_READY 0x59444552u /* "REDY": stored last by the initializer */

#define PSY_CACHE_LINE 64u
#define PSY_PAGE 4096u
#define PSY_MIN_CAPACITY 4096u
#define PSY_MAX_CAPACITY (1u << 30)
#define PSY_DEFAULT_CAPACITY (4u << 20)
#define PSY_MAX_SLOTS 64u
#define PSY_NAME_MAX 200u

/* control block: identity and config, written once by the initializer */
#define PSY_OFF_MAGIC 0u           /* u64 */
#define PSY_OFF_VERSION 8u         /* u32 */
#define PSY_OFF_LAYOUT_HASH 12u    /* u32 */
#define PSY_OFF_INIT_STATE 16u     /* u32, PSY_INIT_READY once usable */
#define PSY_OFF_MODE 20u           /* u32, psy_mode */
#define PSY_OFF_CAPACITY 24u       /* u32, ring bytes */
#define PSY_OFF_MAX_SLOTS 28u      /* u32 */
#define PSY_OFF_RING_OFFSET 32u    /* u32 */
#define PSY_OFF_PRODUCER_OWNER 36u /* u32, slot + 1 of the exclusive producer, 0 if none */
#define PSY_OFF_CONSUMER_OWNER 40u /* u32, slot + 1 of the exclusive consumer, 0 if none */
#define PSY_OFF_TAG_SALT 44u       /* u32, random at creation: mixed into every record tag */
#define PSY_OFF_CREATED_MS 48u     /* u64, wall clock at creation */
#define PSY_OFF_FENCE_MODE 56u     /* u32, PSY_FENCE_*: how publishers order against waiters */
/* cursors (u64 positions), each on its own line: producers and consumers must not false-share */
#define PSY_OFF_TAIL 64u
#define PSY_OFF_CLAIM_TAIL 128u
#define PSY_OFF_HEAD 192u
#define PSY_OFF_CLAIM_HEAD 256u
#define PSY_OFF_RETURNED 264u /* u32, SPMC/MPMC: a hint that records were given back behind claim_head */
/* event counts for futex waiting: bumped after a publish / a release when waiters > 0 */
#define PSY_OFF_DATA_SEQ 320u      /* u32 */
#define PSY_OFF_DATA_WAITERS 324u  /* u32 */
#define PSY_OFF_DATA_SLEEPERS 328u /* u32, the waiters that sleep on the futex (not on a doorbell) */
#define PSY_OFF_SPACE_SEQ 384u     /* u32 */
#define PSY_OFF_SPACE_WAITERS 388u /* u32 */
#define PSY_OFF_SPACE_SLEEPERS 392u /* u32 */
/* totals of slots that were freed (live slots keep their own counters) */
#define PSY_OFF_RETIRED 448u       /* 5 x u64, in the order of the slot counters */
/* u64: bit i set while slot i's handle waits with a doorbell armed (PSY_SLOT_BELL_STATE) */
#define PSY_OFF_BELLS 512u
#define PSY_CONTROL_SIZE 4096u

/* participant slots */
#define PSY_OFF_SLOTS 4096u
#define PSY_SLOT_SIZE 128u
#define PSY_SLOT_STATE 0u          /* u32, PSY_SLOT_FREE / PSY_SLOT_ACTIVE */
#define PSY_SLOT_PID 4u            /* u32 */
#define PSY_SLOT_START_TIME 8u     /* u64, /proc/PID/stat field 22 (clock ticks since boot) */
#define PSY_SLOT_ROLES 16u         /* u32, PSY_ROLE_* bits; with GENERATION one u64 word */
#define PSY_SLOT_GENERATION 20u    /* u32, bumped each time the slot is taken */
#define PSY_SLOT_MSGS_SENT 24u     /* u64, written by the owner only */
#define PSY_SLOT_BYTES_SENT 32u    /* u64 */
#define PSY_SLOT_MSGS_RECEIVED 40u /* u64 */
#define PSY_SLOT_BYTES_RECEIVED 48u /* u64 */
#define PSY_SLOT_FULL_EVENTS 56u   /* u64 */
#define PSY_SLOT_READ_POS 64u      /* u64, BROADCAST subscriber cursor (own line: the producer reads it) */
#define PSY_SLOT_CLAIMING_POS 72u  /* u64, MPSC/MPMC: position a producer is claiming, for crash recovery */
#define PSY_SLOT_CLAIMING_SPAN 80u /* u32, MPSC/MPMC: span being claimed at CLAIMING_POS, 0 when done */
#define PSY_SLOT_WAITING 84u       /* u32, PSY_WAITING_* bits: counted in the waiters words */
#define PSY_SLOT_TAKEN_POS 88u     /* u64, SPSC/MPSC/BROADCAST consumer: end of the last record it took (for flush) */
#define PSY_SLOT_BELL 96u          /* u32, the doorbell of the handle's event loop: abstract Unix socket
                                    * "psyne-bell-%08x" (0: none); see psy_bell_arm */
#define PSY_SLOT_BELL_STATE 100u   /* u32, PSY_BELL_* of each wait kind (2 bits at 2 * kind): whoever
                                    * satisfies an armed kind makes it RUNG and rings the bell once */

/* A subscriber's READ_POS while it joins: the first of it and the producer to replace it decides
 * where the subscriber starts (see ring.c, subscribe). */
#define PSY_JOINING_POS 0xffffffffffffffffull

#define PSY_RING_OFFSET 16384u

/* records */
#define PSY_REC_HEADER 16u
#define PSY_REC_ALIGN 16u
#define PSY_REC_LENGTH 0u
#define PSY_REC_TYPE 4u
#define PSY_REC_STATE 8u
#define PSY_REC_TAG 12u

#define PSY_REC_CLAIMED 1u   /* space taken, payload being written */
#define PSY_REC_COMMITTED 2u /* visible to consumers */
#define PSY_REC_ABANDONED 3u /* skipped: its producer released or died before committing */
#define PSY_REC_TAKEN 4u     /* SPMC/MPMC: owned by the consumer in the owner bits */
#define PSY_REC_DONE 5u      /* SPMC/MPMC: released, space reclaimable */
#define PSY_REC_SKIPPED 6u   /* a claim whose producer died before writing its header: recovery wrote
                              * only the state word (one CAS), with the span in bits 4..31 in units of
                              * 16 bytes; length and type are stale. Consumers skip it. */
#define PSY_REC_STATE_MASK 0xfu
#define PSY_REC_OWNER_SHIFT 4
#define PSY_REC_OWNER_MASK 0x3fu
#define PSY_REC_GENERATION_SHIFT 10
#define PSY_REC_GENERATION_MASK 0x3fffffu
#define PSY_REC_SKIP_SHIFT 4

/* Message type ids (the record's type word). Ids below 256 are psyne's own; defineMessage()
 * structs use a hash of their name and layout, 256 or more. */
#define PSY_TYPE_FLOAT_VECTOR 1u  /* f32[] */
#define PSY_TYPE_DOUBLE_VECTOR 2u /* f64[] */
#define PSY_TYPE_INT32_VECTOR 3u  /* i32[] */
#define PSY_TYPE_BYTE_VECTOR 4u   /* u8[] */
#define PSY_TYPE_TEXT 5u          /* UTF-8 text */
#define PSY_TYPE_JSON 6u          /* UTF-8 JSON */

#define PSY_SLOT_FREE 0u
#define PSY_SLOT_ACTIVE 1u
#define PSY_ROLE_PRODUCER 1u
#define PSY_ROLE_CONSUMER 2u
#define PSY_WAITING_DATA 1u
#define PSY_WAITING_SPACE 2u
#define PSY_WAITING_FLUSH 4u     /* a flush waits on the space event count too */
#define PSY_WAITERS_AFTER_SEQ 4u /* each waiters word follows its event count */
#define PSY_SLEEPERS_AFTER_SEQ 8u /* ...and then its sleepers word */
#define PSY_WAITING_SLEEPS 3u    /* PSY_SLOT_WAITING: a kind's bit << this: it sleeps on the futex */
#define PSY_FENCE_ASYMMETRIC 0u  /* publishers store with release; waiters run membarrier() */
#define PSY_FENCE_SYMMETRIC 1u   /* every publisher stores with seq_cst (a process lacks membarrier) */
#define PSY_BELL_IDLE 0u
#define PSY_BELL_ARMED 1u        /* waiting: the next publisher (or releaser) that satisfies it rings the bell */
#define PSY_BELL_RUNG 2u         /* rung once; the waiter disarms when it looks, and arms again if it must wait on */
#define PSY_BELL_BITS 2u         /* per wait kind in PSY_SLOT_BELL_STATE */

/* byte-range lock offsets in the segment file (advisory; may lie past the end of the file) */
#define PSY_LOCK_ATTACH 0
#define PSY_LOCK_RECOVERY 1
#define PSY_LOCK_SLOT(i) (2 + (i))

_Static_assert(PSY_OFF_TAIL % PSY_CACHE_LINE == 0, "tail on its own line");
_Static_assert(PSY_OFF_CLAIM_TAIL - PSY_OFF_TAIL >= PSY_CACHE_LINE, "claim_tail apart from tail");
_Static_assert(PSY_OFF_HEAD - PSY_OFF_CLAIM_TAIL >= PSY_CACHE_LINE, "head apart from producers");
_Static_assert(PSY_OFF_CLAIM_HEAD - PSY_OFF_HEAD >= PSY_CACHE_LINE, "claim_head apart from head");
_Static_assert(PSY_OFF_DATA_SEQ - PSY_OFF_CLAIM_HEAD >= PSY_CACHE_LINE, "event counts apart");
_Static_assert(PSY_OFF_SPACE_SEQ - PSY_OFF_DATA_SEQ >= PSY_CACHE_LINE, "event counts apart");
_Static_assert(PSY_OFF_FENCE_MODE + 4 <= PSY_OFF_TAIL, "config fits the first line");
_Static_assert(PSY_OFF_RETIRED + 5 * 8 <= PSY_CONTROL_SIZE, "control block fits");
_Static_assert(PSY_OFF_SLOTS >= PSY_CONTROL_SIZE, "slots after control block");
_Static_assert(PSY_SLOT_READ_POS % PSY_CACHE_LINE == 0, "subscriber cursor on its own line");
_Static_assert(PSY_SLOT_ROLES % 8 == 0 && PSY_SLOT_GENERATION == PSY_SLOT_ROLES + 4, "roles and generation share an 8-byte word");
_Static_assert(PSY_SLOT_CLAIMING_POS % 8 == 0, "claiming position is an aligned u64");
_Static_assert(PSY_SLOT_TAKEN_POS % 8 == 0 && PSY_SLOT_BELL_STATE + 4 <= PSY_SLOT_SIZE, "slot fits");
_Static_assert(PSY_OFF_BELLS % PSY_CACHE_LINE == 0 && PSY_OFF_BELLS >= PSY_OFF_RETIRED + 5 * 8, "bells on their own line");
_Static_assert(PSY_MAX_SLOTS <= 64, "a slot is a bit of the bells word");
_Static_assert(PSY_REC_TAG == PSY_REC_STATE + 4 && PSY_REC_STATE % 8 == 0, "state and tag share an 8-byte word");
_Static_assert(PSY_MAX_SLOTS - 1 <= PSY_REC_OWNER_MASK, "a slot index fits the owner bits");
_Static_assert(((uint64_t)PSY_MAX_CAPACITY / PSY_REC_ALIGN) < (1ull << (32 - PSY_REC_SKIP_SHIFT)), "a skipped span fits its state word");
_Static_assert(PSY_OFF_DATA_WAITERS == PSY_OFF_DATA_SEQ + PSY_WAITERS_AFTER_SEQ, "waiters follow seq");
_Static_assert(PSY_OFF_SPACE_WAITERS == PSY_OFF_SPACE_SEQ + PSY_WAITERS_AFTER_SEQ, "waiters follow seq");
_Static_assert(PSY_OFF_DATA_SLEEPERS == PSY_OFF_DATA_SEQ + PSY_SLEEPERS_AFTER_SEQ, "sleepers follow waiters");
_Static_assert(PSY_OFF_SPACE_SLEEPERS == PSY_OFF_SPACE_SEQ + PSY_SLEEPERS_AFTER_SEQ, "sleepers follow waiters");
_Static_assert(PSY_OFF_SLOTS + PSY_MAX_SLOTS * PSY_SLOT_SIZE <= PSY_RING_OFFSET, "slots fit");
_Static_assert(PSY_RING_OFFSET % PSY_PAGE == 0, "ring is page aligned (it is mapped twice)");
_Static_assert(PSY_REC_HEADER % 16 == 0, "payloads stay 16-aligned");
_Static_assert((PSY_MAX_CAPACITY & (PSY_MAX_CAPACITY - 1)) == 0, "capacity is a power of two");

/* Every constant TypeScript may use, by name: psy_layout() renders this list as "NAME=VALUE;". */
#define PSY_LAYOUT_CONSTANTS(X)                                                                    \
  X(LAYOUT_VERSION) X(CACHE_LINE) X(MIN_CAPACITY) X(MAX_CAPACITY) X(DEFAULT_CAPACITY)               \
  X(MAX_SLOTS) X(NAME_MAX) X(OFF_VERSION) X(OFF_LAYOUT_HASH) X(OFF_INIT_STATE) X(OFF_MODE)          \
  X(OFF_CAPACITY) X(OFF_MAX_SLOTS) X(OFF_RING_OFFSET) X(OFF_PRODUCER_OWNER) X(OFF_CONSUMER_OWNER)   \
  X(OFF_TAG_SALT) X(OFF_CREATED_MS) X(OFF_FENCE_MODE) X(OFF_TAIL) X(OFF_CLAIM_TAIL) X(OFF_HEAD)     \
  X(OFF_CLAIM_HEAD) X(OFF_RETURNED) X(OFF_DATA_SEQ) X(OFF_DATA_WAITERS) X(OFF_SPACE_SEQ)            \
  X(OFF_SPACE_WAITERS) X(OFF_RETIRED) X(OFF_SLOTS) X(SLOT_SIZE) X(SLOT_STATE) X(SLOT_PID)           \
  X(SLOT_START_TIME) X(SLOT_ROLES) X(SLOT_GENERATION) X(SLOT_MSGS_SENT) X(SLOT_BYTES_SENT)          \
  X(SLOT_MSGS_RECEIVED) X(SLOT_BYTES_RECEIVED) X(SLOT_FULL_EVENTS) X(SLOT_READ_POS)                 \
  X(SLOT_CLAIMING_POS) X(SLOT_CLAIMING_SPAN) X(SLOT_WAITING) X(SLOT_TAKEN_POS) X(SLOT_BELL) X(SLOT_BELL_STATE) \
  X(OFF_BELLS) X(BELL_IDLE) X(BELL_ARMED) X(BELL_RUNG) X(BELL_BITS) X(RING_OFFSET) X(REC_HEADER)                                    \
  X(REC_ALIGN) X(REC_LENGTH) X(REC_TYPE) X(REC_STATE) X(REC_TAG) X(REC_CLAIMED) X(REC_COMMITTED)    \
  X(REC_ABANDONED) X(REC_TAKEN) X(REC_DONE) X(REC_SKIPPED) X(SLOT_FREE) X(SLOT_ACTIVE) X(ROLE_PRODUCER)            \
  X(ROLE_CONSUMER) X(INIT_READY) X(FENCE_ASYMMETRIC) X(FENCE_SYMMETRIC) X(TYPE_FLOAT_VECTOR)        \
  X(TYPE_DOUBLE_VECTOR) X(TYPE_INT32_VECTOR) X(TYPE_BYTE_VECTOR) X(TYPE_TEXT) X(TYPE_JSON)

#endif
