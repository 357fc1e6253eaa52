/* bench rig mock upstream: one thread, one epoll loop, HTTP/1.1 keep-alive.
 *
 *   mock --port P --spec FILE
 *
 * The spec file (written by bench/rigspec.py) has one route per line, tokens separated by spaces:
 *   plain  PATH DELAY_MS CONTENT_TYPE BODY_FILE
 *   stream PATH INTERVAL_MS FRAMES HEAD_FILE FRAME_FILE TAIL_FILE
 * A request's path matches a route up to any '?'. A request body (Content-Length) is read in full
 * before the reply is scheduled. A plain reply is written DELAY_MS after that. A stream is chunked:
 * the head and frame 0 at once, frame k at k*INTERVAL_MS, the tail at FRAMES*INTERVAL_MS; each frame
 * is one write. FRAME_FILE holds a template in which the 16 bytes "@@@@@@@@@@@@@@@@" become
 * "#NNNNNN:abcdefgh" (NNNNNN: the frame's number in its stream), so a reader can check order.
 * Timers: a binary heap of deadlines, one timerfd (absolute, CLOCK_MONOTONIC) armed at its top.
 * Prints {"ready":true,"port":P} on stdout when listening.
 */
#include "common.h"

#include <arpa/inet.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>

#define MAX_ROUTES 32
#define HEAD_MAX 65536
#define PLACEHOLDER "@@@@@@@@@@@@@@@@"

typedef struct {
    int stream;
    char path[256];
    uint64_t delay_ns; /* plain: reply delay; stream: frame interval */
    int frames;
    char *reply; /* plain: the whole response; stream: status line + headers + head chunk */
    size_t reply_len;
    char *frame;  /* stream: the frame template */
    size_t frame_len, hole; /* hole: offset of the placeholder */
    char *tail;  /* stream: the tail chunk + the last chunk */
    size_t tail_len;
} route_t;

typedef struct {
    int fd;
    uint32_t gen;
    char *in;        /* request head bytes (HEAD_MAX) */
    size_t in_len;
    long body_left;  /* >0: body bytes still to read */
    int busy;        /* a reply is scheduled or streaming */
    route_t *route;
    int frame;
    uint64_t t0;
    char *out;       /* bytes the socket did not take yet */
    size_t out_len, out_cap;
    int want_out;
} conn_t;

typedef struct {
    uint64_t due;
    int fd;
    uint32_t gen;
} timer_t_;

static route_t routes[MAX_ROUTES];
static int nroutes;
static conn_t *conns;
static long maxfd;
static int ep, tfd;
static timer_t_ *heap;
static size_t heap_len, heap_cap;
static uint64_t armed;
static char scratch[1 << 16];

static void heap_push(uint64_t due, int fd, uint32_t gen) {
    if (heap_len == heap_cap) {
        heap_cap = heap_cap ? heap_cap * 2 : 4096;
        heap = realloc(heap, heap_cap * sizeof *heap);
        if (!heap) die("realloc");
    }
    size_t i = heap_len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (heap[p].due <= due) break;
        heap[i] = heap[p];
        i = p;
    }
    heap[i] = (timer_t_){due, fd, gen};
}

static timer_t_ heap_pop(void) {
    timer_t_ top = heap[0], last = heap[--heap_len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= heap_len) break;
        if (c + 1 < heap_len && heap[c + 1].due < heap[c].due) c++;
        if (last.due <= heap[c].due) break;
        heap[i] = heap[c];
        i = c;
    }
    if (heap_len) heap[i] = last;
    return top;
}

static void arm(void) {
    if (!heap_len || heap[0].due == armed) return;
    armed = heap[0].due;
    struct itimerspec its = {{0, 0}, {(time_t)(armed / 1000000000ull), (long)(armed % 1000000000ull)}};
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0) die("timerfd_settime");
}

static void ep_mod(conn_t *c) {
    struct epoll_event ev = {.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0), .data.fd = c->fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(conn_t *c) {
    if (c->fd < 0) return;
    close(c->fd);
    c->fd = -1;
    c->gen++;
    c->busy = 0;
    c->in_len = 0;
    c->out_len = 0;
    c->body_left = 0;
}

/* One write; what the socket does not take waits for EPOLLOUT. Returns -1 if the conn closed. */
static int send_bytes(conn_t *c, const char *p, size_t n) {
    if (c->out_len == 0) {
        ssize_t w = write(c->fd, p, n);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                conn_close(c);
                return -1;
            }
            w = 0;
        }
        p += w;
        n -= (size_t)w;
        if (n == 0) return 0;
    }
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
        if (!c->out) die("realloc");
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    if (!c->want_out) {
        c->want_out = 1;
        ep_mod(c);
    }
    return 0;
}

static void flush_out(conn_t *c) {
    while (c->out_len) {
        ssize_t w = write(c->fd, c->out, c->out_len);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            conn_close(c);
            return;
        }
        memmove(c->out, c->out + w, c->out_len - (size_t)w);
        c->out_len -= (size_t)w;
    }
    c->want_out = 0;
    ep_mod(c);
}

static int send_frame(conn_t *c) {
    route_t *r = c->route;
    char buf[8192];
    size_t n = (size_t)snprintf(buf, 32, "%zx\r\n", r->frame_len);
    if (n + r->frame_len + 2 > sizeof buf) return -1;
    memcpy(buf + n, r->frame, r->frame_len);
    char tag[17];
    snprintf(tag, sizeof tag, "#%06d:abcdefgh", c->frame);
    memcpy(buf + n + r->hole, tag, 16);
    n += r->frame_len;
    memcpy(buf + n, "\r\n", 2);
    return send_bytes(c, buf, n + 2);
}

static void handle_request(conn_t *c);

static void reply_done(conn_t *c) {
    c->busy = 0;
    c->route = NULL;
    if (c->in_len) handle_request(c); /* a pipelined request already read */
}

/* Advance a stream (or write a delayed plain reply) when its timer fires. */
static void on_timer(conn_t *c, uint64_t now) {
    route_t *r = c->route;
    if (!r->stream) {
        if (send_bytes(c, r->reply, r->reply_len) == 0) reply_done(c);
        return;
    }
    (void)now;
    for (;;) {
        if (c->frame < r->frames) {
            if (send_frame(c) != 0) return;
            c->frame++;
        } else {
            if (send_bytes(c, r->tail, r->tail_len) == 0) reply_done(c);
            return;
        }
        uint64_t due = c->t0 + (uint64_t)c->frame * r->delay_ns;
        if (r->delay_ns) {
            heap_push(due, c->fd, c->gen);
            return;
        }
    }
}

static void start_reply(conn_t *c, route_t *r) {
    uint64_t now = now_ns();
    c->busy = 1;
    c->route = r;
    if (!r) {
        static const char nf[] =
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 69\r\n\r\n"
            "{\"error\":{\"message\":\"no such route\",\"type\":\"not_found\",\"code\":null}}\n";
        if (send_bytes(c, nf, sizeof nf - 1) == 0) reply_done(c);
        return;
    }
    if (!r->stream) {
        if (r->delay_ns == 0) {
            if (send_bytes(c, r->reply, r->reply_len) == 0) reply_done(c);
        } else {
            heap_push(now + r->delay_ns, c->fd, c->gen);
        }
        return;
    }
    c->t0 = now;
    c->frame = 0;
    if (send_bytes(c, r->reply, r->reply_len) != 0) return;
    on_timer(c, now);
}

/* Parse the request head in c->in once complete; read/skip its body; then start the reply. */
static void handle_request(conn_t *c) {
    if (c->busy || c->body_left > 0) return;
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->in_len >= HEAD_MAX) conn_close(c);
        return;
    }
    size_t head = (size_t)(end - c->in) + 4;
    const char *cl = find_header(c->in, end, "content-length");
    long body = cl ? strtol(cl, NULL, 10) : 0;
    route_t *r = NULL;
    const char *sp = memchr(c->in, ' ', head);
    if (sp) {
        const char *p = sp + 1;
        size_t n = strcspn(p, " ?\r");
        for (int i = 0; i < nroutes; i++)
            if (strlen(routes[i].path) == n && memcmp(routes[i].path, p, n) == 0) r = &routes[i];
    }
    size_t extra = c->in_len - head;
    size_t take = (size_t)body < extra ? (size_t)body : extra;
    memmove(c->in, c->in + head + take, extra - take);
    c->in_len = extra - take;
    c->body_left = body - (long)take;
    c->route = r;
    if (c->body_left == 0) start_reply(c, r);
}

static void on_readable(conn_t *c) {
    for (;;) {
        ssize_t n;
        if (c->body_left > 0) {
            size_t want = (size_t)c->body_left < sizeof scratch ? (size_t)c->body_left : sizeof scratch;
            n = read(c->fd, scratch, want);
            if (n > 0) {
                c->body_left -= n;
                if (c->body_left == 0) start_reply(c, c->route);
                continue;
            }
        } else {
            if (c->in_len >= HEAD_MAX) {
                conn_close(c);
                return;
            }
            n = read(c->fd, c->in + c->in_len, HEAD_MAX - c->in_len);
            if (n > 0) {
                c->in_len += (size_t)n;
                handle_request(c);
                if (c->fd < 0) return;
                continue;
            }
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) conn_close(c);
        return;
    }
}

static void load_spec(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char kind[16], p[256], a[1024], b[1024], d[1024], e[1024];
        long x, y;
        if (line[0] == '#' || line[0] == '\n') continue;
        if (nroutes == MAX_ROUTES) break;
        route_t *r = &routes[nroutes];
        char hdr[512];
        if (sscanf(line, "%15s", kind) != 1) continue;
        if (strcmp(kind, "plain") == 0 && sscanf(line, "%*s %255s %ld %1023s %1023s", p, &x, a, b) == 4) {
            size_t n;
            char *body = slurp(b, &n);
            int h = snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n", a, n);
            r->reply = malloc((size_t)h + n);
            memcpy(r->reply, hdr, (size_t)h);
            memcpy(r->reply + h, body, n);
            r->reply_len = (size_t)h + n;
            free(body);
        } else if (strcmp(kind, "stream") == 0 &&
                   sscanf(line, "%*s %255s %ld %ld %1023s %1023s %1023s", p, &x, &y, d, e, a) == 6) {
            size_t hn, tn;
            char *headb = slurp(d, &hn), *tailb = slurp(a, &tn);
            r->stream = 1;
            r->frames = (int)y;
            r->frame = slurp(e, &r->frame_len);
            char *hole = memmem(r->frame, r->frame_len, PLACEHOLDER, 16);
            if (!hole) {
                fprintf(stderr, "mock: %s has no placeholder\n", e);
                exit(2);
            }
            r->hole = (size_t)(hole - r->frame);
            int h = snprintf(hdr, sizeof hdr,
                             "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n");
            r->reply = malloc((size_t)h + hn + 32);
            memcpy(r->reply, hdr, (size_t)h);
            r->reply_len = (size_t)h;
            if (hn) r->reply_len += (size_t)sprintf(r->reply + h, "%zx\r\n", hn);
            memcpy(r->reply + r->reply_len, headb, hn);
            r->reply_len += hn;
            if (hn) r->reply_len += (size_t)sprintf(r->reply + r->reply_len, "\r\n");
            r->tail = malloc(tn + 48);
            r->tail_len = tn ? (size_t)sprintf(r->tail, "%zx\r\n", tn) : 0;
            memcpy(r->tail + r->tail_len, tailb, tn);
            r->tail_len += tn;
            r->tail_len += (size_t)sprintf(r->tail + r->tail_len, "%s0\r\n\r\n", tn ? "\r\n" : "");
            free(headb);
            free(tailb);
        } else {
            fprintf(stderr, "mock: bad spec line: %s", line);
            exit(2);
        }
        snprintf(r->path, sizeof r->path, "%s", p);
        r->delay_ns = (uint64_t)x * 1000000ull;
        nroutes++;
    }
    fclose(f);
}

int main(int argc, char **argv) {
    int port = 0;
    const char *spec = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--spec") == 0) spec = argv[i + 1];
        else {
            fprintf(stderr, "usage: mock --port P --spec FILE\n");
            return 2;
        }
    }
    if (!spec) {
        fprintf(stderr, "usage: mock --port P --spec FILE\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    load_spec(spec);
    maxfd = raise_nofile();
    conns = calloc((size_t)maxfd, sizeof *conns);
    for (long i = 0; i < maxfd; i++) conns[i].fd = -1;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0) die("bind");
    if (listen(ls, 8192) != 0) die("listen");
    socklen_t sl = sizeof sa;
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    set_nonblock(ls);
    ep = epoll_create1(0);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    ev.data.fd = tfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    printf("{\"ready\":true,\"port\":%d}\n", ntohs(sa.sin_port));
    fflush(stdout);
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                for (;;) {
                    int cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (cfd < 0) break;
                    if (cfd >= maxfd) {
                        close(cfd);
                        continue;
                    }
                    set_nodelay(cfd);
                    conn_t *c = &conns[cfd];
                    c->fd = cfd;
                    if (!c->in) c->in = malloc(HEAD_MAX);
                    c->want_out = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                }
            } else if (fd == tfd) {
                uint64_t x;
                if (read(tfd, &x, sizeof x) < 0 && errno != EAGAIN) die("timerfd read");
                armed = 0;
                uint64_t now = now_ns();
                while (heap_len && heap[0].due <= now) {
                    timer_t_ t = heap_pop();
                    conn_t *c = &conns[t.fd];
                    if (c->fd == t.fd && c->gen == t.gen && c->busy) on_timer(c, now);
                }
            } else {
                conn_t *c = &conns[fd];
                if (c->fd < 0) continue;
                if (evs[i].events & EPOLLOUT) flush_out(c);
                if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(c);
            }
        }
        arm();
    }
}
