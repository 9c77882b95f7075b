/*
 * loadgen.c - the chatwire project's load generator (bench/bench_server.py builds and runs it).
 *
 * One thread, one epoll set, non-blocking sockets, libc only.  It speaks two protocols:
 *   chatwire  spec/protocol.md: 10-byte space-padded headers; login "<len>" + nick, "msg <len>"
 *             + text; the server answers ACC/NE and relays "msg <nicklen> <textlen>" + nick +
 *             text and "file <nicklen> <namelen>" + nick + name + "<size>" + data.
 *   irc       CAP LS 302, NICK, USER, CAP END; JOIN the room after 001, ready on 366 (end of
 *             NAMES) for the room; PRIVMSG <room> :payload; answers PING.
 * and runs one workload per invocation, printing one JSON object on stdout (and one human line
 * on stderr).  See --help and bench/README.md for the workload definitions.
 *
 * Payload of every chat message (P bytes, printable ASCII, no ':' so IRC carries it verbatim):
 *   bytes  0..15  send time, CLOCK_MONOTONIC ns, 16 lower-case hex digits
 *   byte  16      ' '
 *   bytes 17..24  sender id, 8 hex digits
 *   byte  25      ' '
 *   bytes 26..33  sequence number of this sender, 8 hex digits
 *   byte  34      ' '
 *   bytes 35..    '.' padding
 * Every receiver checks, per sender, that sequence numbers arrive in order with no gap.
 *
 * File data: the 64-bit little-endian word at offset 8k is mix(k), so any byte's expected value
 * depends on its offset and a sample anywhere in the stream checks position as well as content.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE (1u << 20) /* one shared read buffer */
#define TAIL_MAX (64u << 10)
#ifndef CHAT_READ
#define CHAT_READ (256u << 10) /* bytes per recv outside file bodies */
#endif /* largest incomplete frame/line kept between reads */
#define SEND_CHUNK (4u << 20) /* file sender's generated-pattern window */
/* file body bytes written per flush, at most: then back to epoll (EPOLLOUT armed). Without it
   a sender whose server keeps up never sees EAGAIN, and the one thread stops reading and
   sending chat for the whole upload, which filechat then reports as the server's latency. */
#define SEND_TURN (1u << 20)
#define SAMPLE_STRIDE (16ull << 20) /* verify=sample: check SAMPLE_LEN bytes every STRIDE */
#define SAMPLE_LEN (64ull << 10)
#define SAMPLE_TAIL (1ull << 20) /* ... and the last MiB of every file */
#define PAYLOAD_MIN 36
#define FILE_NAME "bench.bin"

enum { P_CHATWIRE, P_IRC };
enum { W_FANOUT, W_CONNECT, W_FILE, W_FILECHAT, W_TCP, W_RELAY };
enum { V_NONE, V_SAMPLE, V_FULL };
enum { CS_IDLE, CS_CONNECTING, CS_LOGIN, CS_READY, CS_CLOSED };

/* ------------------------------------------------------------------ options */

static struct {
    int workload, proto, port, server_pid;
    int N, S, W, P, K, R, verify, lat_every, stuck;
    double D, rate, setup_timeout, hold, settle, drain_quiet, drain_max;
    double file_timeout, stall, chat_before, chat_after;
    uint64_t F, tcp_bytes;
    const char *label, *room, *prefix, *spool_dir, *cc;
} O = {
    .workload = W_FANOUT, .proto = P_CHATWIRE, .port = 1234, .server_pid = 0,
    .N = 100, .S = 10, .W = 64, .P = 100, .K = 10, .R = 1, .verify = V_FULL, .lat_every = 1, .stuck = 0,
    .D = 10, .rate = 0, .setup_timeout = 120, .hold = 1, .settle = 0.3, .drain_quiet = 3,
    .drain_max = 30, .file_timeout = 300, .stall = 30, .chat_before = 2, .chat_after = 2,
    .F = 256ull << 20, .tcp_bytes = 2ull << 30, .label = "", .room = "#bench", .prefix = "lg",
    .spool_dir = "/tmp", .cc = NULL,
};

/* ------------------------------------------------------------------ time, /proc, rusage */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double secs(uint64_t ns) { return (double)ns / 1e9; }

static double self_user_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of the server (all its threads), seconds; -1 if unknown */
static double server_cpu_s(void)
{
    if (O.server_pid <= 0) return -1;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", O.server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    /* after ") ": field 3 is state; utime and stime are fields 14 and 15 */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    for (char *s = p + 1; *s && field < 15;) {
        while (*s == ' ') s++;
        field++;
        if (field == 14) ut = strtoull(s, NULL, 10);
        if (field == 15) st = strtoull(s, NULL, 10);
        while (*s && *s != ' ') s++;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS / VmHWM of the server in KiB; -1 if unknown */
static void server_mem_kb(long *rss, long *hwm)
{
    *rss = -1;
    if (hwm) *hwm = -1;
    if (O.server_pid <= 0) return;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", O.server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6)) *rss = strtol(line + 6, NULL, 10);
        else if (hwm && !strncmp(line, "VmHWM:", 6)) *hwm = strtol(line + 6, NULL, 10);
    }
    fclose(f);
}

/* whole machine: busy and total jiffies from /proc/stat */
static void machine_jiffies(unsigned long long *busy, unsigned long long *total)
{
    unsigned long long v[10] = {0};
    *busy = *total = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7]) == 8) {
        for (int i = 0; i < 8; i++) *total += v[i];
        *busy = *total - v[3] - v[4];
    }
    fclose(f);
}

typedef struct {
    uint64_t t;
    double self, self_user, server;
    unsigned long long mbusy, mtotal;
} cpu_snap;

static cpu_snap snap(void)
{
    cpu_snap s;
    s.t = now_ns();
    s.self = self_cpu_s();
    s.self_user = self_user_s();
    s.server = server_cpu_s();
    machine_jiffies(&s.mbusy, &s.mtotal);
    return s;
}

/* appends the CPU figures of [a, b] to a JSON buffer */
static int cpu_json(char *out, size_t cap, cpu_snap a, cpu_snap b)
{
    double iv = secs(b.t - a.t);
    double lg = b.self - a.self;
    double sv = (a.server >= 0 && b.server >= 0) ? b.server - a.server : -1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double mach = b.mtotal > a.mtotal ? (double)(b.mbusy - a.mbusy) / (double)(b.mtotal - a.mtotal) * (double)ncpu : -1;
    return snprintf(out, cap,
                    "\"interval_s\":%.4f,\"loadgen_cpu_s\":%.3f,\"loadgen_user_s\":%.3f,\"loadgen_cpu_util\":%.3f,"
                    "\"server_cpu_s\":%.3f,\"server_cpu_util\":%.3f,\"machine_cores_busy\":%.3f,\"cores\":%ld",
                    iv, lg, b.self_user - a.self_user, iv > 0 ? lg / iv : 0, sv, (iv > 0 && sv >= 0) ? sv / iv : -1, mach, ncpu);
}

/* ------------------------------------------------------------------ latency histogram */

/* log-linear: exact below 128 ns, then 64 buckets per power of two (under 1.6 % error) */
#define H_LIN 128
#define H_SUB 64
#define H_BUCKETS (H_LIN + H_SUB * 58)

typedef struct {
    uint64_t n, max, sum;
    uint64_t b[H_BUCKETS];
} hist;

static inline void hist_add(hist *h, uint64_t v)
{
    unsigned idx;
    if (v < H_LIN) {
        idx = (unsigned)v;
    } else {
        unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 7 */
        unsigned m = (unsigned)(v >> (e - 6));           /* 64..127 */
        idx = H_LIN + (e - 7) * H_SUB + (m - 64);
        if (idx >= H_BUCKETS) idx = H_BUCKETS - 1;
    }
    h->b[idx]++;
    h->n++;
    h->sum += v;
    if (v > h->max) h->max = v;
}

static uint64_t hist_bucket_mid(unsigned idx)
{
    if (idx < H_LIN) return idx;
    unsigned e = (idx - H_LIN) / H_SUB + 7, m = (idx - H_LIN) % H_SUB + 64;
    uint64_t lo = (uint64_t)m << (e - 6), w = 1ull << (e - 6);
    return lo + w / 2;
}

static uint64_t hist_pct(const hist *h, double q)
{
    if (!h->n) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t acc = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        acc += h->b[i];
        if (acc >= rank) {
            uint64_t v = hist_bucket_mid(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* "<prefix>_n":..,"<prefix>_p50_us":.. */
static int hist_json(char *out, size_t cap, const char *prefix, const hist *h)
{
    return snprintf(out, cap,
                    "\"%s_n\":%" PRIu64 ",\"%s_mean_us\":%.1f,\"%s_p50_us\":%.1f,\"%s_p99_us\":%.1f,"
                    "\"%s_p999_us\":%.1f,\"%s_max_us\":%.1f",
                    prefix, h->n, prefix, h->n ? (double)h->sum / (double)h->n / 1e3 : 0, prefix,
                    (double)hist_pct(h, 0.50) / 1e3, prefix, (double)hist_pct(h, 0.99) / 1e3, prefix,
                    (double)hist_pct(h, 0.999) / 1e3, prefix, (double)h->max / 1e3);
}

/* ------------------------------------------------------------------ hex */

static const char HEX[] = "0123456789abcdef";

static inline void put_hex(uint8_t *p, uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = (uint8_t)HEX[v & 15];
        v >>= 4;
    }
}

/* 8 lower-case hex digits -> value, branch-free; *ok cleared if any byte is not [0-9a-f] */
static inline uint32_t hex8(const uint8_t *p, int *ok)
{
    uint64_t v;
    memcpy(&v, p, 8);
    /* '0'-'9' = 0x30-0x39, 'a'-'f' = 0x61-0x66 */
    uint64_t letter = (v >> 6) & 0x0101010101010101ull;
    uint64_t hi = v & 0xF0F0F0F0F0F0F0F0ull;
    uint64_t want = (letter * 0x60) | ((letter ^ 0x0101010101010101ull) * 0x30);
    uint64_t lo = v & 0x0F0F0F0F0F0F0F0Full;
    uint64_t nib = lo + letter * 9;
    /* digits: lo <= 9; letters: 1 <= lo <= 6 (per byte, no carry crosses a byte) */
    uint64_t over = (lo + 0x0606060606060606ull + letter * 3) & 0x1010101010101010ull;
    uint64_t zero = letter & ~((lo + 0x0F0F0F0F0F0F0F0Full) >> 4);
    if (hi != want || over || zero) *ok = 0;
    /* byte k of v is p[k]; p[0] is the most significant nibble */
    uint64_t x = ((nib & 0x000F000F000F000Full) << 4) | ((nib >> 8) & 0x000F000F000F000Full);
    uint64_t y = ((x & 0x000000FF000000FFull) << 8) | ((x >> 16) & 0x000000FF000000FFull);
    return (uint32_t)(((y & 0xFFFF) << 16) | ((y >> 32) & 0xFFFF));
}

static inline uint64_t hex16(const uint8_t *p, int *ok) { return ((uint64_t)hex8(p, ok) << 32) | hex8(p + 8, ok); }

/* ------------------------------------------------------------------ file pattern */

static inline uint64_t pat_word(uint64_t k) { return k * 0x9E3779B97F4A7C15ull + 0x0123456789ABCDEFull; }

static void pat_fill(uint8_t *dst, uint64_t off, size_t len)
{
    size_t i = 0;
    while (i < len && ((off + i) & 7)) {
        uint64_t o = off + i;
        dst[i++] = (uint8_t)(pat_word(o >> 3) >> (8 * (o & 7)));
    }
    for (; i + 8 <= len; i += 8) {
        uint64_t w = pat_word((off + i) >> 3);
        memcpy(dst + i, &w, 8);
    }
    for (; i < len; i++) {
        uint64_t o = off + i;
        dst[i] = (uint8_t)(pat_word(o >> 3) >> (8 * (o & 7)));
    }
}

/* pat_fill, but only over the bytes verify=sample checks in a body of fsize bytes: the first
   SAMPLE_LEN of every SAMPLE_STRIDE and the last SAMPLE_TAIL (see discardable()) */
static void pat_fill_sampled(uint8_t *dst, uint64_t off, size_t len, uint64_t fsize)
{
    uint64_t end = off + len, tail0 = fsize > SAMPLE_TAIL ? fsize - SAMPLE_TAIL : 0;
    for (uint64_t s = off - off % SAMPLE_STRIDE; s < end && s < tail0; s += SAMPLE_STRIDE) {
        uint64_t a = s > off ? s : off, b = s + SAMPLE_LEN < end ? s + SAMPLE_LEN : end;
        if (b > tail0) b = tail0;
        if (a < b) pat_fill(dst + (a - off), a, (size_t)(b - a));
    }
    if (end > tail0) {
        uint64_t a = tail0 > off ? tail0 : off;
        pat_fill(dst + (a - off), a, (size_t)(end - a));
    }
}

/* returns the offset of the first wrong byte, or -1 */
static int64_t pat_check(const uint8_t *src, uint64_t off, size_t len)
{
    size_t i = 0;
    while (i < len && ((off + i) & 7)) {
        uint64_t o = off + i;
        if (src[i] != (uint8_t)(pat_word(o >> 3) >> (8 * (o & 7)))) return (int64_t)o;
        i++;
    }
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        if (w != pat_word((off + i) >> 3)) break;
    }
    for (; i < len; i++) {
        uint64_t o = off + i;
        if (src[i] != (uint8_t)(pat_word(o >> 3) >> (8 * (o & 7)))) return (int64_t)o;
    }
    return -1;
}

/* pat_check over the bytes verify=sample checks (those pat_fill_sampled writes); the offset of
   the first mismatch, or -1 */
static int64_t pat_check_sampled(const uint8_t *d, uint64_t off, size_t len, uint64_t fsize)
{
    uint64_t end = off + len, tail0 = fsize > SAMPLE_TAIL ? fsize - SAMPLE_TAIL : 0;
    int64_t bad;
    for (uint64_t s = off - off % SAMPLE_STRIDE; s < end && s < tail0; s += SAMPLE_STRIDE) {
        uint64_t a = s > off ? s : off, b = s + SAMPLE_LEN < end ? s + SAMPLE_LEN : end;
        if (b > tail0) b = tail0;
        if (a < b && (bad = pat_check(d + (a - off), a, (size_t)(b - a))) >= 0) return bad;
    }
    if (end > tail0) {
        uint64_t a = tail0 > off ? tail0 : off;
        if ((bad = pat_check(d + (a - off), a, (size_t)(end - a))) >= 0) return bad;
    }
    return -1;
}

/* ------------------------------------------------------------------ connections */

typedef struct conn {
    int fd, idx, st, epout;
    int answered; /* the server has sent this connection its first byte */
    int timed;    /* latency measured at this receiver (all, unless --lat-every) */
    uint8_t *out;
    size_t olen, ooff, ocap;
    uint8_t *tail;
    uint32_t tlen, tcap;
    uint64_t t_start, t_ready;
    uint64_t rx_msgs, bytes_in;
    /* incoming file */
    int fbegin;      /* parser stopped at the start of a file body */
    int files;       /* file-relay frames received */
    uint64_t fsize, frem, fpos, t_ffirst, t_fdone;
    /* outgoing file (the sender) */
    uint64_t fs_off, fs_end, t_fs_done;
} conn;

typedef struct {
    uint64_t ts, lat;
    int rcv;
} receipt;

static struct {
    int ep;
    conn *c;
    int n;
    uint8_t *rbuf;
    /* counters */
    int pending; /* opened, not yet answered by the server (the -K bound) */
    int ready, failed, disconnects, opened;
    uint64_t t_first_connect, t_last_ready;
    char err[256];
    /* chat */
    int nsend;        /* senders */
    int sender_base;  /* client index of sender 0 */
    int probe;        /* client whose receipts open the senders' windows */
    uint64_t *sent, *acked, *next_due;
    uint32_t *exp;    /* [receiver][sender] next expected sequence */
    uint64_t delivered, ooo, bad, notices, other, self_echo;
    uint64_t t_last_deliv;
    hist lat, ready_lat;
    int keep_receipts;
    receipt *rc;
    size_t nrc, caprc;
    /* files */
    uint64_t file_bytes, t_file_progress;
    int files_done, unexpected_files;
    uint64_t mismatches;
    int64_t first_mismatch;
    uint8_t *sbuf;
    uint64_t sbuf_base;
    size_t sbuf_len;
    int sbuf_filled; /* verify=none: the window holds data already (see flush) */
} G;

static void set_err(const char *fmt, ...)
{
    if (G.err[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(G.err, sizeof G.err, fmt, ap);
    va_end(ap);
}

static void arm(conn *c, int out)
{
    if (c->epout == out) return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->epout = out;
}

static void conn_close(conn *c, const char *why)
{
    if (c->st == CS_CLOSED || c->st == CS_IDLE) return;
    if (c->st == CS_READY) {
        G.disconnects++;
        set_err("client %d: %s", c->idx, why);
    } else {
        G.failed++;
        if (!c->answered) G.pending--;
        set_err("client %d (not logged in): %s", c->idx, why);
    }
    epoll_ctl(G.ep, EPOLL_CTL_DEL, c->fd, NULL);
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c->fd);
    c->fd = -1;
    c->st = CS_CLOSED;
}

static void out_put(conn *c, const void *data, size_t len)
{
    if (c->olen + len > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 4096;
        while (cap < c->olen + len) cap *= 2;
        c->out = realloc(c->out, cap);
        if (!c->out) {
            perror("realloc");
            exit(3);
        }
        c->ocap = cap;
    }
    memcpy(c->out + c->olen, data, len);
    c->olen += len;
}

/* reserve len bytes at the end of the output buffer */
static uint8_t *out_room(conn *c, size_t len)
{
    if (c->olen + len > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 4096;
        while (cap < c->olen + len) cap *= 2;
        c->out = realloc(c->out, cap);
        if (!c->out) {
            perror("realloc");
            exit(3);
        }
        c->ocap = cap;
    }
    uint8_t *p = c->out + c->olen;
    c->olen += len;
    return p;
}

static void flush(conn *c)
{
    if (c->st == CS_CLOSED || c->st == CS_IDLE || c->st == CS_CONNECTING) return;
    while (c->ooff < c->olen) {
        ssize_t n = send(c->fd, c->out + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                arm(c, 1);
                return;
            }
            if (errno == EINTR) continue;
            conn_close(c, strerror(errno));
            return;
        }
        c->ooff += (size_t)n;
    }
    c->ooff = c->olen = 0;
    /* file body: generated in SEND_CHUNK windows and sent straight from there */
    uint64_t turn_end = c->fs_off + SEND_TURN;
    while (c->fs_off < c->fs_end) {
        if (c->fs_off >= turn_end) {
            arm(c, 1); /* writable again at once: the loop comes back after serving the rest */
            return;
        }
        if (c->fs_off < G.sbuf_base || c->fs_off >= G.sbuf_base + G.sbuf_len) {
            uint64_t left = c->fs_end - c->fs_off;
            G.sbuf_base = c->fs_off;
            G.sbuf_len = left < SEND_CHUNK ? (size_t)left : SEND_CHUNK;
            /* The sender computes the pattern only where a receiver checks it: all of it for
               verify=full, the sampled ranges for verify=sample, nothing after the first
               window for verify=none (which sends that window again and again, as the tcp
               workload's writer sends one buffer). Computing unchecked bytes would load the
               sender with work a loopback stream does not have. */
            if (O.verify == V_FULL || !G.sbuf_filled) pat_fill(G.sbuf, G.sbuf_base, G.sbuf_len);
            else if (O.verify == V_SAMPLE) pat_fill_sampled(G.sbuf, G.sbuf_base, G.sbuf_len, c->fs_end);
            G.sbuf_filled = 1;
        }
        size_t len = (size_t)(G.sbuf_base + G.sbuf_len - c->fs_off);
        ssize_t n = send(c->fd, G.sbuf + (c->fs_off - G.sbuf_base), len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                arm(c, 1);
                return;
            }
            if (errno == EINTR) continue;
            conn_close(c, strerror(errno));
            return;
        }
        c->fs_off += (uint64_t)n;
        if (c->fs_off == c->fs_end) c->t_fs_done = now_ns();
    }
    if (c->epout) arm(c, 0);
}

/* ------------------------------------------------------------------ protocol: sending */

/* a chatwire header: fields left-aligned, space-padded to 10 bytes */
static void cw_header(uint8_t h[10], const char *fmt, ...)
{
    char b[32];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (n > 10) n = 10;
    memset(h, ' ', 10);
    memcpy(h, b, (size_t)n);
}

static void on_connected(conn *c)
{
    char nick[32];
    int nl = snprintf(nick, sizeof nick, "%s%d", O.prefix, c->idx);
    if (O.proto == P_CHATWIRE) {
        uint8_t h[10];
        cw_header(h, "%d", nl);
        out_put(c, h, 10);
        out_put(c, nick, (size_t)nl);
    } else {
        /* as IRCv3 clients do: CAP LS gets an immediate answer (the -K bound counts
           connections not yet answered), CAP END lets registration complete */
        char b[200];
        int n = snprintf(b, sizeof b, "CAP LS 302\r\nNICK %s\r\nUSER %s 0 * :%s\r\nCAP END\r\n", nick, nick,
                         nick);
        out_put(c, b, (size_t)n);
    }
}

/* the frame prefix for a P-byte chat message, built once */
static uint8_t msg_pre[64];
static size_t msg_pre_len;
static const char *msg_post = "";
static size_t msg_post_len;

static void msg_prepare(void)
{
    if (O.proto == P_CHATWIRE) {
        cw_header(msg_pre, "msg %d", O.P);
        msg_pre_len = 10;
    } else {
        msg_pre_len = (size_t)snprintf((char *)msg_pre, sizeof msg_pre, "PRIVMSG %s :", O.room);
        msg_post = "\r\n";
        msg_post_len = 2;
    }
}

/* queue one chat message from sender s (sequence seq, timestamp ts) on connection c */
static void send_msg(conn *c, int s, uint64_t seq, uint64_t ts)
{
    uint8_t *p = out_room(c, msg_pre_len + (size_t)O.P + msg_post_len);
    memcpy(p, msg_pre, msg_pre_len);
    p += msg_pre_len;
    put_hex(p, ts, 16);
    p[16] = ' ';
    put_hex(p + 17, (uint64_t)s, 8);
    p[25] = ' ';
    put_hex(p + 26, seq, 8);
    p[34] = ' ';
    memset(p + 35, '.', (size_t)O.P - 35);
    memcpy(p + O.P, msg_post, msg_post_len);
}

/* ------------------------------------------------------------------ protocol: receiving */

static void on_ready(conn *c, uint64_t now)
{
    if (c->st != CS_LOGIN) return;
    c->st = CS_READY;
    c->t_ready = now;
    G.ready++;
    G.t_last_ready = now;
    hist_add(&G.ready_lat, now - c->t_start);
}

static inline void deliver(conn *c, const uint8_t *p, size_t len, uint64_t now)
{
    int ok = 1;
    if (len != (size_t)O.P || p[16] != ' ' || p[25] != ' ' || p[34] != ' ') {
        G.bad++;
        return;
    }
    uint32_t s = hex8(p + 17, &ok), seq = hex8(p + 26, &ok);
    if (!ok || s >= (uint32_t)G.nsend) {
        G.bad++;
        return;
    }
    if (G.sender_base + (int)s == c->idx) {
        G.self_echo++;
        return;
    }
    uint32_t *e = &G.exp[(size_t)c->idx * (size_t)G.nsend + s];
    if (seq != *e) G.ooo++;
    *e = seq + 1;
    G.delivered++;
    if (c->idx == G.probe && seq + 1 > G.acked[s]) G.acked[s] = seq + 1;
    if (!c->timed) return; /* --lat-every: order and count only */
    int ts_ok = 1; /* a bad timestamp shows as a wild latency; sender and sequence are checked */
    uint64_t ts = hex16(p, &ts_ok);
    uint64_t lat = now > ts ? now - ts : 0;
    if (G.keep_receipts) {
        if (G.nrc == G.caprc) {
            G.caprc = G.caprc ? G.caprc * 2 : 65536;
            G.rc = realloc(G.rc, G.caprc * sizeof *G.rc);
            if (!G.rc) {
                perror("realloc");
                exit(3);
            }
        }
        G.rc[G.nrc++] = (receipt){ts, lat, c->idx};
    } else {
        hist_add(&G.lat, lat);
    }
}

static void file_begin(conn *c, uint64_t size, uint64_t now)
{
    c->files++;
    if (c->files > 1 || c->idx == 0) G.unexpected_files++;
    c->fsize = c->frem = size;
    c->fpos = 0;
    c->fbegin = 1;
    if (!c->t_ffirst) c->t_ffirst = now;
    G.t_file_progress = now;
    if (size == 0) {
        c->t_fdone = now;
        G.files_done++;
    }
}

/* header fields after the code: up to 2 decimal numbers; returns how many, -1 if malformed */
static int hnums(const uint8_t *h, int from, uint64_t v[2])
{
    int n = 0, i = from;
    while (i < 10 && h[i] != ' ') {
        if (n == 2) return -1;
        uint64_t x = 0;
        int d = 0;
        while (i < 10 && h[i] >= '0' && h[i] <= '9') {
            x = x * 10 + (uint64_t)(h[i] - '0');
            i++;
            d++;
        }
        if (!d) return -1;
        v[n++] = x;
        if (i < 10 && h[i] == ' ') i++;
        else if (i < 10) return -1;
    }
    for (; i < 10; i++)
        if (h[i] != ' ') return -1;
    return n;
}

static size_t cw_parse(conn *c, const uint8_t *b, size_t len, uint64_t now)
{
    size_t pos = 0;
    while (len - pos >= 10) {
        const uint8_t *h = b + pos;
        uint64_t v[2];
        /* fast path: the same msg header as the previous frame (every fan-out frame has one) */
        static uint8_t last_h[10];
        static size_t last_ns, last_ts;
        if (last_ns + last_ts && !memcmp(h, last_h, 10)) {
            size_t need = 10 + last_ns + last_ts;
            if (len - pos < need) break;
            if (last_ns == 0) G.notices++;
            else deliver(c, h + 10 + last_ns, last_ts, now);
            pos += need;
        } else if (h[0] == 'm' && h[1] == 's' && h[2] == 'g' && h[3] == ' ') {
            if (hnums(h, 4, v) != 2 || v[0] > 9 || v[1] > 9999) {
                conn_close(c, "malformed msg header");
                return pos;
            }
            memcpy(last_h, h, 10);
            last_ns = (size_t)v[0];
            last_ts = (size_t)v[1];
            size_t need = 10 + (size_t)v[0] + (size_t)v[1];
            if (len - pos < need) break;
            if (v[0] == 0) G.notices++;
            else deliver(c, h + 10 + v[0], (size_t)v[1], now);
            pos += need;
        } else if (!memcmp(h, "file ", 5)) {
            if (hnums(h, 5, v) != 2 || v[0] > 9 || v[1] > 255) {
                conn_close(c, "malformed file header");
                return pos;
            }
            size_t need = 10 + (size_t)v[0] + (size_t)v[1] + 10;
            if (len - pos < need) break;
            const uint8_t *sh = h + need - 10;
            uint64_t sz[2];
            if (hnums(sh, 0, sz) != 1) {
                conn_close(c, "malformed file size header");
                return pos;
            }
            const uint8_t *name = h + 10 + v[0];
            if (v[1] != strlen(FILE_NAME) || memcmp(name, FILE_NAME, v[1])) G.unexpected_files++;
            pos += need;
            file_begin(c, sz[0], now);
            return pos;
        } else if (!memcmp(h, "ACC       ", 10)) {
            pos += 10;
            on_ready(c, now);
        } else if (!memcmp(h, "NE        ", 10)) {
            conn_close(c, "login refused (NE)");
            return pos;
        } else if (h[0] >= '0' && h[0] <= '9') { /* list reply: skipped */
            if (hnums(h, 0, v) != 1) {
                conn_close(c, "malformed header");
                return pos;
            }
            if (len - pos < 10 + v[0]) break;
            pos += 10 + (size_t)v[0];
            G.other++;
        } else {
            conn_close(c, "unexpected frame");
            return pos;
        }
    }
    return pos;
}

static int tok_eq(const uint8_t *p, size_t n, const char *s) { return strlen(s) == n && !memcmp(p, s, n); }

static void irc_line(conn *c, const uint8_t *l, size_t n, uint64_t now)
{
    const uint8_t *p = l, *e = l + n;
    if (p < e && *p == ':') {
        const uint8_t *sp = memchr(p, ' ', n);
        p = sp ? sp : e;
        while (p < e && *p == ' ') p++;
    }
    /* fast path: "PRIVMSG <target> :<payload>" */
    if (e - p > 8 && !memcmp(p, "PRIVMSG ", 8)) {
        const uint8_t *t = memchr(p + 8, ' ', (size_t)(e - p - 8));
        if (t && t + 1 < e && t[1] == ':') {
            deliver(c, t + 2, (size_t)(e - t - 2), now);
            return;
        }
    }
    const uint8_t *cmd = p;
    while (p < e && *p != ' ') p++;
    size_t cl = (size_t)(p - cmd);
    while (p < e && *p == ' ') p++;
    if (tok_eq(cmd, cl, "PRIVMSG")) {
        while (p < e && *p != ' ') p++; /* target */
        while (p < e && *p == ' ') p++;
        if (p < e && *p == ':') p++;
        deliver(c, p, (size_t)(e - p), now);
    } else if (tok_eq(cmd, cl, "001")) {
        char b[128];
        int k = snprintf(b, sizeof b, "JOIN %s\r\n", O.room);
        out_put(c, b, (size_t)k);
        flush(c);
    } else if (tok_eq(cmd, cl, "366")) {
        /* 366 <me> <room> :End of /NAMES list. */
        while (p < e && *p != ' ') p++;
        while (p < e && *p == ' ') p++;
        const uint8_t *ch = p;
        while (p < e && *p != ' ') p++;
        if (tok_eq(ch, (size_t)(p - ch), O.room)) on_ready(c, now);
    } else if (tok_eq(cmd, cl, "PING")) {
        out_put(c, "PONG ", 5);
        out_put(c, p, (size_t)(e - p));
        out_put(c, "\r\n", 2);
        flush(c);
    } else if (tok_eq(cmd, cl, "433") || tok_eq(cmd, cl, "432") || tok_eq(cmd, cl, "ERROR") ||
               tok_eq(cmd, cl, "465") || tok_eq(cmd, cl, "471") || tok_eq(cmd, cl, "474")) {
        char b[200];
        size_t k = n < 150 ? n : 150;
        snprintf(b, sizeof b, "server said: %.*s", (int)k, (const char *)l);
        for (char *q = b; *q; q++)
            if ((unsigned char)*q < 32 || *q == '"' || *q == '\\') *q = '?';
        conn_close(c, b);
    } else if (tok_eq(cmd, cl, "NOTICE")) {
        G.notices++;
    } else {
        G.other++;
    }
}

static size_t irc_parse(conn *c, const uint8_t *b, size_t len, uint64_t now)
{
    size_t pos = 0;
    while (pos < len && c->st != CS_CLOSED) {
        const uint8_t *nl = memchr(b + pos, '\n', len - pos);
        if (!nl) break;
        size_t ll = (size_t)(nl - (b + pos));
        size_t n = ll && b[pos + ll - 1] == '\r' ? ll - 1 : ll;
        irc_line(c, b + pos, n, now);
        pos += ll + 1;
    }
    return pos;
}

/* feeds file bodies and frames; returns bytes consumed */
static size_t process(conn *c, const uint8_t *b, size_t len, uint64_t now)
{
    size_t pos = 0;
    while (pos < len && c->st != CS_CLOSED) {
        if (c->frem) {
            size_t take = c->frem < len - pos ? (size_t)c->frem : len - pos;
            if (O.verify != V_NONE && G.first_mismatch < 0) {
                int64_t bad = O.verify == V_FULL ? pat_check(b + pos, c->fpos, take)
                                                 : pat_check_sampled(b + pos, c->fpos, take, c->fsize);
                if (bad >= 0) {
                    G.mismatches++;
                    G.first_mismatch = bad;
                }
            }
            c->fpos += take;
            c->frem -= take;
            G.file_bytes += take;
            G.t_file_progress = now;
            pos += take;
            if (!c->frem) {
                c->t_fdone = now;
                G.files_done++;
            }
            continue;
        }
        size_t k = O.proto == P_CHATWIRE ? cw_parse(c, b + pos, len - pos, now) : irc_parse(c, b + pos, len - pos, now);
        pos += k;
        if (!c->fbegin) break;
        c->fbegin = 0;
    }
    return pos;
}

/* verify=sample: bytes of the body at fpos that may be discarded unread */
static uint64_t discardable(const conn *c)
{
    uint64_t pos = c->fpos, end = c->fsize;
    uint64_t tail0 = end > SAMPLE_TAIL ? end - SAMPLE_TAIL : 0;
    if (pos >= tail0) return 0;
    uint64_t in_stride = pos % SAMPLE_STRIDE;
    if (in_stride < SAMPLE_LEN) return 0;
    uint64_t next = pos - in_stride + SAMPLE_STRIDE;
    if (next > tail0) next = tail0;
    return next - pos;
}

static void conn_read(conn *c)
{
    uint8_t *b = G.rbuf;
    size_t have = c->tlen;
    if (c->frem && !have) {
        if (O.verify == V_SAMPLE) {
            uint64_t d = discardable(c);
            if (d) {
                size_t want = d < (64u << 20) ? (size_t)d : (64u << 20);
                ssize_t n = recv(c->fd, b, want, MSG_TRUNC | MSG_DONTWAIT);
                if (n > 0) {
                    uint64_t now = now_ns();
                    c->bytes_in += (uint64_t)n;
                    c->fpos += (uint64_t)n;
                    c->frem -= (uint64_t)n;
                    G.file_bytes += (uint64_t)n;
                    G.t_file_progress = now;
                    if (!c->frem) {
                        c->t_fdone = now;
                        G.files_done++;
                    }
                    return;
                }
                if (n == 0) conn_close(c, "server closed the connection");
                else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) conn_close(c, strerror(errno));
                return;
            }
        }
    }
    if (have) memcpy(b, c->tail, have);
    /* chat: reads that stay in L2 (the parser touches every byte once more); file bodies: big */
    size_t room = c->frem ? RBUF_SIZE : CHAT_READ;
    if (c->frem && !have && O.verify == V_SAMPLE && c->frem < room) room = (size_t)c->frem;
    ssize_t n = recv(c->fd, b + have, room, MSG_DONTWAIT);
    if (n <= 0) {
        if (n == 0) conn_close(c, "server closed the connection");
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) conn_close(c, strerror(errno));
        return;
    }
    uint64_t now = now_ns();
    uint64_t delivered0 = G.delivered;
    c->bytes_in += (uint64_t)n;
    if (!c->answered) {
        c->answered = 1;
        G.pending--;
    }
    size_t len = have + (size_t)n;
    size_t used = process(c, b, len, now);
    if (G.delivered != delivered0) {
        c->rx_msgs += G.delivered - delivered0;
        G.t_last_deliv = now;
    }
    c->tlen = 0;
    if (c->st == CS_CLOSED) return;
    size_t left = len - used;
    if (left > TAIL_MAX) {
        conn_close(c, "frame or line too long");
        return;
    }
    if (left) {
        if (left > c->tcap) {
            c->tcap = (uint32_t)(left < 256 ? 256 : left);
            free(c->tail);
            c->tail = malloc(c->tcap);
            if (!c->tail) {
                perror("malloc");
                exit(3);
            }
        }
        memcpy(c->tail, b + used, left);
        c->tlen = (uint32_t)left;
    }
}

/* ------------------------------------------------------------------ event loop */

static struct sockaddr_in server_addr;

static void conn_open(conn *c)
{
    c->t_start = now_ns();
    if (!G.t_first_connect) G.t_first_connect = c->t_start;
    G.opened++;
    G.pending++;
    c->st = CS_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        G.failed++;
        G.pending--;
        c->st = CS_CLOSED;
        set_err("socket: %s", strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->epout = 1;
    epoll_ctl(G.ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0 && errno != EINPROGRESS) {
        c->st = CS_LOGIN;
        conn_close(c, strerror(errno));
    }
}

static void on_event(conn *c, uint32_t ev)
{
    if (c->st == CS_CLOSED) return;
    if (c->st == CS_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        c->st = CS_LOGIN;
        if (err) {
            conn_close(c, strerror(err));
            return;
        }
        arm(c, 0);
        on_connected(c);
        flush(c);
        return;
    }
    if (ev & EPOLLOUT) flush(c);
    if (c->st != CS_CLOSED && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) conn_read(c);
}

static void poll_once(int timeout_ms)
{
    static struct epoll_event evs[1024];
    int n = epoll_wait(G.ep, evs, 1024, timeout_ms);
    for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
}

/* opens n clients with at most K not yet logged in; 0 when all are ready */
static int connect_all(int n, double timeout)
{
    uint64_t deadline = now_ns() + (uint64_t)(timeout * 1e9);
    int next = 0;
    while (G.ready + G.failed < n) {
        while (next < n && G.pending < O.K) conn_open(&G.c[next++]);
        if (now_ns() > deadline) {
            set_err("setup: %d of %d clients logged in after %.0f s", G.ready, n, timeout);
            return -1;
        }
        poll_once(5);
    }
    return G.failed ? -1 : 0;
}

/* keep reading until nothing arrives for `quiet` seconds (at most `max` seconds) */
static void settle(double quiet, double max)
{
    uint64_t t0 = now_ns(), last = t0;
    uint64_t before = 0;
    for (;;) {
        uint64_t sum = 0;
        for (int i = 0; i < G.n; i++) sum += G.c[i].bytes_in;
        uint64_t now = now_ns();
        if (sum != before) {
            before = sum;
            last = now;
        }
        if (secs(now - last) >= quiet || secs(now - t0) >= max) return;
        poll_once(10);
    }
}

static void close_all(void)
{
    for (int i = 0; i < G.n; i++) {
        conn *c = &G.c[i];
        if (c->st != CS_CLOSED && c->st != CS_IDLE) {
            struct linger lg = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(c->fd);
            c->st = CS_CLOSED;
        }
    }
}

static void json_str(char *out, size_t cap, const char *s)
{
    size_t j = 0;
    if (cap < 3) return;
    out[j++] = '"';
    for (; *s && j + 3 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[j++] = '\\';
            out[j++] = (char)ch;
        } else if (ch < 32) {
            out[j++] = '?';
        } else {
            out[j++] = (char)ch;
        }
    }
    out[j++] = '"';
    out[j] = 0;
}

static const char *proto_name(void) { return O.proto == P_CHATWIRE ? "chatwire" : "irc"; }

/* common JSON head */
static int json_head(char *out, size_t cap, const char *workload, int ok)
{
    char lab[256], err[600];
    json_str(lab, sizeof lab, O.label);
    json_str(err, sizeof err, G.err);
    return snprintf(out, cap,
                    "{\"tool\":\"chatwire-bench-loadgen\",\"workload\":\"%s\",\"proto\":\"%s\",\"label\":%s,"
                    "\"port\":%d,\"server_pid\":%d,\"ok\":%s,\"error\":%s",
                    workload, proto_name(), lab, O.port, O.server_pid, ok ? "true" : "false", err);
}

static void setup_clients(int n)
{
    G.n = n;
    G.c = calloc((size_t)n, sizeof *G.c);
    if (!G.c) {
        perror("calloc");
        exit(3);
    }
    for (int i = 0; i < n; i++) {
        G.c[i].idx = i;
        G.c[i].fd = -1;
        G.c[i].timed = i % O.lat_every == 0 || i == n - 1;
    }
}

static void setup_chat(int nsend, int base, int probe)
{
    G.nsend = nsend;
    G.sender_base = base;
    G.probe = probe;
    G.sent = calloc((size_t)nsend + 1, sizeof *G.sent);
    G.acked = calloc((size_t)nsend + 1, sizeof *G.acked);
    G.next_due = calloc((size_t)nsend + 1, sizeof *G.next_due);
    G.exp = calloc((size_t)G.n * (size_t)(nsend ? nsend : 1), sizeof *G.exp);
    if (!G.sent || !G.acked || !G.exp || !G.next_due) {
        perror("calloc");
        exit(3);
    }
    msg_prepare();
}

/* ------------------------------------------------------------------ workloads */

/* --stuck: after the run, read what the server still had for each stuck client and wait for the
   end of its stream: an end (or a reset) within `max` seconds means the server dropped it. A
   server that kept it leaves it open once its queue is read. Bytes are discarded unread. */
static int drain_stuck(int first, int k, double max, uint64_t *bytes)
{
    struct pollfd *pf = calloc((size_t)k, sizeof *pf);
    if (!pf) {
        perror("calloc");
        exit(3);
    }
    for (int i = 0; i < k; i++) pf[i] = (struct pollfd){.fd = G.c[first + i].fd, .events = POLLIN};
    int dropped = 0, open = k;
    uint64_t deadline = now_ns() + (uint64_t)(max * 1e9);
    while (open && now_ns() < deadline) {
        if (poll(pf, (nfds_t)k, 50) < 0 && errno != EINTR) break;
        for (int i = 0; i < k; i++) {
            if (pf[i].fd < 0 || !pf[i].revents) continue;
            ssize_t n;
            while ((n = recv(pf[i].fd, G.rbuf, 64u << 20, MSG_TRUNC | MSG_DONTWAIT)) > 0) *bytes += (uint64_t)n;
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                conn *c = &G.c[first + i];
                close(c->fd);
                c->fd = -1;
                c->st = CS_CLOSED;
                pf[i].fd = -1;
                dropped++;
                open--;
            }
        }
    }
    free(pf);
    return dropped;
}

static int run_fanout(void)
{
    if (O.S < 1 || O.S >= O.N) {
        fprintf(stderr, "fanout needs 1 <= S < N\n");
        return 2;
    }
    if (O.stuck < 0 || O.S + O.stuck > O.N - 1) {
        fprintf(stderr, "fanout needs 0 <= stuck <= N - 1 - S (senders, stuck clients and the probe are distinct)\n");
        return 2;
    }
    int stuck0 = O.N - 1 - O.stuck; /* clients stuck0 .. N-2 stop reading once logged in */
    int readers = O.N - 1 - O.stuck; /* who receives each message (not its sender, not the stuck) */
    setup_clients(O.N);
    setup_chat(O.S, 0, O.N - 1);
    uint64_t t_setup0 = now_ns();
    int rc = connect_all(O.N, O.setup_timeout);
    double setup_s = secs(now_ns() - t_setup0);
    if (rc == 0) settle(O.settle, 30);
    /* The stuck clients are never read again (until drain_stuck): the server must drop each one
       when its SendQ overflows, while everyone else is served in full. */
    for (int i = stuck0; rc == 0 && i < O.N - 1; i++) epoll_ctl(G.ep, EPOLL_CTL_DEL, G.c[i].fd, NULL);
    long rss0, rss1, hwm1;
    server_mem_kb(&rss0, NULL);
    cpu_snap a = snap();
    uint64_t t0 = a.t, t_stop = t0 + (uint64_t)(O.D * 1e9);
    G.t_last_deliv = t0;
    int sending = rc == 0;
    while (rc == 0) {
        uint64_t now = now_ns();
        if (sending && now >= t_stop) sending = 0;
        if (sending) {
            for (int s = 0; s < O.S; s++) {
                conn *c = &G.c[s];
                if (c->st != CS_READY) continue;
                uint64_t inflight = G.sent[s] - G.acked[s];
                if (inflight >= (uint64_t)O.W) continue;
                for (uint64_t k = inflight; k < (uint64_t)O.W; k++) send_msg(c, s, G.sent[s]++, now);
                flush(c);
            }
        } else {
            uint64_t exp = 0;
            for (int s = 0; s < O.S; s++) exp += G.sent[s];
            exp *= (uint64_t)readers;
            if (G.delivered >= exp) break;
            if (secs(now - G.t_last_deliv) > O.drain_quiet || secs(now - t_stop) > O.drain_max) break;
        }
        if (G.c[O.N - 1].st != CS_READY) {
            set_err("the probe client was disconnected");
            break;
        }
        poll_once(sending ? 1 : 10);
    }
    cpu_snap b = snap();
    server_mem_kb(&rss1, &hwm1);
    uint64_t sent = 0;
    for (int s = 0; s < O.S; s++) sent += G.sent[s];
    uint64_t expected = sent * (uint64_t)readers;
    uint64_t lost = expected > G.delivered ? expected - G.delivered : 0;
    double el = secs(G.t_last_deliv - t0);
    uint64_t stuck_bytes = 0;
    int stuck_dropped = rc == 0 && O.stuck ? drain_stuck(stuck0, O.stuck, 10, &stuck_bytes) : 0;
    int ok = rc == 0 && lost == 0 && G.ooo == 0 && G.bad == 0 && G.disconnects == 0 && sent > 0 &&
             stuck_dropped == O.stuck;
    static char j[8192];
    int k = json_head(j, sizeof j, "fanout", ok);
    k += snprintf(j + k, sizeof j - (size_t)k,
                  ",\"N\":%d,\"S\":%d,\"W\":%d,\"P\":%d,\"D_s\":%.2f,\"setup_s\":%.3f,\"sent\":%" PRIu64
                  ",\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"out_of_order\":%" PRIu64
                  ",\"bad_payload\":%" PRIu64 ",\"self_echo\":%" PRIu64 ",\"notices\":%" PRIu64
                  ",\"disconnects\":%d,\"elapsed_s\":%.4f,\"deliveries_per_s\":%.1f,\"sends_per_s\":%.1f,"
                  "\"stuck\":%d,\"stuck_dropped\":%d,\"stuck_drained_bytes\":%" PRIu64 ",",
                  O.N, O.S, O.W, O.P, O.D, setup_s, sent, expected, G.delivered, lost, G.ooo, G.bad, G.self_echo,
                  G.notices, G.disconnects, el, el > 0 ? (double)G.delivered / el : 0, el > 0 ? (double)sent / el : 0,
                  O.stuck, stuck_dropped, stuck_bytes);
    k += hist_json(j + k, sizeof j - (size_t)k, "lat", &G.lat);
    k += snprintf(j + k, sizeof j - (size_t)k, ",\"server_rss_before_kb\":%ld,\"server_rss_after_kb\":%ld,\"server_hwm_kb\":%ld,",
                  rss0, rss1, hwm1);
    k += cpu_json(j + k, sizeof j - (size_t)k, a, b);
    printf("%s}\n", j);
    char stuck_txt[96] = "";
    if (O.stuck)
        snprintf(stuck_txt, sizeof stuck_txt, "; stuck %d, dropped by the server %d (%.1f MB left for them)", O.stuck,
                 stuck_dropped, (double)stuck_bytes / 1e6);
    fprintf(stderr,
            "== fanout %s N=%d S=%d W=%d: %.0f deliveries/s, lost %" PRIu64 ", ooo %" PRIu64
            ", p50 %.2f ms p99 %.2f ms max %.2f ms; cpu server %.2f loadgen %.2f of %.2f s%s%s%s\n",
            proto_name(), O.N, O.S, O.W, el > 0 ? (double)G.delivered / el : 0, lost, G.ooo,
            (double)hist_pct(&G.lat, .5) / 1e6, (double)hist_pct(&G.lat, .99) / 1e6, (double)G.lat.max / 1e6,
            b.server - a.server, b.self - a.self, secs(b.t - a.t), stuck_txt, G.err[0] ? "; " : "", G.err);
    close_all();
    return ok ? 0 : 1;
}

static int run_connect(void)
{
    setup_clients(O.N);
    long rss0, hwm0, rss1, hwm1, rss2, hwm2;
    server_mem_kb(&rss0, &hwm0);
    cpu_snap a = snap();
    int rc = connect_all(O.N, O.setup_timeout);
    cpu_snap b = snap();
    server_mem_kb(&rss1, &hwm1);
    uint64_t t_end = now_ns() + (uint64_t)(O.hold * 1e9);
    while (now_ns() < t_end) poll_once(10);
    server_mem_kb(&rss2, &hwm2);
    double t_all = G.t_last_ready && G.t_first_connect ? secs(G.t_last_ready - G.t_first_connect) : -1;
    int ok = rc == 0 && G.disconnects == 0;
    static char j[4096];
    int k = json_head(j, sizeof j, "connect", ok);
    k += snprintf(j + k, sizeof j - (size_t)k,
                  ",\"C\":%d,\"K\":%d,\"ready\":%d,\"failed\":%d,\"disconnects_while_held\":%d,\"time_s\":%.4f,"
                  "\"logins_per_s\":%.1f,\"hold_s\":%.2f,\"server_rss_before_kb\":%ld,\"server_rss_ready_kb\":%ld,"
                  "\"server_rss_kb\":%ld,\"server_hwm_kb\":%ld,",
                  O.N, O.K, G.ready, G.failed, G.disconnects, t_all, t_all > 0 ? G.ready / t_all : 0, O.hold, rss0,
                  rss1, rss2, hwm2);
    k += hist_json(j + k, sizeof j - (size_t)k, "login", &G.ready_lat);
    k += snprintf(j + k, sizeof j - (size_t)k, ",");
    k += cpu_json(j + k, sizeof j - (size_t)k, a, b);
    printf("%s}\n", j);
    fprintf(stderr,
            "== connect %s C=%d: %d ready, %d failed in %.3f s; server RSS %.1f MB (HWM %.1f MB); cpu server %.2f "
            "loadgen %.2f%s%s\n",
            proto_name(), O.N, G.ready, G.failed, t_all, rss2 / 1024.0, hwm2 / 1024.0, b.server - a.server,
            b.self - a.self, G.err[0] ? "; " : "", G.err);
    close_all();
    return ok ? 0 : 1;
}

/* file (chat_senders == 0) and filechat */
static int run_file(int with_chat)
{
    int S = with_chat ? O.S : 0;
    if (O.proto != P_CHATWIRE) {
        fprintf(stderr, "file workloads need -p chatwire\n");
        return 2;
    }
    if (S >= O.R + 1 || O.R < 1) {
        fprintf(stderr, "filechat needs S <= R and R >= 1\n");
        return 2;
    }
    if (with_chat && O.rate <= 0) O.rate = 50;
    int n = O.R + 1;
    setup_clients(n);
    setup_chat(S, 1, -1);
    G.keep_receipts = 1;
    G.first_mismatch = -1;
    G.sbuf = malloc(SEND_CHUNK);
    if (!G.sbuf) {
        perror("malloc");
        return 3;
    }
    int rc = connect_all(n, O.setup_timeout);
    if (rc == 0) settle(O.settle, 30);
    long rss0, hwm0, rss1, hwm1, peak = 0;
    server_mem_kb(&rss0, &hwm0);
    cpu_snap a = snap();
    uint64_t t_chat0 = a.t;
    uint64_t t_file0 = with_chat ? t_chat0 + (uint64_t)(O.chat_before * 1e9) : t_chat0;
    uint64_t period = with_chat ? (uint64_t)(1e9 / O.rate) : 0;
    for (int s = 0; s < S; s++) G.next_due[s] = t_chat0 + period * (uint64_t)s / (uint64_t)S;
    int file_started = 0;
    uint64_t t_relay_end = 0, t_chat_stop = 0, t_last_sample = 0;
    const char *why = NULL;
    G.t_file_progress = t_file0;
    while (rc == 0) {
        uint64_t now = now_ns();
        if (!file_started && now >= t_file0) {
            conn *s = &G.c[0];
            uint8_t h[10];
            t_file0 = now;
            cw_header(h, "file %d", (int)strlen(FILE_NAME));
            out_put(s, h, 10);
            out_put(s, FILE_NAME, strlen(FILE_NAME));
            cw_header(h, "%" PRIu64, O.F);
            out_put(s, h, 10);
            s->fs_off = 0;
            s->fs_end = O.F;
            if (O.F == 0) s->t_fs_done = now;
            file_started = 1;
            G.t_file_progress = now;
            flush(s);
        }
        if (now - t_last_sample >= 20000000ull) {
            long r;
            server_mem_kb(&r, NULL);
            if (r > peak) peak = r;
            t_last_sample = now;
        }
        if (file_started && !t_relay_end && G.files_done >= O.R) {
            t_relay_end = 0;
            for (int i = 1; i < n; i++)
                if (G.c[i].t_fdone > t_relay_end) t_relay_end = G.c[i].t_fdone;
            t_chat_stop = t_relay_end + (uint64_t)(with_chat ? O.chat_after * 1e9 : 0);
        }
        int chatting = with_chat && (!t_chat_stop || now < t_chat_stop);
        if (chatting) {
            for (int s = 0; s < S; s++) {
                conn *c = &G.c[1 + s];
                if (c->st != CS_READY) continue;
                int any = 0;
                while (G.next_due[s] <= now) {
                    send_msg(c, s, G.sent[s]++, G.next_due[s]);
                    G.next_due[s] += period;
                    any = 1;
                }
                if (any) flush(c);
            }
        }
        if (t_chat_stop && now >= t_chat_stop) {
            uint64_t exp = 0;
            for (int s = 0; s < S; s++) exp += G.sent[s];
            exp *= (uint64_t)(n - 1);
            if (G.delivered >= exp || secs(now - t_chat_stop) > O.drain_quiet) break;
        }
        if (file_started && !t_relay_end) {
            if (secs(now - t_file0) > O.file_timeout) why = "file timeout";
            else if (now > G.t_file_progress && secs(now - G.t_file_progress) > O.stall) why = "file stalled";
            else if (G.c[0].st != CS_READY) why = "sender disconnected";
            if (!why)
                for (int i = 1; i < n; i++)
                    if (G.c[i].st != CS_READY) why = "receiver disconnected";
            if (why) {
                set_err("%s", why);
                break;
            }
        }
        int tmo = 10;
        if (chatting) {
            uint64_t due = UINT64_MAX;
            for (int s = 0; s < S; s++)
                if (G.next_due[s] < due) due = G.next_due[s];
            uint64_t t = now_ns();
            tmo = due <= t ? 0 : (int)((due - t + 999999) / 1000000);
            if (tmo > 10) tmo = 10;
        }
        poll_once(tmo);
    }
    cpu_snap b = snap();
    server_mem_kb(&rss1, &hwm1);
    if (rss1 > peak) peak = rss1;
    uint64_t t_relay0 = 0, t_first_done = 0;
    int done = 0;
    for (int i = 1; i < n; i++) {
        conn *c = &G.c[i];
        if (c->t_ffirst && (!t_relay0 || c->t_ffirst < t_relay0)) t_relay0 = c->t_ffirst;
        if (c->t_fdone && c->files) {
            done++;
            if (!t_first_done || c->t_fdone < t_first_done) t_first_done = c->t_fdone;
        }
    }
    double time_s = t_relay_end ? secs(t_relay_end - t_file0) : -1;
    double upload_s = G.c[0].t_fs_done ? secs(G.c[0].t_fs_done - t_file0) : -1;
    uint64_t sent = 0;
    for (int s = 0; s < S; s++) sent += G.sent[s];
    uint64_t expected = sent * (uint64_t)(n - 1);
    uint64_t lost = expected > G.delivered ? expected - G.delivered : 0;
    int ok = rc == 0 && !why && done == O.R && G.mismatches == 0 && G.unexpected_files == 0 && lost == 0 &&
             G.ooo == 0 && G.bad == 0 && G.disconnects == 0;
    static char j[16384];
    int k = json_head(j, sizeof j, with_chat ? "filechat" : "file", ok);
    static const char *vn[] = {"none", "sample", "full"};
    k += snprintf(j + k, sizeof j - (size_t)k,
                  ",\"F\":%" PRIu64 ",\"R\":%d,\"verify\":\"%s\",\"receivers_done\":%d,\"time_s\":%.4f,"
                  "\"upload_s\":%.4f,\"relay_start_s\":%.4f,\"first_done_s\":%.4f,\"aggregate_Bps\":%.1f,"
                  "\"verified_ok\":%s,\"mismatches\":%" PRIu64 ",\"first_mismatch_offset\":%" PRId64
                  ",\"unexpected_files\":%d,\"disconnects\":%d,\"server_rss_before_kb\":%ld,\"server_hwm_before_kb\":%ld,"
                  "\"server_rss_peak_sampled_kb\":%ld,\"server_hwm_kb\":%ld,\"server_rss_growth_kb\":%ld,",
                  O.F, O.R, vn[O.verify], done, time_s, upload_s, t_relay0 ? secs(t_relay0 - t_file0) : -1,
                  t_first_done ? secs(t_first_done - t_file0) : -1,
                  time_s > 0 ? (double)O.F * O.R / time_s : 0, G.mismatches == 0 && done == O.R ? "true" : "false",
                  G.mismatches, G.first_mismatch, G.unexpected_files, G.disconnects, rss0, hwm0, peak, hwm1,
                  (hwm1 > peak ? hwm1 : peak) - rss0);
    if (with_chat) {
        /* chat latency by the phase its (scheduled) send time falls in: before the file, while
           the sender uploads (until its last byte is written), while the server relays (until
           the last receiver has the file), after */
        uint64_t t_up = G.c[0].t_fs_done ? G.c[0].t_fs_done : t_relay0;
        static hist ph[4], excess;
        static const char *pn[] = {"chat_before", "chat_upload", "chat_relay", "chat_after"};
        for (size_t i = 0; i < G.nrc; i++) {
            receipt *r = &G.rc[i];
            int p;
            if (r->ts < t_file0) p = 0;
            else if (!t_up || r->ts < t_up) p = 1;
            else if (!t_relay_end || r->ts <= t_relay_end) p = 2;
            else p = 3;
            hist_add(&ph[p], r->lat);
            if (p == 2) {
                /* beyond the receiver's own file: time after max(send, own file done) */
                uint64_t recv = r->ts + r->lat, own = G.c[r->rcv].t_fdone;
                uint64_t from = recv >= own && own > r->ts ? own : r->ts;
                hist_add(&excess, recv > from ? recv - from : 0);
            }
        }
        k += snprintf(j + k, sizeof j - (size_t)k,
                      "\"S\":%d,\"rate_per_sender\":%.1f,\"P\":%d,\"chat_sent\":%" PRIu64 ",\"chat_expected\":%" PRIu64
                      ",\"chat_delivered\":%" PRIu64 ",\"chat_lost\":%" PRIu64 ",\"chat_out_of_order\":%" PRIu64 ",",
                      S, O.rate, O.P, sent, expected, G.delivered, lost, G.ooo);
        for (int p = 0; p < 4; p++) {
            k += hist_json(j + k, sizeof j - (size_t)k, pn[p], &ph[p]);
            k += snprintf(j + k, sizeof j - (size_t)k, ",");
        }
        k += hist_json(j + k, sizeof j - (size_t)k, "chat_relay_beyond_own_file", &excess);
        k += snprintf(j + k, sizeof j - (size_t)k, ",");
        fprintf(stderr,
                "== filechat F=%" PRIu64 " R=%d S=%d: relay %.2f s; chat p99 ms before %.1f upload %.1f relay %.1f "
                "after %.1f (beyond own file %.1f); lost %" PRIu64 "\n",
                O.F, O.R, S, time_s, hist_pct(&ph[0], .99) / 1e6, hist_pct(&ph[1], .99) / 1e6,
                hist_pct(&ph[2], .99) / 1e6, hist_pct(&ph[3], .99) / 1e6, hist_pct(&excess, .99) / 1e6, lost);
    }
    k += cpu_json(j + k, sizeof j - (size_t)k, a, b);
    printf("%s}\n", j);
    fprintf(stderr,
            "== file F=%" PRIu64 " R=%d: %.3f s (upload %.3f s), %.2f GB/s aggregate, verify %s %s, server RSS %.1f MB "
            "+%.1f MiB; cpu server %.2f loadgen %.2f of %.2f s%s%s\n",
            O.F, O.R, time_s, upload_s, time_s > 0 ? (double)O.F * O.R / time_s / 1e9 : 0, vn[O.verify],
            G.mismatches ? "FAILED" : "ok", rss0 / 1024.0, ((hwm1 > peak ? hwm1 : peak) - rss0) / 1024.0,
            b.server - a.server, b.self - a.self, secs(b.t - a.t), G.err[0] ? "; " : "", G.err);
    close_all();
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------ loopback streams (tcp, relay) */

/* --cc: the congestion control of every socket of the tcp and relay workloads */
static void set_cc(int fd)
{
    if (O.cc && setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, O.cc, (socklen_t)strlen(O.cc)) < 0) {
        perror("TCP_CONGESTION");
        _exit(3);
    }
}

/* waits for a forked child; its CPU seconds, or -1 */
static double child_cpu_s(pid_t pid)
{
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return -1;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* a listener on 127.0.0.1, any port; its address in *a; -1 on failure */
static int loopback_listen(struct sockaddr_in *a, int backlog)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof *a;
    if (ls < 0 || bind(ls, (struct sockaddr *)a, sizeof *a) < 0 || listen(ls, backlog) < 0 ||
        getsockname(ls, (struct sockaddr *)a, &al) < 0)
        return -1;
    return ls;
}

/* a forked writer: connects to a, waits for a byte on go_fd (if >= 0), sends `bytes` from one
   1 MiB pattern buffer with blocking sends, exits; returns its pid in the parent */
static pid_t fork_writer(const struct sockaddr_in *a, uint64_t bytes, int go_fd)
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    uint8_t *buf = malloc(RBUF_SIZE), g;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (!buf || s < 0) _exit(3);
    set_cc(s);
    if (connect(s, (const struct sockaddr *)a, sizeof *a) < 0) _exit(3);
    pat_fill(buf, 0, RBUF_SIZE);
    if (go_fd >= 0 && read(go_fd, &g, 1) != 1) _exit(3);
    for (uint64_t left = bytes; left;) {
        ssize_t n = send(s, buf, left < RBUF_SIZE ? (size_t)left : RBUF_SIZE, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            _exit(1);
        }
        left -= (uint64_t)n;
    }
    close(s);
    _exit(0);
}

/* one loopback TCP stream: a forked writer, this process reads (1 MiB recv, like the receivers) */
static int run_tcp(void)
{
    struct sockaddr_in a;
    int ls = loopback_listen(&a, 1);
    uint8_t *buf = malloc(RBUF_SIZE);
    if (ls < 0 || !buf) {
        perror("tcp listen");
        return 3;
    }
    pid_t pid = fork_writer(&a, O.tcp_bytes, -1);
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) {
        perror("accept");
        return 3;
    }
    set_cc(fd);
    double c0 = self_cpu_s();
    uint64_t t0 = now_ns(), got = 0;
    while (got < O.tcp_bytes) {
        ssize_t n = recv(fd, buf, RBUF_SIZE, 0);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            break;
        }
        got += (uint64_t)n;
    }
    uint64_t t1 = now_ns();
    double c1 = self_cpu_s();
    double wcpu = child_cpu_s(pid);
    close(fd);
    close(ls);
    double el = secs(t1 - t0);
    int ok = got == O.tcp_bytes;
    printf("{\"tool\":\"chatwire-bench-loadgen\",\"workload\":\"tcp\",\"ok\":%s,\"bytes\":%" PRIu64
           ",\"time_s\":%.4f,\"bytes_per_s\":%.1f,\"reader_cpu_s\":%.3f,\"writer_cpu_s\":%.3f,\"cores\":%ld}\n",
           ok ? "true" : "false", got, el, el > 0 ? (double)got / el : 0, c1 - c0, wcpu,
           sysconf(_SC_NPROCESSORS_ONLN));
    fprintf(stderr, "== tcp: %.2f GB/s over %.2f GiB (reader cpu %.2f s, writer %.2f s)\n",
            el > 0 ? (double)got / el / 1e9 : 0, (double)got / (1 << 30), c1 - c0, wcpu);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------ the bare relay (-w relay) */

/* What one thread with no protocol at all achieves on this machine for issue 7's file relay,
   the way nullfan of ../shared/perf marks the fan-out ceiling: a forked writer streams F bytes to
   this process, which splices them into a spool file (socket -> pipe -> file, the space reserved
   first on ext4/XFS/Btrfs, as chatserver does), then sends the spool with sendfile to R sockets
   (non-blocking, corked, at most 1 MiB per socket per epoll pass, as chatserver does) whose other
   ends a second forked process reads with one thread and epoll, the way the file workload's
   receivers read (--verify sample: discarded in the kernel; otherwise into a 1 MiB buffer).
   Time: the writer's first byte to the last receiver's last byte, as for the file workload. */

/* the receivers: R connections, read until each has F bytes, then report the time on `out` */
static void relay_receivers(const struct sockaddr_in *a, int out)
{
    int ep = epoll_create1(0), fds[O.R];
    uint64_t got[O.R];
    uint8_t *buf = malloc(RBUF_SIZE);
    if (ep < 0 || !buf) _exit(3);
    for (int i = 0; i < O.R; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        got[i] = 0;
        if (fds[i] < 0) _exit(3);
        set_cc(fds[i]);
        if (connect(fds[i], (const struct sockaddr *)a, sizeof *a) < 0) _exit(3);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) _exit(3);
    }
    int left = O.R;
    while (left) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 30000);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            _exit(4); /* 30 s without a byte */
        }
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            uint64_t want = O.F - got[i];
            ssize_t m = O.verify == V_SAMPLE
                            ? recv(fds[i], buf, want < (64u << 20) ? (size_t)want : (64u << 20), MSG_TRUNC | MSG_DONTWAIT)
                            : recv(fds[i], buf, want < RBUF_SIZE ? (size_t)want : RBUF_SIZE, MSG_DONTWAIT);
            if (m <= 0) {
                if (m < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                _exit(5);
            }
            got[i] += (uint64_t)m;
            if (got[i] == O.F) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
                left--;
            }
        }
    }
    uint64_t t = now_ns();
    if (write(out, &t, sizeof t) != sizeof t) _exit(3);
    _exit(0);
}

static int spool_reserves(int fd)
{
    struct statfs st;
    if (fstatfs(fd, &st) < 0) return 0;
    unsigned long t = (unsigned long)st.f_type; /* ext4, XFS, Btrfs: chatserver/files.py */
    return t == 0xEF53UL || t == 0x58465342UL || t == 0x9123683EUL;
}

static int run_relay(void)
{
    if (O.R < 1 || O.F == 0) {
        fprintf(stderr, "relay: need -R >= 1 and -F > 0\n");
        return 2;
    }
    struct sockaddr_in a;
    int ls = loopback_listen(&a, O.R + 1), go[2], done[2], pipefd[2];
    if (ls < 0 || pipe(go) < 0 || pipe(done) < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
        perror("relay setup");
        return 3;
    }
    int pcap = fcntl(pipefd[1], F_SETPIPE_SZ, 1 << 20);
    if (pcap < 0) pcap = 1 << 16;
    pid_t writer = fork_writer(&a, O.F, go[0]); /* starts at the go byte: the clock starts then */
    int up = accept(ls, NULL, NULL);
    pid_t readers = fork();
    if (readers == 0) relay_receivers(&a, done[1]);
    int out[O.R];
    uint64_t off[O.R];
    for (int i = 0; i < O.R; i++) {
        out[i] = accept(ls, NULL, NULL);
        off[i] = 0;
        if (out[i] < 0) {
            perror("accept");
            return 3;
        }
        int one = 1;
        setsockopt(out[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        set_cc(out[i]);
        fcntl(out[i], F_SETFL, O_NONBLOCK);
    }
    if (up < 0) {
        perror("accept");
        return 3;
    }
    set_cc(up);
    char cc[32] = "";
    socklen_t ccl = sizeof cc - 1;
    getsockopt(up, IPPROTO_TCP, TCP_CONGESTION, cc, &ccl);
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/loadgen-relay-XXXXXX", O.spool_dir);
    int spool = mkstemp(tmpl);
    if (spool < 0) {
        perror("spool");
        return 3;
    }
    unlink(tmpl);
    int reserved = spool_reserves(spool) && posix_fallocate(spool, 0, (off_t)O.F) == 0;
    cpu_snap c0 = snap();
    uint64_t t0 = now_ns();
    if (write(go[1], "g", 1) != 1) return 3;
    /* upload: socket -> pipe -> spool, blocking (one connection: nothing else to serve) */
    for (loff_t pos = 0; (uint64_t)pos < O.F;) {
        size_t want = O.F - (uint64_t)pos < (uint64_t)pcap ? (size_t)(O.F - (uint64_t)pos) : (size_t)pcap;
        ssize_t n = splice(up, NULL, pipefd[1], NULL, want, SPLICE_F_MOVE);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            perror("relay upload");
            return 3;
        }
        for (ssize_t moved = 0; moved < n;) {
            ssize_t m = splice(pipefd[0], NULL, spool, &pos, (size_t)(n - moved), SPLICE_F_MOVE);
            if (m <= 0) {
                perror("relay spool");
                return 3;
            }
            moved += m;
        }
    }
    uint64_t t_up = now_ns();
    /* relay: every writable socket gets at most 1 MiB per pass, corked for the whole file */
    int ep = epoll_create1(EPOLL_CLOEXEC), left = O.R;
    for (int i = 0; i < O.R; i++) {
        int one = 1;
        setsockopt(out[i], IPPROTO_TCP, TCP_CORK, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, out[i], &ev);
    }
    while (left) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 30000);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            fprintf(stderr, "relay: 30 s without progress\n");
            return 3;
        }
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            uint64_t want = O.F - off[i];
            off_t o = (off_t)off[i];
            ssize_t m = sendfile(out[i], spool, &o, want < (1u << 20) ? (size_t)want : (1u << 20));
            if (m < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                perror("relay sendfile");
                return 3;
            }
            off[i] = (uint64_t)o;
            if (off[i] == O.F) {
                int zero = 0;
                setsockopt(out[i], IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
                epoll_ctl(ep, EPOLL_CTL_DEL, out[i], NULL);
                left--;
            }
        }
    }
    uint64_t t_end = 0;
    int ok = read(done[0], &t_end, sizeof t_end) == sizeof t_end;
    uint64_t t_sent = now_ns();
    cpu_snap c1 = snap();
    if (!ok || t_end < t_up) t_end = t_sent;
    double wcpu = child_cpu_s(writer), rcpu = child_cpu_s(readers);
    double el = secs(t_end - t0), up_s = secs(t_up - t0);
    double relay_cpu = c1.self - c0.self;
    printf("{\"tool\":\"chatwire-bench-loadgen\",\"workload\":\"relay\",\"ok\":%s,\"F\":%" PRIu64
           ",\"R\":%d,\"verify\":\"%s\",\"verified_ok\":%s,\"cc\":\"%s\",\"spool_reserved\":%s,\"time_s\":%.4f,"
           "\"upload_s\":%.4f,\"relay_start_s\":%.4f,\"aggregate_Bps\":%.1f,\"relay_cpu_s\":%.3f,"
           "\"relay_cpu_util\":%.3f,\"writer_cpu_s\":%.3f,\"readers_cpu_s\":%.3f,\"readers_cpu_util\":%.3f,"
           "\"cores\":%ld}\n",
           ok ? "true" : "false", O.F, O.R, O.verify == V_SAMPLE ? "count, discarded" : "count",
           ok ? "true" : "false", cc, reserved ? "true" : "false", el, up_s, up_s,
           el > 0 ? (double)O.F * O.R / el : 0, relay_cpu, el > 0 ? relay_cpu / el : 0, wcpu, rcpu,
           el > 0 ? rcpu / el : 0, sysconf(_SC_NPROCESSORS_ONLN));
    fprintf(stderr,
            "== bare relay F=%" PRIu64 " R=%d (%s): %.3f s (upload %.3f s), %.2f GB/s aggregate; cpu relay %.2f "
            "writer %.2f readers %.2f s\n",
            O.F, O.R, cc, el, up_s, el > 0 ? (double)O.F * O.R / el / 1e9 : 0, relay_cpu, wcpu, rcpu);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------ self test, options, main */

static int selftest(void)
{
    uint8_t b[16];
    int ok = 1, bad = 0;
    for (uint64_t v = 0; v < 5000000; v += 7919) {
        uint64_t x = v * 0x9E3779B97F4A7C15ull;
        put_hex(b, x, 16);
        if (hex16(b, &ok) != x) bad++;
    }
    memcpy(b, "0000000g", 8);
    ok = 1;
    hex8(b, &ok);
    if (ok) bad++;
    memcpy(b, "0000:000", 8);
    ok = 1;
    hex8(b, &ok);
    if (ok) bad++;
    memcpy(b, "0000`000", 8);
    ok = 1;
    hex8(b, &ok);
    if (ok) bad++;
    memcpy(b, "ffffffff", 8);
    ok = 1;
    if (hex8(b, &ok) != 0xffffffffu || !ok) bad++;
    static uint8_t p[100003];
    pat_fill(p, 5, sizeof p);
    if (pat_check(p + 3, 8, 1000) != -1) bad++;
    if (pat_check(p, 5, sizeof p) != -1) bad++;
    if (pat_check(p + 1, 5, 1000) == -1) bad++;
    {
        /* verify=sample: a window across a stride boundary of a body whose last MiB it also
           holds; the sampled bytes are the pattern, the others are not checked */
        uint64_t fsize = 2 * SAMPLE_STRIDE, off = SAMPLE_STRIDE - (1u << 20);
        size_t len = (size_t)(fsize - off);
        uint8_t *w = malloc(len);
        memset(w, 0xA5, len);
        pat_fill_sampled(w, off, len, fsize);
        if (pat_check_sampled(w, off, len, fsize) != -1) bad++;
        if (pat_check(w, off, len) == -1) bad++;              /* the rest was not filled */
        w[(1u << 20) + 7] ^= 1;                                 /* inside the stride's sample */
        if (pat_check_sampled(w, off, len, fsize) != (int64_t)SAMPLE_STRIDE + 7) bad++;
        w[(1u << 20) + 7] ^= 1;
        w[(1u << 20) + SAMPLE_LEN + 5] ^= 1;                    /* past it: not checked */
        if (pat_check_sampled(w, off, len, fsize) != -1) bad++;
        w[len - 3] ^= 1;                                        /* in the last MiB */
        if (pat_check_sampled(w, off, len, fsize) != (int64_t)(fsize - 3)) bad++;
        free(w);
    }
    hist h = {0};
    for (uint64_t i = 1; i <= 1000000; i++) hist_add(&h, i * 1000);
    double p50 = (double)hist_pct(&h, .5), p99 = (double)hist_pct(&h, .99);
    if (p50 < 490e6 || p50 > 510e6 || p99 < 975e6 || p99 > 1005e6) bad++;
    printf("selftest: %s (p50 %.0f p99 %.0f)\n", bad ? "FAILED" : "ok", p50, p99);
    return bad ? 1 : 0;
}

static uint64_t parse_size(const char *s)
{
    char *e;
    double v = strtod(s, &e);
    switch (*e) {
    case 'k': case 'K': v *= 1024; break;
    case 'm': case 'M': v *= 1024 * 1024; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
    default: break;
    }
    return (uint64_t)v;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen -w WORKLOAD [options]\n"
            "  -w fanout|connect|file|filechat|tcp|relay\n"
            "  -p chatwire|irc      protocol (file workloads: chatwire only)\n"
            "  -P port              server on 127.0.0.1:port\n"
            "  --server-pid PID     read the server's CPU (/proc/PID/stat) and RSS (/proc/PID/status)\n"
            "  --label TEXT         copied into the JSON\n"
            "  -N n                 fanout: clients in the room; connect: clients (C)\n"
            "  -S s                 fanout: senders (clients 0..S-1; client N-1 is the probe);\n"
            "                       filechat: chatters (clients 1..S)\n"
            "  -W w                 fanout: messages in flight per sender (not yet at the probe)\n"
            "  -s P                 payload bytes (>= %d), default 100\n"
            "  -D sec               fanout: sending time, default 10\n"
            "  -K k                 connections the server has not answered yet, at most (default 10);\n"
            "                       chatwire: until ACC/NE; irc: until the first line (CAP LS reply)\n"
            "  -F size              file: bytes (K/M/G suffix), default 256M\n"
            "  -R r                 file: receivers (client 0 sends), default 1\n"
            "  --rate r             filechat: messages/s per chatter, open loop (default 50)\n"
            "  --stuck k            fanout: k clients (the last before the probe) stop reading once logged\n"
            "                       in; the server must drop them (at the end each is read until its\n"
            "                       stream ends, 10 s at most); everyone else must get everything\n"
            "  --lat-every k        fanout: latency at every k-th receiver and the probe (default 1:\n"
            "                       all); order and count are checked at every receiver regardless\n"
            "  --verify full|sample|none   file bodies: check every byte, or %llu KiB every %llu MiB\n"
            "                       plus the last MiB (the rest discarded in the kernel), or none\n"
            "  --room NAME          IRC channel, default #bench\n"
            "  --prefix TEXT        nick prefix, default lg\n"
            "  --setup-timeout s    (120)  --hold s connect (1)  --settle s (0.3)\n"
            "  --drain-quiet s (3)  --drain-max s (30)  --file-timeout s (300)  --stall s (30)\n"
            "  --chat-before s (2)  --chat-after s (2)  --tcp-bytes size (2G)\n"
            "  relay: no server; -F, -R, --verify as for file, --spool-dir DIR (/tmp)\n"
            "  --cc NAME            tcp, relay: TCP_CONGESTION of every socket (default: the system's)\n"
            "  --selftest\n",
            PAYLOAD_MIN, SAMPLE_LEN >> 10, SAMPLE_STRIDE >> 20);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (i++, 1))
        if (!strcmp(a, "--selftest")) return selftest();
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else if (ARG("-w")) {
            if (!strcmp(v, "fanout")) O.workload = W_FANOUT;
            else if (!strcmp(v, "connect")) O.workload = W_CONNECT;
            else if (!strcmp(v, "file")) O.workload = W_FILE;
            else if (!strcmp(v, "filechat")) O.workload = W_FILECHAT;
            else if (!strcmp(v, "tcp")) O.workload = W_TCP;
            else if (!strcmp(v, "relay")) O.workload = W_RELAY;
            else {
                fprintf(stderr, "unknown workload %s\n", v);
                return 2;
            }
        } else if (ARG("-p")) {
            if (!strcmp(v, "chatwire")) O.proto = P_CHATWIRE;
            else if (!strcmp(v, "irc")) O.proto = P_IRC;
            else {
                fprintf(stderr, "unknown protocol %s\n", v);
                return 2;
            }
        } else if (ARG("-P")) O.port = atoi(v);
        else if (ARG("--server-pid")) O.server_pid = atoi(v);
        else if (ARG("--label")) O.label = v;
        else if (ARG("-N")) O.N = atoi(v);
        else if (ARG("-S")) O.S = atoi(v);
        else if (ARG("-W")) O.W = atoi(v);
        else if (ARG("-s")) O.P = atoi(v);
        else if (ARG("-D")) O.D = atof(v);
        else if (ARG("-K")) O.K = atoi(v);
        else if (ARG("-F")) O.F = parse_size(v);
        else if (ARG("-R")) O.R = atoi(v);
        else if (ARG("--rate")) O.rate = atof(v);
        else if (ARG("--stuck")) O.stuck = atoi(v);
        else if (ARG("--lat-every")) O.lat_every = atoi(v) > 0 ? atoi(v) : 1;
        else if (ARG("--verify")) O.verify = !strcmp(v, "full") ? V_FULL : !strcmp(v, "sample") ? V_SAMPLE : V_NONE;
        else if (ARG("--room")) O.room = v;
        else if (ARG("--prefix")) O.prefix = v;
        else if (ARG("--setup-timeout")) O.setup_timeout = atof(v);
        else if (ARG("--hold")) O.hold = atof(v);
        else if (ARG("--settle")) O.settle = atof(v);
        else if (ARG("--drain-quiet")) O.drain_quiet = atof(v);
        else if (ARG("--drain-max")) O.drain_max = atof(v);
        else if (ARG("--file-timeout")) O.file_timeout = atof(v);
        else if (ARG("--stall")) O.stall = atof(v);
        else if (ARG("--chat-before")) O.chat_before = atof(v);
        else if (ARG("--chat-after")) O.chat_after = atof(v);
        else if (ARG("--tcp-bytes")) O.tcp_bytes = parse_size(v);
        else if (ARG("--spool-dir")) O.spool_dir = v;
        else if (ARG("--cc")) O.cc = v;
        else {
            fprintf(stderr, "unknown or incomplete option %s\n", a);
            usage();
            return 2;
        }
#undef ARG
    }
    if (O.P < PAYLOAD_MIN || O.P > 9999) {
        fprintf(stderr, "payload size must be %d..9999\n", PAYLOAD_MIN);
        return 2;
    }
    if (O.K < 1) O.K = 1;
    char longest[64];
    int clients = O.workload == W_FILE || O.workload == W_FILECHAT ? O.R + 1 : O.N;
    if (O.proto == P_CHATWIRE && snprintf(longest, sizeof longest, "%s%d", O.prefix, clients - 1) > 9) {
        fprintf(stderr, "nick %s is longer than chatwire's 9 bytes: use a shorter --prefix\n", longest);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (O.workload == W_TCP) return run_tcp();
    if (O.workload == W_RELAY) return run_relay();
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)O.port);
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    G.rbuf = malloc(RBUF_SIZE + TAIL_MAX);
    G.first_mismatch = -1;
    if (G.ep < 0 || !G.rbuf) {
        perror("setup");
        return 3;
    }
    switch (O.workload) {
    case W_FANOUT: return run_fanout();
    case W_CONNECT: return run_connect();
    case W_FILE: return run_file(0);
    default: return run_file(1);
    }
}
