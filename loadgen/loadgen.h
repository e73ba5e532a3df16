/* loadgen: shared definitions — the run configuration, request types and error kinds.
 * Names follow docs/interfaces.md; the workload is shared/spec/specweb99.md (cited as §N). */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <stdint.h>
#include <netinet/in.h>

#include "../servers/common/sw99core.h" /* the SPECweb99 rules the servers share */

#define MAX_SERVERS 16
#define NCLASSES 4
#define NFILES 9

/* Request types, in the order of --mix-shares: the SPECweb99 core's list (T_STATIC ... T_CGI_GET). */
#define T_ITEM(id, name) T_##id,
enum req_type { SW99_REQUEST_TYPES(T_ITEM) NTYPES };
#undef T_ITEM
extern const char *const type_names[NTYPES];

/* Error kinds of docs/interfaces.md; E_NONE is a valid response. E_INFLIGHT is no fault: the
 * request had not completed when the measured window closed (logged, counted in no window). */
enum err_kind {
    E_NONE, E_CONNECT, E_RESET, E_TIMEOUT, E_STATUS, E_MALFORMED, E_LENGTH,
    E_TOO_LARGE, E_SIZE, E_CONTENT, E_QUERY, E_COOKIE, E_AD, E_INFLIGHT, NERRS
};
extern const char *const err_names[NERRS];

struct server_addr {
    struct sockaddr_in sa;
    char host[64]; /* HOST:PORT as given, sent in the Host header */
};

struct config {
    struct server_addr servers[MAX_SERVERS];
    int nservers;
    int connections;
    char out[512];
    double shares[NTYPES];   /* request-type mix, sum 1 */
    char mix_name[32];
    int dirs;                /* 0 = ndirs(connections), §1.2 */
    double warmup_s, duration_s;
    double line_speed;       /* bit/s, 0 = unpaced */
    double conform_speed;    /* bit/s */
    double keepalive_pct;
    int ka_min, ka_max;
    uint32_t seed;
    int threads;
    double timeout_s;
    double start_at; /* CLOCK_REALTIME seconds the run starts at (multi-host); 0: at once */
    /* Reset parameters (§4.8); have_reset says all four were given. */
    int maxload, maxthread, exp1, exp2, pttime;
    int have_reset;
    char prefix[128];        /* URL root of file_set */
    char url[256];           /* --url: benchmark mode, one static URL repeated */
    int dump_deck;           /* --dump-deck N: print the first N deck entries and exit */
};

/* Park–Miller minimal standard generator (§2). */
struct spec_rng { int32_t val; };

int ndirs_for(int connections);
int file_size(int cls, int num);

#endif
