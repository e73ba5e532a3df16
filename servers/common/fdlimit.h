/* fdlimit.h — one descriptor-limit rule for the servers and the disk model. */
#ifndef UKWEB_FDLIMIT_H
#define UKWEB_FDLIMIT_H

/* Raise RLIMIT_NOFILE's soft limit to want descriptors, and the hard limit too where allowed
 * (root), never beyond fs.nr_open; want <= 0: as many as the system allows.  Returns the soft
 * limit now in force. */
long long fd_limit_raise(long long want);

#endif
