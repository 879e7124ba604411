/* Participants: one slot per attached handle, owned through an OFD byte lock that the kernel
 * releases when the owner dies, so liveness never trusts a pid (reuse, zombies, namespaces).
 * A slot's roles and generation form one 64-bit word: whoever clears a dead participant's role
 * does it with a compare-and-swap that fails if the slot was taken again meanwhile. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef F_OFD_SETLK /* macOS: process-associated locks; also released on death */
#define F_OFD_GETLK F_GETLK
#define F_OFD_SETLK F_SETLK
#define F_OFD_SETLKW F_SETLKW
#endif

/* A one-byte range of the segment file, for the OFD locks below. */
static struct flock byte_range(short type, long byte) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  return fl;
}

int lock_byte(int fd, short type, long byte, int wait) {
  struct flock fl = byte_range(type, byte);
  int rc;
  do rc = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
  while (rc && errno == EINTR && !wait);
  return rc;
}

short byte_lock_held(int fd, long byte) {
  struct flock fl = byte_range(F_WRLCK, byte);
  if (fcntl(fd, F_OFD_GETLK, &fl)) return F_RDLCK; /* cannot tell: assume alive, never steal */
  return fl.l_type;
}

int byte_locked_by_other(int fd, long byte) { return byte_lock_held(fd, byte) != F_UNLCK; }

static uint64_t *roles_word(const psy_channel *ch, uint32_t slot) { return slot_u64(ch, slot, PSY_SLOT_ROLES); }
static uint32_t generation_of(uint64_t roles_word) { return (uint32_t)(roles_word >> 32); }

int slot_alive(const psy_channel *ch, uint32_t slot) {
  if (slot >= PSY_MAX_SLOTS) return 0;
  if ((int32_t)slot == ch->slot) return 1;
  return byte_locked_by_other(ch->fd, PSY_LOCK_SLOT(slot));
}

int32_t psy_slot_alive(const psy_channel *ch, uint32_t slot) { return slot_alive(ch, slot); }

/* Is the participant that stamped a record still there? Its slot must still be held, and by the
 * same incarnation (a slot taken again after a death has a new generation). */
int owner_alive(const psy_channel *ch, uint32_t stamp) {
  uint32_t slot = (stamp >> PSY_REC_OWNER_SHIFT) & PSY_REC_OWNER_MASK;
  uint32_t generation = stamp >> PSY_REC_GENERATION_SHIFT;
  if (slot >= PSY_MAX_SLOTS) return 0;
  if ((generation_of(load64(roles_word(ch, slot))) & PSY_REC_GENERATION_MASK) != generation) return 0;
  return slot_alive(ch, slot);
}

/* Field 22 of /proc/self/stat: with the pid it names this process uniquely (for humans and
 * tools; liveness itself comes from the lock). 0 where /proc is missing. */
static uint64_t own_start_time(void) {
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f) return 0;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* the command name may contain spaces */
  if (!p) return 0;
  unsigned long long start = 0;
  /* after ')': field 3 (state) ... field 22 (starttime) */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &start) != 1)
    return 0;
  return start;
}

static const uint32_t counter_offsets[5] = {PSY_SLOT_MSGS_SENT, PSY_SLOT_BYTES_SENT, PSY_SLOT_MSGS_RECEIVED,
                                            PSY_SLOT_BYTES_RECEIVED, PSY_SLOT_FULL_EVENTS};

/* Fold a slot's counters into the channel totals and free its roles. The caller owns the slot's
 * lock, so its previous owner is gone (or is the caller, leaving). */
static void retire_slot(psy_channel *ch, uint32_t slot) {
  uint8_t *s = slot_at(ch, slot);
  for (int i = 0; i < 5; i++) {
    uint64_t *counter = (uint64_t *)(s + counter_offsets[i]);
    __atomic_fetch_add(u64_at(ch, PSY_OFF_RETIRED + 8 * i), *counter, __ATOMIC_SEQ_CST);
    *counter = 0;
  }
  HOOK("retire_counters");
  /* a waiter that died while registered must not keep publishers waking nobody */
  uint32_t waiting = __atomic_exchange_n((uint32_t *)(s + PSY_SLOT_WAITING), 0, __ATOMIC_SEQ_CST);
  if (waiting & PSY_WAITING_DATA) __atomic_fetch_sub(u32_at(ch, PSY_OFF_DATA_WAITERS), 1, __ATOMIC_SEQ_CST);
  if (waiting & PSY_WAITING_SPACE) __atomic_fetch_sub(u32_at(ch, PSY_OFF_SPACE_WAITERS), 1, __ATOMIC_SEQ_CST);
  if (waiting & PSY_WAITING_FLUSH) __atomic_fetch_sub(u32_at(ch, PSY_OFF_SPACE_WAITERS), 1, __ATOMIC_SEQ_CST);
  uint32_t sleeping = waiting >> PSY_WAITING_SLEEPS;
  if (sleeping & PSY_WAITING_DATA) __atomic_fetch_sub(u32_at(ch, PSY_OFF_DATA_SLEEPERS), 1, __ATOMIC_SEQ_CST);
  if (sleeping & PSY_WAITING_SPACE) __atomic_fetch_sub(u32_at(ch, PSY_OFF_SPACE_SLEEPERS), 1, __ATOMIC_SEQ_CST);
  if (sleeping & PSY_WAITING_FLUSH) __atomic_fetch_sub(u32_at(ch, PSY_OFF_SPACE_SLEEPERS), 1, __ATOMIC_SEQ_CST);
  cas32(u32_at(ch, PSY_OFF_PRODUCER_OWNER), slot + 1, 0);
  cas32(u32_at(ch, PSY_OFF_CONSUMER_OWNER), slot + 1, 0);
  __atomic_fetch_and(roles_word(ch, slot), 0xffffffff00000000ull, __ATOMIC_SEQ_CST); /* roles 0, generation kept */
  store32((uint32_t *)(s + PSY_SLOT_CLAIMING_SPAN), 0);
  store32((uint32_t *)(s + PSY_SLOT_BELL_STATE), PSY_BELL_IDLE); /* nobody rings a gone waiter's bell */
  __atomic_fetch_and(u64_at(ch, PSY_OFF_BELLS), ~(1ull << slot), __ATOMIC_SEQ_CST);
  HOOK("retire_roles");
  store32((uint32_t *)(s + PSY_SLOT_STATE), PSY_SLOT_FREE);
}

int32_t participants_join(psy_channel *ch, settle_slot_fn settle) {
  for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++) {
    if (lock_byte(ch->fd, F_WRLCK, PSY_LOCK_SLOT(i), 0)) continue; /* a live owner holds it */
    uint8_t *s = slot_at(ch, i);
    if (load32((uint32_t *)(s + PSY_SLOT_STATE)) != PSY_SLOT_FREE) { /* its last owner died attached */
      debug_log(ch, "participant %u (pid %u) died attached: settling what it left", i, *(uint32_t *)(s + PSY_SLOT_PID));
      settle(ch, i); /* takes the recovery lock itself: no recoverer acts on this slot meanwhile */
      retire_slot(ch, i);
    }
    *(uint32_t *)(s + PSY_SLOT_PID) = (uint32_t)getpid();
    *(uint64_t *)(s + PSY_SLOT_START_TIME) = own_start_time();
    uint64_t word = __atomic_add_fetch(roles_word(ch, i), 1ull << 32, __ATOMIC_SEQ_CST); /* new generation */
    ch->generation = generation_of(word);
    store32((uint32_t *)(s + PSY_SLOT_STATE), PSY_SLOT_ACTIVE);
    ch->slot = (int32_t)i;
    debug_log(ch, "attached as participant %u", i);
    return 0;
  }
  return psy_fail(PSY_E_SLOTS, "channel %s has %u live participants, the most it can hold", ch->path + 7, PSY_MAX_SLOTS);
}

void participants_leave(psy_channel *ch) {
  retire_slot(ch, (uint32_t)ch->slot);
  lock_byte(ch->fd, F_UNLCK, PSY_LOCK_SLOT(ch->slot), 0);
}

static const char *mode_name(int32_t mode) {
  static const char *names[] = {"SPSC", "MPSC", "SPMC", "MPMC", "BROADCAST"};
  return mode >= 0 && mode <= PSY_BROADCAST ? names[mode] : "unknown";
}

/* Which roles a mode lets only one live handle hold. */
static uint32_t exclusive_roles(int32_t mode) {
  switch (mode) {
  case PSY_SPSC: return PSY_ROLE_PRODUCER | PSY_ROLE_CONSUMER;
  case PSY_MPSC: return PSY_ROLE_CONSUMER;
  case PSY_SPMC: return PSY_ROLE_PRODUCER;
  case PSY_BROADCAST: return PSY_ROLE_PRODUCER;
  default: return 0;
  }
}

int32_t participants_take_role(psy_channel *ch, uint32_t role) {
  if (role != PSY_ROLE_PRODUCER && role != PSY_ROLE_CONSUMER)
    return psy_fail(PSY_E_INVALID_ARG, "unknown role %u", role);
  if (ch->roles & role) return 0;
  if (exclusive_roles(ch->mode) & role) {
    uint32_t *owner = u32_at(ch, role == PSY_ROLE_PRODUCER ? PSY_OFF_PRODUCER_OWNER : PSY_OFF_CONSUMER_OWNER);
    uint32_t me = (uint32_t)ch->slot + 1;
    for (;;) {
      uint32_t current = load32(owner);
      if (current == me || (current == 0 && cas32(owner, 0, me))) break;
      if (current == 0) continue;
      if (current <= PSY_MAX_SLOTS && slot_alive(ch, current - 1)) {
        uint32_t pid = *slot_u32(ch, current - 1, PSY_SLOT_PID);
        return psy_fail(PSY_E_ROLE, "channel %s is %s and process %u is already its %s", ch->path + 7,
                        mode_name(ch->mode), pid, role == PSY_ROLE_PRODUCER ? "producer" : "consumer");
      }
      if (cas32(owner, current, me)) break; /* its holder died (or the word is garbage): the role is free */
    }
  }
  ch->roles |= role;
  __atomic_fetch_or(roles_word(ch, (uint32_t)ch->slot), role, __ATOMIC_SEQ_CST);
  return 0;
}

int participants_reap_subscriber(psy_channel *ch, uint32_t slot, uint64_t observed) {
  return cas64(roles_word(ch, slot), observed, observed & ~(uint64_t)PSY_ROLE_CONSUMER);
}
