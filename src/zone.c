/*
 * zone.c -- a named region of shared memory (zone.h has the contract).
 *
 * Why a file under /dev/shm rather than one MAP_SHARED|MAP_ANONYMOUS
 * mapping made before the workers fork: lua-nginx-module runs no Lua in the
 * master after it forked (init_by_lua runs before, and once more on every
 * reload, in a master whose old mapping the new workers would not inherit
 * from a clean slate), so a reload would either lose the state or need the
 * master to keep a mapping it cannot name to the new workers. A file named
 * after the master's pid is found again by the workers of every reload, and
 * by nothing after a restart. It is memory all the same (tmpfs).
 *
 * Layout, every part at an offset from the start (8-byte aligned):
 *
 *   head       magic, version, layout, size, the directory's counts,
 *              its robust mutex
 *   directory  max_entries entries (kind, key, fingerprint, offset, size)
 *   data       the objects, allocated upward from `data`, never freed
 *
 * An entry is published in two steps under the directory's lock: the
 * object is built and its entry written, then `used` and (last) `nentries`
 * are stored. A process dying in between leaves the counts as they were
 * (the half-written entry is beyond nentries, overwritten by the next) or,
 * between the two stores, some bytes allocated to nothing: the directory
 * itself never needs repair, so EOWNERDEAD is answered by marking the mutex
 * consistent.
 */
#include "zone.h"

#include "breaker.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ZONE_MAGIC 0x66627a6f6e6531ULL /* "fbzone1" */
#define ZONE_VERSION 1u
#define ZONE_PREFIX "fusebox-zone."

typedef struct zone_entry {
  uint32_t kind;      /* fb_zone_kind */
  uint32_t key_len;
  uint64_t fingerprint;
  uint64_t offset;    /* from the zone's start */
  uint64_t size;
  char key[FB_ZONE_KEY_MAX + 1];
} zone_entry;

typedef struct zone_head {
  _Atomic uint64_t magic;  /* ZONE_MAGIC once built: stored last */
  uint32_t version;        /* ZONE_VERSION */
  uint32_t layout;         /* sizeof(zone_head) ^ sizeof(zone_entry) << 16
                              ^ sizeof(fb_breaker) << 32: another build's
                              structs are refused, not misread */
  uint64_t size;           /* bytes of the zone */
  uint64_t data;           /* offset of the data area */
  _Atomic uint64_t used;   /* bytes of the data area allocated */
  _Atomic uint32_t nentries;
  uint32_t max_entries;
  pthread_mutex_t mutex;   /* robust, process-shared: the directory */
} zone_head;

struct fb_zone {
  zone_head *head;          /* the mapping */
  size_t size;
  int refs;                 /* this process's holders */
  fb_zone *next_pinned;     /* on the pinned list (fb_zone_pin) */
  int pinned;
  fb_tokens **books;        /* by directory entry: this handle's books of
                               tokens for its breakers (fb_zone_book) */
  int64_t first_token;      /* where this handle's books start counting */
  char name[FB_ZONE_NAME_MAX + 1];
};

/* Zones kept mapped until exit (fb_zone_pin): one list per process. */
static pthread_mutex_t pinned_lock = PTHREAD_MUTEX_INITIALIZER;
static fb_zone *pinned;

#define LAYOUT                                                                 \
  ((uint32_t)(sizeof(zone_head) ^ sizeof(zone_entry) << 16 ^                   \
              sizeof(fb_breaker) << 24))
#define ALIGN8(n) (((n) + 7) & ~(uint64_t)7)

static void say(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static zone_entry *directory(zone_head *h) {
  return (zone_entry *)((char *)h + ALIGN8(sizeof *h));
}


/* ---------------------------------------------------------------- names */

static int good_name(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > FB_ZONE_NAME_MAX)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

int fb_zone_path(char *buf, size_t cap, const char *dir, const char *name,
                 long owner, char *err, size_t errlen) {
  if (!good_name(name)) {
    say(err, errlen, "zone name must be 1..%d of [A-Za-z0-9_.-], got '%s'",
        FB_ZONE_NAME_MAX, name ? name : "(null)");
    return FB_EINVAL;
  }
  if (owner < 1) {
    say(err, errlen, "zone '%s': owner must be a pid >= 1, got %ld", name,
        owner);
    return FB_EINVAL;
  }
  int n = snprintf(buf, cap, "%s/" ZONE_PREFIX "%s.%ld", dir ? dir : "/dev/shm",
                   name, owner);
  if (n < 0 || (size_t)n >= cap) {
    say(err, errlen, "zone '%s': path longer than %zu bytes", name, cap);
    return FB_EINVAL;
  }
  return 0;
}

/* The owner pid at the end of a zone file's name, or 0. */
static long owner_of(const char *file) {
  if (strncmp(file, ZONE_PREFIX, sizeof ZONE_PREFIX - 1) != 0)
    return 0;
  const char *dot = strrchr(file, '.');
  if (!dot || dot == file + sizeof ZONE_PREFIX - 2 || !dot[1])
    return 0;
  char *end;
  long pid = strtol(dot + 1, &end, 10);
  return *end == '\0' && pid > 0 ? pid : 0;
}

int fb_zone_reap(const char *dir) {
  DIR *d = opendir(dir ? dir : "/dev/shm");
  if (!d)
    return FB_EINVAL;
  int removed = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    long pid = owner_of(e->d_name);
    if (pid && kill((pid_t)pid, 0) < 0 && errno == ESRCH &&
        unlinkat(dirfd(d), e->d_name, 0) == 0)
      removed++;
  }
  closedir(d);
  return removed;
}

/* ------------------------------------------------------------- the lock */

static void lock(zone_head *h) {
  int rc = pthread_mutex_lock(&h->mutex);
  if (rc == EOWNERDEAD) /* nothing to repair: see the top of the file */
    rc = pthread_mutex_consistent(&h->mutex);
  if (rc != 0) /* cannot happen: every owner-dead lock is made consistent */
    abort();
}

static void unlock(zone_head *h) { pthread_mutex_unlock(&h->mutex); }

void fb__zone_hold_lock(fb_zone *z) { lock(z->head); }

/* ----------------------------------------------------------- open, close */

static uint32_t entries_for(size_t size) {
  return (uint32_t)(size / FB_ZONE_BYTES_PER_ENTRY);
}

static int build(zone_head *h, size_t size) {
  pthread_mutexattr_t attr;
  if (pthread_mutexattr_init(&attr))
    return -1;
  int rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) ||
           pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) ||
           pthread_mutex_init(&h->mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc)
    return -1;
  h->version = ZONE_VERSION;
  h->layout = LAYOUT;
  h->size = size;
  h->max_entries = entries_for(size);
  h->data = ALIGN8(sizeof *h) + ALIGN8((uint64_t)h->max_entries *
                                       sizeof(zone_entry));
  atomic_store(&h->used, 0);
  atomic_store(&h->nentries, 0);
  atomic_store_explicit(&h->magic, ZONE_MAGIC, memory_order_release);
  return 0;
}

/* Whether the mapped file of size bytes holds a zone this build can use;
 * the message says what is wrong. */
static int check(const zone_head *h, size_t size, const char *name, char *err,
                 size_t errlen) {
  if (atomic_load_explicit(&h->magic, memory_order_acquire) != ZONE_MAGIC) {
    say(err, errlen, "zone '%s' holds no fusebox zone (bad magic)", name);
    return 0;
  }
  if (h->version != ZONE_VERSION || h->layout != LAYOUT) {
    say(err, errlen, "zone '%s' was made by another fusebox (version %u, "
        "layout %#x; this one: %u, %#x)", name, h->version, h->layout,
        ZONE_VERSION, LAYOUT);
    return 0;
  }
  uint64_t dir_end = ALIGN8(sizeof *h) +
                     ALIGN8((uint64_t)h->max_entries * sizeof(zone_entry));
  if (h->size != size || h->max_entries != entries_for(size) ||
      h->data != dir_end || h->data > size ||
      atomic_load(&h->used) > size - h->data ||
      atomic_load(&h->nentries) > h->max_entries) {
    say(err, errlen, "zone '%s' is damaged (header says %llu bytes, the file "
        "has %zu)", name, (unsigned long long)h->size, size);
    return 0;
  }
  return 1;
}

/* Maps the file open at fd (locked by us), building the zone if empty. */
static zone_head *map_zone(int fd, const char *name, size_t want,
                           size_t *size, char *err, size_t errlen) {
  struct stat st;
  if (fstat(fd, &st) < 0) {
    say(err, errlen, "zone '%s': fstat: %s", name, strerror(errno));
    return NULL;
  }
  /* /dev/shm is everyone's: a file someone else made under our name is
   * not our zone, whatever it holds */
  if (st.st_uid != geteuid() || !S_ISREG(st.st_mode)) {
    say(err, errlen, "zone '%s': the file belongs to uid %ld, not to this "
        "process's %ld (or is not a regular file)", name, (long)st.st_uid,
        (long)geteuid());
    return NULL;
  }
  int fresh = st.st_size == 0;
  if (fresh && ftruncate(fd, (off_t)want) < 0) {
    say(err, errlen, "zone '%s': cannot size it to %zu bytes: %s", name,
        want, strerror(errno));
    return NULL;
  }
  *size = fresh ? want : (size_t)st.st_size;
  if (!fresh && (*size < FB_ZONE_MIN_SIZE || *size > FB_ZONE_MAX_SIZE)) {
    say(err, errlen, "zone '%s' is damaged (a file of %zu bytes)", name,
        *size);
    return NULL;
  }
  zone_head *h = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (h == MAP_FAILED) {
    say(err, errlen, "zone '%s': mmap of %zu bytes: %s", name, *size,
        strerror(errno));
    return NULL;
  }
  /* sized but never built: its builder died between ftruncate and the
   * magic (we hold the flock, so nobody is building it now) */
  if (!fresh && atomic_load(&h->magic) == 0 && h->version == 0)
    fresh = 1;
  if (fresh ? build(h, *size) == 0 : check(h, *size, name, err, errlen))
    return h;
  if (fresh)
    say(err, errlen, "zone '%s': cannot make its mutex", name);
  munmap(h, *size);
  return NULL;
}

fb_zone *fb_zone_open(const char *path, const char *name, size_t size,
                      char *err, size_t errlen) {
  if (!good_name(name)) {
    say(err, errlen, "zone name must be 1..%d of [A-Za-z0-9_.-], got '%s'",
        FB_ZONE_NAME_MAX, name ? name : "(null)");
    return NULL;
  }
  if (size < FB_ZONE_MIN_SIZE || size > FB_ZONE_MAX_SIZE) {
    say(err, errlen, "zone '%s': size must be %zu..%zu bytes, got %zu", name,
        FB_ZONE_MIN_SIZE, FB_ZONE_MAX_SIZE, size);
    return NULL;
  }
  fb_zone *z = fb__calloc(1, sizeof *z);
  if (!z) {
    say(err, errlen, "zone '%s': out of memory", name);
    return NULL;
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    say(err, errlen, "zone '%s': cannot open %s: %s", name, path,
        strerror(errno));
    fb__free(z);
    return NULL;
  }
  /* the first opener builds it; the others wait here, not on a half-built
   * header; flock dies with its holder */
  while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
    ;
  z->head = map_zone(fd, name, size, &z->size, err, errlen);
  /* by hand: the mapping keeps the open file, and with it the flock */
  flock(fd, LOCK_UN);
  close(fd);
  if (!z->head) {
    fb__free(z);
    return NULL;
  }
  z->refs = 1;
  /* each handle of the process counts its tokens in a range of its own,
   * so a token shown to another handle's breaker is never taken for one
   * of its own (it is refused or dropped) */
  static _Atomic uint32_t handles;
  z->first_token = (int64_t)(atomic_fetch_add(&handles, 1) % 4096) << 40;
  snprintf(z->name, sizeof z->name, "%s", name);
  return z;
}

void fb_zone_retain(fb_zone *z) {
  if (z)
    z->refs++;
}

void fb_zone_release(fb_zone *z) {
  if (!z || --z->refs > 0)
    return;
  if (z->books)
    for (uint32_t i = 0; i < z->head->max_entries; i++)
      fb__free(z->books[i]);
  fb__free(z->books);
  munmap(z->head, z->size);
  fb__free(z);
}

void fb_zone_pin(fb_zone *z) {
  pthread_mutex_lock(&pinned_lock);
  if (!z->pinned) {
    z->pinned = 1;
    z->refs++;
    z->next_pinned = pinned;
    pinned = z;
  }
  pthread_mutex_unlock(&pinned_lock);
}

fb_zone_peer *fb_zone_peer_at(const fb_zone *z, uint64_t offset) {
  const zone_head *h = z->head;
  uint64_t used = atomic_load(&h->used);
  if (offset < h->data || offset % 8 || offset - h->data > used ||
      used - (offset - h->data) < sizeof(fb_zone_peer))
    return NULL;
  return (fb_zone_peer *)((char *)h + offset);
}

uint64_t fb_zone_peer_offset(const fb_zone *z, const fb_zone_peer *p) {
  return (uint64_t)((const char *)p - (const char *)z->head);
}

const char *fb_zone_name(const fb_zone *z) { return z->name; }
size_t fb_zone_size(const fb_zone *z) { return z->size; }
size_t fb_zone_used(const fb_zone *z) {
  return (size_t)(z->head->data + atomic_load(&z->head->used));
}
uint32_t fb_zone_entries(const fb_zone *z) {
  return atomic_load(&z->head->nentries);
}
uint32_t fb_zone_max_entries(const fb_zone *z) { return z->head->max_entries; }

/* ------------------------------------------------------------ entries */

/* FNV-1a over the bytes of one value at a time. */
static uint64_t mix(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 0x100000001b3ULL;
  return h;
}

#define MIX(h, field) ((h) = mix((h), &(field), sizeof(field)))

uint64_t fb_zone_config_fingerprint(const fb_breaker_config *c) {
  uint64_t h = 0xcbf29ce484222325ULL;
  int mode = (int)c->mode;
  MIX(h, c->failure_threshold);
  MIX(h, c->timeout);
  MIX(h, c->success_threshold);
  MIX(h, mode);
  MIX(h, c->window);
  MIX(h, c->minimum_calls);
  MIX(h, c->failure_rate);
  MIX(h, c->slow_call_duration);
  MIX(h, c->slow_call_rate);
  MIX(h, c->timeout_multiplier);
  MIX(h, c->timeout_max);
  MIX(h, c->half_open_max_calls);
  MIX(h, c->half_open_max_wait);
  return h;
}

/* Whether the directory's counts still fit the zone (checked at open; a
 * process writing garbage since must not make us read or write past the
 * mapping). Locked. */
static int counts_ok(fb_zone *z, char *err, size_t errlen) {
  const zone_head *h = z->head;
  if (atomic_load(&h->nentries) <= h->max_entries &&
      atomic_load(&h->used) <= h->size - h->data)
    return 1;
  say(err, errlen, "zone '%s' is damaged (its directory's counts exceed its "
      "%zu bytes)", z->name, z->size);
  return 0;
}

/* The published entry (kind, key, fingerprint), or NULL. Locked. */
static zone_entry *find(zone_head *h, fb_zone_kind kind, const char *key,
                        size_t len, uint64_t fingerprint) {
  zone_entry *e = directory(h);
  uint32_t n = atomic_load(&h->nentries);
  for (uint32_t i = 0; i < n; i++)
    if (e[i].kind == (uint32_t)kind && e[i].key_len == len &&
        e[i].fingerprint == fingerprint && memcmp(e[i].key, key, len) == 0)
      return &e[i];
  return NULL;
}

/* Whether entry e's object lies inside the data area. */
static int inside(const zone_head *h, const zone_entry *e) {
  uint64_t used = atomic_load(&h->used);
  return e->offset >= h->data && e->offset % 8 == 0 &&
         e->offset - h->data <= used && e->size <= used - (e->offset - h->data);
}

/* Allocates size bytes and the next directory entry for (kind, key,
 * fingerprint), unpublished: the caller builds the object, then publish().
 * NULL when the zone is full. Locked. */
static zone_entry *reserve(fb_zone *z, fb_zone_kind kind, const char *key,
                           size_t len, uint64_t fingerprint, uint64_t size,
                           char *err, size_t errlen) {
  zone_head *h = z->head;
  uint32_t n = atomic_load(&h->nentries);
  uint64_t used = atomic_load(&h->used);
  if (n >= h->max_entries) {
    say(err, errlen, "zone '%s' (%zu bytes) is full: all %u entries are "
        "taken (give it a larger size)", z->name, z->size, h->max_entries);
    return NULL;
  }
  size = ALIGN8(size);
  if (size > h->size - h->data - used) {
    say(err, errlen, "zone '%s' (%zu bytes) is full: %llu bytes used, %llu "
        "more needed for '%s' (give it a larger size)", z->name, z->size,
        (unsigned long long)(h->data + used), (unsigned long long)size, key);
    return NULL;
  }
  zone_entry *e = &directory(h)[n];
  memset(e, 0, sizeof *e);
  e->kind = (uint32_t)kind;
  e->key_len = (uint32_t)len;
  e->fingerprint = fingerprint;
  e->offset = h->data + used;
  e->size = size;
  memcpy(e->key, key, len);
  return e;
}

static void publish(zone_head *h, const zone_entry *e) {
  atomic_store(&h->used, e->offset + e->size - h->data);
  atomic_fetch_add_explicit(&h->nentries, 1, memory_order_release);
}

static int good_key(const fb_zone *z, const char *key, size_t *len, char *err,
                    size_t errlen) {
  *len = key ? strlen(key) : 0;
  if (*len == 0 || *len > FB_ZONE_KEY_MAX) {
    say(err, errlen, "zone '%s': entry names must be 1..%d bytes, got %zu",
        z->name, FB_ZONE_KEY_MAX, *len);
    return 0;
  }
  return 1;
}

fb_breaker *fb_zone_breaker(fb_zone *z, const char *key,
                            const fb_breaker_config *cfg, double now,
                            char *err, size_t errlen) {
  size_t len, need = fb_breaker_shared_size(cfg);
  if (!good_key(z, key, &len, err, errlen))
    return NULL;
  if (!need) {
    say(err, errlen, "zone '%s': breaker '%s' has a bad config", z->name, key);
    return NULL;
  }
  uint64_t fp = fb_zone_config_fingerprint(cfg);
  zone_head *h = z->head;
  fb_breaker *b = NULL;
  lock(h);
  zone_entry *e = counts_ok(z, err, errlen)
                      ? find(h, FB_ZONE_BREAKER, key, len, fp)
                      : NULL;
  if (e) {
    b = inside(h, e) ? fb_breaker_attach_shared((char *)h + e->offset, e->size)
                     : NULL;
    if (!b)
      say(err, errlen, "zone '%s': breaker '%s' is damaged", z->name, key);
  } else if (counts_ok(z, NULL, 0) &&
             (e = reserve(z, FB_ZONE_BREAKER, key, len, fp, need, err,
                          errlen))) {
    b = fb_breaker_init_shared((char *)h + e->offset, e->size, cfg, now);
    if (b)
      publish(h, e);
    else
      say(err, errlen, "zone '%s': cannot build breaker '%s'", z->name, key);
  }
  unlock(h);
  return b;
}

fb_zone_peer *fb_zone_peer_get(fb_zone *z, const char *key, char *err,
                               size_t errlen) {
  size_t len;
  if (!good_key(z, key, &len, err, errlen))
    return NULL;
  zone_head *h = z->head;
  fb_zone_peer *p = NULL;
  lock(h);
  zone_entry *e = counts_ok(z, err, errlen)
                      ? find(h, FB_ZONE_PEER, key, len, 0)
                      : NULL;
  if (e) {
    if (inside(h, e) && e->size >= sizeof *p)
      p = (fb_zone_peer *)((char *)h + e->offset);
    else
      say(err, errlen, "zone '%s': peer '%s' is damaged", z->name, key);
  } else if (counts_ok(z, NULL, 0) &&
             (e = reserve(z, FB_ZONE_PEER, key, len, 0, sizeof *p, err,
                          errlen))) {
    p = (fb_zone_peer *)((char *)h + e->offset);
    memset(p, 0, sizeof *p); /* a dead builder may have written here */
    publish(h, e);
  }
  unlock(h);
  return p;
}

fb_tokens *fb_zone_book(fb_zone *z, const fb_breaker *b) {
  zone_head *h = z->head;
  uint64_t offset = (uint64_t)((const char *)b - (const char *)h);
  /* published entries never change, and nentries is stored after them */
  uint32_t n = atomic_load_explicit(&h->nentries, memory_order_acquire);
  const zone_entry *e = directory(h);
  uint32_t i = 0;
  while (i < n && !(e[i].kind == FB_ZONE_BREAKER &&
                    e[i].offset + FB_SHARED_HEAD == offset))
    i++;
  if (i == n)
    return NULL;
  if (!z->books &&
      !(z->books = fb__calloc(h->max_entries, sizeof *z->books)))
    return NULL;
  if (!z->books[i] && (z->books[i] = fb__calloc(1, sizeof(fb_tokens)))) {
    z->books[i]->next = z->first_token;
    z->books[i]->epoch = b->epoch;
  }
  return z->books[i];
}
