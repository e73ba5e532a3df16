/* dm_nodes.c — the disk model's file tree: an inode table over the source directory and the
 * FUSE operations other than read (lookups, attributes, directories), answered at once by the
 * loop thread; the kernel caches them for --cache-timeout-s, so they cost nothing at load. */
#include "dm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define NBUCKETS 65536
struct node root_node;
static struct node *table[NBUCKETS];
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;

struct node *node_of(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &root_node : (struct node *)(uintptr_t)ino;
}

static fuse_ino_t ino_of(struct node *n)
{
	return n == &root_node ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static unsigned bucket(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev;
	return (unsigned)(h >> 48) % NBUCKETS;
}

/* Find the node of (dev, ino) and count one lookup; NULL when it is not known. */
static struct node *find_locked(dev_t dev, ino_t ino)
{
	if (root_node.dev == dev && root_node.ino == ino)
		return &root_node;
	for (struct node *n = table[bucket(dev, ino)]; n; n = n->next)
		if (n->dev == dev && n->ino == ino)
			return n;
	return NULL;
}

static void forget_one(fuse_ino_t ino, uint64_t nlookup)
{
	struct node *n = node_of(ino);
	if (n == &root_node)
		return;
	pthread_mutex_lock(&table_mu);
	n->nlookup = nlookup >= n->nlookup ? 0 : n->nlookup - nlookup;
	bool gone = n->nlookup == 0;
	if (gone) {
		struct node **pp = &table[bucket(n->dev, n->ino)];
		while (*pp != n)
			pp = &(*pp)->next;
		*pp = n->next;
	}
	pthread_mutex_unlock(&table_mu);
	if (gone) {
		if (n->fd >= 0)
			close(n->fd);
		free(n->path);
		free(n);
		pthread_mutex_lock(&stats_mu);
		ctr.inodes--;
		pthread_mutex_unlock(&stats_mu);
	}
}


/* ---------------------------------------------------------------- operations */

static void dm_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Opens never reach the daemon: the kernel then keeps the page cache (FOPEN_KEEP_CACHE
	 * is no-open's default).  Without it, dm_open replies keep_cache. */
	conn_info.no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
	/* Reads are replied from a buffer: no page moved in from the daemon's own cache, so the
	 * reader's cgroup is charged for the pages it caches. */
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	/* The files never change: no invalidation on attribute refresh, no readdirplus. */
	conn->want &= ~(unsigned)(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_READDIRPLUS |
				  FUSE_CAP_READDIRPLUS_AUTO);
	conn->want |= FUSE_CAP_ASYNC_READ & conn->capable;
	/* [I] Readahead is not dropped at depth.  The kernel skips the asynchronous part of a
	 * FUSE readahead once its background requests reach congestion_threshold (fs/fuse/file.c,
	 * fuse_readahead: "Congested and only async pages left"); at the old 64/48, a deep queue
	 * lost its readahead, so the disk served more, smaller, random reads and fell further
	 * behind.  The paper's 2.4 kernel did not drop readahead at depth (2.4.21's
	 * __make_request: the READA drop is `#if 0`'d; a reader waits for a free request), and
	 * its queue held up to 1,024 requests, half for reads, at >= 512 MB of memory
	 * (ll_rw_blk.c, blk_init_free_list: one per half-megabyte).  So max_background is that
	 * request list (512: past it a reader waits, as for a 2.4 request) and the congestion
	 * threshold is as high as libfuse allows, the same 512 (do_init clamps it to
	 * max_background): readahead is skipped only when the list is full, where 2.4 made the
	 * reader wait instead. */
	conn->max_background = (unsigned)opt.max_background;
	conn->congestion_threshold = (unsigned)opt.congestion_threshold;
	if (opt.readahead_kb > 0 && opt.readahead_kb * 1024 < conn->max_readahead)
		conn->max_readahead = (unsigned)opt.readahead_kb * 1024;
	conn_info.max_read = conn->max_read;
	conn_info.max_readahead = conn->max_readahead;
	conn_info.max_write = conn->max_write;
	conn_info.max_background = conn->max_background;
	conn_info.congestion_threshold = conn->congestion_threshold;
	conn_info.proto_major = conn->proto_major;
	conn_info.proto_minor = conn->proto_minor;
	write_stats(false);
	printf("ready\n");
	fflush(stdout);
}

static void dm_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node *p = node_of(parent);
	struct fuse_entry_param e = { .attr_timeout = opt.cache_timeout_s,
				      .entry_timeout = opt.cache_timeout_s };
	COUNT(lookups, 1);
	if (fstatat(p->fd, name, &e.attr, AT_SYMLINK_NOFOLLOW) < 0) {
		int err = errno;
		if (err == ENOENT) { /* a negative entry, cached like the others */
			COUNT(negative_lookups, 1);
			fuse_reply_entry(req, &e);
		} else {
			fuse_reply_err(req, err);
		}
		return;
	}
	pthread_mutex_lock(&table_mu);
	struct node *n = find_locked(e.attr.st_dev, e.attr.st_ino);
	if (n)
		n->nlookup++;
	pthread_mutex_unlock(&table_mu);
	if (!n) {
		int flags = S_ISDIR(e.attr.st_mode) ? O_RDONLY | O_DIRECTORY | O_NOFOLLOW
						    : O_PATH | O_NOFOLLOW;
		int fd = S_ISREG(e.attr.st_mode) ? -1 : openat(p->fd, name, flags | O_CLOEXEC);
		if (fd < 0 && !S_ISREG(e.attr.st_mode)) {
			fuse_reply_err(req, errno);
			return;
		}
		struct node *fresh = calloc(1, sizeof *fresh);
		char *path = NULL;
		if (!fresh || asprintf(&path, "%s%s%s", p->path, *p->path ? "/" : "", name) < 0) {
			if (fd >= 0)
				close(fd);
			free(fresh);
			fuse_reply_err(req, ENOMEM);
			return;
		}
		*fresh = (struct node){ .fd = fd, .path = path, .dev = e.attr.st_dev,
					.ino = e.attr.st_ino, .mode = e.attr.st_mode, .nlookup = 1 };
		pthread_mutex_lock(&table_mu);
		n = find_locked(e.attr.st_dev, e.attr.st_ino); /* a racing lookup may have won */
		if (n) {
			n->nlookup++;
		} else {
			unsigned b = bucket(fresh->dev, fresh->ino);
			fresh->next = table[b];
			table[b] = n = fresh;
		}
		pthread_mutex_unlock(&table_mu);
		if (n != fresh) {
			if (fd >= 0)
				close(fd);
			free(fresh->path);
			free(fresh);
		} else {
			COUNT(inodes, 1);
		}
	}
	e.ino = ino_of(n);
	fuse_reply_entry(req, &e);
}

static void dm_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	COUNT(forgets, 1);
	forget_one(ino, nlookup);
	fuse_reply_none(req);
}

static void dm_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	COUNT(forgets, count);
	for (size_t i = 0; i < count; i++)
		forget_one(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void dm_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct stat st;
	COUNT(getattrs, 1);
	const struct node *n = node_of(ino);
	int rc = n->fd >= 0 ? fstatat(n->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)
			    : fstatat(root_node.fd, n->path, &st, AT_SYMLINK_NOFOLLOW);
	if (rc < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_attr(req, &st, opt.cache_timeout_s);
}

static void dm_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n = readlinkat(node_of(ino)->fd, "", buf, sizeof buf - 1);
	if (n < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	buf[n] = 0;
	fuse_reply_readlink(req, buf);
}

static void dm_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	COUNT(opens, 1);
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (conn_info.no_open) { /* the first open tells the kernel to send no more */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->keep_cache = 1;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

static void dm_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs sv;
	if (fstatvfs(root_node.fd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

struct dirh {
	DIR *dp;
	struct dirent *entry;
	off_t offset;
};

static void dm_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int fd = openat(node_of(ino)->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirh *d = fd < 0 ? NULL : calloc(1, sizeof *d);
	if (d)
		d->dp = fdopendir(fd);
	if (!d || !d->dp) {
		int err = fd < 0 ? errno : ENOMEM;
		if (fd >= 0)
			close(fd);
		free(d);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void dm_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)ino;
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	COUNT(readdirs, 1);
	if (off != d->offset) {
		seekdir(d->dp, off);
		d->entry = NULL;
		d->offset = off;
	}
	size_t used = 0;
	int err = 0;
	for (;;) {
		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		struct stat st = { .st_ino = d->entry->d_ino, .st_mode = (mode_t)d->entry->d_type << 12 };
		size_t len = fuse_add_direntry(req, buf + used, size - used, d->entry->d_name, &st,
					       d->entry->d_off);
		if (len > size - used)
			break;
		used += len;
		d->offset = d->entry->d_off;
		d->entry = NULL;
	}
	if (err && used == 0)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void dm_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

/* pread from a node: a regular file is opened by its path for the read (see struct node). */
ssize_t pread_node(const struct node *n, char *buf, size_t size, off_t off)
{
	if (n->fd >= 0)
		return pread(n->fd, buf, size, off);
	int fd = openat(root_node.fd, n->path, O_RDONLY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC);
	if (fd < 0 && errno == EPERM)
		fd = openat(root_node.fd, n->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t got = pread(fd, buf, size, off);
	int err = errno;
	close(fd);
	errno = err;
	return got;
}

/* Every operation but read, which is the disk's (dm_disk.c); diskmodel.c joins the two. */
void dm_node_ops(struct fuse_lowlevel_ops *ops)
{
	ops->init = dm_init;
	ops->lookup = dm_lookup;
	ops->forget = dm_forget;
	ops->forget_multi = dm_forget_multi;
	ops->getattr = dm_getattr;
	ops->readlink = dm_readlink;
	ops->open = dm_open;
	ops->statfs = dm_statfs;
	ops->opendir = dm_opendir;
	ops->readdir = dm_readdir;
	ops->releasedir = dm_releasedir;
}
