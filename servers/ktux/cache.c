/* cache.c — TUX's pinned cache of static responses, made of the page cache itself.
 *
 * An entry is the file mapped (MAP_SHARED, read-only) and mlock'd: its pages are the page
 * cache's own, pinned, so nothing is cached twice — the bytes are charged once to the memory
 * cgroup (as unevictable page cache) and a hit is sent from them without a disk read or a
 * system call besides the send.  The response head is built per request (it depends on the
 * HTTP version and keep-alive), so one entry serves every variant of a file.  TUX's cache
 * likewise held page-cache pages.
 *
 * Filling never blocks the worker: the mapping is locked with MLOCK_ONFAULT (nothing is read
 * yet) and the pages are faulted in by MADV_POPULATE_READ submitted through the ring, which
 * runs on an io-wq worker (TUX's disk-I/O threads); pages are locked as they arrive.
 *
 * Size is bounded by --cache-bytes, counted in whole pages because that is what is pinned; one
 * entry holds at most --cache-entry-max bytes (and a quarter of the cache): by default the
 * small, hot files, while larger ones are spliced from the (unpinned) page cache.  Eviction is
 * LRU, skipping entries that an in-flight send still uses (refs > 0); an evicted entry is
 * unmapped (the pages stay in the page cache, unpinned, for the kernel's LRU to keep or drop).
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

#define CACHE_SLOTS 65536 /* entries at most; an id fits in user_data's 24-bit aux */
#define HASH_BUCKETS 65536
#define ENTRY_SHARE 4 /* [I] one entry may use at most 1/4 of the cache */

struct cache_entry {
	char *key;
	char *data; /* the mapping */
	size_t len, map_len;
	int refs, filling, dead;
	uint32_t id;
	struct cache_entry *prev, *next; /* LRU: head is the least recently used */
	struct cache_entry *hnext;       /* hash chain */
};

struct cache {
	struct stats_counters *st;
	size_t cap, used;
	size_t entry_max; /* the largest file held: --cache-entry-max, at most cap / ENTRY_SHARE */
	size_t page;
	struct cache_entry *slots[CACHE_SLOTS];
	uint32_t free_ids[CACHE_SLOTS];
	int nfree;
	struct cache_entry *buckets[HASH_BUCKETS];
	struct cache_entry *lru_head, *lru_tail;
};

static unsigned hash_key(const char *k)
{
	unsigned h = 2166136261u; /* FNV-1a */
	for (; *k; k++)
		h = (h ^ (unsigned char)*k) * 16777619u;
	return h % HASH_BUCKETS;
}

struct cache *cache_create(size_t bytes, size_t entry_max, struct stats_counters *st)
{
	struct cache *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->st = st;
	c->cap = bytes;
	c->entry_max = entry_max < bytes / ENTRY_SHARE ? entry_max : bytes / ENTRY_SHARE;
	c->page = (size_t)sysconf(_SC_PAGESIZE);
	st->cache.limit = bytes;
	st->cache.entry_max = c->entry_max;
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

/* Unpin and unmap.  Only for entries no send uses any more. */
static void entry_unmap(struct cache *c, struct cache_entry *e)
{
	munmap(e->data, e->map_len); /* also unlocks; the pages stay in the page cache */
	c->used -= e->map_len;
	c->slots[e->id] = NULL;
	c->free_ids[c->nfree++] = e->id;
	c->st->cache.bytes = c->used;
	if (!e->dead)
		c->st->cache.entries--;
	free(e->key);
	free(e);
}

/* Take e out of the cache; its mapping goes when the last send lets go of it. */
static void entry_kill(struct cache *c, struct cache_entry *e)
{
	hash_remove(c, e);
	lru_unlink(c, e);
	e->dead = 1;
	c->st->cache.entries--;
	if (e->refs == 0)
		entry_unmap(c, e);
}

void cache_destroy(struct cache *c)
{
	if (!c)
		return;
	/* at exit: every mapping, also those a send still held, whose completions will never be
	 * reaped */
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

/* Evict least recently used idle entries until map_len more bytes fit; 0, or -1 when busy
 * entries fill the cache. */
static int make_room(struct cache *c, size_t map_len)
{
	struct cache_entry *lru = c->lru_head;
	while (c->used + map_len > c->cap || c->nfree == 0) {
		while (lru && (lru->refs || lru->filling))
			lru = lru->next;
		if (!lru)
			return -1;
		struct cache_entry *e = lru;
		lru = lru->next;
		entry_kill(c, e); /* idle: unmapped at once */
		c->st->cache.evictions++;
	}
	return 0;
}

struct cache_entry *cache_reserve(struct cache *c, const char *key, int fd, size_t len)
{
	size_t map_len = (len + c->page - 1) / c->page * c->page;
	if (len == 0 || len > c->entry_max || find(c, key) || make_room(c, map_len) < 0)
		return NULL;
	struct cache_entry *e = calloc(1, sizeof *e);
	if (!e || !(e->key = strdup(key))) {
		free(e);
		return NULL;
	}
	e->data = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	/* pin the pages as they are faulted in (by the populate), without reading any now */
	if (e->data == MAP_FAILED || mlock2(e->data, len, MLOCK_ONFAULT) < 0) {
		if (e->data != MAP_FAILED)
			munmap(e->data, len);
		free(e->key);
		free(e);
		return NULL;
	}
	e->id = c->free_ids[--c->nfree];
	c->slots[e->id] = e;
	e->len = len;
	e->map_len = map_len;
	e->filling = 1;
	e->refs = 1; /* the filler's */
	unsigned h = hash_key(key);
	e->hnext = c->buckets[h];
	c->buckets[h] = e;
	lru_push(c, e);
	c->used += map_len;
	c->st->cache.bytes = c->used;
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

char *cache_data(struct cache_entry *e) { return e->data; }
size_t cache_len(const struct cache_entry *e) { return e->len; }
size_t cache_map_len(const struct cache_entry *e) { return e->map_len; }
uint32_t cache_id(const struct cache_entry *e) { return e->id; }
size_t cache_max_entry(const struct cache *c) { return c->entry_max; }

struct cache_entry *cache_by_id(struct cache *c, uint32_t id)
{
	return id < CACHE_SLOTS ? c->slots[id] : NULL;
}

void cache_get(struct cache_entry *e) { e->refs++; }

void cache_put(struct cache *c, struct cache_entry *e)
{
	if (--e->refs == 0 && e->dead)
		entry_unmap(c, e);
}
