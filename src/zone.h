/*
 * zone.h -- a named region of memory that several processes share (fb_zone_
 * prefix): what nginx workers keep in common, like nginx's own
 * `upstream { zone ...; }`.
 *
 * A zone is a file mapped MAP_SHARED by every process that opens it (under
 * /dev/shm: memory, never written to disk). Its name carries the nginx
 * master's pid (fb_zone_path), which `nginx -s reload` keeps and a restart
 * changes: the new workers of a reload attach to the zone of the old ones
 * and find their breakers as they left them; a restart starts clean, and
 * fb_zone_reap() removes the files whose master is gone.
 *
 * Inside: a header (magic, version, layout, size), a robust process-shared
 * mutex guarding the directory, a bounded directory of named entries (kind,
 * name, config fingerprint, offset, size) and the objects themselves,
 * allocated by offset from the zone's start and never freed: no pointer is
 * stored, so every process may map the zone at its own address. Only
 * building and finding entries takes the directory's lock; each object has
 * its own (a breaker its owner word) or none (a peer's atomic counters).
 *
 * No Lua here; I/O only to open and map the file. Functions that fail
 * return NULL (or a negative fb_errno) and write a one-line message naming
 * the zone into err (errlen bytes, may be 0).
 */
#ifndef FB_ZONE_H
#define FB_ZONE_H

#include "fusebox.h"

#include <stdatomic.h>

typedef struct fb_zone fb_zone; /* one process's mapping of a zone */

/* Zone names: 1..FB_ZONE_NAME_MAX of [A-Za-z0-9_.-] (a file name part);
 * entry names: 1..FB_ZONE_KEY_MAX bytes, no NUL. */
#define FB_ZONE_NAME_MAX 64
#define FB_ZONE_KEY_MAX 127

/* Sizes a zone may have: from 64 KiB to 1 GiB. */
#define FB_ZONE_MIN_SIZE ((size_t)64 << 10)
#define FB_ZONE_MAX_SIZE ((size_t)1 << 30)

/* Bytes of zone per directory entry: a zone of size bytes has room for
 * size / FB_ZONE_BYTES_PER_ENTRY entries (a breaker in consecutive mode
 * takes about 1.4 KiB, a peer 64 bytes). */
#define FB_ZONE_BYTES_PER_ENTRY 1024

/* What an entry holds. */
typedef enum fb_zone_kind { FB_ZONE_BREAKER = 1, FB_ZONE_PEER = 2 } fb_zone_kind;

/* One backend's state shared by every process: what a balancer reads of an
 * instance that lives in a zone (fb_instance_share). Lock-free: each field
 * is one atomic word, so a process dying anywhere leaves it valid (but an
 * in-flight count it had raised stays raised: see README, "In nginx"). */
typedef struct fb_zone_peer {
  _Atomic int64_t inflight;       /* calls in flight, every process's */
  _Atomic uint64_t ejected_until; /* bits of a double: the CLOCK_MONOTONIC
                                     second (fb_monotonic_now) an ejection
                                     ends;
                                     0: none */
} fb_zone_peer;

/* Writes the path of zone name of owner (the nginx master's pid) in dir
 * (NULL: /dev/shm) to buf: "<dir>/fusebox-zone.<name>.<owner>". Returns 0,
 * or FB_EINVAL (message in err) for a bad name, owner or a path over cap. */
int fb_zone_path(char *buf, size_t cap, const char *dir, const char *name,
                 long owner, char *err, size_t errlen);

/* Removes dir's zone files (fusebox-zone.*.<pid>) whose owner pid is gone
 * (kill(pid, 0) says ESRCH); returns how many, or FB_EINVAL if dir cannot
 * be read. A live owner's files, another user's included, are kept. */
int fb_zone_reap(const char *dir);

/* Opens the zone at path, named name in messages: creates it with size
 * bytes (FB_ZONE_MIN_SIZE..FB_ZONE_MAX_SIZE) if the file is empty or
 * missing, else maps it as made (its size wins over size: a zone does not
 * grow until restart). Creation is serialised by flock() on the file, which
 * the kernel releases if its holder dies. NULL when the file cannot be
 * made or mapped, or holds no zone of this build (bad magic, version,
 * layout or size). The handle starts with one reference. */
fb_zone *fb_zone_open(const char *path, const char *name, size_t size,
                      char *err, size_t errlen);

/* Takes and drops a reference; the last fb_zone_release() unmaps the zone,
 * so every object found in it must hold one. NULL is ignored. */
void fb_zone_retain(fb_zone *z);
void fb_zone_release(fb_zone *z);

/* Keeps z mapped until the process exits: for memory that outlives every
 * handle, as an instance's shared load does (fb_instance_share_load: the
 * registry that holds it lives as long as its balancers). Once per zone;
 * the zone stays reachable, from a list of pinned zones. */
void fb_zone_pin(fb_zone *z);

/* The peer record at offset (fb_zone_peer_offset) of z, or NULL if offset
 * is not inside z's data area. */
fb_zone_peer *fb_zone_peer_at(const fb_zone *z, uint64_t offset);
uint64_t fb_zone_peer_offset(const fb_zone *z, const fb_zone_peer *p);

/* The zone's name, its bytes, bytes allocated, entries and room for them. */
const char *fb_zone_name(const fb_zone *z);
size_t fb_zone_size(const fb_zone *z);
size_t fb_zone_used(const fb_zone *z);
uint32_t fb_zone_entries(const fb_zone *z);
uint32_t fb_zone_max_entries(const fb_zone *z);

/* Returns the zone's breaker key with cfg: the one some process built
 * (attached: fb_breaker_attach_shared), or a new CLOSED one since now (on
 * the zone's clock, fb_zone_now). An entry is found by kind, key and the
 * config's fingerprint: a breaker of the same key with another config is
 * another entry, so a reload that changes the config starts that breaker
 * fresh while the old workers keep theirs. NULL when the zone is full or
 * the entry found is damaged (message in err). The breaker lives as long
 * as the zone's mapping: hold a reference for it. */
fb_breaker *fb_zone_breaker(fb_zone *z, const char *key,
                            const fb_breaker_config *cfg, double now,
                            char *err, size_t errlen);

/* This handle's book of tokens for breaker b (one fb_zone_breaker gave
 * it), made on first use: the book a process takes b's permits from
 * without its lock (breaker.h, fb__breaker_acquire_own), shared by every
 * object of the process that holds b through this handle. NULL when b is
 * not a breaker of z, or out of memory. Valid while z is mapped. */
struct fb_tokens *fb_zone_book(fb_zone *z, const fb_breaker *b);

/* Returns the zone's peer record key, made zeroed if new; NULL when the
 * zone is full (message in err). */
fb_zone_peer *fb_zone_peer_get(fb_zone *z, const char *key, char *err,
                               size_t errlen);

/* The fingerprint of a breaker config: its fields hashed one by one
 * (padding is never read), equal for equal configs. */
uint64_t fb_zone_config_fingerprint(const fb_breaker_config *cfg);

/* Test hook: takes the directory's lock and returns holding it, so a test
 * can kill the holder. */
void fb__zone_hold_lock(fb_zone *z);

#endif
