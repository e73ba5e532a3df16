/* requests.csv.gz: one row per request, written through zlib with a large buffer. */
#ifndef LOG_H
#define LOG_H

#include <stdint.h>
#include <zlib.h>

struct log_row {
    uint64_t t_start_us, t_end_us, bytes;
    int conn, type, cls, dir, file, status, ok, error;
    int measure; /* the `phase` column: the request *started* in the measured window */
};

struct req_log {
    gzFile gz;
    char *buf;
    size_t len;
    int failed;      /* a write failed: the run reports it and exits 1 */
    char path[600];
};

#define LOG_HEADER "t_start_us,t_end_us,conn,type,class,dir,file,status,bytes,ok,error,phase\n"

int log_open(struct req_log *l, const char *path, int with_header);
void log_row(struct req_log *l, const struct log_row *r);
int log_close(struct req_log *l);
int log_merge(const char *out, char *const parts[], int n);

#endif
