/* Ring operations for every mode: claim, commit and abandon on the producer side; poll, unpoll
 * and release on the consumer side. Every value read from shared memory is bounded before use, so
 * a corrupted segment yields PSY_E_CORRUPT, never an access outside the mapping or a hang.
 *
 * Producers. One producer (SPSC, SPMC, BROADCAST) claims from a private position and publishes
 * tail itself, in claim order. Several (MPSC, MPMC) take space with a CAS on claim_tail, write
 * the record header's position tag last, and commit by storing the record state; whoever commits
 * the record at tail then advances tail over every finished record (advance_tail).
 *
 * Consumers. One consumer (SPSC, MPSC) reads from a private position and releases by storing
 * head. A BROADCAST subscriber does the same with its slot's read_pos; the producer's free space
 * ends at the slowest live subscriber. Work queues (SPMC, MPMC) take a record with a CAS on
 * claim_head and mark it TAKEN; release marks it DONE and advances head over DONE records
 * (advance_head). A taken record a consumer gives back (a type mismatch left at close) returns
 * to COMMITTED behind claim_head and is counted in returned; takers look there first.
 *
 * Each side caches the other side's cursor and re-reads the shared one only when the cache says
 * full (producer) or empty (consumer): the cursor lines then move between cores rarely. */
#include "internal.h"

#include <string.h>
#include <time.h>

static inline int multi_producer(const psy_channel *ch) { return ch->mode == PSY_MPSC || ch->mode == PSY_MPMC; }
static inline int work_queue(const psy_channel *ch) { return ch->mode == PSY_SPMC || ch->mode == PSY_MPMC; }

static uint64_t *slot_counter(psy_channel *ch, uint32_t offset) {
  return (uint64_t *)(slot_at(ch, (uint32_t)ch->slot) + offset);
}
static uint32_t *own_slot_u32(psy_channel *ch, uint32_t offset) {
  return (uint32_t *)(slot_at(ch, (uint32_t)ch->slot) + offset);
}
static inline uint32_t *rec_u32(uint8_t *rec, uint32_t field) { return (uint32_t *)(rec + field); }
/* A record state stamped with its owner: this slot and this incarnation of it. */
static inline uint32_t mine(const psy_channel *ch, uint32_t state) {
  return state | ((uint32_t)ch->slot << PSY_REC_OWNER_SHIFT) | ((ch->generation & 0xffff) << PSY_REC_GENERATION_SHIFT);
}
static inline uint64_t *state_and_tag(uint8_t *rec) { return (uint64_t *)(rec + PSY_REC_STATE); }
static inline uint64_t state_word(uint32_t position, uint32_t state) { return ((uint64_t)position << 32) | state; }
static inline int cas_state(uint8_t *rec, uint64_t expected, uint64_t desired) {
  return __atomic_compare_exchange_n(state_and_tag(rec), &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static void maybe_recover(psy_channel *ch);
static void publish_read(psy_channel *ch);

static int32_t corrupt_cursors(psy_channel *ch, const char *what, uint32_t a, uint32_t b) {
  return psy_fail(PSY_E_CORRUPT, "channel %s is corrupt: %s (%u, %u) are more than capacity %u apart",
                  ch->path + 7, what, a, b, ch->capacity);
}

/* A record header read from the ring: valid only if its tag matches and it fits `available`. */
typedef struct {
  uint32_t length, type, state, span;
  uint32_t stamp; /* the whole state word, owner included */
} record_header;

static int read_header(const psy_channel *ch, uint32_t pos, uint32_t available, record_header *h) {
  uint8_t *rec = record_at(ch, pos);
  if (load32(rec_u32(rec, PSY_REC_POSITION)) != pos) return 0; /* acquire: the fields below are this lap's */
  h->stamp = load32(rec_u32(rec, PSY_REC_STATE));
  h->state = h->stamp & PSY_REC_STATE_MASK;
  h->length = *rec_u32(rec, PSY_REC_LENGTH);
  h->type = *rec_u32(rec, PSY_REC_TYPE);
  h->span = h->length > ch->capacity ? 0 : record_span(h->length);
  return h->span != 0 && h->span <= available;
}

static int32_t corrupt_record(psy_channel *ch, uint32_t pos, uint32_t available) {
  uint8_t *rec = record_at(ch, pos);
  return psy_fail(PSY_E_CORRUPT, "channel %s is corrupt: record at position %u has length %u, state %u, tag %u, with %u bytes published",
                  ch->path + 7, pos, *rec_u32(rec, PSY_REC_LENGTH), *rec_u32(rec, PSY_REC_STATE) & 0xff,
                  *rec_u32(rec, PSY_REC_POSITION), available);
}

/* ---- producer: free space ---------------------------------------------------------------- */

/* BROADCAST: free space ends at the slowest subscriber. With `reap`, subscribers whose process
 * died stop holding the producer back. Returns the new head, or pub_pos if nobody subscribes. */
static uint32_t slowest_subscriber(psy_channel *ch, int reap, int *corrupt) {
  uint32_t head = ch->pub_pos, most_behind = 0;
  for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++) {
    uint8_t *s = slot_at(ch, i);
    if (load32((uint32_t *)(s + PSY_SLOT_STATE)) != PSY_SLOT_ACTIVE) continue;
    uint32_t *roles = (uint32_t *)(s + PSY_SLOT_ROLES);
    if (!(load32(roles) & PSY_ROLE_CONSUMER)) continue;
    uint32_t read_pos = load32((uint32_t *)(s + PSY_SLOT_READ_POS));
    uint32_t behind = ch->pub_pos - read_pos;
    if (behind > ch->capacity) {
      *corrupt = 1;
      continue;
    }
    if (behind && reap && !psy_slot_alive(ch, i)) {
      __atomic_fetch_and(roles, ~PSY_ROLE_CONSUMER, __ATOMIC_SEQ_CST);
      continue;
    }
    if (behind > most_behind) {
      most_behind = behind;
      head = read_pos;
    }
  }
  store32(u32_at(ch, PSY_OFF_HEAD), head); /* for stats: bytes in use */
  return head;
}

/* Re-reads where free space ends; returns 0 if `span` more bytes fit after `pos`. */
static int32_t make_room(psy_channel *ch, uint32_t pos, uint32_t span) {
  int corrupt = 0;
  if (ch->mode == PSY_BROADCAST) {
    ch->head_cache = slowest_subscriber(ch, 0, &corrupt);
    if (!corrupt && pos - ch->head_cache + span > ch->capacity) ch->head_cache = slowest_subscriber(ch, 1, &corrupt);
  } else {
    ch->head_cache = load32(u32_at(ch, PSY_OFF_HEAD)); /* pairs with the consumers' store of head */
  }
  uint32_t used = pos - ch->head_cache;
  if (corrupt || used > ch->capacity) return corrupt_cursors(ch, "claim position and head", pos, ch->head_cache);
  if (used + span > ch->capacity) {
    if (work_queue(ch)) maybe_recover(ch); /* a dead consumer's record may hold head back */
    if (!ch->was_full) (*slot_counter(ch, PSY_SLOT_FULL_EVENTS))++; /* count becoming full, not retries */
    ch->was_full = 1;
    return PSY_E_FULL;
  }
  ch->was_full = 0;
  return 0;
}

/* Single producer taking over from a dead one: records it committed after an unsent one were
 * never published. Publish them (the unsent ones become abandoned) so every message whose
 * send() returned is delivered. Walks only this lap's records (the tag must match). */
static void publish_orphans(psy_channel *ch) {
  uint32_t tail = ch->pub_pos, room = ch->capacity - (tail - ch->head_cache), pos = tail, end = tail;
  while (pos - tail < room) {
    uint8_t *rec = record_at(ch, pos);
    record_header h;
    if (!read_header(ch, pos, room - (pos - tail), &h) || owner_alive(ch, h.stamp)) break;
    if (h.state == PSY_REC_CLAIMED) store32(rec_u32(rec, PSY_REC_STATE), (h.stamp & ~PSY_REC_STATE_MASK) | PSY_REC_ABANDONED);
    else if (h.state != PSY_REC_COMMITTED && h.state != PSY_REC_ABANDONED) break;
    pos += h.span;
    if (h.state == PSY_REC_COMMITTED) end = pos;
  }
  if (end == tail) return;
  debug_log(ch, "published %u bytes of messages a dead producer had sent", end - tail);
  ch->claim_pos = ch->pub_pos = end;
  store32(u32_at(ch, PSY_OFF_TAIL), end);
  notify_waiters(ch, PSY_WAIT_DATA);
}

static int32_t become_producer(psy_channel *ch) {
  int32_t rc = participants_take_role(ch, PSY_ROLE_PRODUCER);
  if (rc) return rc;
  /* single producer: start at the published tail; a dead predecessor's unpublished claims are
   * simply reused. Several: positions live in claim_tail. */
  ch->claim_pos = ch->pub_pos = load32(u32_at(ch, PSY_OFF_TAIL));
  ch->head_cache = ch->mode == PSY_BROADCAST ? ch->pub_pos : load32(u32_at(ch, PSY_OFF_HEAD));
  if (ch->claim_pos - ch->head_cache > ch->capacity) return corrupt_cursors(ch, "tail and head", ch->claim_pos, ch->head_cache);
  if (!multi_producer(ch)) publish_orphans(ch);
  return 0;
}

/* MPSC/MPMC: take up to *count records of `span` bytes from claim_tail with one CAS; *count
 * becomes how many fit (at least one, else PSY_E_FULL). */
static int32_t claim_shared(psy_channel *ch, uint32_t span, uint32_t *count, uint32_t *pos_out) {
  uint32_t *claim_tail = u32_at(ch, PSY_OFF_CLAIM_TAIL);
  uint32_t *claiming_pos = own_slot_u32(ch, PSY_SLOT_CLAIMING_POS), *claiming_span = own_slot_u32(ch, PSY_SLOT_CLAIMING_SPAN);
  for (;;) {
    uint32_t pos = load32(claim_tail);
    if (pos - ch->head_cache + span > ch->capacity) {
      int32_t rc = make_room(ch, pos, span);
      if (load32(claim_tail) != pos) continue; /* moved meanwhile: decide again on fresh values */
      if (rc) {
        __atomic_store_n(claiming_span, 0, __ATOMIC_RELEASE);
        return rc;
      }
    }
    uint32_t fits = (ch->capacity - (pos - ch->head_cache)) / span;
    uint32_t n = *count < fits ? *count : fits;
    /* say what we are about to take: if we die before writing its headers, recover_tail() can
     * still skip it (the CAS below orders these stores before the claim) */
    __atomic_store_n(claiming_pos, pos, __ATOMIC_RELEASE);
    __atomic_store_n(claiming_span, n * span, __ATOMIC_RELEASE);
    if (cas32(claim_tail, pos, pos + n * span)) {
      *pos_out = pos;
      *count = n;
      return 0;
    }
  }
}

/* Claims up to `count` records of `length` payload bytes each, back to back, as many as fit now
 * (at least one, else PSY_E_FULL): one pending entry, committed or abandoned as a whole. */
static int32_t claim(psy_channel *ch, uint32_t count, uint32_t length, uint32_t type) {
  if (!(ch->roles & PSY_ROLE_PRODUCER)) {
    int32_t rc = become_producer(ch);
    if (rc) return rc;
  }
  if (length > ch->capacity - PSY_REC_HEADER)
    return psy_fail(PSY_E_TOO_LARGE, "message of %u bytes can never fit channel %s: capacity %u, record header %u",
                    length, ch->path + 7, ch->capacity, PSY_REC_HEADER);
  if (count == 0) return psy_fail(PSY_E_INVALID_ARG, "a batch of 0 messages");
  if (ch->pending_count == PSY_MAX_PENDING)
    return psy_fail(PSY_E_STATE, "channel %s: %u messages (or batches) allocated and not sent; send or discard some first",
                    ch->path + 7, PSY_MAX_PENDING);
  uint32_t span = record_span(length), pos;
  if (count > ch->capacity / span) count = ch->capacity / span;
  if (multi_producer(ch)) {
    int32_t rc = claim_shared(ch, span, &count, &pos);
    if (rc) return rc;
  } else {
    pos = ch->claim_pos;
    if (pos - ch->head_cache + span * count > ch->capacity) {
      int32_t rc = make_room(ch, pos, span);
      if (rc) return rc;
      uint32_t fits = (ch->capacity - (pos - ch->head_cache)) / span;
      if (count > fits) count = fits;
    }
    ch->claim_pos += span * count;
  }
  /* headers last to first: once the first record's tag is there, all are, and recover_tail()
   * can judge each by its owner; before that it skips the whole claim as one record */
  for (uint32_t i = count; i-- > 0;) {
    uint32_t at = pos + i * span;
    uint8_t *rec = record_at(ch, at);
    __atomic_store_n(rec_u32(rec, PSY_REC_STATE), mine(ch, PSY_REC_CLAIMED), __ATOMIC_RELEASE);
    *rec_u32(rec, PSY_REC_LENGTH) = length;
    *rec_u32(rec, PSY_REC_TYPE) = type;
    /* zero the alignment padding, so every byte of a lap is rewritten: a stale header that
     * advance_tail() or recovery might read is then the previous lap's (its tag cannot match) or
     * payload bytes, which would have to hold this exact position and a finished state by chance */
    if (span - PSY_REC_HEADER != length) memset(rec + PSY_REC_HEADER + length, 0, span - PSY_REC_HEADER - length);
    /* publish the tag last: pairs with read_header()'s acquire load in advance_tail() */
    __atomic_store_n(rec_u32(rec, PSY_REC_POSITION), at, __ATOMIC_RELEASE);
  }
  if (multi_producer(ch)) __atomic_store_n(own_slot_u32(ch, PSY_SLOT_CLAIMING_SPAN), 0, __ATOMIC_RELEASE);
  psy_pending *p = &ch->pending[(ch->pending_first + ch->pending_count++) % PSY_MAX_PENDING];
  p->position = pos;
  p->record_span = span;
  p->count = count;
  p->span = span * count;
  p->length = length * count;
  p->done = 0;
  ch->claimed.index = pos & ch->mask;
  ch->claimed.length = length;
  ch->claimed.type = type;
  ch->claimed.span = span;
  return (int32_t)count;
}

int32_t psy_claim(psy_channel *ch, uint32_t length, uint32_t type) {
  int32_t rc = claim(ch, 1, length, type);
  return rc < 0 ? rc : (int32_t)ch->claimed.index;
}

int32_t psy_claim_batch(psy_channel *ch, uint32_t count, uint32_t length, uint32_t type) {
  return claim(ch, count, length, type);
}

/* MPSC/MPMC: move tail over every finished record; stops at one still being written, whose
 * producer moves it when it commits (both sides use seq_cst, so one of them sees the other). */
static void advance_tail(psy_channel *ch) {
  uint32_t *tail_p = u32_at(ch, PSY_OFF_TAIL), *claim_tail = u32_at(ch, PSY_OFF_CLAIM_TAIL);
  for (;;) {
    uint32_t tail = load32(tail_p), claimed = load32(claim_tail);
    if (tail == claimed || claimed - tail > ch->capacity) return;
    record_header h;
    if (!read_header(ch, tail, claimed - tail, &h) || (h.state != PSY_REC_COMMITTED && h.state != PSY_REC_ABANDONED)) {
      maybe_recover(ch); /* still being written, or its producer died: see recover_tail() */
      return;
    }
    if (cas32(tail_p, tail, tail + h.span)) notify_waiters(ch, PSY_WAIT_DATA);
  }
}

/* Single producer: publish finished claims at the front of the pending queue, in claim order. */
static void publish(psy_channel *ch) {
  uint32_t before = ch->pub_pos;
  while (ch->pending_count && ch->pending[ch->pending_first].done) {
    ch->pub_pos += ch->pending[ch->pending_first].span;
    ch->pending_first = (ch->pending_first + 1) % PSY_MAX_PENDING;
    ch->pending_count--;
  }
  if (ch->pub_pos == before) return;
  /* publish: pairs with the consumers' load of tail in poll, and is ordered before the load of
   * the waiters count in notify_waiters() (see wait.c) */
  publish_cursor(u32_at(ch, PSY_OFF_TAIL), ch->pub_pos);
  notify_waiters(ch, PSY_WAIT_DATA);
}

static int32_t finish(psy_channel *ch, uint32_t index, uint32_t state) {
  for (uint32_t i = 0; i < ch->pending_count; i++) {
    psy_pending *p = &ch->pending[(ch->pending_first + i) % PSY_MAX_PENDING];
    if ((p->position & ch->mask) != index || p->done) continue;
    /* commit: several producers need seq_cst against advance_tail()'s CAS-then-load; a single
     * producer orders it with its publish of tail */
    for (uint32_t k = 0; k < p->count; k++) {
      uint32_t *rec_state = rec_u32(record_at(ch, p->position + k * p->record_span), PSY_REC_STATE);
      if (multi_producer(ch)) store32(rec_state, mine(ch, state));
      else __atomic_store_n(rec_state, mine(ch, state), __ATOMIC_RELEASE);
    }
    p->done = 1;
    if (state == PSY_REC_COMMITTED) {
      *slot_counter(ch, PSY_SLOT_MSGS_SENT) += p->count;
      *slot_counter(ch, PSY_SLOT_BYTES_SENT) += p->length;
    }
    if (multi_producer(ch)) {
      while (ch->pending_count && ch->pending[ch->pending_first].done) {
        ch->pending_first = (ch->pending_first + 1) % PSY_MAX_PENDING;
        ch->pending_count--;
      }
      advance_tail(ch);
    } else {
      publish(ch);
    }
    return 0;
  }
  return psy_fail(PSY_E_STATE, "channel %s: no unsent message at ring index %u (sent twice, or not allocated here)",
                  ch->path + 7, index);
}

int32_t psy_commit(psy_channel *ch, uint32_t index) { return finish(ch, index, PSY_REC_COMMITTED); }
int32_t psy_abandon(psy_channel *ch, uint32_t index) { return finish(ch, index, PSY_REC_ABANDONED); }

/* ---- consumer ---------------------------------------------------------------------------- */

/* The shared word a single consumer or subscriber stores its progress in. */
static uint32_t *own_cursor(psy_channel *ch) {
  return ch->mode == PSY_BROADCAST ? own_slot_u32(ch, PSY_SLOT_READ_POS) : u32_at(ch, PSY_OFF_HEAD);
}

static int32_t become_consumer(psy_channel *ch) {
  if (ch->mode == PSY_BROADCAST) {
    /* subscribe: a conservative read_pos first, then the role (what the producer scans for),
     * then the tail from which this subscriber reads; see the header of this file */
    store32(own_slot_u32(ch, PSY_SLOT_READ_POS), load32(u32_at(ch, PSY_OFF_TAIL)));
    int32_t rc = participants_take_role(ch, PSY_ROLE_CONSUMER);
    if (rc) return rc;
    ch->read_pos = load32(u32_at(ch, PSY_OFF_TAIL));
    store32(own_slot_u32(ch, PSY_SLOT_READ_POS), ch->read_pos);
    ch->read_published = ch->read_pos;
  } else {
    int32_t rc = participants_take_role(ch, PSY_ROLE_CONSUMER);
    if (rc) return rc;
    /* start at head: a dead predecessor's unreleased message is delivered again */
    ch->read_pos = ch->read_published = load32(u32_at(ch, PSY_OFF_HEAD));
  }
  ch->tail_cache = ch->read_pos;
  return 0;
}

/* SPMC/MPMC: move head over DONE records; stops at one still taken, whose owner moves it. */
static void advance_head(psy_channel *ch) {
  uint32_t *head_p = u32_at(ch, PSY_OFF_HEAD), *claim_head = u32_at(ch, PSY_OFF_CLAIM_HEAD);
  for (;;) {
    uint32_t head = load32(head_p), limit = load32(claim_head);
    if (head == limit || limit - head > ch->capacity) return;
    record_header h;
    if (!read_header(ch, head, limit - head, &h) || h.state != PSY_REC_DONE) return;
    if (cas32(head_p, head, head + h.span)) notify_waiters(ch, PSY_WAIT_SPACE);
  }
}

static int32_t deliver(psy_channel *ch, uint32_t pos, const record_header *h) {
  ch->polled.index = pos & ch->mask;
  ch->polled.length = h->length;
  ch->polled.type = h->type;
  ch->polled.span = h->span;
  ch->held = 1;
  ch->held_pos = pos;
  ch->held_span = h->span;
  return (int32_t)ch->polled.index;
}

/* Takes a record given back behind claim_head: CAS on (state, tag) together, so a record that
 * was meanwhile released and overwritten by the next lap is never taken by mistake. */
static int32_t take_returned(psy_channel *ch) {
  uint32_t *returned = u32_at(ch, PSY_OFF_RETURNED);
  if (load32(returned) == 0) return PSY_E_EMPTY;
  uint32_t pos = load32(u32_at(ch, PSY_OFF_HEAD)), limit = load32(u32_at(ch, PSY_OFF_CLAIM_HEAD));
  if (limit - pos > ch->capacity) return PSY_E_EMPTY;
  while (pos != limit) {
    record_header h;
    if (!read_header(ch, pos, limit - pos, &h)) return PSY_E_EMPTY; /* head moved past pos: rescan later */
    if (h.state == PSY_REC_COMMITTED && cas_state(record_at(ch, pos), state_word(pos, h.stamp), state_word(pos, mine(ch, PSY_REC_TAKEN)))) {
      uint32_t hint = load32(returned);
      if (hint) cas32(returned, hint, hint - 1);
      return deliver(ch, pos, &h);
    }
    pos += h.span;
  }
  /* nothing behind claim_head to take: the count was only a hint (recovery sets it again) */
  uint32_t hint = load32(returned);
  if (hint) cas32(returned, hint, 0);
  return PSY_E_EMPTY;
}

static int32_t take_next(psy_channel *ch) {
  if (++ch->polls_since_recovery >= 1024) maybe_recover(ch); /* a dead consumer's record may be waiting */
  int32_t returned = take_returned(ch);
  if (returned != PSY_E_EMPTY) return returned;
  uint32_t *claim_head = u32_at(ch, PSY_OFF_CLAIM_HEAD);
  for (;;) {
    uint32_t pos = load32(claim_head);
    uint32_t tail = load32(u32_at(ch, PSY_OFF_TAIL)); /* pairs with the producers' publish of tail */
    if (pos == tail) {
      maybe_recover(ch);
      return PSY_E_EMPTY;
    }
    uint32_t available = tail - pos;
    record_header h;
    int valid = available <= ch->capacity && read_header(ch, pos, available, &h) &&
                (h.state == PSY_REC_COMMITTED || h.state == PSY_REC_ABANDONED);
    if (!valid) {
      if (load32(claim_head) != pos) continue; /* another consumer took it meanwhile */
      return available > ch->capacity ? corrupt_cursors(ch, "tail and claim_head", tail, pos)
                                      : corrupt_record(ch, pos, available);
    }
    if (!cas32(claim_head, pos, pos + h.span)) continue;
    uint8_t *rec = record_at(ch, pos);
    if (h.state == PSY_REC_ABANDONED) {
      store32(rec_u32(rec, PSY_REC_STATE), mine(ch, PSY_REC_DONE));
      advance_head(ch);
      continue;
    }
    /* CAS, not a store: if we stalled here, recovery may have handed the record to another
     * consumer through take_returned(); exactly one of us gets it */
    if (!cas_state(rec, state_word(pos, h.stamp), state_word(pos, mine(ch, PSY_REC_TAKEN)))) continue;
    return deliver(ch, pos, &h);
  }
}

static int32_t read_next(psy_channel *ch) {
  for (;;) {
    if (ch->read_pos == ch->tail_cache) {
      ch->tail_cache = load32(u32_at(ch, PSY_OFF_TAIL)); /* pairs with the producer's publish of tail */
      if (ch->read_pos == ch->tail_cache) {
        if (multi_producer(ch)) maybe_recover(ch); /* a dead producer's claim may block tail */
        return PSY_E_EMPTY;
      }
    }
    uint32_t available = ch->tail_cache - ch->read_pos;
    if (available > ch->capacity) return corrupt_cursors(ch, "tail and read position", ch->tail_cache, ch->read_pos);
    record_header h;
    if (!read_header(ch, ch->read_pos, available, &h) || (h.state != PSY_REC_COMMITTED && h.state != PSY_REC_ABANDONED))
      return corrupt_record(ch, ch->read_pos, available);
    if (h.state == PSY_REC_ABANDONED) { /* skip it, and free its space */
      ch->read_pos += h.span;
      publish_read(ch);
      continue;
    }
    return deliver(ch, ch->read_pos, &h);
  }
}

/* Publishes a single consumer's progress: frees the space it read. */
static void publish_read(psy_channel *ch) {
  if (ch->read_pos == ch->read_published) return;
  ch->read_published = ch->read_pos;
  /* publish free space: pairs with the producer's load in make_room(), and is ordered before the
   * waiters check that follows (see wait.c) */
  publish_cursor(own_cursor(ch), ch->read_pos);
  notify_waiters(ch, PSY_WAIT_SPACE);
}

/* Releases the held record. A single consumer draining a batch (`defer`) publishes its progress
 * only every quarter of the ring, and at the end (psy_release): far fewer cache-line transfers. */
static void release(psy_channel *ch, int defer) {
  if (!ch->held) return;
  ch->held = 0;
  ch->unpolled = 0;
  (*slot_counter(ch, PSY_SLOT_MSGS_RECEIVED))++;
  *slot_counter(ch, PSY_SLOT_BYTES_RECEIVED) += ch->polled.length;
  if (work_queue(ch)) {
    store32(rec_u32(record_at(ch, ch->held_pos), PSY_REC_STATE), mine(ch, PSY_REC_DONE));
    advance_head(ch);
  } else {
    ch->read_pos = ch->held_pos + ch->held_span;
    if (!defer || ch->read_pos - ch->read_published >= ch->capacity / 4) publish_read(ch);
  }
}

int32_t psy_release(psy_channel *ch) {
  release(ch, 0);
  if (!work_queue(ch)) publish_read(ch); /* whatever a batch left unpublished */
  return 0;
}

int32_t psy_unpoll(psy_channel *ch) {
  if (ch->held) ch->unpolled = 1; /* the next poll returns the same record */
  return 0;
}

static int32_t poll(psy_channel *ch, int defer) {
  if (!(ch->roles & PSY_ROLE_CONSUMER)) {
    int32_t rc = become_consumer(ch);
    if (rc) return rc;
  }
  if (ch->held && ch->unpolled) {
    ch->unpolled = 0;
    return (int32_t)ch->polled.index;
  }
  release(ch, defer);
  int32_t rc = work_queue(ch) ? take_next(ch) : read_next(ch);
  if (rc == PSY_E_EMPTY && !work_queue(ch)) publish_read(ch); /* caught up: free everything read */
  return rc;
}

int32_t psy_poll(psy_channel *ch) { return poll(ch, 0); }
int32_t psy_poll_batch(psy_channel *ch) { return poll(ch, 1); }

const psy_polled_record *psy_polled(const psy_channel *ch) { return &ch->polled; }
const psy_polled_record *psy_claimed(const psy_channel *ch) { return &ch->claimed; }

/* Taking a role sets up the side's positions, exactly as a first claim or poll would. */
int32_t psy_take_role(psy_channel *ch, uint32_t role) {
  if (role == PSY_ROLE_PRODUCER) return ch->roles & role ? 0 : become_producer(ch);
  if (role == PSY_ROLE_CONSUMER) return ch->roles & role ? 0 : become_consumer(ch);
  return psy_fail(PSY_E_INVALID_ARG, "unknown role %u", role);
}

/* ---- crash recovery ------------------------------------------------------------------------
 * Whoever finds the ring stuck looks for the dead (at most every RECOVERY_INTERVAL_MS per handle):
 * consumers when they find nothing, producers when they find no room or a stuck tail. Liveness
 * comes from the kernel (owner_alive); every position and length is bounded as elsewhere. */

#define RECOVERY_INTERVAL_MS 5

/* MPSC/MPMC: participant `slot` is dead; if it died between taking space and writing the
 * header, write an abandoned header there so consumers skip it. 1 if it did. */
static int abandon_dead_claim(psy_channel *ch, uint32_t slot) {
  uint8_t *s = slot_at(ch, slot);
  uint32_t pos = load32((uint32_t *)(s + PSY_SLOT_CLAIMING_POS)), span = load32((uint32_t *)(s + PSY_SLOT_CLAIMING_SPAN));
  uint32_t tail = load32(u32_at(ch, PSY_OFF_TAIL)), claimed = load32(u32_at(ch, PSY_OFF_CLAIM_TAIL));
  if (!span || claimed - tail > ch->capacity || pos - tail >= claimed - tail) return 0;
  /* a dead producer whose CAS failed keeps a stale claim: if a live one names the same position,
   * that one won it and is about to write the header */
  for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++) {
    uint8_t *other = slot_at(ch, i);
    if (i != slot && load32((uint32_t *)(other + PSY_SLOT_CLAIMING_POS)) == pos &&
        load32((uint32_t *)(other + PSY_SLOT_CLAIMING_SPAN)) != 0 && psy_slot_alive(ch, i))
      return 0;
  }
  uint8_t *rec = record_at(ch, pos);
  if (load32(rec_u32(rec, PSY_REC_POSITION)) == pos) return 0; /* header written: recover_tail() judges it by its owner */
  if (span < PSY_REC_HEADER || span % PSY_REC_ALIGN || span > claimed - pos) return 0;
  if (pos + span != claimed && load32(rec_u32(record_at(ch, pos + span), PSY_REC_POSITION)) != pos + span) return 0;
  *rec_u32(rec, PSY_REC_LENGTH) = span - PSY_REC_HEADER;
  *rec_u32(rec, PSY_REC_TYPE) = 0;
  store32(rec_u32(rec, PSY_REC_STATE), PSY_REC_ABANDONED | (slot << PSY_REC_OWNER_SHIFT));
  store32(rec_u32(rec, PSY_REC_POSITION), pos);
  store32((uint32_t *)(s + PSY_SLOT_CLAIMING_SPAN), 0);
  debug_log(ch, "skipped %u bytes a dead producer claimed at position %u", span, pos);
  return 1;
}

/* A dead participant's slot is being taken over: settle what it left half-done first. */
void ring_forget_participant(psy_channel *ch, uint32_t slot) {
  if (multi_producer(ch) && abandon_dead_claim(ch, slot)) advance_tail(ch);
  store32((uint32_t *)(slot_at(ch, slot) + PSY_SLOT_CLAIMING_SPAN), 0);
}

/* MPSC/MPMC: a producer died between claiming space and committing it; its record blocks tail. */
static void recover_tail(psy_channel *ch) {
  uint32_t tail = load32(u32_at(ch, PSY_OFF_TAIL)), claimed = load32(u32_at(ch, PSY_OFF_CLAIM_TAIL));
  if (tail == claimed || claimed - tail > ch->capacity) return;
  uint8_t *rec = record_at(ch, tail);
  uint64_t word = __atomic_load_n(state_and_tag(rec), __ATOMIC_SEQ_CST);
  uint32_t stamp = (uint32_t)word;
  if ((uint32_t)(word >> 32) == tail) { /* its header is written: the owner is in it */
    if ((stamp & PSY_REC_STATE_MASK) != PSY_REC_CLAIMED || owner_alive(ch, stamp)) return;
    if (cas_state(rec, word, state_word(tail, (stamp & ~PSY_REC_STATE_MASK) | PSY_REC_ABANDONED)))
      debug_log(ch, "skipped the unfinished message of a dead producer at position %u", tail);
    advance_tail(ch);
    return;
  }
  /* no header yet: whoever took [tail, ...) said so in its slot before its CAS */
  for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++) {
    uint8_t *sl = slot_at(ch, i);
    if (load32((uint32_t *)(sl + PSY_SLOT_CLAIMING_POS)) != tail || load32((uint32_t *)(sl + PSY_SLOT_CLAIMING_SPAN)) == 0) continue;
    if (psy_slot_alive(ch, i)) return; /* alive: it is about to write the header */
    if (abandon_dead_claim(ch, i)) {
      advance_tail(ch);
      return;
    }
  }
}

/* SPMC/MPMC: messages taken by a consumer that died are given back for another to take. */
static void recover_takers(psy_channel *ch) {
  uint32_t pos = load32(u32_at(ch, PSY_OFF_HEAD)), limit = load32(u32_at(ch, PSY_OFF_CLAIM_HEAD));
  if (limit - pos > ch->capacity) return;
  uint32_t found = 0;
  while (pos != limit) {
    record_header h;
    if (!read_header(ch, pos, limit - pos, &h)) return; /* head moved under us: next time */
    uint8_t *rec = record_at(ch, pos);
    if (h.state == PSY_REC_TAKEN && !owner_alive(ch, h.stamp) &&
        cas_state(rec, state_word(pos, h.stamp), state_word(pos, (h.stamp & ~PSY_REC_STATE_MASK) | PSY_REC_COMMITTED))) {
      debug_log(ch, "a dead consumer held the message at position %u: it will be delivered again", pos);
      found++;
    } else if (h.state == PSY_REC_COMMITTED) {
      found++; /* taken off claim_head but never marked: its taker died in between */
    }
    pos += h.span;
  }
  if (found && load32(u32_at(ch, PSY_OFF_RETURNED)) == 0) __atomic_fetch_add(u32_at(ch, PSY_OFF_RETURNED), found, __ATOMIC_SEQ_CST);
  if (found) notify_waiters(ch, PSY_WAIT_DATA);
}

#ifndef CLOCK_MONOTONIC_COARSE /* macOS */
#define CLOCK_MONOTONIC_COARSE CLOCK_MONOTONIC
#endif

static double monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void maybe_recover(psy_channel *ch) {
  ch->polls_since_recovery = 0;
  double now = monotonic_ms();
  if (now < ch->next_recovery_ms) return;
  ch->next_recovery_ms = now + RECOVERY_INTERVAL_MS;
  if (multi_producer(ch)) recover_tail(ch);
  if (work_queue(ch)) recover_takers(ch);
}

void ring_maybe_recover(psy_channel *ch) { maybe_recover(ch); }

/* Shared words only (for the waiter thread): could a dead participant be holding the ring? A claim
 * in flight at tail, or a taken record not yet released. Live ones clear this within microseconds. */
int ring_may_be_stuck(const psy_channel *ch) {
  if (multi_producer(ch) && load32(u32_at(ch, PSY_OFF_TAIL)) != load32(u32_at(ch, PSY_OFF_CLAIM_TAIL))) return 1;
  return work_queue(ch) && load32(u32_at(ch, PSY_OFF_HEAD)) != load32(u32_at(ch, PSY_OFF_CLAIM_HEAD));
}

int32_t psy_recover(psy_channel *ch) {
  ch->next_recovery_ms = 0;
  maybe_recover(ch);
  return 0;
}

/* ---- observing ---------------------------------------------------------------------------- */

/* The next committed record after this handle's observer position, without consuming it or
 * holding the producer back (for `psyne tail`). A writer may lap the observer: then it skips to
 * the newest data. psy_peek_intact() tells whether the record was overwritten while being read. */
int32_t psy_peek(psy_channel *ch) {
  uint32_t tail = load32(u32_at(ch, PSY_OFF_TAIL));
  if (!ch->observing) {
    ch->observing = 1;
    ch->observe_pos = tail;
  }
  for (;;) {
    if (ch->observe_pos == tail) return PSY_E_EMPTY;
    uint32_t available = tail - ch->observe_pos;
    record_header h;
    if (available > ch->capacity || !read_header(ch, ch->observe_pos, available, &h)) {
      ch->observe_pos = tail; /* lapped: start again from the newest */
      return PSY_E_EMPTY;
    }
    uint32_t pos = ch->observe_pos;
    ch->observe_pos += h.span;
    if (h.state == PSY_REC_ABANDONED || h.state == PSY_REC_CLAIMED) continue;
    ch->peeked_pos = pos;
    ch->polled.index = pos & ch->mask;
    ch->polled.length = h.length;
    ch->polled.type = h.type;
    ch->polled.span = h.span;
    return (int32_t)ch->polled.index;
  }
}

int32_t psy_peek_intact(const psy_channel *ch) {
  return load32(rec_u32(record_at(ch, ch->peeked_pos), PSY_REC_POSITION)) == ch->peeked_pos;
}

/* ---- conditions for waiting (called on the handle's own thread) ---------------------------- */

/* May psy_poll find a message now? */
int ring_has_data(psy_channel *ch) {
  if (!(ch->roles & PSY_ROLE_CONSUMER) || (ch->held && ch->unpolled)) return 1;
  if (work_queue(ch))
    return load32(u32_at(ch, PSY_OFF_RETURNED)) != 0 ||
           load32(u32_at(ch, PSY_OFF_CLAIM_HEAD)) != load32(u32_at(ch, PSY_OFF_TAIL));
  uint32_t next = ch->held ? ch->held_pos + ch->held_span : ch->read_pos;
  return load32(u32_at(ch, PSY_OFF_TAIL)) != next;
}

/* May psy_claim find room for `length` payload bytes now? */
int ring_has_space(psy_channel *ch, uint32_t length) {
  if (!(ch->roles & PSY_ROLE_PRODUCER) || length > ch->capacity - PSY_REC_HEADER) return 1;
  uint32_t pos = multi_producer(ch) ? load32(u32_at(ch, PSY_OFF_CLAIM_TAIL)) : ch->claim_pos;
  return make_room(ch, pos, record_span(length)) != PSY_E_FULL;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

void ring_close(psy_channel *ch) {
  if (ch->held && ch->unpolled) { /* never delivered to the user: give it back */
    ch->held = 0;
    if (work_queue(ch)) {
      store32(rec_u32(record_at(ch, ch->held_pos), PSY_REC_STATE), mine(ch, PSY_REC_COMMITTED));
      __atomic_fetch_add(u32_at(ch, PSY_OFF_RETURNED), 1, __ATOMIC_SEQ_CST);
    }
  }
  psy_release(ch);
  if (ch->roles & PSY_ROLE_PRODUCER) { /* unsent messages must not hold back the ones sent after them */
    for (uint32_t i = 0; i < ch->pending_count; i++) {
      psy_pending *p = &ch->pending[(ch->pending_first + i) % PSY_MAX_PENDING];
      if (p->done) continue;
      for (uint32_t k = 0; k < p->count; k++)
        store32(rec_u32(record_at(ch, p->position + k * p->record_span), PSY_REC_STATE), mine(ch, PSY_REC_ABANDONED));
      p->done = 1;
    }
    if (multi_producer(ch)) {
      ch->pending_count = 0;
      advance_tail(ch);
    } else {
      publish(ch);
    }
  }
}

/* Does the ring hold a message nobody has received? Walks head..tail with every length bounded;
 * a ring it cannot make sense of counts as holding messages (never delete data blindly).
 * BROADCAST keeps nothing for subscribers yet to come. */
int ring_has_unread(psy_channel *ch) {
  if (ch->mode == PSY_BROADCAST) return 0;
  uint32_t tail = load32(u32_at(ch, PSY_OFF_TAIL));
  uint32_t pos = load32(u32_at(ch, PSY_OFF_HEAD));
  if (tail - pos > ch->capacity) return 1;
  while (pos != tail) {
    record_header h;
    if (!read_header(ch, pos, tail - pos, &h) || (h.state != PSY_REC_ABANDONED && h.state != PSY_REC_DONE)) return 1;
    pos += h.span;
  }
  return 0;
}

uint32_t psy_used(const psy_channel *ch) {
  uint32_t used = load32(u32_at(ch, PSY_OFF_TAIL)) - load32(u32_at(ch, PSY_OFF_HEAD));
  return used > ch->capacity ? ch->capacity : used;
}
