/* Segment lifecycle: create-or-attach without races, validation of untrusted headers, the double
 * mapping of the ring, detach, and removal by the last handle. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
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

/* Reserve address space for header + ring + ring again, then map the file into it twice. */
static int32_t map_segment(psy_channel *ch) {
  size_t ring_end = PSY_RING_OFFSET + (size_t)ch->capacity;
  ch->map_size = ring_end + ch->capacity;
  uint8_t *base = mmap(NULL, ch->map_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return psy_fail(PSY_E_SYSTEM, "mmap reserve %zu bytes: %s", ch->map_size, strerror(errno));
  if (mmap(base, ring_end, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, ch->fd, 0) == MAP_FAILED ||
      mmap(base + ring_end, ch->capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, ch->fd,
           PSY_RING_OFFSET) == MAP_FAILED) {
    int e = errno;
    munmap(base, ch->map_size);
    return psy_fail(PSY_E_SYSTEM, "mmap segment %s: %s", ch->path, strerror(e));
  }
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
  uint32_t version, hash, mode, capacity, slots, ring_offset;
  memcpy(&magic, head + PSY_OFF_MAGIC, 8);
  memcpy(&version, head + PSY_OFF_VERSION, 4);
  memcpy(&hash, head + PSY_OFF_LAYOUT_HASH, 4);
  memcpy(&mode, head + PSY_OFF_MODE, 4);
  memcpy(&capacity, head + PSY_OFF_CAPACITY, 4);
  memcpy(&slots, head + PSY_OFF_MAX_SLOTS, 4);
  memcpy(&ring_offset, head + PSY_OFF_RING_OFFSET, 4);
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
  return 0;
}

/* Called with the attach byte write-locked: nobody else is attached or initializing. */
static int32_t initialize(psy_channel *ch, uint32_t capacity, int32_t mode) {
  ch->capacity = capacity;
  ch->mask = capacity - 1;
  ch->mode = mode;
  /* truncate to zero first: a creator that died half-way may have left bytes behind */
  if (ftruncate(ch->fd, 0) || ftruncate(ch->fd, (off_t)PSY_RING_OFFSET + capacity))
    return psy_fail(PSY_E_SYSTEM, "ftruncate %s to %u bytes: %s", ch->path, PSY_RING_OFFSET + capacity, strerror(errno));
  int32_t rc = map_segment(ch);
  if (rc) return rc;
  *u64_at(ch, PSY_OFF_MAGIC) = PSY_MAGIC;
  *u32_at(ch, PSY_OFF_VERSION) = PSY_LAYOUT_VERSION;
  *u32_at(ch, PSY_OFF_LAYOUT_HASH) = psy_layout_hash();
  *u32_at(ch, PSY_OFF_MODE) = (uint32_t)mode;
  *u32_at(ch, PSY_OFF_CAPACITY) = capacity;
  *u32_at(ch, PSY_OFF_MAX_SLOTS) = PSY_MAX_SLOTS;
  *u32_at(ch, PSY_OFF_RING_OFFSET) = PSY_RING_OFFSET;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  *u64_at(ch, PSY_OFF_CREATED_MS) = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  /* publish: pairs with the attacher's check of PSY_OFF_INIT_STATE under its read lock */
  store32(u32_at(ch, PSY_OFF_INIT_STATE), PSY_INIT_READY);
  return 0;
}

/* Is our fd still the file the name points to? (The last handle may have removed it.) */
static int still_linked(psy_channel *ch) {
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

/* One attempt: 0 done, 1 try again, <0 failure. */
static int32_t open_once(psy_channel *ch, uint32_t capacity, int32_t mode, uint32_t permissions,
                         int32_t open_mode) {
  if (open_mode == PSY_ATTACH) {
    ch->fd = shm_open(ch->path, O_RDWR, 0);
  } else {
    ch->fd = shm_open(ch->path, O_RDWR | O_CREAT | O_EXCL, (mode_t)permissions);
    if (ch->fd >= 0) {
      fchmod(ch->fd, (mode_t)permissions); /* the umask must not narrow what the caller asked */
    } else if (errno == EEXIST) {
      if (open_mode == PSY_CREATE) return psy_fail(PSY_E_EXISTS, "channel %s already exists", ch->path + 7);
      ch->fd = shm_open(ch->path, O_RDWR, 0);
      if (ch->fd < 0 && errno == ENOENT) return 1; /* removed meanwhile */
    }
  }
  if (ch->fd < 0) {
    if (errno == ENOENT) return psy_fail(PSY_E_NOT_FOUND, "channel %s does not exist", ch->path + 7);
    return psy_fail(PSY_E_SYSTEM, "shm_open %s: %s", ch->path, strerror(errno));
  }
  /* waits out an initializer or a remover; both hold the write lock only briefly */
  if (lock_byte(ch->fd, F_RDLCK, PSY_LOCK_ATTACH, 1)) {
    int e = errno;
    release_fd(ch);
    if (e == EINTR) return 1;
    return psy_fail(PSY_E_SYSTEM, "lock %s: %s", ch->path, strerror(e));
  }
  if (!still_linked(ch)) {
    release_fd(ch);
    return 1;
  }
  struct stat st;
  uint8_t head[PSY_CONTROL_SIZE];
  memset(head, 0, sizeof head);
  if (fstat(ch->fd, &st)) {
    release_fd(ch);
    return psy_fail(PSY_E_SYSTEM, "fstat %s: %s", ch->path, strerror(errno));
  }
  if (st.st_size > 0 && pread(ch->fd, head, sizeof head, 0) < 0) {
    release_fd(ch);
    return psy_fail(PSY_E_SYSTEM, "read %s: %s", ch->path, strerror(errno));
  }
  uint32_t init_state;
  memcpy(&init_state, head + PSY_OFF_INIT_STATE, 4);
  if (init_state == PSY_INIT_READY) {
    int32_t rc = validate(ch, head, st.st_size);
    if (!rc && capacity && capacity != ch->capacity)
      rc = psy_fail(PSY_E_CONFIG, "channel %s has bufferSize %u, asked %u", ch->path + 7, ch->capacity, capacity);
    if (!rc && mode >= 0 && mode != ch->mode)
      rc = psy_fail(PSY_E_CONFIG, "channel %s has mode %s, asked %s", ch->path + 7, mode_name(ch->mode), mode_name(mode));
    if (!rc) rc = map_segment(ch);
    if (rc) release_fd(ch);
    return rc;
  }
  uint64_t magic;
  memcpy(&magic, head + PSY_OFF_MAGIC, 8);
  if (init_state != 0 || (magic != 0 && magic != PSY_MAGIC)) {
    release_fd(ch);
    return psy_fail(PSY_E_CORRUPT, "%s is not a psyne channel (init state %08x, magic %016llx)", ch->path,
                    init_state, (unsigned long long)magic);
  }
  /* not initialized: its creator is about to, or died trying */
  if (open_mode == PSY_ATTACH || lock_byte(ch->fd, F_WRLCK, PSY_LOCK_ATTACH, 0)) {
    release_fd(ch);
    return 1;
  }
  int32_t rc = initialize(ch, capacity ? capacity : PSY_DEFAULT_CAPACITY, mode >= 0 ? mode : PSY_SPSC);
  if (!rc && lock_byte(ch->fd, F_RDLCK, PSY_LOCK_ATTACH, 0)) /* atomic downgrade: let attachers in */
    rc = psy_fail(PSY_E_SYSTEM, "downgrade lock %s: %s", ch->path, strerror(errno));
  if (rc) {
    if (ch->base) munmap(ch->base, ch->map_size);
    ch->base = NULL;
    release_fd(ch);
  }
  return rc;
}

psy_channel *psy_open(const char *name, uint32_t capacity, int32_t mode, uint32_t permissions,
                      int32_t open_mode, int32_t *error) {
  int32_t rc = 0, ignored;
  psy_channel *ch = NULL;
  if (!error) error = &ignored;
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
    rc = segment_path(ch->path, sizeof ch->path, name);
  }
  if (capacity) capacity = round_capacity(capacity);
  double deadline = now_ms() + 2000;
  while (!rc) {
    rc = open_once(ch, capacity, mode, permissions, open_mode);
    if (rc != 1) break;
    if (now_ms() > deadline) {
      rc = open_mode == PSY_ATTACH
               ? psy_fail(PSY_E_NOT_FOUND, "channel %s exists but was never initialized", ch->path + 7)
               : psy_fail(PSY_E_SYSTEM, "channel %s: could not create or attach within 2 s", ch->path + 7);
      break;
    }
    rc = 0;
    pause_briefly();
  }
  if (!rc) rc = participants_join(ch);
  fences_init();
  if (rc) {
    if (ch && ch->base) munmap(ch->base, ch->map_size);
    if (ch) release_fd(ch);
    free(ch);
    *error = rc;
    return NULL;
  }
  *error = 0;
  return ch;
}

int32_t psy_close(psy_channel *ch) {
  if (!ch) return psy_fail(PSY_E_INVALID_ARG, "close of a null channel");
  waiters_stop(ch);
  ring_close(ch);
  participants_leave(ch);
  /* Last one out removes the segment, unless it still holds messages nobody received. Drop the
   * read lock before trying the write lock: two handles closing at once would otherwise each see
   * the other's read lock and both leave the segment behind. An attacher that slips in between
   * holds a read lock (so nobody removes), or finds the name unlinked and starts afresh. */
  lock_byte(ch->fd, F_UNLCK, PSY_LOCK_ATTACH, 0);
  if (lock_byte(ch->fd, F_WRLCK, PSY_LOCK_ATTACH, 0) == 0) {
    if (ring_has_unread(ch)) debug_log(ch, "last to detach; kept: it holds undelivered messages");
    else if (still_linked(ch) && shm_unlink(ch->path) == 0) debug_log(ch, "last to detach: removed");
  }
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
  /* liveness as the kernel sees it: a lock conflicts only while its holder lives */
  alive_out[0] = (uint32_t)byte_locked_by_other(fd, PSY_LOCK_ATTACH);
  for (uint32_t i = 0; i < PSY_MAX_SLOTS; i++) alive_out[1 + i] = (uint32_t)byte_locked_by_other(fd, PSY_LOCK_SLOT(i));
  close(fd);
  uint32_t init_state;
  memcpy(&init_state, header_out + PSY_OFF_INIT_STATE, 4);
  if (init_state != PSY_INIT_READY)
    return psy_fail(PSY_E_CORRUPT, "%s is not an initialized psyne channel (init state %08x, %lld bytes)", probe.path,
                    init_state, (long long)st.st_size);
  return validate(&probe, header_out, st.st_size);
}

int32_t psy_remove_if_stale(const char *name) {
  psy_channel probe;
  memset(&probe, 0, sizeof probe);
  int32_t rc = segment_path(probe.path, sizeof probe.path, name);
  if (rc) return rc;
  probe.fd = shm_open(probe.path, O_RDWR, 0);
  if (probe.fd < 0) {
    if (errno == ENOENT) return psy_fail(PSY_E_NOT_FOUND, "channel %s does not exist", name);
    return psy_fail(PSY_E_SYSTEM, "shm_open %s: %s", probe.path, strerror(errno));
  }
  /* the attach byte is read-locked by every attached handle: if we can write-lock it, nobody is
   * attached, and anyone attaching now waits for us, then finds the name gone and starts afresh */
  int removed = lock_byte(probe.fd, F_WRLCK, PSY_LOCK_ATTACH, 0) == 0 && still_linked(&probe) && shm_unlink(probe.path) == 0;
  if (removed) debug_log(&probe, "removed: no live process was attached");
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
