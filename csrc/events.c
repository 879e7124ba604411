/* Event counts and fences: the publisher's half of waiting without spinning.
 *
 * Whoever publishes messages (data) or frees space (space) stores its cursor, then looks at the
 * waiters count of that kind and, only if somebody waits, bumps the event count and futex-wakes
 * it. A waiter registers (waiters++), then re-checks the ring, then sleeps on the event count
 * (wait.c). For no wake-up to be lost, the publisher's "store cursor, load waiters" and the
 * waiter's "store waiters, load cursor" must not both miss each other (store buffering).
 *
 * The fence is asymmetric where the channel allows it: publishing is on every message, waiting
 * is rare. In PSY_FENCE_ASYMMETRIC channels publishers store with a plain release store and every
 * waiter, after registering, runs membarrier(GLOBAL_EXPEDITED), which makes every thread of every
 * process registered for it pass a full barrier: either a publisher's store came before that
 * barrier (the waiter's re-check sees it) or its load of the waiters count comes after it (and
 * sees the waiter). The choice is made per channel, not per process: a process that cannot run
 * membarrier turns its channel PSY_FENCE_SYMMETRIC when it attaches (before it ever waits), and
 * from then on every publisher stores with seq_cst and every waiter runs an ordinary fence. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

/* shared (not FUTEX_PRIVATE) for words in a segment that other processes map */
int futex_wait_on(uint32_t *word, uint32_t expected, int32_t timeout_ms, int shared) {
  struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
  int op = shared ? FUTEX_WAIT : FUTEX_WAIT_PRIVATE;
  if (syscall(SYS_futex, word, op, expected, timeout_ms < 0 ? NULL : &ts, NULL, 0) == 0) return 0;
  return errno; /* ETIMEDOUT, EINTR, or EAGAIN (the value already changed) */
}
void futex_wake_all(uint32_t *word, int shared) {
  syscall(SYS_futex, word, shared ? FUTEX_WAKE : FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
#else /* no futex (macOS): sleep in short steps; correct, just slower to wake */
int futex_wait_on(uint32_t *word, uint32_t expected, int32_t timeout_ms, int shared) {
  (void)shared;
  for (int32_t waited = 0; timeout_ms < 0 || waited < timeout_ms; waited++) {
    if (__atomic_load_n(word, __ATOMIC_SEQ_CST) != expected) return 0;
    struct timespec ts = {0, 1000000L};
    if (nanosleep(&ts, NULL) && errno == EINTR) return EINTR;
  }
  return ETIMEDOUT;
}
void futex_wake_all(uint32_t *word, int shared) { (void)word, (void)shared; }
#endif

/* What this process can do: be a target of membarrier (so it may publish with release stores),
 * and issue one (so it may wait on an asymmetric channel). */
int psy_membarrier_target;
static int can_issue;
#define registered psy_membarrier_target
static pthread_once_t events_once = PTHREAD_ONCE_INIT;

static void probe_membarrier(void) {
#ifdef __linux__
  long mask = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (mask <= 0 || !(mask & MEMBARRIER_CMD_GLOBAL_EXPEDITED)) return;
  can_issue = syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
  registered = (mask & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) &&
               syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
#endif
}

void events_init(void) { pthread_once(&events_once, probe_membarrier); }

void events_attach(psy_channel *ch, int creating) {
  uint32_t *mode = u32_at(ch, PSY_OFF_FENCE_MODE);
  if (creating) store32(mode, registered && can_issue ? PSY_FENCE_ASYMMETRIC : PSY_FENCE_SYMMETRIC);
  else if (!can_issue && load32(mode) != PSY_FENCE_SYMMETRIC && !DISABLED("fence")) {
    store32(mode, PSY_FENCE_SYMMETRIC); /* sticky: every publisher's next store is seq_cst */
    debug_log(ch, "this process cannot run membarrier: publishers of this channel now use seq_cst stores");
  }
}

void waiter_fence(psy_channel *ch) {
  (void)ch;
#ifdef __linux__
  if (__atomic_load_n(u32_at(ch, PSY_OFF_FENCE_MODE), __ATOMIC_RELAXED) == PSY_FENCE_ASYMMETRIC) {
    if (can_issue && syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0) return;
    store32(u32_at(ch, PSY_OFF_FENCE_MODE), PSY_FENCE_SYMMETRIC); /* cannot: fall back for everyone */
  }
#endif
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* ---- doorbells --------------------------------------------------------------------------
 * An event loop cannot sleep on a futex; it can watch a socket. A handle that waits from an event
 * loop (psy_bell_arm, wait.c) names its doorbell in its slot: an abstract Unix stream socket its
 * loop listens on. The publisher that satisfies the waiter takes the bell from ARMED to RUNG with
 * one compare-and-swap and writes one byte to it: the kernel wakes the loop directly (no helper
 * thread), and a burst of publishes rings once. Connections are kept per target slot and made
 * again when the bell changes or the connection broke. Only when somebody waits: the fast path
 * never gets here. */
#ifdef __linux__
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

static int bell_connect(uint32_t bell) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  int length = snprintf(address.sun_path + 1, sizeof address.sun_path - 1, "psyne-bell-%08x", bell);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&address, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)length)) != 0) {
    close(fd); /* its loop is gone (the slot's owner died or closed): nobody to wake */
    return -1;
  }
  return fd;
}

static void ring_bell(psy_channel *ch, uint32_t slot, uint32_t bell) {
  for (int attempt = 0; attempt < 2; attempt++) {
    if (ch->bell_fd[slot] == 0 || ch->bell_id[slot] != bell) {
      if (ch->bell_fd[slot]) close(ch->bell_fd[slot] - 1);
      int fd = bell_connect(bell);
      ch->bell_fd[slot] = fd + 1;
      ch->bell_id[slot] = bell;
      if (fd < 0) return;
    }
    /* EAGAIN: bytes are waiting unread already, which wakes it as well */
    if (send(ch->bell_fd[slot] - 1, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 || errno == EAGAIN) return;
    close(ch->bell_fd[slot] - 1); /* broken (its loop restarted): once more on a new connection */
    ch->bell_fd[slot] = 0;
  }
}

/* The kinds an event of `kind` satisfies: room also ends a flush wait (both count on space). */
static uint32_t bell_field(uint32_t kind, uint32_t state) { return state << (kind * PSY_BELL_BITS); }

static void ring_bells(psy_channel *ch, int32_t kind) {
  uint32_t armed = kind == PSY_WAIT_DATA ? bell_field(PSY_WAIT_DATA, PSY_BELL_ARMED)
                                         : bell_field(PSY_WAIT_SPACE, PSY_BELL_ARMED) | bell_field(PSY_WAIT_FLUSHED, PSY_BELL_ARMED);
  for (uint64_t bells = load64(u64_at(ch, PSY_OFF_BELLS)); bells; bells &= bells - 1) {
    uint32_t slot = (uint32_t)__builtin_ctzll(bells), *state = slot_u32(ch, slot, PSY_SLOT_BELL_STATE);
    uint32_t seen = load32(state);
    while (seen & armed) { /* ARMED -> RUNG (0b01 -> 0b10) for each such kind, in one CAS: only one publisher rings */
      uint32_t rung = (seen & ~armed) | ((seen & armed) << 1);
      if (__atomic_compare_exchange_n(state, &seen, rung, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        uint32_t bell = load32(slot_u32(ch, slot, PSY_SLOT_BELL));
        if (bell) ring_bell(ch, slot, bell);
        break;
      }
    }
  }
}

void bells_close(psy_channel *ch) {
  for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++)
    if (ch->bell_fd[i]) close(ch->bell_fd[i] - 1), ch->bell_fd[i] = 0;
}
#else
static void ring_bells(psy_channel *ch, int32_t kind) { (void)ch, (void)kind; }
void bells_close(psy_channel *ch) { (void)ch; }
#endif

/* Somebody waits: bump the event count and wake the sleepers and the bells (notify_waiters, internal.h). */
void wake_waiters(psy_channel *ch, int32_t kind) {
  uint32_t off = event_seq_offset(kind);
  __atomic_fetch_add(u32_at(ch, off), 1, __ATOMIC_SEQ_CST);
  ring_bells(ch, kind); /* first: an event loop is the waiter that needs the most waking */
  /* a sleeper counts itself before it registers and loads the event count after: if we see none,
   * it sees our bump (and its re-check our publish) */
  if (load32(u32_at(ch, off + PSY_SLEEPERS_AFTER_SEQ))) futex_wake_all(u32_at(ch, off), 1);
}
