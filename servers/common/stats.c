/* stats.c — shared /server-status counters (see stats.h). */
#include "stats.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define NAME_ITEM(id, name) name,
static const char *const REQ_NAMES[RT_COUNT] = {SW99_SERVER_REQUEST_TYPES(NAME_ITEM)};
#undef NAME_ITEM
static const char *const ERR_NAMES[SE_COUNT] = {
	"bad_request", "uri_too_long", "header_too_large", "method", "not_found", "forbidden",
	"length_required", "payload_too_large", "timeout", "reset", "internal"};

int stats_create(struct stats *s, int nprocs, int ktux)
{
	if (nprocs < 1 || nprocs > STATS_MAX_PROCS)
		return -1;
	size_t len = sizeof(struct stats_counters) * (size_t)nprocs;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	memset(p, 0, len);
	s->procs = p;
	s->nprocs = nprocs;
	s->ktux = ktux;
	return 0;
}

void stats_destroy(struct stats *s)
{
	if (s->procs)
		munmap(s->procs, sizeof(struct stats_counters) * (size_t)s->nprocs);
	s->procs = NULL;
}

void stats_accept_round(struct stats_counters *c, unsigned n)
{
	unsigned bucket = 0;
	while (bucket + 1 < STATS_BATCH_BUCKETS && (n >> bucket) != 0)
		bucket++; /* 0 → 0, 1 → 1, 2..3 → 2, 4..7 → 3, ... */
	c->accept_calls++;
	c->accepts += n;
	c->accept_batches[bucket]++;
}

void stats_response(struct stats_counters *c, int status)
{
	if (status >= 200 && status < 300)
		c->responses[0]++;
	else if (status >= 400 && status < 500)
		c->responses[1]++;
	else if (status >= 500)
		c->responses[2]++;
}

void stats_conn_opened(struct stats_counters *c)
{
	if (++c->conns_open > c->conns_max_seen)
		c->conns_max_seen = c->conns_open;
}

void stats_conn_closed(struct stats_counters *c)
{
	if (c->conns_open)
		c->conns_open--;
}

enum stat_error stats_error_of(enum http_error e)
{
	switch (e) {
	case HTTPE_URI_TOO_LONG: return SE_URI_TOO_LONG;
	case HTTPE_HEADER_TOO_LARGE: return SE_HEADER_TOO_LARGE;
	case HTTPE_METHOD: return SE_METHOD;
	case HTTPE_LENGTH_REQUIRED: return SE_LENGTH_REQUIRED;
	case HTTPE_PAYLOAD_TOO_LARGE: return SE_PAYLOAD_TOO_LARGE;
	default: return SE_BAD_REQUEST;
	}
}

static void add_array(uint64_t *dst, const uint64_t *src, int n)
{
	for (int i = 0; i < n; i++)
		dst[i] += src[i];
}

/* Sum of all slots into *sum (pid 0, conns_max_seen summed: an upper bound). */
static void stats_sum(const struct stats_counters *procs, int nprocs, struct stats_counters *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (int i = 0; i < nprocs; i++) {
		const struct stats_counters *c = &procs[i];
		add_array(sum->requests, c->requests, RT_COUNT);
		add_array(sum->responses, c->responses, 3);
		add_array(sum->errors, c->errors, SE_COUNT);
		add_array(sum->accept_batches, c->accept_batches, STATS_BATCH_BUCKETS);
		sum->bytes_out += c->bytes_out;
		sum->conns_open += c->conns_open;
		sum->conns_max_seen += c->conns_max_seen;
		sum->accepts += c->accepts;
		sum->accept_calls += c->accept_calls;
		sum->event_waits += c->event_waits;
		sum->paused_accepting += c->paused_accepting;
		sum->dynw.replies += c->dynw.replies;
		sum->dynw.blocked += c->dynw.blocked;
		sum->dynw.block_ns += c->dynw.block_ns;
		sum->dynw.sendfile_bytes += c->dynw.sendfile_bytes;
		sum->cache.hits += c->cache.hits;
		sum->cache.misses += c->cache.misses;
		sum->cache.evictions += c->cache.evictions;
		sum->cache.bytes += c->cache.bytes;
		sum->cache.entries += c->cache.entries;
		sum->cache.limit += c->cache.limit;
		if (c->cache.entry_max > sum->cache.entry_max)
			sum->cache.entry_max = c->cache.entry_max;
		sum->ring.submissions += c->ring.submissions;
		sum->ring.enters += c->ring.enters;
		sum->ring.iowq_punts += c->ring.iowq_punts;
		sum->ring.sqpoll |= c->ring.sqpoll;
		sum->ring.no_iowait |= c->ring.no_iowait;
		sum->pool.waits += c->pool.waits;
		sum->pool.wait_ms += c->pool.wait_ms;
		if (c->pool.busy_max > sum->pool.busy_max)
			sum->pool.busy_max = c->pool.busy_max;
		add_array(sum->module.requests, c->module.requests, RT_COUNT);
		add_array(sum->module.actions, c->module.actions, RT_COUNT);
		sum->module.handbacks += c->module.handbacks;
		sum->module.reentries += c->module.reentries;
		sum->module.accept_rounds += c->module.accept_rounds;
		sum->module.steps += c->module.steps;
		sum->module.steps_timed += c->module.steps_timed;
		sum->module.cpu_timed_ns += c->module.cpu_timed_ns;
		sum->module.worker_cpu_ns += c->module.worker_cpu_ns;
		sum->module.fifo_waits += c->module.fifo_waits;
		sum->module.fifo_wait_ns += c->module.fifo_wait_ns;
	}
}

static int json_named(struct buf *o, const char *const *names, const uint64_t *v, int n)
{
	int rc = buf_puts(o, "{");
	for (int i = 0; i < n; i++)
		rc |= buf_printf(o, "%s\"%s\": %llu", i ? ", " : "", names[i], (unsigned long long)v[i]);
	return rc | buf_puts(o, "}");
}

static int json_batches(struct buf *o, const uint64_t *v)
{
	int rc = buf_puts(o, "{");
	for (int i = 0; i < STATS_BATCH_BUCKETS; i++) {
		unsigned long lower = i == 0 ? 0 : 1UL << (i - 1);
		rc |= buf_printf(o, "%s\"%lu\": %llu", i ? ", " : "", lower, (unsigned long long)v[i]);
	}
	return rc | buf_puts(o, "}");
}

static int json_ktux(struct buf *o, const struct stats_counters *c)
{
	return buf_printf(o, ", \"cache\": {\"hits\": %llu, \"misses\": %llu, \"evictions\": %llu, "
			  "\"bytes\": %llu, \"entries\": %llu, \"limit\": %llu, \"entry_max\": %llu}, "
			  "\"ring\": {\"submissions\": %llu, \"enters\": %llu, \"iowq_punts\": %llu, "
			  "\"sqpoll\": %s, \"no_iowait\": %s}",
			  (unsigned long long)c->cache.hits, (unsigned long long)c->cache.misses,
			  (unsigned long long)c->cache.evictions, (unsigned long long)c->cache.bytes,
			  (unsigned long long)c->cache.entries, (unsigned long long)c->cache.limit,
			  (unsigned long long)c->cache.entry_max, (unsigned long long)c->ring.submissions,
			  (unsigned long long)c->ring.enters, (unsigned long long)c->ring.iowq_punts,
			  c->ring.sqpoll ? "true" : "false", c->ring.no_iowait ? "true" : "false");
}

/* The module's CPU time: the timed steps' CPU scaled to all steps. */
static double module_cpu_s(const struct stats_counters *c)
{
	if (c->module.steps_timed == 0)
		return 0.0;
	return (double)c->module.cpu_timed_ns / 1e9 * (double)c->module.steps / (double)c->module.steps_timed;
}

static int json_module(struct buf *o, const struct stats_counters *c)
{
	int rc = buf_puts(o, ", \"pool\": ");
	rc |= buf_printf(o, "{\"waits\": %llu, \"wait_s\": %.3f, \"busy_max\": %llu}",
			 (unsigned long long)c->pool.waits, (double)c->pool.wait_ms / 1e3,
			 (unsigned long long)c->pool.busy_max);
	rc |= buf_puts(o, ", \"module\": {\"requests\": ");
	rc |= json_named(o, REQ_NAMES, c->module.requests, RT_COUNT);
	rc |= buf_puts(o, ", \"actions\": ");
	rc |= json_named(o, REQ_NAMES, c->module.actions, RT_COUNT);
	rc |= buf_printf(o, ", \"handbacks\": %llu, \"reentries\": %llu, \"accept_rounds\": %llu, "
			 "\"steps\": %llu, \"steps_timed\": %llu, \"cpu_s\": %.6f, "
			 "\"worker_cpu_s\": %.6f, \"fifo_waits\": %llu, \"fifo_wait_s\": %.6f}",
			 (unsigned long long)c->module.handbacks, (unsigned long long)c->module.reentries,
			 (unsigned long long)c->module.accept_rounds, (unsigned long long)c->module.steps,
			 (unsigned long long)c->module.steps_timed, module_cpu_s(c),
			 (double)c->module.worker_cpu_ns / 1e9, (unsigned long long)c->module.fifo_waits,
			 (double)c->module.fifo_wait_ns / 1e9);
	return rc;
}

static int json_counters(struct buf *o, const struct stats_counters *c, int ktux)
{
	static const char *const resp[3] = {"2xx", "4xx", "5xx"};
	int rc = buf_printf(o, "{\"pid\": %lld, \"requests\": ", (long long)c->pid);
	rc |= json_named(o, REQ_NAMES, c->requests, RT_COUNT);
	rc |= buf_puts(o, ", \"responses\": ");
	rc |= json_named(o, resp, c->responses, 3);
	rc |= buf_puts(o, ", \"errors\": ");
	rc |= json_named(o, ERR_NAMES, c->errors, SE_COUNT);
	rc |= buf_printf(o, ", \"bytes_out\": %llu, \"conns_open\": %llu, \"conns_max_seen\": %llu, "
			 "\"accepts\": %llu, \"accept_calls\": %llu, \"accept_batches\": ",
			 (unsigned long long)c->bytes_out, (unsigned long long)c->conns_open,
			 (unsigned long long)c->conns_max_seen, (unsigned long long)c->accepts,
			 (unsigned long long)c->accept_calls);
	rc |= json_batches(o, c->accept_batches);
	rc |= buf_printf(o, ", \"event_waits\": %llu, \"paused_accepting\": %llu",
			 (unsigned long long)c->event_waits, (unsigned long long)c->paused_accepting);
	if (ktux)
		rc |= json_ktux(o, c) | json_module(o, c);
	else
		rc |= buf_printf(o, ", \"dynamic_writes\": {\"replies\": %llu, \"blocked\": %llu, "
				 "\"blocked_s\": %.6f, \"sendfile_bytes\": %llu}",
				 (unsigned long long)c->dynw.replies, (unsigned long long)c->dynw.blocked,
				 (double)c->dynw.block_ns / 1e9, (unsigned long long)c->dynw.sendfile_bytes);
	return rc | buf_puts(o, "}");
}

int stats_json(const struct stats *s, const char *server, const char *config_json, struct buf *out)
{
	/* One snapshot of the shared counters, so that the total is the sum of the processes
	 * printed (the other processes keep counting while this one writes). */
	struct stats_counters *snap = malloc((size_t)s->nprocs * sizeof *snap), sum;
	if (!snap)
		return -1;
	memcpy(snap, s->procs, (size_t)s->nprocs * sizeof *snap);
	stats_sum(snap, s->nprocs, &sum);
	int rc = buf_printf(out, "{\"server\": \"%s\", \"version\": 1, \"config\": %s, \"total\": ",
			    server, config_json);
	rc |= json_counters(out, &sum, s->ktux);
	rc |= buf_puts(out, ", \"processes\": [");
	for (int i = 0; i < s->nprocs; i++) {
		rc |= buf_puts(out, i ? ", " : "");
		rc |= json_counters(out, &snap[i], s->ktux);
	}
	free(snap);
	return rc | buf_puts(out, "]}\n");
}
