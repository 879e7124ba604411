/* Ring operations: claim, commit and abandon on the producer side; poll, unpoll and release on
 * the consumer side. Every value read from shared memory is bounded before it is used, so a
 * corrupted segment yields PSY_E_CORRUPT, never an access outside the mapping or a hang.
 *
 * Each side caches the other side's cursor and re-reads the shared one only when the cache says
 * full (producer) or empty (consumer): the cursor lines then move between cores rarely. */
#include "internal.h"

#include <string.h>

static uint64_t *slot_counter(psy_channel *ch, uint32_t offset) {
  return (uint64_t *)(slot_at(ch, (uint32_t)ch->slot) + offset);
}

static int32_t unsupported(psy_channel *ch) {
  return psy_fail(PSY_E_UNSUPPORTED, "channel %s: mode %d is not implemented yet (only SPSC)", ch->path + 7, ch->mode);
}

static int32_t corrupt_cursors(psy_channel *ch, const char *what, uint32_t a, uint32_t b) {
  return psy_fail(PSY_E_CORRUPT, "channel %s is corrupt: %s (%u, %u) are more than capacity %u apart",
                  ch->path + 7, what, a, b, ch->capacity);
}

/* ---- producer ---------------------------------------------------------------------------- */

static int32_t become_producer(psy_channel *ch) {
  int32_t rc = participants_take_role(ch, PSY_ROLE_PRODUCER);
  if (rc) return rc;
  /* start at the published tail: a dead predecessor's unpublished claims are simply reused */
  ch->claim_pos = ch->pub_pos = load32(u32_at(ch, PSY_OFF_TAIL));
  ch->head_cache = load32(u32_at(ch, PSY_OFF_HEAD));
  if (ch->claim_pos - ch->head_cache > ch->capacity) return corrupt_cursors(ch, "tail and head", ch->claim_pos, ch->head_cache);
  return 0;
}

int32_t psy_claim(psy_channel *ch, uint32_t length, uint32_t type) {
  if (ch->mode != PSY_SPSC) return unsupported(ch);
  if (!(ch->roles & PSY_ROLE_PRODUCER)) {
    int32_t rc = become_producer(ch);
    if (rc) return rc;
  }
  if (length > ch->capacity - PSY_REC_HEADER)
    return psy_fail(PSY_E_TOO_LARGE, "message of %u bytes can never fit channel %s: capacity %u, record header %u",
                    length, ch->path + 7, ch->capacity, PSY_REC_HEADER);
  if (ch->pending_count == PSY_MAX_PENDING)
    return psy_fail(PSY_E_STATE, "channel %s: %u messages allocated and not sent; send or discard some first",
                    ch->path + 7, PSY_MAX_PENDING);
  uint32_t span = record_span(length);
  if (ch->claim_pos - ch->head_cache + span > ch->capacity) {
    ch->head_cache = load32(u32_at(ch, PSY_OFF_HEAD)); /* pairs with the consumer's store in psy_release */
    uint32_t used = ch->claim_pos - ch->head_cache;
    if (used > ch->capacity) return corrupt_cursors(ch, "tail and head", ch->claim_pos, ch->head_cache);
    if (used + span > ch->capacity) {
      (*slot_counter(ch, PSY_SLOT_FULL_EVENTS))++;
      return PSY_E_FULL;
    }
  }
  uint8_t *rec = record_at(ch, ch->claim_pos);
  *(uint32_t *)(rec + PSY_REC_LENGTH) = length;
  *(uint32_t *)(rec + PSY_REC_TYPE) = type;
  *(uint32_t *)(rec + PSY_REC_STATE) = PSY_REC_CLAIMED | ((uint32_t)ch->slot << 8);
  *(uint32_t *)(rec + PSY_REC_POSITION) = ch->claim_pos;
  psy_pending *p = &ch->pending[(ch->pending_first + ch->pending_count++) % PSY_MAX_PENDING];
  p->position = ch->claim_pos;
  p->span = span;
  p->length = length;
  p->done = 0;
  ch->claim_pos += span;
  return (int32_t)(p->position & ch->mask);
}

/* Publish every finished claim at the front of the pending queue, in claim order. */
static void publish(psy_channel *ch) {
  uint32_t before = ch->pub_pos;
  while (ch->pending_count && ch->pending[ch->pending_first].done) {
    ch->pub_pos += ch->pending[ch->pending_first].span;
    ch->pending_first = (ch->pending_first + 1) % PSY_MAX_PENDING;
    ch->pending_count--;
  }
  /* publish: pairs with the consumer's load of tail in psy_poll */
  if (ch->pub_pos != before) store32(u32_at(ch, PSY_OFF_TAIL), ch->pub_pos);
}

static int32_t finish(psy_channel *ch, uint32_t index, uint32_t state) {
  if (ch->mode != PSY_SPSC) return unsupported(ch);
  for (uint32_t i = 0; i < ch->pending_count; i++) {
    psy_pending *p = &ch->pending[(ch->pending_first + i) % PSY_MAX_PENDING];
    if ((p->position & ch->mask) != index || p->done) continue;
    uint8_t *rec = record_at(ch, p->position);
    *(uint32_t *)(rec + PSY_REC_STATE) = state | ((uint32_t)ch->slot << 8);
    p->done = 1;
    if (state == PSY_REC_COMMITTED) {
      (*slot_counter(ch, PSY_SLOT_MSGS_SENT))++;
      *slot_counter(ch, PSY_SLOT_BYTES_SENT) += p->length;
    }
    publish(ch);
    return 0;
  }
  return psy_fail(PSY_E_STATE, "channel %s: no unsent message at ring index %u (sent twice, or not allocated here)",
                  ch->path + 7, index);
}

int32_t psy_commit(psy_channel *ch, uint32_t index) { return finish(ch, index, PSY_REC_COMMITTED); }
int32_t psy_abandon(psy_channel *ch, uint32_t index) { return finish(ch, index, PSY_REC_ABANDONED); }

/* ---- consumer ---------------------------------------------------------------------------- */

static int32_t become_consumer(psy_channel *ch) {
  int32_t rc = participants_take_role(ch, PSY_ROLE_CONSUMER);
  if (rc) return rc;
  /* start at head: a dead predecessor's unreleased message is delivered again */
  ch->read_pos = ch->tail_cache = load32(u32_at(ch, PSY_OFF_HEAD));
  return 0;
}

int32_t psy_release(psy_channel *ch) {
  if (!ch->held) return 0;
  ch->held = 0;
  ch->read_pos += ch->polled.span;
  (*slot_counter(ch, PSY_SLOT_MSGS_RECEIVED))++;
  *slot_counter(ch, PSY_SLOT_BYTES_RECEIVED) += ch->polled.length;
  /* publish free space: pairs with the producer's load of head in psy_claim */
  store32(u32_at(ch, PSY_OFF_HEAD), ch->read_pos);
  return 0;
}

int32_t psy_unpoll(psy_channel *ch) {
  ch->held = 0;
  return 0;
}

int32_t psy_poll(psy_channel *ch) {
  if (ch->mode != PSY_SPSC) return unsupported(ch);
  if (!(ch->roles & PSY_ROLE_CONSUMER)) {
    int32_t rc = become_consumer(ch);
    if (rc) return rc;
  }
  psy_release(ch);
  for (;;) {
    if (ch->read_pos == ch->tail_cache) {
      ch->tail_cache = load32(u32_at(ch, PSY_OFF_TAIL)); /* pairs with the store in publish() */
      if (ch->read_pos == ch->tail_cache) return PSY_E_EMPTY;
    }
    uint32_t available = ch->tail_cache - ch->read_pos;
    if (available > ch->capacity) return corrupt_cursors(ch, "tail and read position", ch->tail_cache, ch->read_pos);
    const uint8_t *rec = record_at(ch, ch->read_pos);
    uint32_t length = *(const uint32_t *)(rec + PSY_REC_LENGTH);
    uint32_t type = *(const uint32_t *)(rec + PSY_REC_TYPE);
    uint32_t state = *(const uint32_t *)(rec + PSY_REC_STATE) & 0xff;
    uint32_t position = *(const uint32_t *)(rec + PSY_REC_POSITION);
    uint32_t span = length > ch->capacity ? 0 : record_span(length);
    if (span == 0 || span > available || position != ch->read_pos ||
        (state != PSY_REC_COMMITTED && state != PSY_REC_ABANDONED))
      return psy_fail(PSY_E_CORRUPT, "channel %s is corrupt: record at position %u has length %u, state %u, tag %u, with %u bytes published",
                      ch->path + 7, ch->read_pos, length, state, position, available);
    ch->polled.index = ch->read_pos & ch->mask;
    ch->polled.length = length;
    ch->polled.type = type;
    ch->polled.span = span;
    if (state == PSY_REC_ABANDONED) { /* skip it, and free its space */
      ch->read_pos += span;
      store32(u32_at(ch, PSY_OFF_HEAD), ch->read_pos);
      continue;
    }
    ch->held = 1;
    return (int32_t)ch->polled.index;
  }
}

const psy_polled_record *psy_polled(const psy_channel *ch) { return &ch->polled; }

/* ---- lifecycle --------------------------------------------------------------------------- */

void ring_close(psy_channel *ch) {
  if (ch->roles & PSY_ROLE_CONSUMER) psy_release(ch);
  if (ch->roles & PSY_ROLE_PRODUCER) { /* unsent messages must not hold back the ones sent after them */
    for (uint32_t i = 0; i < ch->pending_count; i++) {
      psy_pending *p = &ch->pending[(ch->pending_first + i) % PSY_MAX_PENDING];
      if (p->done) continue;
      *(uint32_t *)(record_at(ch, p->position) + PSY_REC_STATE) = PSY_REC_ABANDONED | ((uint32_t)ch->slot << 8);
      p->done = 1;
    }
    publish(ch);
  }
}

/* Does the ring hold a committed record nobody received? Walks head..tail with every length
 * bounded; a ring it cannot make sense of counts as holding messages (never delete data blindly). */
int ring_has_unread(const psy_channel *ch) {
  uint32_t tail = load32(u32_at(ch, PSY_OFF_TAIL));
  uint32_t pos = load32(u32_at(ch, PSY_OFF_HEAD));
  if (tail - pos > ch->capacity) return 1;
  while (pos != tail) {
    const uint8_t *rec = record_at(ch, pos);
    uint32_t length = *(const uint32_t *)(rec + PSY_REC_LENGTH);
    uint32_t state = *(const uint32_t *)(rec + PSY_REC_STATE) & 0xff;
    if (length > ch->capacity || record_span(length) > tail - pos || state != PSY_REC_ABANDONED) return 1;
    pos += record_span(length);
  }
  return 0;
}

uint32_t psy_used(const psy_channel *ch) {
  uint32_t used = load32(u32_at(ch, PSY_OFF_TAIL)) - load32(u32_at(ch, PSY_OFF_HEAD));
  return used > ch->capacity ? ch->capacity : used;
}
