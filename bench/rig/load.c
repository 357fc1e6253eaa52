/* bench rig load generator: one thread, one epoll loop, HTTP/1.1 keep-alive, closed loop.
 *
 *   load --port P --path PATH --mode latency|rate|streams|memory [--conns N] [--duration S]
 *        [--warmup S] [--header "K: V"]... [--body-file F | --body STR] [--frames N]
 *        [--kind plain|stream] [--gap-ms MS] [--timeout S] [--host A]
 *
 * latency: one connection (--conns is ignored), request after request; records per-request latency
 *          (request written -> last body byte) and, with --kind stream, the time to its first frame.
 * rate, memory: N connections closed loop (memory: the same with a big --body-file).
 * streams: N connections each running one stream after another; every frame's arrival is stamped,
 *          the gap to the previous frame of its stream recorded, its number checked against order.
 * A frame is the 16-byte tag "#NNNNNN:" + 8 bytes that the rig mock puts in each content frame; the
 * reader finds tags in the de-chunked body whatever the wire format, so translated streams count
 * too. Tags after the --frames'th of a stream are ignored (a Responses output_text.done echoes the
 * text); each counted tag must be the previous one's number + 1, else it is an order error.
 * The --warmup seconds are not recorded. After --duration no new request starts; streams in flight
 * finish (up to --timeout): a stream started in the window counts whole, any other request counts
 * if it completed within the window (as wrk; those still in flight are dropped at the end). Output:
 * one JSON object on stdout; histograms are lists of [bucket lower bound ns, count] (log-linear, 64
 * sub-buckets per power of two).
 */
#include "common.h"

#include <arpa/inet.h>
#include <signal.h>
#include <sys/epoll.h>

#define SUB_BITS 6
#define NBUCKETS (64 * 64)
#define RBUF 65536

typedef struct {
    uint64_t counts[NBUCKETS];
    uint64_t n, max, sum;
} hist_t;

static int bucket_of(uint64_t v) {
    int msb = v ? 63 - __builtin_clzll(v) : 0;
    int shift = msb > SUB_BITS ? msb - SUB_BITS : 0;
    return shift * 64 + (int)(v >> shift);
}

static uint64_t bucket_low(int i) {
    int shift = i / 64 - 1;
    if (shift < 0) return (uint64_t)i;
    return (uint64_t)(i - shift * 64) << shift;
}

static void hist_add(hist_t *h, uint64_t v) {
    int b = bucket_of(v);
    if (b >= NBUCKETS) b = NBUCKETS - 1;
    h->counts[b]++;
    h->n++;
    h->sum += v;
    if (v > h->max) h->max = v;
}

static double hist_pct_us(const hist_t *h, double q) {
    if (!h->n) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) return (double)bucket_low(i) / 1000.0;
    }
    return (double)h->max / 1000.0;
}

static void hist_json(const char *name, const hist_t *h) {
    printf("\"%s\":{\"count\":%llu,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
           "\"mean_us\":%.1f,\"hist\":[",
           name, (unsigned long long)h->n, hist_pct_us(h, 0.5), hist_pct_us(h, 0.99), hist_pct_us(h, 0.999),
           (double)h->max / 1000.0, h->n ? (double)h->sum / (double)h->n / 1000.0 : 0.0);
    int first = 1;
    for (int i = 0; i < NBUCKETS; i++) {
        if (!h->counts[i]) continue;
        printf("%s[%llu,%llu]", first ? "" : ",", (unsigned long long)bucket_low(i),
               (unsigned long long)h->counts[i]);
        first = 0;
    }
    printf("]}");
}

enum { H_HEAD, H_CL, H_CHUNK_SIZE, H_CHUNK_DATA, H_CHUNK_CRLF, H_TRAILER, H_CLOSE };
enum { E_CONNECT, E_STATUS, E_TIMEOUT, E_CLOSED, E_PARSE, E_NKINDS };
static const char *ERR_NAMES[E_NKINDS] = {"connect", "status", "timeout", "closed", "parse"};

typedef struct {
    int fd;
    int idx;
    int connected;
    int in_req;        /* a request is outstanding */
    int recorded;      /* this request counts (started after warm-up, before the end) */
    size_t sent;       /* request bytes written */
    uint64_t t_send, t_last_frame, retry_at;
    int hstate;
    int status;
    long left;         /* body bytes (content-length) or chunk bytes still to read */
    char head[RBUF];
    size_t head_len;
    int tag_state;     /* 0 idle, 1..6 digits seen, 7 ':' expected */
    int tag_val;
    int next_frame;    /* next expected frame number */
    int seen;          /* frames counted in this stream */
    int got_first;
} conn_t;

static const char *host = "127.0.0.1";
static int port;
static char *req;
static size_t req_len;
static int frames = 64;
static uint64_t gap_ns = 40000000ull;
static uint64_t timeout_ns = 10000000000ull;
static int streaming; /* count frames */
static int ep;
static conn_t *conns;
static int nconns = 1;
static uint64_t t_measure, t_end;
static int stopping;

static hist_t lat, ttfb, gaps;
static uint64_t done_ok, started, errors, err_kind[E_NKINDS];
static uint64_t frames_rx, order_errors, gaps_over, streams_short;

static void conn_open(conn_t *c);

/* A stream counts if it started in the measured window (its frames are all expected); any other
 * request counts if it completed in the window (as wrk: one that started in the warm-up counts,
 * one still in flight at the end does not), and its failure counts if it failed after the warm-up. */
static int counts_done(const conn_t *c, uint64_t now) {
    return streaming ? c->recorded : now >= t_measure && now <= t_end;
}

static void fail(conn_t *c, int kind, uint64_t now) {
    if (c->in_req && (streaming ? c->recorded : now >= t_measure)) {
        errors++;
        err_kind[kind]++;
    } else if (!c->in_req && kind == E_CONNECT && now >= t_measure && now < t_end) {
        errors++;
        err_kind[kind]++;
    }
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->connected = 0;
    c->in_req = 0;
    c->retry_at = now + 10000000ull; /* reconnect in 10 ms */
}

static void send_req(conn_t *c, uint64_t now) {
    c->in_req = 1;
    c->recorded = now >= t_measure;
    c->sent = 0;
    c->t_send = now;
    c->hstate = H_HEAD;
    c->head_len = 0;
    c->status = 0;
    c->tag_state = 0;
    c->next_frame = 0;
    c->seen = 0;
    c->got_first = 0;
    if (c->recorded) started++;
    ssize_t w = write(c->fd, req, req_len);
    if (w < 0) {
        if (errno != EAGAIN) {
            fail(c, E_CLOSED, now);
            return;
        }
        w = 0;
    }
    c->sent = (size_t)w;
    if (c->sent < req_len) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)c->idx};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static void next_or_idle(conn_t *c, uint64_t now) {
    c->in_req = 0;
    if (!stopping && now < t_end) send_req(c, now);
}

static void tag_scan(conn_t *c, const char *p, size_t n, uint64_t now) {
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '#') {
            c->tag_state = 1;
            c->tag_val = 0;
        } else if (c->tag_state >= 1 && c->tag_state <= 6 && ch >= '0' && ch <= '9') {
            c->tag_val = c->tag_val * 10 + (ch - '0');
            c->tag_state++;
        } else if (c->tag_state == 7 && ch == ':') {
            c->tag_state = 0;
            if (c->seen >= frames) continue; /* an echo of the text after the last frame */
            c->seen++;
            if (!c->recorded) {
                c->next_frame = c->tag_val + 1;
                continue;
            }
            if (c->tag_val != c->next_frame) order_errors++;
            c->next_frame = c->tag_val + 1;
            frames_rx++;
            if (!c->got_first) {
                c->got_first = 1;
                hist_add(&ttfb, now - c->t_send);
            } else {
                uint64_t g = now - c->t_last_frame;
                hist_add(&gaps, g);
                if (g > gap_ns) gaps_over++;
            }
            c->t_last_frame = now;
        } else {
            c->tag_state = 0;
        }
    }
}

static void body_bytes(conn_t *c, const char *p, size_t n, uint64_t now) {
    if (streaming && n) tag_scan(c, p, n, now);
}

static void record_done(conn_t *c, uint64_t now) {
    if (counts_done(c, now)) {
        if (c->status != 200) {
            errors++;
            err_kind[E_STATUS]++;
        } else {
            done_ok++;
            hist_add(&lat, now - c->t_send);
            if (streaming && c->seen < frames) streams_short++;
        }
    }
}

static void response_done(conn_t *c, uint64_t now) {
    record_done(c, now);
    next_or_idle(c, now);
}

/* Feed response bytes through the HTTP/1.1 parser. Returns -1 when the conn was dropped. */
static int parse(conn_t *c, char *p, size_t n, uint64_t now) {
    while (n > 0) {
        switch (c->hstate) {
        case H_HEAD: {
            size_t take = n < RBUF - c->head_len ? n : RBUF - c->head_len;
            memcpy(c->head + c->head_len, p, take);
            size_t old = c->head_len >= 3 ? c->head_len - 3 : 0;
            c->head_len += take;
            char *e = memmem(c->head + old, c->head_len - old, "\r\n\r\n", 4);
            if (!e) {
                if (c->head_len == RBUF) {
                    fail(c, E_PARSE, now);
                    return -1;
                }
                return 0;
            }
            size_t hlen = (size_t)(e - c->head) + 4;
            size_t used = hlen - (c->head_len - take);
            p += used;
            n -= used;
            c->status = c->head_len > 12 ? atoi(c->head + 9) : 0;
            const char *te = find_header(c->head, e, "transfer-encoding");
            const char *cl = find_header(c->head, e, "content-length");
            if (te && strncasecmp(te, "chunked", 7) == 0) {
                c->hstate = H_CHUNK_SIZE;
                c->head_len = 0;
            } else if (cl) {
                c->left = strtol(cl, NULL, 10);
                c->hstate = H_CL;
                if (c->left == 0) {
                    response_done(c, now);
                    if (n) {
                        fail(c, E_PARSE, now);
                        return -1;
                    }
                }
            } else {
                c->hstate = H_CLOSE;
            }
            break;
        }
        case H_CL: {
            size_t take = (size_t)c->left < n ? (size_t)c->left : n;
            body_bytes(c, p, take, now);
            p += take;
            n -= take;
            c->left -= (long)take;
            if (c->left == 0) {
                response_done(c, now);
                if (n) {
                    fail(c, E_PARSE, now);
                    return -1;
                }
            }
            break;
        }
        case H_CHUNK_SIZE:
        case H_TRAILER: { /* collect a line in head */
            char *nl = memchr(p, '\n', n);
            size_t take = nl ? (size_t)(nl - p) + 1 : n;
            if (c->head_len + take >= 256) {
                fail(c, E_PARSE, now);
                return -1;
            }
            memcpy(c->head + c->head_len, p, take);
            c->head_len += take;
            p += take;
            n -= take;
            if (!nl) break;
            c->head[c->head_len] = 0;
            int trailer = c->hstate == H_TRAILER;
            int blank = c->head_len <= 2;
            c->head_len = 0;
            if (trailer) {
                if (blank) response_done(c, now);
                break;
            }
            c->left = strtol(c->head, NULL, 16);
            c->hstate = c->left ? H_CHUNK_DATA : H_TRAILER;
            break;
        }
        case H_CHUNK_DATA: {
            size_t take = (size_t)c->left < n ? (size_t)c->left : n;
            body_bytes(c, p, take, now);
            p += take;
            n -= take;
            c->left -= (long)take;
            if (c->left == 0) {
                c->hstate = H_CHUNK_CRLF;
                c->left = 2;
            }
            break;
        }
        case H_CHUNK_CRLF: {
            size_t take = (size_t)c->left < n ? (size_t)c->left : n;
            p += take;
            n -= take;
            c->left -= (long)take;
            if (c->left == 0) c->hstate = H_CHUNK_SIZE;
            break;
        }
        case H_CLOSE:
            body_bytes(c, p, n, now);
            return 0;
        }
        if (c->fd < 0) return -1;
        if (!c->in_req && n) { /* bytes after a complete response: nothing was asked */
            fail(c, E_PARSE, now);
            return -1;
        }
    }
    return 0;
}

static void on_event(conn_t *c, uint32_t events, uint64_t now) {
    if (!c->connected) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            fail(c, E_CONNECT, now);
            return;
        }
        c->connected = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)c->idx};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        if (!stopping && now < t_end) send_req(c, now);
        return;
    }
    if ((events & EPOLLOUT) && c->in_req && c->sent < req_len) {
        ssize_t w = write(c->fd, req + c->sent, req_len - c->sent);
        if (w < 0 && errno != EAGAIN) {
            fail(c, E_CLOSED, now);
            return;
        }
        if (w > 0) c->sent += (size_t)w;
        if (c->sent == req_len) {
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)c->idx};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        static char buf[RBUF];
        for (;;) {
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r > 0) {
                if (!c->in_req) {
                    fail(c, E_PARSE, now);
                    return;
                }
                if (parse(c, buf, (size_t)r, now) != 0) return;
                if ((size_t)r < sizeof buf) return;
                continue;
            }
            if (r == 0 || errno != EAGAIN) {
                if (c->in_req && c->hstate == H_CLOSE) { /* a close-delimited body ends here */
                    record_done(c, now);
                    c->in_req = 0;
                    fail(c, E_CLOSED, now); /* reconnect; not an error: in_req cleared */
                } else {
                    fail(c, E_CLOSED, now);
                }
            }
            return;
        }
    }
}

static void conn_open(conn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    set_nodelay(c->fd);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    c->connected = 0;
    c->in_req = 0;
    c->retry_at = 0;
    int r = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
    if (r != 0 && errno != EINPROGRESS) {
        fail(c, E_CONNECT, now_ns());
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)c->idx};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void usage(void) {
    fprintf(stderr, "usage: load --port P --path PATH --mode latency|rate|streams|memory [--conns N] "
                    "[--duration S] [--warmup S] [--header 'K: V']... [--body-file F|--body S] "
                    "[--kind plain|stream] [--frames N] [--gap-ms MS] [--timeout S] [--host A]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *path = NULL, *mode = "rate", *body = "", *body_file = NULL, *kind = "plain";
    double duration = 10, warmup = 0, timeout = 10;
    char headers[8192] = "";
    size_t hl = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--path")) path = v;
        else if (!strcmp(k, "--mode")) mode = v;
        else if (!strcmp(k, "--kind")) kind = v;
        else if (!strcmp(k, "--conns")) nconns = atoi(v);
        else if (!strcmp(k, "--duration")) duration = atof(v);
        else if (!strcmp(k, "--warmup")) warmup = atof(v);
        else if (!strcmp(k, "--timeout")) timeout = atof(v);
        else if (!strcmp(k, "--frames")) frames = atoi(v);
        else if (!strcmp(k, "--gap-ms")) gap_ns = (uint64_t)(atof(v) * 1e6);
        else if (!strcmp(k, "--body")) body = v;
        else if (!strcmp(k, "--body-file")) body_file = v;
        else if (!strcmp(k, "--header")) {
            int w = snprintf(headers + hl, sizeof headers - hl, "%s\r\n", v);
            if (w < 0 || (size_t)w >= sizeof headers - hl) usage();
            hl += (size_t)w;
        } else usage();
    }
    if (!path || !port) usage();
    int latency = !strcmp(mode, "latency");
    if (latency) nconns = 1;
    else if (strcmp(mode, "rate") && strcmp(mode, "streams") && strcmp(mode, "memory")) usage();
    streaming = !strcmp(mode, "streams") || !strcmp(kind, "stream");
    size_t blen = strlen(body);
    char *bbuf = (char *)body;
    if (body_file) bbuf = slurp(body_file, &blen);
    req = malloc(blen + hl + 512);
    req_len = (size_t)sprintf(req, "POST %s HTTP/1.1\r\nHost: %s:%d\r\n%sContent-Length: %zu\r\n\r\n", path, host,
                              port, headers, blen);
    memcpy(req + req_len, bbuf, blen);
    req_len += blen;
    timeout_ns = (uint64_t)(timeout * 1e9);
    signal(SIGPIPE, SIG_IGN);
    long lim = raise_nofile();
    if (nconns + 16 > lim) {
        fprintf(stderr, "load: %d connections need more than RLIMIT_NOFILE %ld\n", nconns, lim);
        return 2;
    }
    ep = epoll_create1(0);
    conns = calloc((size_t)nconns, sizeof *conns);
    uint64_t t0 = now_ns();
    t_measure = t0 + (uint64_t)(warmup * 1e9);
    t_end = t_measure + (uint64_t)(duration * 1e9);
    double cpu0 = cpu_self_s();
    for (int i = 0; i < nconns; i++) {
        conns[i].idx = i;
        conn_open(&conns[i]);
    }
    struct epoll_event evs[512];
    uint64_t last_sweep = t0, cpu_mark_t = 0;
    double cpu_mark = 0;
    for (;;) {
        int n = epoll_wait(ep, evs, 512, 5);
        uint64_t now = now_ns();
        for (int i = 0; i < n; i++) {
            conn_t *c = &conns[evs[i].data.u32];
            if (c->fd >= 0) on_event(c, evs[i].events, now);
        }
        if (!cpu_mark_t && now >= t_measure) {
            cpu_mark_t = now;
            cpu_mark = cpu_self_s();
        }
        if (now - last_sweep < 5000000ull) continue;
        last_sweep = now;
        if (now >= t_end) stopping = 1;
        int busy = 0;
        for (int i = 0; i < nconns; i++) {
            conn_t *c = &conns[i];
            if (c->fd < 0) {
                if (!stopping && now >= c->retry_at) conn_open(c);
                continue;
            }
            if (c->in_req) {
                if (now - c->t_send > timeout_ns) {
                    if (streaming && c->recorded) streams_short++;
                    fail(c, E_TIMEOUT, now);
                } else busy = 1;
            } else if (!c->connected && !stopping) busy = 1;
        }
        if (stopping && (!busy || !streaming)) break; /* requests in flight at the end do not count */
    }
    uint64_t t_stop = now_ns();
    double wall = (double)(t_end - t_measure) / 1e9;
    double cpu = cpu_self_s() - (cpu_mark_t ? cpu_mark : cpu0);
    printf("{\"mode\":\"%s\",\"conns\":%d,\"duration_s\":%.3f,\"drain_s\":%.3f,\"requests\":%llu,\"started\":%llu,"
           "\"rps\":%.1f,\"errors\":%llu,\"error_kinds\":{",
           mode, nconns, wall, (double)(t_stop - t_end) / 1e9, (unsigned long long)done_ok,
           (unsigned long long)started, wall > 0 ? (double)done_ok / wall : 0.0, (unsigned long long)errors);
    for (int k = 0; k < E_NKINDS; k++)
        printf("%s\"%s\":%llu", k ? "," : "", ERR_NAMES[k], (unsigned long long)err_kind[k]);
    printf("},\"cpu_s\":%.3f,\"cpu_pct\":%.1f,", cpu, wall > 0 ? 100.0 * cpu / ((double)(t_stop - cpu_mark_t) / 1e9) : 0.0);
    printf("\"frames_per_stream\":%d,\"frames_received\":%llu,\"frames_expected\":%llu,\"order_errors\":%llu,"
           "\"streams_short\":%llu,\"gap_limit_ms\":%.1f,\"gaps_over\":%llu,",
           streaming ? frames : 0, (unsigned long long)frames_rx,
           (unsigned long long)(streaming ? started * (uint64_t)frames : 0), (unsigned long long)order_errors,
           (unsigned long long)streams_short, (double)gap_ns / 1e6, (unsigned long long)gaps_over);
    hist_json("latency", &lat);
    printf(",");
    hist_json("ttfb", &ttfb);
    printf(",");
    hist_json("gaps", &gaps);
    printf("}\n");
    return 0;
}
