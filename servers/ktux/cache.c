/* cache.c — TUX's pinned cache of complete static responses (headers + body).
 *
 * Each entry is its own page-aligned mapping, mlock'd and registered with the ring as a fixed
 * buffer (a sparse table of CACHE_SLOTS), so a hit is sent straight from pinned memory with
 * send_zc (or send) and a fill is a read_fixed into it.  Size is bounded by --cache-bytes,
 * counted in whole pages because that is what is pinned; eviction is LRU, skipping entries
 * that an in-flight send still uses (refs > 0).
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
	struct cache_entry *hnext;
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
static void entry_free(struct cache *c, struct cache_entry *e)
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
	c->st->cache.entries--;
	free(e->key);
	free(e);
}

/* Take e out of the cache; its memory goes when the last send lets go of it. */
static void entry_kill(struct cache *c, struct cache_entry *e)
{
	hash_remove(c, e);
	lru_unlink(c, e);
	e->dead = 1;
	if (e->refs == 0)
		entry_free(c, e);
}

void cache_destroy(struct cache *c)
{
	if (!c)
		return;
	/* at exit: also entries a send still held, whose completions will never be reaped */
	for (uint32_t id = 0; id < CACHE_SLOTS; id++) {
		struct cache_entry *e = c->slots[id];
		if (e) {
			if (!e->dead)
				hash_remove(c, e), lru_unlink(c, e);
			entry_free(c, e);
		}
	}
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

/* Evict least recently used idle entries until need bytes and one slot are free. */
static int make_room(struct cache *c, size_t need)
{
	struct cache_entry *e = c->lru_head;
	while ((c->used + need > c->cap || c->nfree == 0) && e) {
		struct cache_entry *next = e->next;
		if (e->refs == 0 && !e->filling) {
			entry_kill(c, e);
			c->st->cache.evictions++;
		}
		e = next;
	}
	return c->used + need <= c->cap && c->nfree > 0 ? 0 : -1;
}

/* Map, pin and register len bytes for e; -1 when the kernel refuses (memlock). */
static int entry_map(struct cache *c, struct cache_entry *e, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	e->map_len = (len + page - 1) / page * page;
	e->data = mmap(NULL, e->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (e->data == MAP_FAILED)
		return -1;
	struct iovec iov = {e->data, e->map_len};
	__u64 tag = 0;
	if (mlock(e->data, e->map_len) < 0 ||
	    io_uring_register_buffers_update_tag(&c->ring->uring, e->id, &iov, &tag, 1) < 0) {
		munlock(e->data, e->map_len);
		munmap(e->data, e->map_len);
		return -1;
	}
	return 0;
}

struct cache_entry *cache_reserve(struct cache *c, const char *key, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t map_len = (len + page - 1) / page * page;
	if (len == 0 || len > cache_max_entry(c) || find(c, key) || make_room(c, map_len) < 0)
		return NULL;
	struct cache_entry *e = calloc(1, sizeof *e);
	if (!e || !(e->key = strdup(key))) {
		free(e);
		return NULL;
	}
	e->id = c->free_ids[c->nfree - 1];
	if (entry_map(c, e, len) < 0) {
		free(e->key);
		free(e);
		return NULL;
	}
	c->nfree--;
	c->slots[e->id] = e;
	e->len = len;
	e->filling = 1;
	e->refs = 1; /* the filler's */
	unsigned h = hash_key(key);
	e->hnext = c->buckets[h];
	c->buckets[h] = e;
	lru_push(c, e);
	c->used += e->map_len;
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
		entry_free(c, e);
}
