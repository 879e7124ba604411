/* Crash recovery: repairs what participants that died (SIGKILL, a crash, a terminated Worker)
 * left half-done, so survivors and later attachers carry on. The ring calls these entry points
 * when it finds itself stuck (rate-limited, see ring.c); a joiner calls recover_slot before it
 * reuses a dead participant's slot. Liveness comes from the kernel (participants.c).
 *
 * Every repair runs under the recovery lock (an OFD write lock on byte PSY_LOCK_RECOVERY, dropped
 * by the kernel if the recoverer dies): two recoverers never act on the same dead state, so a
 * recoverer that stalls between its checks and its writes finds the world as it left it. What it
 * repairs is frozen anyway: only the dead owner could have changed it. Every store that live
 * participants could race is a compare-and-swap on the record's (state, tag) word.
 *
 * What a death can leave, and who repairs it:
 *   MPSC/MPMC producer: a claim with no header yet, or a CLAIMED record   -> recover_claims
 *   single producer: committed records it had not published yet          -> recover_orphans
 *   SPMC/MPMC consumer: a TAKEN record, or one taken off claim_head but
 *     not yet marked                                                     -> recover_takers
 *   finished records a cursor was not moved over (died between the two
 *     stores)                                                            -> the ring's advance_*
 *   a BROADCAST subscriber holding the producer back                     -> ring.c (slowest_subscriber)
 *   roles, waiter counts, counters of its slot                           -> participants.c (retire) */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>

int recovery_lock(psy_channel *ch, int wait) {
  int rc;
  do rc = lock_byte(ch->fd, F_WRLCK, PSY_LOCK_RECOVERY, wait);
  while (rc && errno == EINTR);
  return rc;
}

void recovery_unlock(psy_channel *ch) { lock_byte(ch->fd, F_UNLCK, PSY_LOCK_RECOVERY, 0); }

/* ---- MPSC/MPMC: claims of dead producers ------------------------------------------------ */

static uint64_t intent_position(const psy_channel *ch, uint32_t slot) {
  return __atomic_load_n(slot_u64(ch, slot, PSY_SLOT_CLAIMING_POS), __ATOMIC_ACQUIRE);
}
static uint32_t intent_span(const psy_channel *ch, uint32_t slot) {
  return __atomic_load_n(slot_u32(ch, slot, PSY_SLOT_CLAIMING_SPAN), __ATOMIC_ACQUIRE);
}

/* Does a record begin at `position`? Every claiming intent names a value claim_tail had, which is
 * a record boundary; so is claim_tail itself, and any position with this lap's header. */
static int known_boundary(const psy_channel *ch, uint64_t position, uint64_t claimed) {
  if (position == claimed) return 1;
  for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++)
    if (intent_span(ch, i) && intent_position(ch, i) == position) return 1;
  return header_written(ch, __atomic_load_n(rec_word(record_at(ch, position)), __ATOMIC_ACQUIRE), position);
}

enum { BLOCKED = 0, WRITTEN = 1, SKIPPED = 2 }; /* what settle_claim found or did */

/* The claim at `position` in [tail, claimed): settle it if a dead producer took it without
 * writing its header. A producer stores its intent (position, span) in its slot before the CAS
 * that takes the space, and clears it after writing the headers; so the producer that won
 * `position` is among the slots naming it, unless its header is written. A loser of that CAS may
 * name it too (until it tries again, or forever if it died). Read the intents first, then the
 * header: an intent cleared before we read it was cleared after its header was stored.
 * WRITTEN: its header was there. SKIPPED: settled now. BLOCKED: a live producer names it, or
 * nothing tells yet. */
static int settle_claim(psy_channel *ch, uint64_t position, uint64_t claimed) {
  uint32_t spans[PSY_MAX_SLOTS], n = 0;
  for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++) {
    uint32_t span = intent_span(ch, i);
    if (!span || intent_position(ch, i) != position) continue;
    if (slot_alive(ch, i)) return BLOCKED; /* it writes the header itself, or tries elsewhere soon */
    if (span >= PSY_REC_HEADER && span % PSY_REC_ALIGN == 0 && span <= claimed - position) spans[n++] = span;
  }
  uint64_t *word = rec_word(record_at(ch, position));
  uint64_t seen = __atomic_load_n(word, __ATOMIC_ACQUIRE);
  if (header_written(ch, seen, position)) return WRITTEN;
  /* The winner's claim ends where a record begins; a dead loser with a smaller span ends inside
   * the winner's claim, where none does. So the smallest span that ends on a boundary is it. */
  for (uint32_t a = 0; a < n; a++) /* insertion sort: at most a few candidates */
    for (uint32_t b = a; b > 0 && spans[b] < spans[b - 1]; b--) {
      uint32_t t = spans[b];
      spans[b] = spans[b - 1];
      spans[b - 1] = t;
    }
  for (uint32_t a = 0; a < n; a++) {
    if (!known_boundary(ch, position + spans[a], claimed)) continue;
    HOOK("settle_claim_decided");
    /* one CAS writes the whole header: if anyone wrote this word since we read it, nothing happens */
    if (!cas64(word, seen, rec_word_of(ch, position, skipped_stamp(spans[a])))) return BLOCKED;
    for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++)
      if (intent_span(ch, i) && intent_position(ch, i) == position && !slot_alive(ch, i))
        store32(slot_u32(ch, i, PSY_SLOT_CLAIMING_SPAN), 0);
    debug_log(ch, "skipped %u bytes a dead producer claimed at position %llu", spans[a], (unsigned long long)position);
    return SKIPPED;
  }
  return BLOCKED;
}

/* Walks [tail, claim_tail): abandons every CLAIMED record of a dead owner and settles every
 * headerless claim of a dead producer, as far as it can tell where records end. */
static int recover_claims_locked(psy_channel *ch) {
  uint64_t claimed = load64(u64_at(ch, PSY_OFF_CLAIM_TAIL)), position = load64(u64_at(ch, PSY_OFF_TAIL));
  if (claimed - position > ch->capacity) return 0; /* corrupt: the ring reports it */
  int changed = 0;
  while (position != claimed) {
    record_header h;
    if (!read_header(ch, position, claimed - position, &h)) {
      int outcome = settle_claim(ch, position, claimed);
      if (outcome == BLOCKED) break;
      if (outcome == SKIPPED) changed = 1;
      else if (!read_header(ch, position, claimed - position, &h)) break; /* a header, but not one that fits: corrupt */
      continue; /* read the header that is there now */
    }
    if (h.state == PSY_REC_CLAIMED && !owner_alive(ch, h.stamp)) {
      HOOK("abandon_dead_claimed");
      if (cas64(rec_word(record_at(ch, position)), h.word, rec_word_of(ch, position, stamp_with_state(h.stamp, PSY_REC_ABANDONED)))) {
        debug_log(ch, "skipped the unfinished message of a dead producer at position %llu", (unsigned long long)position);
        changed = 1;
      }
    }
    position += h.span;
  }
  return changed;
}

int recover_claims(psy_channel *ch) {
  if (DISABLED("claims") || recovery_lock(ch, 0)) return 0; /* another is at it */
  int changed = recover_claims_locked(ch);
  recovery_unlock(ch);
  return changed;
}

/* ---- SPMC/MPMC: messages of dead consumers ----------------------------------------------- */

/* Gives back what dead consumers had taken, for another consumer to take (take_returned in
 * ring.c). A COMMITTED record behind claim_head was taken off claim_head by a consumer that died
 * before marking it (or it was given back already): count it too. */
static int recover_takers_locked(psy_channel *ch) {
  uint64_t position = load64(u64_at(ch, PSY_OFF_HEAD)), limit = load64(u64_at(ch, PSY_OFF_CLAIM_HEAD));
  if (limit - position > ch->capacity) return 0;
  uint32_t found = 0;
  while (position != limit) {
    record_header h;
    if (!read_header(ch, position, limit - position, &h)) break; /* head moved past it meanwhile */
    if (h.state == PSY_REC_TAKEN && !owner_alive(ch, h.stamp)) {
      HOOK("return_dead_taken");
      if (cas64(rec_word(record_at(ch, position)), h.word, rec_word_of(ch, position, stamp_with_state(h.stamp, PSY_REC_COMMITTED)))) {
        debug_log(ch, "a dead consumer held the message at position %llu: it will be delivered again", (unsigned long long)position);
        found++;
      }
    } else if (h.state == PSY_REC_COMMITTED) {
      found++;
    }
    position += h.span;
  }
  uint32_t *returned = u32_at(ch, PSY_OFF_RETURNED);
  if (found && load32(returned) == 0) __atomic_fetch_add(returned, found, __ATOMIC_SEQ_CST);
  return found != 0;
}

int recover_takers(psy_channel *ch) {
  if (DISABLED("takers") || recovery_lock(ch, 0)) return 0;
  int changed = recover_takers_locked(ch);
  recovery_unlock(ch);
  return changed;
}

/* ---- single producer: committed records it had not published --------------------------- */

static int producer_alive(const psy_channel *ch) {
  uint32_t owner = load32(u32_at(ch, PSY_OFF_PRODUCER_OWNER));
  return owner != 0 && owner <= PSY_MAX_SLOTS && slot_alive(ch, owner - 1);
}

/* A single producer publishes tail in claim order, so a message it committed after one it had
 * only allocated waits for that one. If it died, publish them (the unsent ones become abandoned)
 * so every message whose send() returned is delivered. The producer role's owner is dead, and a
 * new producer takes this lock before it looks at tail, so nobody else moves tail meanwhile. */
static int publish_orphans(psy_channel *ch) {
  uint64_t tail = load64(u64_at(ch, PSY_OFF_TAIL)), position = tail, end = tail;
  while (position - tail < ch->capacity) {
    record_header h;
    if (!read_header(ch, position, ch->capacity - (position - tail), &h) || owner_alive(ch, h.stamp)) break;
    if (h.state == PSY_REC_CLAIMED) {
      if (!cas64(rec_word(record_at(ch, position)), h.word, rec_word_of(ch, position, stamp_with_state(h.stamp, PSY_REC_ABANDONED)))) break;
    } else if (!finished(h.state)) {
      break;
    }
    position += h.span;
    if (h.state == PSY_REC_COMMITTED) end = position;
  }
  if (end == tail) return 0;
  HOOK("publish_orphans");
  if (!cas64(u64_at(ch, PSY_OFF_TAIL), tail, end)) return 0;
  debug_log(ch, "published %llu bytes of messages a dead producer had sent", (unsigned long long)(end - tail));
  return 1;
}

static int recover_orphans_locked(psy_channel *ch) { return !producer_alive(ch) && publish_orphans(ch); }

int recover_orphans(psy_channel *ch) {
  if (DISABLED("orphans") || recovery_lock(ch, 0)) return 0;
  int changed = recover_orphans_locked(ch);
  recovery_unlock(ch);
  return changed;
}

uint64_t recover_for_new_producer(psy_channel *ch) {
  int locked = recovery_lock(ch, 1) == 0;
  if (locked && !DISABLED("orphans")) publish_orphans(ch); /* our predecessor is dead: we hold its role */
  uint64_t tail = load64(u64_at(ch, PSY_OFF_TAIL));
  if (locked) recovery_unlock(ch);
  return tail;
}

int orphans_possible(const psy_channel *ch) {
  if (multi_producer(ch)) return 0;
  uint64_t tail = load64(u64_at(ch, PSY_OFF_TAIL));
  uint64_t word = __atomic_load_n(rec_word(record_at(ch, tail)), __ATOMIC_ACQUIRE);
  /* a header at tail: its producer holds an allocation there, or died holding it */
  return header_written(ch, word, tail) && !producer_alive(ch);
}

/* ---- a joiner settles a dead slot -------------------------------------------------------- */

int recover_slot(psy_channel *ch, uint32_t slot) {
  if (recovery_lock(ch, 1)) return 0;
  int settled = 1;
  if (multi_producer(ch)) {
    uint32_t span = intent_span(ch, slot);
    uint64_t position = intent_position(ch, slot);
    uint64_t tail = load64(u64_at(ch, PSY_OFF_TAIL)), claimed = load64(u64_at(ch, PSY_OFF_CLAIM_TAIL));
    /* an intent outside [tail, claimed) is stale: it never took space, or its record is done */
    if (span && position - tail < claimed - tail) settled = settle_claim(ch, position, claimed) != BLOCKED;
    recover_claims_locked(ch);
  } else {
    recover_orphans_locked(ch);
  }
  if (work_queue(ch)) recover_takers_locked(ch);
  recovery_unlock(ch);
  return settled;
}
