/* cache.c — TUX's pinned cache of complete static responses (headers + body).
 *
 * Each entry is its own page-aligned mapping, mlock'd and registered with the ring as a fixed
 * buffer (a sparse table of CACHE_SLOTS), so a hit is sent straight from pinned memory with
 * send_zc (or send) and a fill is a read_fixed into it.  Size is bounded by --cache-bytes,
 * counted in whole pages because that is what is pinned; eviction is LRU, skipping entries
 * that an in-flight send still uses (refs > 0).
 *
 * An evicted entry becomes a spare: still mapped, pinned and registered, so that the next
 * miss of the same size in pages (SPECweb99 has few distinct sizes) reuses it without a
 * system call [I]; spares count as used bytes and are unmapped first when room is needed.
 * With a disk-bound file set most misses evict, so this keeps mmap/mlock/register off the
 * worker's path.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ktux.h"

#define CACHE_SLOTS 16384 /* the kernel's limit on registered buffers (IORING_MAX_REG_BUFFERS) */
#define HASH_BUCKETS 32768
#define ENTRY_SHARE 4 /* [I] one entry may use at most 1/4 of the cache; larger files are spliced */

struct cache_entry {
	char *key;
	char *data;
	size_t len, map_len;
	int refs, filling, dead;
	uint32_t id;
	struct cache_entry *prev, *next; /* LRU: head is the least recently used */
	struct cache_entry *hnext;       /* hash chain, or the spare list */
};

struct cache {
	struct ring *ring;
	struct stats_counters *st;
	size_t cap, used;
	struct cache_entry *slots[CACHE_SLOTS];
	uint32_t free_ids[CACHE_SLOTS];
	int nfree;
	struct cache_entry *buckets[HASH_BUCKETS];
	struct cache_entry *lru_head, *lru_tail;
	struct cache_entry *spare; /* evicted, still mapped, pinned and registered */
};

static unsigned hash_key(const char *k)
{
	unsigned h = 2166136261u; /* FNV-1a */
	for (; *k; k++)
		h = (h ^ (unsigned char)*k) * 16777619u;
	return h % HASH_BUCKETS;
}

struct cache *cache_create(struct ring *r, size_t bytes, struct stats_counters *st)
{
	struct cache *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	if (io_uring_register_buffers_sparse(&r->uring, CACHE_SLOTS) < 0) {
		free(c);
		return NULL;
	}
	c->ring = r;
	c->st = st;
	c->cap = bytes;
	for (int i = 0; i < CACHE_SLOTS; i++)
		c->free_ids[i] = (uint32_t)(CACHE_SLOTS - 1 - i);
	c->nfree = CACHE_SLOTS;
	return c;
}

static void lru_unlink(struct cache *c, struct cache_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct cache *c, struct cache_entry *e)
{
	e->prev = c->lru_tail;
	e->next = NULL;
	if (c->lru_tail)
		c->lru_tail->next = e;
	else
		c->lru_head = e;
	c->lru_tail = e;
}

static void hash_remove(struct cache *c, struct cache_entry *e)
{
	struct cache_entry **pp = &c->buckets[hash_key(e->key)];
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
}

/* Unregister, unpin, unmap.  Only for entries no send uses any more. */
static void entry_unmap(struct cache *c, struct cache_entry *e)
{
	struct iovec none = {NULL, 0};
	__u64 tag = 0;
	io_uring_register_buffers_update_tag(&c->ring->uring, e->id, &none, &tag, 1);
	munlock(e->data, e->map_len);
	munmap(e->data, e->map_len);
	c->used -= e->map_len;
	c->slots[e->id] = NULL;
	c->free_ids[c->nfree++] = e->id;
	c->st->cache.bytes = c->used;
	free(e->key);
	free(e);
}

/* No longer a cache entry (and no send uses it): keep its pinned memory as a spare. */
static void entry_retire(struct cache *c, struct cache_entry *e)
{
	free(e->key);
	e->key = NULL;
	e->dead = 0;
	e->hnext = c->spare;
	c->spare = e;
	c->st->cache.entries--;
}

/* A spare of exactly map_len bytes, taken off the spare list; NULL if none. */
static struct cache_entry *take_spare(struct cache *c, size_t map_len)
{
	for (struct cache_entry **pp = &c->spare; *pp; pp = &(*pp)->hnext) {
		struct cache_entry *e = *pp;
		if (e->map_len == map_len) {
			*pp = e->hnext;
			e->hnext = NULL;
			return e;
		}
	}
	return NULL;
}

/* Take e out of the cache; its memory goes when the last send lets go of it. */
static void entry_kill(struct cache *c, struct cache_entry *e)
{
	hash_remove(c, e);
	lru_unlink(c, e);
	e->dead = 1;
	if (e->refs == 0)
		entry_retire(c, e);
}

void cache_destroy(struct cache *c)
{
	if (!c)
		return;
	/* at exit: every mapping — entries, spares, and entries a send still held, whose
	 * completions will never be reaped */
	for (uint32_t id = 0; id < CACHE_SLOTS; id++)
		if (c->slots[id])
			entry_unmap(c, c->slots[id]);
	free(c);
}

static struct cache_entry *find(struct cache *c, const char *key)
{
	struct cache_entry *e = c->buckets[hash_key(key)];
	while (e && strcmp(e->key, key) != 0)
		e = e->hnext;
	return e;
}

/* A hit only when the entry is complete: a request for a file whose fill is still in flight
 * is served uncached rather than queued behind it [I] (counted as a miss). */
struct cache_entry *cache_lookup(struct cache *c, const char *key)
{
	struct cache_entry *e = find(c, key);
	if (!e || e->filling) {
		c->st->cache.misses++;
		return NULL;
	}
	c->st->cache.hits++;
	lru_unlink(c, e);
	lru_push(c, e);
	return e;
}

/* Map, pin and register map_len bytes in a free slot; NULL when the kernel refuses (memlock). */
static struct cache_entry *entry_new(struct cache *c, size_t map_len)
{
	struct cache_entry *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	e->id = c->free_ids[c->nfree - 1];
	e->map_len = map_len;
	e->data = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iovec iov = {e->data, map_len};
	__u64 tag = 0;
	if (e->data == MAP_FAILED || mlock(e->data, map_len) < 0 ||
	    io_uring_register_buffers_update_tag(&c->ring->uring, e->id, &iov, &tag, 1) < 0) {
		if (e->data != MAP_FAILED)
			munmap(e->data, map_len); /* also unlocks */
		free(e);
		return NULL;
	}
	c->nfree--;
	c->slots[e->id] = e;
	c->used += map_len;
	c->st->cache.bytes = c->used;
	return e;
}

/* Memory for a new entry: a spare of that size, or a fresh mapping once spares and least
 * recently used idle entries have made room.  NULL when busy entries fill the cache. */
static struct cache_entry *make_room(struct cache *c, size_t map_len)
{
	struct cache_entry *lru = c->lru_head;
	for (;;) {
		struct cache_entry *e = take_spare(c, map_len);
		if (e)
			return e;
		if (c->used + map_len <= c->cap && c->nfree > 0)
			return entry_new(c, map_len);
		if (c->spare) { /* a spare of another size: give its memory back */
			e = c->spare;
			c->spare = e->hnext;
			entry_unmap(c, e);
			continue;
		}
		while (lru && (lru->refs || lru->filling))
			lru = lru->next;
		if (!lru)
			return NULL;
		e = lru;
		lru = lru->next;
		entry_kill(c, e); /* idle: it becomes a spare at once */
		c->st->cache.evictions++;
	}
}

struct cache_entry *cache_reserve(struct cache *c, const char *key, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t map_len = (len + page - 1) / page * page;
	if (len == 0 || len > cache_max_entry(c) || find(c, key))
		return NULL;
	struct cache_entry *e = make_room(c, map_len);
	if (!e)
		return NULL;
	if (!(e->key = strdup(key))) {
		e->hnext = c->spare;
		c->spare = e;
		return NULL;
	}
	e->len = len;
	e->filling = 1;
	e->refs = 1; /* the filler's */
	unsigned h = hash_key(key);
	e->hnext = c->buckets[h];
	c->buckets[h] = e;
	lru_push(c, e);
	c->st->cache.entries++;
	return e;
}

void cache_ready(struct cache *c, struct cache_entry *e)
{
	e->filling = 0;
	cache_put(c, e);
}

void cache_discard(struct cache *c, struct cache_entry *e)
{
	e->filling = 0;
	if (!e->dead)
		entry_kill(c, e);
	cache_put(c, e);
}

int cache_filling(const struct cache_entry *e) { return e->filling; }
char *cache_data(struct cache_entry *e) { return e->data; }
size_t cache_len(const struct cache_entry *e) { return e->len; }
int cache_buf_index(const struct cache_entry *e) { return (int)e->id; }
uint32_t cache_id(const struct cache_entry *e) { return e->id; }
size_t cache_max_entry(const struct cache *c) { return c->cap / ENTRY_SHARE; }

struct cache_entry *cache_by_id(struct cache *c, uint32_t id)
{
	return id < CACHE_SLOTS ? c->slots[id] : NULL;
}

void cache_get(struct cache_entry *e) { e->refs++; }

void cache_put(struct cache *c, struct cache_entry *e)
{
	if (--e->refs == 0 && e->dead)
		entry_retire(c, e);
}
