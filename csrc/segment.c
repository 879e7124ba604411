/* Segment lifecycle: create-or-attach without races, validation of untrusted headers, the double
 * mapping of the ring, detach, and removal by the last handle. This file wires the layers
 * together (internal.h): it opens the segment, joins the participants (settling a dead slot
 * through the ring), and closes in the reverse order.
 *
 * Create or attach: the attach byte of the segment file is write-locked by whoever initializes
 * (or removes) the segment and read-locked by every attached handle. Whoever gets the write lock
 * on an uninitialized file initializes it, whether it made the file or a creator died before
 * initializing it; everybody else waits for a read lock and finds it initialized, or finds the
 * name unlinked and starts again. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static __thread char last_error[512];

int32_t psy_fail(int32_t code, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, args);
  va_end(args);
  return code;
}

const char *psy_last_error(void) { return last_error; }

void debug_log(const psy_channel *ch, const char *fmt, ...) {
  static int enabled = -1;
  if (enabled < 0) {
    const char *env = getenv("PSYNE_DEBUG");
    enabled = env && *env && strcmp(env, "0") != 0;
  }
  if (!enabled) return;
  char text[400];
  va_list args;
  va_start(args, fmt);
  vsnprintf(text, sizeof text, fmt, args);
  va_end(args);
  fprintf(stderr, "[psyne %d] %s: %s\n", (int)getpid(), ch ? ch->path + 7 : "-", text);
}

#ifndef CLOCK_MONOTONIC_COARSE /* macOS */
#define CLOCK_MONOTONIC_COARSE CLOCK_MONOTONIC
#endif

double monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

const char *psy_layout(void) {
  static char text[4096];
  if (text[0]) return text;
  size_t used = 0;
#define PSY_RENDER(name)                                                                           \
  used += (size_t)snprintf(text + used, sizeof text - used, #name "=%llu;",                        \
                           (unsigned long long)(PSY_##name));
  PSY_LAYOUT_CONSTANTS(PSY_RENDER)
#undef PSY_RENDER
  return text;
}

/* FNV-1a over the rendered layout: any moved offset changes it. */
uint32_t psy_layout_hash(void) {
  uint32_t hash = 2166136261u;
  for (const char *c = psy_layout(); *c; c++) hash = (hash ^ (uint8_t)*c) * 16777619u;
  return hash;
}

static int valid_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > PSY_NAME_MAX || name[0] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    if (!ok) return 0;
  }
  return 1;
}

static int32_t segment_path(char *out, size_t size, const char *name) {
  if (!name || !valid_name(name))
    return psy_fail(PSY_E_INVALID_NAME, "invalid channel name '%.220s': use 1 to %u of [A-Za-z0-9._-], not starting with '.'",
                    name ? name : "(null)", PSY_NAME_MAX);
  snprintf(out, size, "/psyne.%s", name);
  return 0;
}

static uint32_t round_capacity(uint32_t asked) {
  uint32_t cap = PSY_MIN_CAPACITY;
  while (cap < asked) cap <<= 1;
  return cap;
}

static void pause_briefly(void) {
  struct timespec ts = {0, 200000 + (rand() % 800) * 1000}; /* 0.2..1 ms, jittered against livelock */
  nanosleep(&ts, NULL);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint32_t random_u32(void) {
  uint32_t value = 0;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (read(fd, &value, sizeof value) != (ssize_t)sizeof value) value = 0;
    close(fd);
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  value ^= (uint32_t)ts.tv_nsec * 2654435761u ^ (uint32_t)getpid() * 40503u ^ (uint32_t)(uintptr_t)&ts;
  return value | 1; /* never 0: a zeroed ring's tag 0 then matches only by accident */
}

/* A second open file description of the segment, for the mapping: a mapping keeps its file
 * description alive, and with it every lock taken through it. The locks are taken through ch->fd
 * only, so a child forked without exec, which inherits the mapping and closes ch->fd (fork_child),
 * does not keep its dead parent's locks, and so its parent, alive. */
static int mapping_fd(psy_channel *ch) {
#ifdef __linux__
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", ch->fd);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd >= 0) return fd;
#endif
  return dup(ch->fd); /* no /proc: the same description (a forked child then keeps it alive) */
}

/* Reserve address space for header + ring + ring again, then map the file into it twice. */
static int32_t map_segment(psy_channel *ch) {
  size_t ring_end = PSY_RING_OFFSET + (size_t)ch->capacity;
  ch->map_size = ring_end + ch->capacity;
  uint8_t *base = mmap(NULL, ch->map_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return psy_fail(PSY_E_SYSTEM, "mmap reserve %zu bytes: %s", ch->map_size, strerror(errno));
  int fd = mapping_fd(ch);
  if (fd < 0 || mmap(base, ring_end, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED ||
      mmap(base + ring_end, ch->capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, PSY_RING_OFFSET) == MAP_FAILED) {
    int e = errno;
    if (fd >= 0) close(fd);
    munmap(base, ch->map_size);
    return psy_fail(PSY_E_SYSTEM, "mmap segment %s: %s", ch->path, strerror(e));
  }
  close(fd); /* the mapping holds what it needs */
  ch->base = base;
  return 0;
}

static const char *mode_name(int32_t mode) {
  static const char *names[] = {"SPSC", "MPSC", "SPMC", "MPMC", "BROADCAST"};
  return mode >= 0 && mode <= PSY_BROADCAST ? names[mode] : "unknown";
}

/* The header is untrusted: check everything before using any of it. */
static int32_t validate(psy_channel *ch, const uint8_t *head, off_t file_size) {
  uint64_t magic;
  uint32_t version, hash, mode, capacity, slots, ring_offset, salt;
  memcpy(&magic, head + PSY_OFF_MAGIC, 8);
  memcpy(&version, head + PSY_OFF_VERSION, 4);
  memcpy(&hash, head + PSY_OFF_LAYOUT_HASH, 4);
  memcpy(&mode, head + PSY_OFF_MODE, 4);
  memcpy(&capacity, head + PSY_OFF_CAPACITY, 4);
  memcpy(&slots, head + PSY_OFF_MAX_SLOTS, 4);
  memcpy(&ring_offset, head + PSY_OFF_RING_OFFSET, 4);
  memcpy(&salt, head + PSY_OFF_TAG_SALT, 4);
  if (magic != PSY_MAGIC)
    return psy_fail(PSY_E_CORRUPT, "%s is not a psyne channel (magic %016llx)", ch->path, (unsigned long long)magic);
  if (version != PSY_LAYOUT_VERSION || hash != psy_layout_hash())
    return psy_fail(PSY_E_CORRUPT, "%s has layout version %u hash %08x, this psyne uses version %u hash %08x",
                    ch->path, version, hash, PSY_LAYOUT_VERSION, psy_layout_hash());
  if (mode > PSY_BROADCAST || slots != PSY_MAX_SLOTS || ring_offset != PSY_RING_OFFSET ||
      capacity < PSY_MIN_CAPACITY || capacity > PSY_MAX_CAPACITY || (capacity & (capacity - 1)) ||
      file_size != (off_t)PSY_RING_OFFSET + capacity)
    return psy_fail(PSY_E_CORRUPT, "%s has a corrupt header: mode %u, slots %u, ring offset %u, capacity %u, file size %lld",
                    ch->path, mode, slots, ring_offset, capacity, (long long)file_size);
  ch->capacity = capacity;
  ch->mask = capacity - 1;
  ch->mode = (int32_t)mode;
  ch->salt = salt;
  return 0;
}

/* Where a new channel's positions start: 0; in the test build PSY_TEST_START_POS, a position, or
 * "-N" for N capacities before 2^64, so that a test's traffic crosses the wrap of every position
 * (and of their low 32 bits) after N laps of the ring. */
static uint64_t start_position(uint32_t capacity) {
#ifdef PSY_TEST_HOOKS
  const char *start = getenv("PSY_TEST_START_POS");
  if (start && *start == '-') return 0 - strtoull(start + 1, NULL, 0) * capacity;
  if (start && *start) return strtoull(start, NULL, 0);
#endif
  (void)capacity;
  return 0;
}

/* Called with the attach byte write-locked: nobody else is attached or initializing. */
static int32_t initialize(psy_channel *ch, uint32_t capacity, int32_t mode, uint32_t permissions) {
  ch->capacity = capacity;
  ch->mask = capacity - 1;
  ch->mode = mode;
  ch->salt = random_u32();
  /* truncate to zero first: a creator that died half-way may have left bytes behind */
  if (ftruncate(ch->fd, 0) || ftruncate(ch->fd, (off_t)PSY_RING_OFFSET + capacity))
    return psy_fail(PSY_E_SYSTEM, "ftruncate %s to %u bytes: %s", ch->path, PSY_RING_OFFSET + capacity, strerror(errno));
  fchmod(ch->fd, (mode_t)permissions); /* the umask must not narrow what the caller asked */
  int32_t rc = map_segment(ch);
  if (rc) return rc;
  *u64_at(ch, PSY_OFF_MAGIC) = PSY_MAGIC;
  *u32_at(ch, PSY_OFF_VERSION) = PSY_LAYOUT_VERSION;
  *u32_at(ch, PSY_OFF_LAYOUT_HASH) = psy_layout_hash();
  *u32_at(ch, PSY_OFF_MODE) = (uint32_t)mode;
  *u32_at(ch, PSY_OFF_CAPACITY) = capacity;
  *u32_at(ch, PSY_OFF_MAX_SLOTS) = PSY_MAX_SLOTS;
  *u32_at(ch, PSY_OFF_RING_OFFSET) = PSY_RING_OFFSET;
  *u32_at(ch, PSY_OFF_TAG_SALT) = ch->salt;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  *u64_at(ch, PSY_OFF_CREATED_MS) = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  uint64_t start = start_position(capacity);
  const uint32_t cursors[] = {PSY_OFF_TAIL, PSY_OFF_CLAIM_TAIL, PSY_OFF_HEAD, PSY_OFF_CLAIM_HEAD};
  for (unsigned i = 0; i < 4; i++) *u64_at(ch, cursors[i]) = start;
  events_attach(ch, 1);
  /* publish: pairs with the attacher's check of PSY_OFF_INIT_STATE under its read lock */
  store32(u32_at(ch, PSY_OFF_INIT_STATE), PSY_INIT_READY);
  return 0;
}

/* Is our fd still the file the name points to? (The last handle may have removed it.) */
static int still_linked(psy_channel *ch) {
  if (ch->private_memory) return 1;
  int fd = shm_open(ch->path, O_RDONLY, 0);
  if (fd < 0) return 0;
  struct stat named, ours;
  int same = fstat(fd, &named) == 0 && fstat(ch->fd, &ours) == 0 && named.st_ino == ours.st_ino &&
             named.st_dev == ours.st_dev;
  close(fd);
  return same;
}

static void release_fd(psy_channel *ch) {
  if (ch->fd >= 0) close(ch->fd); /* drops every OFD lock this handle held */
  ch->fd = -1;
}

/* The first PSY_CONTROL_SIZE bytes of the file (zeros past its end) and its size. */
static int32_t read_control(psy_channel *ch, uint8_t *head, off_t *size) {
  struct stat st;
  memset(head, 0, PSY_CONTROL_SIZE);
  if (fstat(ch->fd, &st) || (st.st_size > 0 && pread(ch->fd, head, PSY_CONTROL_SIZE, 0) < 0))
    return psy_fail(PSY_E_SYSTEM, "read %s: %s", ch->path, strerror(errno));
  *size = st.st_size;
  return 0;
}

enum { OPENED = 0, RETRY = 1, UNINITIALIZED = 2 }; /* open_once outcomes besides errors */

/* Attach to an initialized segment (under a read lock): config checks, then the mapping. */
static int32_t attach(psy_channel *ch, const uint8_t *head, off_t size, uint32_t capacity, int32_t mode) {
  int32_t rc = validate(ch, head, size);
  if (!rc && capacity && capacity != ch->capacity)
    rc = psy_fail(PSY_E_CONFIG, "channel %s has bufferSize %u, asked %u", ch->path + 7, ch->capacity, capacity);
  if (!rc && mode >= 0 && mode != ch->mode)
    rc = psy_fail(PSY_E_CONFIG, "channel %s has mode %s, asked %s", ch->path + 7, mode_name(ch->mode), mode_name(mode));
  if (!rc) rc = map_segment(ch);
  if (!rc) events_attach(ch, 0);
  return rc;
}

/* With ch->fd open on the segment file: initialize it or attach to it. */
static int32_t initialize_or_attach(psy_channel *ch, uint32_t capacity, int32_t mode, uint32_t permissions, int32_t open_mode) {
  uint8_t head[PSY_CONTROL_SIZE];
  off_t size;
  int exclusive = lock_byte(ch->fd, F_WRLCK, PSY_LOCK_ATTACH, 0) == 0;
  if (!exclusive && lock_byte(ch->fd, F_RDLCK, PSY_LOCK_ATTACH, 1)) /* wait out an initializer or a remover */
    return errno == EINTR ? RETRY : psy_fail(PSY_E_SYSTEM, "lock %s: %s", ch->path, strerror(errno));
  if (!still_linked(ch)) return RETRY; /* removed meanwhile: start afresh */
  int32_t rc = read_control(ch, head, &size);
  if (rc) return rc;
  uint32_t init_state;
  uint64_t magic;
  memcpy(&init_state, head + PSY_OFF_INIT_STATE, 4);
  memcpy(&magic, head + PSY_OFF_MAGIC, 8);
  if (init_state != PSY_INIT_READY) {
    if (init_state != 0 || (magic != 0 && magic != PSY_MAGIC))
      return psy_fail(PSY_E_CORRUPT, "%s is not a psyne channel (init state %08x, magic %016llx)", ch->path, init_state,
                      (unsigned long long)magic);
    /* not initialized: a creator is about to (it takes the write lock next), or died trying */
    if (!exclusive) return RETRY;
    if (open_mode == PSY_ATTACH) return UNINITIALIZED;
    rc = initialize(ch, capacity ? capacity : PSY_DEFAULT_CAPACITY, mode >= 0 ? mode : PSY_SPSC, permissions);
    HOOK("initialized");
    if (!rc && lock_byte(ch->fd, F_RDLCK, PSY_LOCK_ATTACH, 0)) /* atomic downgrade: let attachers in */
      rc = psy_fail(PSY_E_SYSTEM, "downgrade lock %s: %s", ch->path, strerror(errno));
    return rc;
  }
  if (exclusive && lock_byte(ch->fd, F_RDLCK, PSY_LOCK_ATTACH, 0))
    return psy_fail(PSY_E_SYSTEM, "downgrade lock %s: %s", ch->path, strerror(errno));
  if (open_mode == PSY_CREATE) return psy_fail(PSY_E_EXISTS, "channel %s already exists", ch->path + 7);
  return attach(ch, head, size, capacity, mode);
}

/* One attempt at a named segment: OPENED, RETRY, UNINITIALIZED, or a failure. */
static int32_t open_once(psy_channel *ch, uint32_t capacity, int32_t mode, uint32_t permissions, int32_t open_mode) {
  ch->fd = -1;
  if (open_mode != PSY_ATTACH) ch->fd = shm_open(ch->path, O_RDWR | O_CREAT | O_EXCL, (mode_t)permissions);
  if (ch->fd < 0 && (open_mode == PSY_ATTACH || errno == EEXIST)) ch->fd = shm_open(ch->path, O_RDWR, 0);
  if (ch->fd < 0) {
    if (errno == ENOENT) return open_mode == PSY_ATTACH ? psy_fail(PSY_E_NOT_FOUND, "channel %s does not exist", ch->path + 7) : RETRY;
    return psy_fail(PSY_E_SYSTEM, "shm_open %s: %s", ch->path, strerror(errno));
  }
  int32_t rc = initialize_or_attach(ch, capacity, mode, permissions, open_mode);
  if (rc != OPENED) {
    if (ch->base) munmap(ch->base, ch->map_size);
    ch->base = NULL;
    release_fd(ch);
  }
  return rc;
}

/* ---- private channels (memory://): anonymous memory found by name in this process ----------- */

#ifdef __linux__
#include <sys/syscall.h>

typedef struct private_segment {
  char name[PSY_NAME_MAX + 1];
  int fd; /* the memfd; each handle opens its own description of it (for the OFD locks) */
  struct private_segment *next;
} private_segment;

static pthread_mutex_t private_lock = PTHREAD_MUTEX_INITIALIZER;
static private_segment *private_segments;

static private_segment **find_private(const char *name) {
  private_segment **at = &private_segments;
  while (*at && strcmp((*at)->name, name) != 0) at = &(*at)->next;
  return at;
}

/* A new open file description of the memfd: locks taken through it are this handle's own. */
static int reopen(int fd) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  return open(path, O_RDWR | O_CLOEXEC);
}

static int32_t open_private(psy_channel *ch, uint32_t capacity, int32_t mode, int32_t open_mode) {
  const char *name = ch->path + 7;
  pthread_mutex_lock(&private_lock);
  private_segment **at = find_private(name), *seg = *at;
  int32_t rc = 0;
  if (!seg && open_mode == PSY_ATTACH) rc = psy_fail(PSY_E_NOT_FOUND, "channel %s does not exist", name);
  else if (seg && open_mode == PSY_CREATE) rc = psy_fail(PSY_E_EXISTS, "channel %s already exists", name);
  else if (!seg) {
    int fd = (int)syscall(SYS_memfd_create, ch->path + 1, 1u /* MFD_CLOEXEC */);
    if (fd < 0 || !(seg = calloc(1, sizeof *seg))) {
      rc = psy_fail(PSY_E_SYSTEM, "memfd_create %s: %s", name, strerror(errno));
      if (fd >= 0) close(fd);
    } else {
      snprintf(seg->name, sizeof seg->name, "%s", name);
      seg->fd = fd;
      seg->next = private_segments;
      private_segments = seg;
    }
  }
  if (!rc) {
    ch->fd = reopen(seg->fd);
    rc = ch->fd < 0 ? psy_fail(PSY_E_SYSTEM, "reopen memfd of %s: %s", name, strerror(errno))
                    : initialize_or_attach(ch, capacity, mode, 0600, open_mode);
    if (rc) { /* nobody waits on these locks here: the mutex serializes private opens */
      if (ch->base) munmap(ch->base, ch->map_size);
      ch->base = NULL;
      release_fd(ch);
    }
  }
  pthread_mutex_unlock(&private_lock);
  return rc;
}

/* The last handle of a private channel left (under private_lock, taken before the attach lock as
 * open_private does): forget it; the memory goes with the memfd's last reference. */
static void forget_private(const char *name) {
  private_segment **at = find_private(name), *seg = *at;
  if (seg) {
    *at = seg->next;
    close(seg->fd);
    free(seg);
  }
}
static void lock_private(psy_channel *ch, int lock) {
  if (!ch->private_memory) return;
  if (lock) pthread_mutex_lock(&private_lock);
  else pthread_mutex_unlock(&private_lock);
}
#else /* no memfd: a segment named by pid (psy_open renames it), unlinked by the last handle */
static int32_t open_private(psy_channel *ch, uint32_t capacity, int32_t mode, int32_t open_mode) {
  return open_once(ch, capacity, mode, 0600, open_mode);
}
static void forget_private(const char *name) { (void)name; }
static void lock_private(psy_channel *ch, int lock) { (void)ch, (void)lock; }
#endif

/* ---- handles ---------------------------------------------------------------------------- */

/* Every open handle of this process: a child forked without exec must not keep its parent's
 * locks alive (the parent would never look dead), so the child closes them (fork_child). */
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static psy_channel *open_handles;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void) { pthread_mutex_lock(&handles_lock); }
static void fork_parent(void) { pthread_mutex_unlock(&handles_lock); }
static void fork_child(void) {
  for (psy_channel *ch = open_handles; ch; ch = ch->next_open) {
    release_fd(ch); /* the parent's locks now live and die with the parent alone */
    bells_close(ch);
    for (int kind = 0; kind < PSY_WAIT_KINDS; kind++) ch->waiters[kind] = NULL; /* threads do not survive fork */
  }
  pthread_mutex_unlock(&handles_lock);
}
/* A thread that ends with handles bound to it (psy_bind_to_thread) leaves them as a crashed
 * process would: the kernel drops their locks when their descriptors close, and the others
 * recover what they held. Runs as the thread's TLS destructor. */
static pthread_key_t thread_end_key;
static void thread_ended(void *marker) {
  (void)marker;
  pthread_mutex_lock(&handles_lock);
  for (psy_channel **at = &open_handles; *at;) {
    psy_channel *ch = *at;
    if (ch->bound && pthread_equal((pthread_t)ch->owner_thread, pthread_self())) {
      *at = ch->next_open;
      waiters_stop(ch); /* no callback into a JavaScript context that is gone */
      bells_close(ch);
      debug_log(ch, "its thread ended with the channel open: dropped as if crashed");
      release_fd(ch);
      continue;
    }
    at = &ch->next_open;
  }
  pthread_mutex_unlock(&handles_lock);
}

static void install_fork_handlers(void) {
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  pthread_key_create(&thread_end_key, thread_ended);
}

int32_t psy_bind_to_thread(psy_channel *ch) {
  pthread_mutex_lock(&handles_lock);
  ch->bound = 1;
  ch->owner_thread = (unsigned long)pthread_self();
  pthread_mutex_unlock(&handles_lock);
  pthread_setspecific(thread_end_key, (void *)1);
  return 0;
}

static void track(psy_channel *ch, int add) {
  pthread_mutex_lock(&handles_lock);
  psy_channel **at = &open_handles;
  while (*at && *at != ch) at = &(*at)->next_open;
  if (add && !*at) {
    ch->next_open = open_handles;
    open_handles = ch;
  } else if (!add && *at) {
    *at = ch->next_open;
  }
  pthread_mutex_unlock(&handles_lock);
}

psy_channel *psy_open(const char *name, uint32_t capacity, int32_t mode, uint32_t permissions,
                      int32_t open_mode, int32_t *error) {
  int32_t rc = 0, ignored;
  psy_channel *ch = NULL;
  if (!error) error = &ignored;
  int private_memory = (open_mode & PSY_OPEN_PRIVATE) != 0;
  open_mode &= ~PSY_OPEN_PRIVATE;
  if (mode < -1 || mode > PSY_BROADCAST)
    rc = psy_fail(PSY_E_INVALID_ARG, "unknown channel mode %d", mode);
  else if (open_mode < PSY_CREATE_OR_ATTACH || open_mode > PSY_ATTACH)
    rc = psy_fail(PSY_E_INVALID_ARG, "unknown open mode %d", open_mode);
  else if (capacity > PSY_MAX_CAPACITY)
    rc = psy_fail(PSY_E_INVALID_ARG, "bufferSize %u is larger than the maximum %u", capacity, PSY_MAX_CAPACITY);
  else if (permissions > 0777)
    rc = psy_fail(PSY_E_INVALID_ARG, "permissions %o are not a file mode (0 to 0777)", permissions);
  else if (!(ch = calloc(1, sizeof *ch)))
    rc = psy_fail(PSY_E_SYSTEM, "out of memory");
  if (!rc) {
    ch->fd = -1;
    ch->slot = -1;
    ch->private_memory = private_memory;
    rc = segment_path(ch->path, sizeof ch->path, name);
#ifndef __linux__
    if (!rc && private_memory) snprintf(ch->path, sizeof ch->path, "/psyne.mem-%d-%.180s", (int)getpid(), name);
#endif
  }
  pthread_once(&fork_once, install_fork_handlers);
  events_init(); /* before the first publish, in every process */
  if (capacity) capacity = round_capacity(capacity);
  double start = now_ms(), uninitialized_since = 0;
  while (!rc) {
    rc = private_memory ? open_private(ch, capacity, mode, open_mode) : open_once(ch, capacity, mode, permissions, open_mode);
    if (rc == OPENED) break;
    if (rc < 0) break;
    double now = now_ms();
    if (rc == UNINITIALIZED && !uninitialized_since) uninitialized_since = now;
    if (uninitialized_since && now - uninitialized_since > 50) { /* no creator is coming back to it */
      rc = psy_fail(PSY_E_NOT_FOUND, "channel %s exists but was never initialized (its creator died?)", ch->path + 7);
      break;
    }
    if (now - start > 2000) {
      rc = psy_fail(PSY_E_SYSTEM, "channel %s: could not create or attach within 2 s", ch->path + 7);
      break;
    }
    rc = 0;
    pause_briefly();
  }
  if (!rc) rc = participants_join(ch, ring_settle_slot);
  if (rc) {
    if (ch && ch->base) munmap(ch->base, ch->map_size);
    if (ch) release_fd(ch);
    free(ch);
    *error = rc;
    return NULL;
  }
  track(ch, 1);
  *error = 0;
  return ch;
}

int32_t psy_close(psy_channel *ch) {
  if (!ch) return psy_fail(PSY_E_INVALID_ARG, "close of a null channel");
  track(ch, 0);
  waiters_stop(ch);
  if (ch->fd >= 0) { /* not a handle inherited through fork: that one only unmaps */
    ring_close(ch);
    participants_leave(ch);
    /* Last one out removes the segment, unless it still holds messages nobody received. Drop the
     * read lock before trying the write lock: two handles closing at once would otherwise each
     * see the other's read lock and both leave the segment behind. An attacher that slips in
     * between holds a read lock (so nobody removes), or finds the name unlinked and starts afresh. */
    lock_private(ch, 1);
    lock_byte(ch->fd, F_UNLCK, PSY_LOCK_ATTACH, 0);
    if (lock_byte(ch->fd, F_WRLCK, PSY_LOCK_ATTACH, 0) == 0) {
      if (ring_has_unread(ch)) debug_log(ch, "last to detach; kept: it holds undelivered messages");
      else if (ch->private_memory) forget_private(ch->path + 7);
      else if (still_linked(ch) && shm_unlink(ch->path) == 0) debug_log(ch, "last to detach: removed");
    }
    lock_private(ch, 0);
  }
  bells_close(ch); /* after ring_close: its give-backs and abandons may ring (and connect to) a peer's bell */
  munmap(ch->base, ch->map_size);
  release_fd(ch);
  free(ch);
  return 0;
}

int32_t psy_unlink(const char *name) {
  char path[PSY_NAME_MAX + 8];
  int32_t rc = segment_path(path, sizeof path, name);
  if (rc) return rc;
  if (shm_unlink(path) == 0) return 0;
  if (errno == ENOENT) return psy_fail(PSY_E_NOT_FOUND, "channel %s does not exist", name);
  return psy_fail(PSY_E_SYSTEM, "shm_unlink %s: %s", path, strerror(errno));
}

int32_t psy_inspect(const char *name, uint8_t *header_out, uint32_t *alive_out) {
  psy_channel probe;
  memset(&probe, 0, sizeof probe);
  int32_t rc = segment_path(probe.path, sizeof probe.path, name);
  if (rc) return rc;
  memset(header_out, 0, PSY_RING_OFFSET);
  memset(alive_out, 0, (1 + PSY_MAX_SLOTS) * sizeof *alive_out);
  int fd = shm_open(probe.path, O_RDONLY, 0);
  if (fd < 0) {
    if (errno == ENOENT) return psy_fail(PSY_E_NOT_FOUND, "channel %s does not exist", name);
    return psy_fail(PSY_E_SYSTEM, "shm_open %s: %s", probe.path, strerror(errno));
  }
  struct stat st;
  if (fstat(fd, &st) || pread(fd, header_out, PSY_RING_OFFSET, 0) < 0) {
    rc = psy_fail(PSY_E_SYSTEM, "read %s: %s", probe.path, strerror(errno));
    close(fd);
    return rc;
  }
  /* liveness as the kernel sees it: a lock conflicts only while its holder lives. Attached
   * handles read-lock the attach byte; a write lock there is a remover's brief probe (or a
   * creator initializing, which reads as corrupt below), not an attachment. */
  alive_out[0] = (uint32_t)(byte_lock_held(fd, PSY_LOCK_ATTACH) == F_RDLCK);
  for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++) alive_out[1 + i] = (uint32_t)byte_locked_by_other(fd, PSY_LOCK_SLOT(i));
  close(fd);
  uint32_t init_state;
  memcpy(&init_state, header_out + PSY_OFF_INIT_STATE, 4);
  if (init_state != PSY_INIT_READY)
    return psy_fail(PSY_E_CORRUPT, "%s is not an initialized psyne channel (init state %08x, %lld bytes)", probe.path,
                    init_state, (long long)st.st_size);
  return validate(&probe, header_out, st.st_size);
}

/* Does the (unattached, write-locked) segment hold a message nobody received? Maps it to look:
 * an unreadable or corrupt one counts as holding messages (never delete data blindly), an
 * uninitialized one (its creator died) as empty. */
static int holds_messages(psy_channel *probe) {
  uint8_t head[PSY_CONTROL_SIZE];
  off_t size;
  uint32_t init_state;
  if (read_control(probe, head, &size)) return 1;
  memcpy(&init_state, head + PSY_OFF_INIT_STATE, 4);
  if (init_state == 0 && size <= (off_t)PSY_CONTROL_SIZE) return 0;
  if (init_state != PSY_INIT_READY || validate(probe, head, size) || map_segment(probe)) return 1;
  int unread = ring_has_unread(probe);
  munmap(probe->base, probe->map_size);
  probe->base = NULL;
  return unread;
}

/* Write-locks the attach byte if no handle holds it. A write lock already there is another
 * remover's probe or a creator initializing, both brief: wait them out (up to 50 ms) rather than
 * mistake them for a live attachment, so two concurrent sweeps never both leave a stale channel. */
static int lock_attach_exclusively(int fd) {
  for (int attempt = 0; attempt < 50; attempt++) {
    if (lock_byte(fd, F_WRLCK, PSY_LOCK_ATTACH, 0) == 0) return 0;
    short held = byte_lock_held(fd, PSY_LOCK_ATTACH);
    if (held == F_RDLCK) return -1; /* attached */
    if (held == F_UNLCK) continue;  /* released meanwhile: try again at once */
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  return -1;
}

int32_t psy_remove_if_stale(const char *name, int32_t only_if_empty) {
  psy_channel probe;
  memset(&probe, 0, sizeof probe);
  int32_t rc = segment_path(probe.path, sizeof probe.path, name);
  if (rc) return rc;
  probe.fd = shm_open(probe.path, O_RDWR, 0);
  probe.slot = -1;
  if (probe.fd < 0) {
    if (errno == ENOENT) return psy_fail(PSY_E_NOT_FOUND, "channel %s does not exist", name);
    return psy_fail(PSY_E_SYSTEM, "shm_open %s: %s", probe.path, strerror(errno));
  }
  /* the attach byte is read-locked by every attached handle: if we can write-lock it, nobody is
   * attached, and anyone attaching now waits for us, then finds the name gone and starts afresh */
  int removed = lock_attach_exclusively(probe.fd) == 0 && (HOOK("remove_locked"), still_linked(&probe)) &&
                !(only_if_empty && holds_messages(&probe)) && (HOOK("remove_checked"), shm_unlink(probe.path) == 0);
  if (removed) debug_log(&probe, "removed: no live process was attached%s", only_if_empty ? " and it held no message" : "");
  close(probe.fd);
  return removed;
}

uint8_t *psy_base(const psy_channel *ch) { return ch->base; }
uint8_t *psy_payload(const psy_channel *ch, uint32_t index) {
  return ch->base + PSY_RING_OFFSET + (index & ch->mask) + PSY_REC_HEADER;
}
double psy_map_size(const psy_channel *ch) { return (double)ch->map_size; }
uint32_t psy_capacity(const psy_channel *ch) { return ch->capacity; }
int32_t psy_mode(const psy_channel *ch) { return ch->mode; }
int32_t psy_slot(const psy_channel *ch) { return ch->slot; }
double psy_unflushed(psy_channel *ch) { return (double)ring_unflushed(ch); }
