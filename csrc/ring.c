/* Ring operations for every mode: claim, commit and abandon on the producer side; poll, unpoll
 * and release on the consumer side. Every value read from shared memory is bounded before use, so
 * a corrupted segment yields PSY_E_CORRUPT, never an access outside the mapping or a hang.
 *
 * Producers. One producer (SPSC, SPMC, BROADCAST) claims from a private position and publishes
 * tail itself, in claim order. Several (MPSC, MPMC) take space with a CAS on claim_tail, write
 * the record header's tag last, and commit by storing the record state; whoever commits the
 * record at tail then advances tail over every finished record (advance_tail).
 *
 * Consumers. One consumer (SPSC, MPSC) reads from a private position and releases by storing
 * head. A BROADCAST subscriber does the same with its slot's read_pos; the producer's free space
 * ends at the slowest live subscriber. Work queues (SPMC, MPMC) take a record with a CAS on
 * claim_head and mark it TAKEN; release marks it DONE and advances head over finished records
 * (advance_head). A record given back (at close, or by recovery) returns to COMMITTED behind
 * claim_head with a hint in `returned`; takers look there first.
 *
 * Each side caches the other side's cursor and re-reads the shared one only when the cache says
 * full (producer) or empty (consumer): the cursor lines then move between cores rarely. Positions
 * are 64-bit, so a cache that is old only errs towards "full" and is re-read.
 *
 * Crash recovery is in recovery.c; this file calls it, rate-limited, when it finds itself stuck
 * (maybe_recover). HOOK(...) marks each window between two shared stores (internal.h). */
#include "internal.h"

#include <string.h>

static uint64_t *slot_counter(psy_channel *ch, uint32_t offset) { return slot_u64(ch, (uint32_t)ch->slot, offset); }
static void maybe_recover(psy_channel *ch);

static int32_t corrupt_cursors(psy_channel *ch, const char *what, uint64_t a, uint64_t b) {
  return psy_fail(PSY_E_CORRUPT, "channel %s is corrupt: %s (%llu, %llu) are more than capacity %u apart", ch->path + 7,
                  what, (unsigned long long)a, (unsigned long long)b, ch->capacity);
}

static int32_t corrupt_record(psy_channel *ch, uint64_t position, uint64_t available) {
  uint8_t *rec = record_at(ch, position);
  return psy_fail(PSY_E_CORRUPT, "channel %s is corrupt: record at position %llu has length %u, state %u, tag %08x, with %llu bytes published",
                  ch->path + 7, (unsigned long long)position, *rec_u32(rec, PSY_REC_LENGTH),
                  state_of(*rec_u32(rec, PSY_REC_STATE)), *rec_u32(rec, PSY_REC_TAG), (unsigned long long)available);
}

static int32_t inherited(psy_channel *ch) {
  return psy_fail(PSY_E_STATE, "channel %s: this handle was inherited through fork(); open the channel again in this process", ch->path + 7);
}

/* ---- producer: free space ---------------------------------------------------------------- */

/* BROADCAST: free space ends at the slowest subscriber. With `reap`, subscribers whose process
 * died stop holding the producer back. Returns the new limit (pub_pos if nobody subscribes). */
static uint64_t slowest_subscriber(psy_channel *ch, int reap, int *corrupt) {
  /* pairs with subscribe(): its role RMW then tail load against our tail store then this fence
   * then role loads; so a subscriber we miss here starts at or after pub_pos */
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  uint64_t limit = ch->pub_pos, most_behind = 0;
  int looked_again = 0;
  for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++) {
    if (load32(slot_u32(ch, i, PSY_SLOT_STATE)) != PSY_SLOT_ACTIVE) continue;
    uint64_t roles = load64(slot_u64(ch, i, PSY_SLOT_ROLES));
    if (!(roles & PSY_ROLE_CONSUMER)) continue;
    uint64_t *cursor = slot_u64(ch, i, PSY_SLOT_READ_POS), read_pos = load64(cursor);
    if (read_pos == PSY_JOINING_POS && !cas64(cursor, PSY_JOINING_POS, read_pos = ch->pub_pos))
      read_pos = load64(cursor); /* it picked its start itself just now */
    uint64_t behind = ch->pub_pos - read_pos;
    if (behind > ch->capacity) {
      *corrupt = 1;
      continue;
    }
    if (behind && reap && !DISABLED("reap") && !slot_alive(ch, i)) {
      HOOK("reap_checked");
      if (participants_reap_subscriber(ch, i, roles)) continue;
      if (!looked_again++) i--; /* the slot was taken again meanwhile: look at its new owner */
      continue;
    }
    looked_again = 0;
    if (behind > most_behind) {
      most_behind = behind;
      limit = read_pos;
    }
  }
  store64(u64_at(ch, PSY_OFF_HEAD), limit); /* for stats: bytes in use */
  return limit;
}

/* Re-reads where free space ends; returns 0 if `span` more bytes fit after `position`. */
static int32_t make_room(psy_channel *ch, uint64_t position, uint32_t span) {
  int corrupt = 0;
  if (ch->mode == PSY_BROADCAST) {
    ch->head_cache = slowest_subscriber(ch, 0, &corrupt);
    if (!corrupt && position - ch->head_cache + span > ch->capacity) ch->head_cache = slowest_subscriber(ch, 1, &corrupt);
  } else {
    ch->head_cache = load64(u64_at(ch, PSY_OFF_HEAD)); /* pairs with the consumers' store of head */
    if (work_queue(ch) && position - ch->head_cache + span > ch->capacity) {
      maybe_recover(ch); /* a dead consumer's record, or one nobody moved head over, may hold head back */
      ch->head_cache = load64(u64_at(ch, PSY_OFF_HEAD));
    }
  }
  uint64_t used = position - ch->head_cache;
  if (corrupt || used > ch->capacity) return corrupt_cursors(ch, "claim position and head", position, ch->head_cache);
  if (used + span > ch->capacity) {
    if (!ch->was_full) (*slot_counter(ch, PSY_SLOT_FULL_EVENTS))++; /* count becoming full, not retries */
    ch->was_full = 1;
    return PSY_E_FULL;
  }
  ch->was_full = 0;
  return 0;
}

static int32_t become_producer(psy_channel *ch) {
  int32_t rc = participants_take_role(ch, PSY_ROLE_PRODUCER);
  if (rc) return rc;
  if (multi_producer(ch)) {
    ch->head_cache = load64(u64_at(ch, PSY_OFF_HEAD)); /* positions live in claim_tail */
    ch->sent_end = load64(u64_at(ch, PSY_OFF_CLAIM_TAIL));
    return 0;
  }
  /* single producer: start at the published tail, after publishing what a dead predecessor had
   * committed behind an unsent claim */
  ch->claim_pos = ch->pub_pos = recover_for_new_producer(ch);
  notify_waiters(ch, PSY_WAIT_DATA);
  if (ch->mode == PSY_BROADCAST) {
    int corrupt = 0; /* free space ends at the subscribers, whatever a predecessor left */
    ch->head_cache = slowest_subscriber(ch, 1, &corrupt);
    if (corrupt) return corrupt_cursors(ch, "tail and a subscriber", ch->pub_pos, ch->head_cache);
  } else {
    ch->head_cache = load64(u64_at(ch, PSY_OFF_HEAD));
  }
  if (ch->claim_pos - ch->head_cache > ch->capacity) return corrupt_cursors(ch, "tail and head", ch->claim_pos, ch->head_cache);
  return 0;
}

/* MPSC/MPMC: take up to *count records of `span` bytes from claim_tail with one CAS; *count
 * becomes how many fit (at least one, else PSY_E_FULL). The claim is announced in our slot
 * first (recovery.c, settle_claim), and the announcement withdrawn on every way out. */
static int32_t claim_shared(psy_channel *ch, uint32_t span, uint32_t *count, uint64_t *position_out) {
  uint64_t *claim_tail = u64_at(ch, PSY_OFF_CLAIM_TAIL);
  uint64_t *intent_position = slot_u64(ch, (uint32_t)ch->slot, PSY_SLOT_CLAIMING_POS);
  uint32_t *intent_span = slot_u32(ch, (uint32_t)ch->slot, PSY_SLOT_CLAIMING_SPAN);
  for (;;) {
    uint64_t position = load64(claim_tail);
    if (position - ch->head_cache + span > ch->capacity) {
      int32_t rc = make_room(ch, position, span);
      if (load64(claim_tail) != position) continue; /* moved meanwhile: decide again on fresh values */
      if (rc) {
        __atomic_store_n(intent_span, 0, __ATOMIC_RELEASE);
        return rc;
      }
    }
    uint32_t fits = (uint32_t)((ch->capacity - (position - ch->head_cache)) / span);
    uint32_t n = *count < fits ? *count : fits;
    /* announce: pairs with settle_claim()'s acquire loads, after it saw claim_tail pass position */
    __atomic_store_n(intent_position, position, __ATOMIC_RELAXED);
    __atomic_store_n(intent_span, n * span, __ATOMIC_RELEASE);
    HOOK("claim_announced");
    if (cas64(claim_tail, position, position + (uint64_t)n * span)) {
      *position_out = position;
      *count = n;
      return 0;
    }
  }
}

/* Claims up to `count` records of `length` payload bytes each, back to back, as many as fit now
 * (at least one, else PSY_E_FULL): one pending entry, committed or abandoned as a whole. */
static int32_t claim(psy_channel *ch, uint32_t count, uint32_t length, uint32_t type) {
  if (ch->fd < 0) return inherited(ch);
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
  uint32_t span = record_span(length);
  uint64_t position;
  if (count > ch->capacity / span) count = ch->capacity / span;
  if (multi_producer(ch)) {
    int32_t rc = claim_shared(ch, span, &count, &position);
    if (rc) return rc;
    HOOK("claim_taken");
  } else {
    position = ch->claim_pos;
    if (position - ch->head_cache + (uint64_t)span * count > ch->capacity) {
      int32_t rc = make_room(ch, position, span);
      if (rc) return rc;
      uint32_t fits = (uint32_t)((ch->capacity - (position - ch->head_cache)) / span);
      if (count > fits) count = fits;
    }
    ch->claim_pos += (uint64_t)span * count;
  }
  /* headers last to first, each tag last: once the first record's tag is there, all are; before
   * that recovery settles the whole claim as one skipped record */
  for (uint32_t i = count; i-- > 0;) {
    uint64_t at = position + (uint64_t)i * span;
    uint8_t *rec = record_at(ch, at);
    *rec_u32(rec, PSY_REC_LENGTH) = length;
    *rec_u32(rec, PSY_REC_TYPE) = type;
    /* zero the alignment padding, so a lap rewrites every byte the header of a later record
     * might be read from */
    if (span - PSY_REC_HEADER != length) memset(rec + PSY_REC_HEADER + length, 0, span - PSY_REC_HEADER - length);
    /* publish the header: pairs with read_header()'s acquire load of the state-and-tag word */
    __atomic_store_n(rec_word(rec), rec_word_of(ch, at, mine(ch, PSY_REC_CLAIMED)), __ATOMIC_RELEASE);
    if (i) HOOK("claim_header");
  }
  HOOK("claim_written");
  if (multi_producer(ch)) {
    __atomic_store_n(slot_u32(ch, (uint32_t)ch->slot, PSY_SLOT_CLAIMING_SPAN), 0, __ATOMIC_RELEASE);
  }
  psy_pending *p = &ch->pending[(ch->pending_first + ch->pending_count++) % PSY_MAX_PENDING];
  p->position = position;
  p->record_span = span;
  p->count = count;
  p->span = span * count;
  p->length = length * count;
  p->done = 0;
  ch->claimed.index = (uint32_t)(position & ch->mask);
  ch->claimed.length = length;
  ch->claimed.type = type;
  ch->claimed.span = span;
  return (int32_t)count;
}

int32_t psy_claim(psy_channel *ch, uint32_t length, uint32_t type) {
  /* the common case, in few instructions: one record, a single producer that holds its role, room
   * known from the cached head, a pending entry free. The same stores as claim() in the same order. */
  uint32_t span = record_span(length);
  uint64_t position = ch->claim_pos;
  if (!multi_producer(ch) && (ch->roles & PSY_ROLE_PRODUCER) && length <= ch->capacity - PSY_REC_HEADER && ch->fd >= 0 &&
      ch->pending_count < PSY_MAX_PENDING && position - ch->head_cache + span <= ch->capacity) {
    ch->claim_pos = position + span;
    uint8_t *rec = record_at(ch, position);
    *rec_u32(rec, PSY_REC_LENGTH) = length;
    *rec_u32(rec, PSY_REC_TYPE) = type;
    if (span - PSY_REC_HEADER != length) memset(rec + PSY_REC_HEADER + length, 0, span - PSY_REC_HEADER - length);
    __atomic_store_n(rec_word(rec), rec_word_of(ch, position, mine(ch, PSY_REC_CLAIMED)), __ATOMIC_RELEASE);
    HOOK("claim_written");
    psy_pending *p = &ch->pending[(ch->pending_first + ch->pending_count++) % PSY_MAX_PENDING];
    *p = (psy_pending){.position = position, .span = span, .length = length, .record_span = span, .count = 1, .done = 0};
    uint32_t index = (uint32_t)(position & ch->mask);
    ch->claimed = (psy_polled_record){.index = index, .length = length, .type = type, .span = span};
    return (int32_t)index;
  }
  int32_t rc = claim(ch, 1, length, type);
  return rc < 0 ? rc : (int32_t)ch->claimed.index;
}

int32_t psy_claim_batch(psy_channel *ch, uint32_t count, uint32_t length, uint32_t type) {
  return claim(ch, count, length, type);
}

/* MPSC/MPMC: move tail over every finished record; stops at one still being written, whose
 * producer moves it when it commits (its seq_cst state store, then its load of tail here, against
 * our CAS of tail, then our load of its state: one of us sees the other). */
static void advance_tail(psy_channel *ch) {
  uint64_t *tail_p = u64_at(ch, PSY_OFF_TAIL), *claim_tail = u64_at(ch, PSY_OFF_CLAIM_TAIL);
  for (;;) {
    uint64_t tail = load64(tail_p), claimed = load64(claim_tail);
    if (tail == claimed || claimed - tail > ch->capacity) return;
    record_header h;
    if (!read_header(ch, tail, claimed - tail, &h) || !finished(h.state)) return;
    if (cas64(tail_p, tail, tail + h.span)) notify_waiters(ch, PSY_WAIT_DATA);
  }
}

/* Single producer: publish finished claims at the front of the pending queue, in claim order. */
static void publish(psy_channel *ch) {
  uint64_t before = ch->pub_pos;
  while (ch->pending_count && ch->pending[ch->pending_first].done) {
    ch->pub_pos += ch->pending[ch->pending_first].span;
    ch->pending_first = (ch->pending_first + 1) % PSY_MAX_PENDING;
    ch->pending_count--;
  }
  if (ch->pub_pos == before) return;
  /* publish: pairs with the consumers' load of tail in poll, and is ordered before the load of
   * the waiters count in notify_waiters() (see events.c) */
  publish_position(ch, u64_at(ch, PSY_OFF_TAIL), ch->pub_pos);
  notify_waiters(ch, PSY_WAIT_DATA);
}

static int32_t finish(psy_channel *ch, uint32_t index, uint32_t state) {
  for (uint32_t i = 0; i < ch->pending_count; i++) {
    psy_pending *p = &ch->pending[(ch->pending_first + i) % PSY_MAX_PENDING];
    if ((p->position & ch->mask) != index || p->done) continue;
    /* several producers: seq_cst against advance_tail()'s CAS-then-load; a single producer
     * orders it with its publish of tail */
    for (uint32_t k = 0; k < p->count; k++) { /* (orders as constants: gcc makes a variable order seq_cst) */
      uint64_t at = p->position + (uint64_t)k * p->record_span;
      uint64_t *word = rec_word(record_at(ch, at)), value = rec_word_of(ch, at, mine(ch, state));
      if (multi_producer(ch)) __atomic_store_n(word, value, __ATOMIC_SEQ_CST);
      else __atomic_store_n(word, value, __ATOMIC_RELEASE);
    }
    p->done = 1;
    if (state == PSY_REC_COMMITTED) {
      *slot_counter(ch, PSY_SLOT_MSGS_SENT) += p->count;
      *slot_counter(ch, PSY_SLOT_BYTES_SENT) += p->length;
      ch->has_sent = 1;
      /* for psy_unflushed: a single producer's last message ends at pub_pos; several finish in any order */
      uint64_t end = p->position + p->span;
      if (multi_producer(ch) && (int64_t)(end - ch->sent_end) > 0) ch->sent_end = end;
    }
    HOOK(state == PSY_REC_COMMITTED ? "commit_stored" : "abandon_stored");
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

int32_t psy_commit(psy_channel *ch, uint32_t index) {
  /* the common case: a single producer commits its oldest claim, one record */
  psy_pending *p = &ch->pending[ch->pending_first];
  if (!multi_producer(ch) && ch->pending_count && (uint32_t)(p->position & ch->mask) == index && !p->done && p->count == 1) {
    __atomic_store_n(rec_word(record_at(ch, p->position)), rec_word_of(ch, p->position, mine(ch, PSY_REC_COMMITTED)), __ATOMIC_RELEASE);
    p->done = 1;
    *slot_counter(ch, PSY_SLOT_MSGS_SENT) += 1;
    *slot_counter(ch, PSY_SLOT_BYTES_SENT) += p->length;
    ch->has_sent = 1;
    HOOK("commit_stored");
    publish(ch);
    return 0;
  }
  return finish(ch, index, PSY_REC_COMMITTED);
}
int32_t psy_abandon(psy_channel *ch, uint32_t index) { return finish(ch, index, PSY_REC_ABANDONED); }

/* ---- consumer ---------------------------------------------------------------------------- */

/* The shared word a single consumer or subscriber stores its progress in. */
static uint64_t *own_cursor(psy_channel *ch) {
  return ch->mode == PSY_BROADCAST ? slot_u64(ch, (uint32_t)ch->slot, PSY_SLOT_READ_POS) : u64_at(ch, PSY_OFF_HEAD);
}

/* BROADCAST: become a subscriber. Our start must be a position the producer will not overwrite
 * before we read it. We mark our cursor JOINING, take the role (seq_cst), then read tail; the
 * producer, before it looks for subscribers, fences after its tail store (slowest_subscriber).
 * So either it sees our role, or we see its latest tail: a producer that missed us is limited by
 * a position at or before the tail we read. If it sees us while we are still JOINING, it sets our
 * start to its own position; one compare-and-swap decides whose pick counts. */
static int32_t subscribe(psy_channel *ch) {
  uint64_t *cursor = own_cursor(ch);
  store64(cursor, PSY_JOINING_POS);
  int32_t rc = participants_take_role(ch, PSY_ROLE_CONSUMER);
  if (rc) return rc;
  HOOK("subscribe_role");
  uint64_t start = load64(u64_at(ch, PSY_OFF_TAIL));
  if (!cas64(cursor, PSY_JOINING_POS, start)) start = load64(cursor); /* the producer picked it */
  ch->read_pos = ch->read_published = start;
  return 0;
}

static int32_t become_consumer(psy_channel *ch) {
  if (ch->mode == PSY_BROADCAST) {
    int32_t rc = subscribe(ch);
    if (rc) return rc;
  } else {
    int32_t rc = participants_take_role(ch, PSY_ROLE_CONSUMER);
    if (rc) return rc;
    /* start at head: a dead predecessor's unreleased message is delivered again */
    ch->read_pos = ch->read_published = load64(u64_at(ch, PSY_OFF_HEAD));
  }
  ch->tail_cache = ch->read_pos;
  return 0;
}

/* SPMC/MPMC: move head over released (or skipped) records behind claim_head; stops at one still
 * taken, whose owner moves it when it releases. */
static void advance_head(psy_channel *ch) {
  uint64_t *head_p = u64_at(ch, PSY_OFF_HEAD), *claim_head = u64_at(ch, PSY_OFF_CLAIM_HEAD);
  for (;;) {
    uint64_t head = load64(head_p), limit = load64(claim_head);
    if (head == limit || limit - head > ch->capacity) return;
    record_header h;
    if (!read_header(ch, head, limit - head, &h) || (h.state != PSY_REC_DONE && !skippable(h.state))) return;
    if (cas64(head_p, head, head + h.span)) notify_waiters(ch, PSY_WAIT_SPACE);
  }
}

static int32_t deliver(psy_channel *ch, uint64_t position, const record_header *h) {
  /* taken: a producer's flush may end now (relaxed: only its own later loads care, and a stale
   * value only makes it wait for the next) */
  if (!work_queue(ch)) __atomic_store_n(slot_u64(ch, (uint32_t)ch->slot, PSY_SLOT_TAKEN_POS), position + h->span, __ATOMIC_RELAXED);
  ch->polled.index = (uint32_t)(position & ch->mask);
  ch->polled.length = h->length;
  ch->polled.type = h->type;
  ch->polled.span = h->span;
  ch->held = 1;
  ch->held_pos = position;
  ch->held_span = h->span;
  ch->held_count = 1;
  ch->held_bytes = h->length;
  return (int32_t)ch->polled.index;
}

/* Takes a record given back behind claim_head: CAS on (state, tag) together, so a record that
 * was meanwhile released and overwritten by the next lap is never taken by mistake. The hint is
 * read before the scan: if the scan finds nothing, it is reset only if nobody gave one back since. */
static int32_t take_returned(psy_channel *ch) {
  uint32_t *returned = u32_at(ch, PSY_OFF_RETURNED);
  uint32_t hint = load32(returned);
  if (hint == 0) return PSY_E_EMPTY;
  uint64_t position = load64(u64_at(ch, PSY_OFF_HEAD)), limit = load64(u64_at(ch, PSY_OFF_CLAIM_HEAD));
  if (limit - position > ch->capacity) return PSY_E_EMPTY;
  while (position != limit) {
    record_header h;
    if (!read_header(ch, position, limit - position, &h)) return PSY_E_EMPTY; /* head moved past it: rescan later */
    if (h.state == PSY_REC_COMMITTED &&
        cas64(rec_word(record_at(ch, position)), h.word, rec_word_of(ch, position, mine(ch, PSY_REC_TAKEN)))) {
      for (uint32_t left = load32(returned); left && !cas32(returned, left, left - 1); left = load32(returned)) {
      }
      return deliver(ch, position, &h);
    }
    position += h.span;
  }
  cas32(returned, hint, 0); /* a give-back since we read the hint changed it, and stays noticed */
  return PSY_E_EMPTY;
}

static int32_t take_next(psy_channel *ch) {
  if (++ch->polls_since_recovery >= 1024) maybe_recover(ch); /* a dead consumer's record may be waiting */
  int32_t returned = take_returned(ch);
  if (returned != PSY_E_EMPTY) return returned;
  uint64_t *claim_head = u64_at(ch, PSY_OFF_CLAIM_HEAD);
  for (;;) {
    uint64_t position = load64(claim_head);
    uint64_t tail = load64(u64_at(ch, PSY_OFF_TAIL)); /* pairs with the producers' publish of tail */
    if (position == tail) {
      maybe_recover(ch);
      return PSY_E_EMPTY;
    }
    uint64_t available = tail - position;
    record_header h;
    int valid = available <= ch->capacity && read_header(ch, position, available, &h) && finished(h.state);
    if (!valid) {
      if (load64(claim_head) != position) continue; /* another consumer took it meanwhile */
      return available > ch->capacity ? corrupt_cursors(ch, "tail and claim_head", tail, position)
                                      : corrupt_record(ch, position, available);
    }
    if (!cas64(claim_head, position, position + h.span)) continue;
    HOOK("take_claimed");
    if (skippable(h.state)) { /* nothing to deliver: advance_head passes it */
      advance_head(ch);
      continue;
    }
    /* CAS, not a store: if we stalled here, recovery may have handed the record to another
     * consumer through take_returned(); exactly one of us gets it */
    if (!cas64(rec_word(record_at(ch, position)), h.word, rec_word_of(ch, position, mine(ch, PSY_REC_TAKEN)))) continue;
    return deliver(ch, position, &h);
  }
}

static int32_t read_next(psy_channel *ch) {
  for (;;) {
    if (ch->read_pos == ch->tail_cache) {
      ch->tail_cache = load64(u64_at(ch, PSY_OFF_TAIL)); /* pairs with the producer's publish of tail */
      if (ch->read_pos == ch->tail_cache) {
        maybe_recover(ch); /* a dead producer may hold tail back */
        return PSY_E_EMPTY;
      }
    }
    uint64_t available = ch->tail_cache - ch->read_pos;
    if (available > ch->capacity) return corrupt_cursors(ch, "tail and read position", ch->tail_cache, ch->read_pos);
    record_header h;
    if (!read_header(ch, ch->read_pos, available, &h) || !finished(h.state))
      return corrupt_record(ch, ch->read_pos, available);
    if (skippable(h.state)) { /* nothing to deliver */
      ch->read_pos += h.span;
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
   * waiters check that follows (see events.c) */
  publish_position(ch, own_cursor(ch), ch->read_pos);
  notify_waiters(ch, PSY_WAIT_SPACE);
}

/* A single consumer draining a batch publishes its progress only every this many bytes (and when
 * it finds the ring empty, and at psy_release): fewer stores to the line the producer reads,
 * and after a crash at most this much that it had released is delivered again. */
#define BATCH_PUBLISH_BYTES 4096u

/* Releases the held record. */
static void release(psy_channel *ch, int defer) {
  if (!ch->held) return;
  ch->held = 0;
  ch->unpolled = 0;
  *slot_counter(ch, PSY_SLOT_MSGS_RECEIVED) += ch->held_count;
  *slot_counter(ch, PSY_SLOT_BYTES_RECEIVED) += ch->held_bytes;
  if (work_queue(ch)) {
    if (ch->held_count == 1) {
      store64(rec_word(record_at(ch, ch->held_pos)), rec_word_of(ch, ch->held_pos, mine(ch, PSY_REC_DONE)));
    } else { /* a block: each record was taken on its own */
      for (uint32_t i = 0; i < ch->held_count; i++)
        store64(rec_word(record_at(ch, ch->block_pos[i])), rec_word_of(ch, ch->block_pos[i], mine(ch, PSY_REC_DONE)));
    }
    HOOK("release_done");
    advance_head(ch);
  } else {
    ch->read_pos = ch->held_pos + ch->held_span;
    if (!defer || ch->read_pos - ch->read_published >= BATCH_PUBLISH_BYTES) publish_read(ch);
  }
}

int32_t psy_release(psy_channel *ch) {
  release(ch, 0);
  if (!work_queue(ch)) publish_read(ch); /* whatever a batch left unpublished */
  return 0;
}

int32_t psy_unpoll(psy_channel *ch) {
  if (ch->held && ch->held_count == 1) ch->unpolled = 1; /* the next poll returns the same record */
  return 0;
}

static int32_t poll(psy_channel *ch, int defer) {
  if (ch->fd < 0) return inherited(ch);
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

int32_t psy_poll(psy_channel *ch) {
  /* the common case: a single consumer with its role releases what it held and finds the next
   * record committed (anything else, empty included, takes the general way) */
  if (!work_queue(ch) && (ch->roles & PSY_ROLE_CONSUMER) && !ch->unpolled && ch->fd >= 0) {
    release(ch, 0);
    if (ch->read_pos == ch->tail_cache) {
      ch->tail_cache = load64(u64_at(ch, PSY_OFF_TAIL)); /* pairs with the producer's publish */
      if (ch->read_pos == ch->tail_cache) { /* empty, as read_next and poll() handle it */
        maybe_recover(ch);
        publish_read(ch);
        return PSY_E_EMPTY;
      }
    }
    uint64_t available = ch->tail_cache - ch->read_pos;
    record_header h;
    if (available && available <= ch->capacity && read_header(ch, ch->read_pos, available, &h) && h.state == PSY_REC_COMMITTED)
      return deliver(ch, ch->read_pos, &h);
  }
  return poll(ch, 0);
}
int32_t psy_poll_batch(psy_channel *ch) { return poll(ch, 1); }

/* Single consumer: the committed records from read_pos on, up to `max` messages, held as one run
 * (abandoned records inside it are passed over, not listed). */
static int32_t read_block(psy_channel *ch, uint32_t max) {
  ch->tail_cache = load64(u64_at(ch, PSY_OFF_TAIL)); /* once per block: pairs with the producer's publish */
  uint64_t start = ch->read_pos, position = start, bytes = 0;
  uint32_t n = 0;
  while (n < max && position != ch->tail_cache) {
    uint64_t available = ch->tail_cache - position;
    if (available > ch->capacity) return corrupt_cursors(ch, "tail and read position", ch->tail_cache, position);
    record_header h;
    if (!read_header(ch, position, available, &h) || !finished(h.state)) return corrupt_record(ch, position, available);
    if (!skippable(h.state)) {
      uint32_t *entry = ch->block[n++];
      entry[0] = (uint32_t)(position & ch->mask), entry[1] = h.length, entry[2] = h.type, entry[3] = h.span;
      bytes += h.length;
    }
    position += h.span;
  }
  if (n == 0) {
    ch->read_pos = position; /* only skipped records: pass them */
    maybe_recover(ch); /* a dead producer may hold tail back */
    return PSY_E_EMPTY;
  }
  __atomic_store_n(slot_u64(ch, (uint32_t)ch->slot, PSY_SLOT_TAKEN_POS), position, __ATOMIC_RELAXED); /* for flush, as deliver() */
  ch->held = 1;
  ch->held_pos = start;
  ch->held_span = (uint32_t)(position - start);
  ch->held_count = n;
  ch->held_bytes = bytes;
  return (int32_t)n;
}

/* Work queues: up to `max` records, each taken as psy_poll takes one. */
static int32_t take_block(psy_channel *ch, uint32_t max) {
  uint32_t n = 0;
  uint64_t bytes = 0;
  while (n < max) {
    int32_t rc = take_next(ch); /* holds the one it took */
    if (rc < 0) {
      if (n == 0) return rc;
      break; /* empty now, or a failure the next call reports */
    }
    uint32_t *entry = ch->block[n];
    entry[0] = ch->polled.index, entry[1] = ch->polled.length, entry[2] = ch->polled.type, entry[3] = ch->polled.span;
    ch->block_pos[n++] = ch->held_pos;
    bytes += ch->polled.length;
  }
  if (n > 1) {
    ch->held_count = n;
    ch->held_bytes = bytes;
  }
  return (int32_t)n;
}

int32_t psy_poll_block(psy_channel *ch, uint32_t max) {
  if (ch->fd < 0) return inherited(ch);
  if (!(ch->roles & PSY_ROLE_CONSUMER)) {
    int32_t rc = become_consumer(ch);
    if (rc) return rc;
  }
  if (max == 0 || max > PSY_BLOCK_MAX) return psy_fail(PSY_E_INVALID_ARG, "a block of %u messages: 1 to %u", max, PSY_BLOCK_MAX);
  if (ch->held && ch->unpolled) { /* a record put back is the whole next block */
    ch->unpolled = 0;
    uint32_t *entry = ch->block[0];
    entry[0] = ch->polled.index, entry[1] = ch->polled.length, entry[2] = ch->polled.type, entry[3] = ch->polled.span;
    ch->block_pos[0] = ch->held_pos;
    return 1;
  }
  release(ch, 1); /* publishes the space every BATCH_PUBLISH_BYTES, as psy_poll_batch */
  if (work_queue(ch)) return take_block(ch, max);
  int32_t rc = read_block(ch, max);
  if (rc == PSY_E_EMPTY) publish_read(ch); /* caught up: free everything read */
  return rc;
}

const uint32_t *psy_block(const psy_channel *ch) { return &ch->block[0][0]; }

/* ---- retained reading (psyne.h): a pump forwards records, frees them when acknowledged -------- */

int32_t psy_poll_retained(psy_channel *ch) {
  if (ch->fd < 0) return inherited(ch);
  if (work_queue(ch)) return psy_fail(PSY_E_STATE, "channel %s: retained reading is for a single consumer, not %s", ch->path + 7, ch->mode == PSY_SPMC ? "SPMC" : "MPMC");
  if (!(ch->roles & PSY_ROLE_CONSUMER)) {
    int32_t rc = become_consumer(ch);
    if (rc) return rc;
  }
  ch->retained = 1;
  if (ch->held) { /* move past it privately: its space stays taken until psy_release_to */
    ch->held = 0;
    ch->read_pos = ch->held_pos + ch->held_span;
  }
  return read_next(ch);
}

/* Positions cross the FFI as doubles, exact only below 2^53: they travel modulo 2^52 (psyne.h),
 * and psy_release_to takes the one within a capacity ahead of what was released. */
#define POSITION_MASK ((UINT64_C(1) << 52) - 1)

double psy_polled_end(const psy_channel *ch) { return (double)((ch->held_pos + ch->held_span) & POSITION_MASK); }

int32_t psy_release_to(psy_channel *ch, double position) {
  uint64_t limit = ch->held ? ch->held_pos + ch->held_span : ch->read_pos;
  int valid = position >= 0 && position <= (double)POSITION_MASK && (double)(uint64_t)position == position;
  uint64_t to = ch->read_published + (((uint64_t)(valid ? position : 0) - ch->read_published) & POSITION_MASK);
  if (work_queue(ch) || !valid || to - ch->read_published > limit - ch->read_published)
    return psy_fail(PSY_E_INVALID_ARG, "channel %s: cannot release to position %.0f: released %llu, read %llu", ch->path + 7,
                    position, (unsigned long long)ch->read_published, (unsigned long long)limit);
  if (to == ch->read_published) return 0;
  ch->read_published = to;
  if (ch->held && to == limit) ch->held = 0, ch->read_pos = to;
  /* free the space: pairs with the producer's load in make_room() (see publish_read) */
  publish_position(ch, own_cursor(ch), to);
  notify_waiters(ch, PSY_WAIT_SPACE);
  return 0;
}

int32_t psy_rewind(psy_channel *ch) {
  ch->held = 0;
  ch->unpolled = 0;
  ch->read_pos = ch->tail_cache = ch->read_published;
  return 0;
}

double psy_released_position(const psy_channel *ch) {
  if (ch->mode == PSY_BROADCAST) return (double)(load64(slot_u64(ch, (uint32_t)ch->slot, PSY_SLOT_READ_POS)) & POSITION_MASK);
  return (double)(load64(u64_at(ch, PSY_OFF_HEAD)) & POSITION_MASK);
}

const psy_polled_record *psy_polled(const psy_channel *ch) { return &ch->polled; }
const psy_polled_record *psy_claimed(const psy_channel *ch) { return &ch->claimed; }

/* Taking a role sets up the side's positions, exactly as a first claim or poll would. */
int32_t psy_take_role(psy_channel *ch, uint32_t role) {
  if (ch->fd < 0) return inherited(ch);
  if (role == PSY_ROLE_PRODUCER) return ch->roles & role ? 0 : become_producer(ch);
  if (role == PSY_ROLE_CONSUMER) return ch->roles & role ? 0 : become_consumer(ch);
  return psy_fail(PSY_E_INVALID_ARG, "unknown role %u", role);
}

/* ---- when stuck: recovery ------------------------------------------------------------------
 * Whoever finds the ring stuck (a consumer finding nothing, a producer finding no room) looks for
 * the dead, at most every RECOVERY_INTERVAL_MS per handle; parked waiters do it too (wait.c).
 * First the cursors are moved over finished records (a participant may have died between
 * finishing one and moving a cursor), then recovery.c repairs what the dead left. */

#define RECOVERY_INTERVAL_MS 5

static void maybe_recover(psy_channel *ch) {
  ch->polls_since_recovery = 0;
  if (DISABLED("advance")) return;
  double now = monotonic_ms();
  if (now < ch->next_recovery_ms) return;
  ch->next_recovery_ms = now + RECOVERY_INTERVAL_MS;
  if (multi_producer(ch)) {
    advance_tail(ch);
    if (load64(u64_at(ch, PSY_OFF_TAIL)) != load64(u64_at(ch, PSY_OFF_CLAIM_TAIL)) && recover_claims(ch)) advance_tail(ch);
  } else if (orphans_possible(ch) && recover_orphans(ch)) {
    notify_waiters(ch, PSY_WAIT_DATA);
  }
  if (work_queue(ch)) {
    advance_head(ch);
    if (load64(u64_at(ch, PSY_OFF_HEAD)) != load64(u64_at(ch, PSY_OFF_CLAIM_HEAD)) && recover_takers(ch)) {
      notify_waiters(ch, PSY_WAIT_DATA);
      advance_head(ch);
    }
  }
}

void ring_maybe_recover(psy_channel *ch) { maybe_recover(ch); }

int32_t psy_recover(psy_channel *ch) {
  ch->next_recovery_ms = 0;
  maybe_recover(ch);
  return 0;
}

/* A joiner found `slot` dead (participants.c): settle what its owner left before reusing it. */
int ring_settle_slot(psy_channel *ch, uint32_t slot) {
  int settled = recover_slot(ch, slot);
  if (multi_producer(ch)) advance_tail(ch);
  if (work_queue(ch)) advance_head(ch);
  notify_waiters(ch, PSY_WAIT_DATA);
  notify_waiters(ch, PSY_WAIT_SPACE);
  return settled;
}

/* Shared words only (for the waiter thread): could a dead participant be holding what this wait
 * waits for? A claim in flight at tail, a taken record not yet released, a record at tail whose
 * single producer is dead; for a BROADCAST producer waiting for room (or a flush), a subscriber
 * that may have died behind it. Live ones clear the first ones within microseconds. */
int ring_may_be_stuck(const psy_channel *ch, int32_t kind) {
  if (ch->mode == PSY_BROADCAST && kind != PSY_WAIT_DATA) return 1;
  if (multi_producer(ch)) return load64(u64_at(ch, PSY_OFF_TAIL)) != load64(u64_at(ch, PSY_OFF_CLAIM_TAIL));
  if (work_queue(ch) && load64(u64_at(ch, PSY_OFF_HEAD)) != load64(u64_at(ch, PSY_OFF_CLAIM_HEAD))) return 1;
  return orphans_possible(ch);
}

/* ---- observing ---------------------------------------------------------------------------- */

/* The next committed record after this handle's observer position, without consuming it or
 * holding the producer back (for `psyne tail`). A writer may lap the observer: then it skips to
 * the newest data. psy_peek_intact() tells whether the record was overwritten while being read. */
int32_t psy_peek(psy_channel *ch) {
  uint64_t tail = load64(u64_at(ch, PSY_OFF_TAIL));
  if (!ch->observing) {
    ch->observing = 1;
    ch->observe_pos = tail;
  }
  for (;;) {
    if (ch->observe_pos == tail) return PSY_E_EMPTY;
    uint64_t available = tail - ch->observe_pos;
    record_header h;
    if (available > ch->capacity || !read_header(ch, ch->observe_pos, available, &h)) {
      ch->observe_pos = tail; /* lapped: start again from the newest */
      return PSY_E_EMPTY;
    }
    uint64_t position = ch->observe_pos;
    ch->observe_pos += h.span;
    if (h.state != PSY_REC_COMMITTED && h.state != PSY_REC_TAKEN && h.state != PSY_REC_DONE) continue;
    ch->peeked_pos = position;
    ch->polled.index = (uint32_t)(position & ch->mask);
    ch->polled.length = h.length;
    ch->polled.type = h.type;
    ch->polled.span = h.span;
    return (int32_t)ch->polled.index;
  }
}

int32_t psy_peek_intact(const psy_channel *ch) {
  uint32_t tag = __atomic_load_n(rec_u32(record_at(ch, ch->peeked_pos), PSY_REC_TAG), __ATOMIC_ACQUIRE);
  return tag == tag_of(ch, ch->peeked_pos);
}

/* ---- conditions for waiting (called on the handle's own thread) ---------------------------- */

/* May psy_poll find a message now? */
static int has_data(psy_channel *ch) {
  if (!(ch->roles & PSY_ROLE_CONSUMER) || (ch->held && ch->unpolled)) return 1;
  if (work_queue(ch))
    return load32(u32_at(ch, PSY_OFF_RETURNED)) != 0 ||
           load64(u64_at(ch, PSY_OFF_CLAIM_HEAD)) != load64(u64_at(ch, PSY_OFF_TAIL));
  uint64_t next = ch->held ? ch->held_pos + ch->held_span : ch->read_pos;
  return load64(u64_at(ch, PSY_OFF_TAIL)) != next;
}

/* May psy_claim find room for `length` payload bytes now? */
static int has_space(psy_channel *ch, uint32_t length) {
  if (!(ch->roles & PSY_ROLE_PRODUCER) || length > ch->capacity - PSY_REC_HEADER) return 1;
  uint64_t position = multi_producer(ch) ? load64(u64_at(ch, PSY_OFF_CLAIM_TAIL)) : ch->claim_pos;
  return make_room(ch, position, record_span(length)) != PSY_E_FULL;
}

/* Bytes up to the end of the last message this handle sent that consumers have not released yet
 * (BROADCAST: the slowest live subscriber). 0 when everything it sent has been taken. */
/* Where a single consumer or subscriber has taken up to: past what it released, the record it holds. */
static uint64_t taken_by(const psy_channel *ch, uint32_t slot, uint64_t released) {
  uint64_t taken = load64(slot_u64(ch, slot, PSY_SLOT_TAKEN_POS));
  return (int64_t)(taken - released) > 0 && taken - released <= ch->capacity ? taken : released;
}

uint64_t ring_unflushed(psy_channel *ch) {
  if (!ch->has_sent) return 0;
  uint64_t frontier, sent_end = multi_producer(ch) ? ch->sent_end : ch->pub_pos;
  if (ch->mode == PSY_BROADCAST) { /* the slowest live subscriber, by what it took */
    int corrupt = 0;
    slowest_subscriber(ch, 1, &corrupt); /* reaps the dead */
    frontier = ch->pub_pos;
    for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++) {
      if (load32(slot_u32(ch, i, PSY_SLOT_STATE)) != PSY_SLOT_ACTIVE || !(load64(slot_u64(ch, i, PSY_SLOT_ROLES)) & PSY_ROLE_CONSUMER)) continue;
      uint64_t read_pos = load64(slot_u64(ch, i, PSY_SLOT_READ_POS));
      if (read_pos == PSY_JOINING_POS || ch->pub_pos - read_pos > ch->capacity) continue; /* joining: after what we sent */
      uint64_t taken = taken_by(ch, i, read_pos);
      if ((int64_t)(taken - frontier) < 0) frontier = taken;
    }
  } else if (work_queue(ch)) {
    frontier = load64(u64_at(ch, PSY_OFF_CLAIM_HEAD)); /* taken off the queue by some consumer */
  } else {
    frontier = load64(u64_at(ch, PSY_OFF_HEAD));
    uint32_t owner = load32(u32_at(ch, PSY_OFF_CONSUMER_OWNER));
    if (owner && owner <= PSY_MAX_SLOTS) frontier = taken_by(ch, owner - 1, frontier);
  }
  int64_t left = (int64_t)(sent_end - frontier);
  return left > 0 ? (uint64_t)left : 0;
}

int ring_is_ready(psy_channel *ch, int32_t kind, uint32_t length) {
  if (kind == PSY_WAIT_DATA) return has_data(ch);
  if (kind == PSY_WAIT_SPACE) return has_space(ch, length);
  return ring_unflushed(ch) == 0;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

void ring_close(psy_channel *ch) {
  if (ch->held && ch->unpolled) { /* never delivered to the user: give it back */
    ch->held = 0;
    if (work_queue(ch)) {
      store64(rec_word(record_at(ch, ch->held_pos)), rec_word_of(ch, ch->held_pos, mine(ch, PSY_REC_COMMITTED)));
      __atomic_fetch_add(u32_at(ch, PSY_OFF_RETURNED), 1, __ATOMIC_SEQ_CST);
      notify_waiters(ch, PSY_WAIT_DATA);
    }
  }
  if (ch->retained) psy_rewind(ch); /* what was read but not released stays for the next consumer */
  psy_release(ch);
  if (ch->roles & PSY_ROLE_PRODUCER) { /* unsent messages must not hold back the ones sent after them */
    for (uint32_t i = 0; i < ch->pending_count; i++) {
      psy_pending *p = &ch->pending[(ch->pending_first + i) % PSY_MAX_PENDING];
      if (p->done) continue;
      for (uint32_t k = 0; k < p->count; k++) {
        uint64_t at = p->position + (uint64_t)k * p->record_span;
        store64(rec_word(record_at(ch, at)), rec_word_of(ch, at, mine(ch, PSY_REC_ABANDONED)));
      }
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
  uint64_t tail = load64(u64_at(ch, PSY_OFF_TAIL));
  uint64_t position = load64(u64_at(ch, PSY_OFF_HEAD));
  if (tail - position > ch->capacity) return 1;
  while (position != tail) {
    record_header h;
    if (!read_header(ch, position, tail - position, &h) || (h.state != PSY_REC_DONE && !skippable(h.state))) return 1;
    position += h.span;
  }
  return 0;
}

uint32_t psy_used(const psy_channel *ch) {
  uint64_t used = load64(u64_at(ch, PSY_OFF_TAIL)) - load64(u64_at(ch, PSY_OFF_HEAD));
  return used > ch->capacity ? ch->capacity : (uint32_t)used;
}
