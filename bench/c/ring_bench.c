/*
 * ring_bench: throughput and latency of the frame-engine ring between
 * processes.  Not a test: it prints one line of JSON per case.
 *
 *   items8     1 producer process -> 1 ordered consumer process, 8-byte
 *              items, claim/take batches of 1, 8 and 64
 *   frame1080p the same with 1080p BGR frames (6,220,800 bytes): the
 *              producer memcpy()s each frame in, the consumer memcpy()s it out
 *   pingpong   round trip of one 8-byte item over two rings (one each way),
 *              p50 / p99 / max, with the default spin and with spin 0
 *
 *   ring_bench [--quick] [--items N] [--frames N] [--pings N]
 *
 * Each case forks its worker processes, which open the ring by name; the
 * parent unlinks it once they have, so nothing stays in /dev/shm.  The
 * consumers check the payloads: a case that saw a wrong item says "ok": false
 * and the exit status is 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

#define FRAME_BYTES 6220800u /* 1920 x 1080 x 3 */
#define WAIT_NS 10000000000LL /* no single wait in a healthy run takes 10 s */

/* ---- helpers ------------------------------------------------------------ */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "ring_bench: %s: %s\n", what, rc ? fe_strerror(rc) : strerror(errno));
    exit(1);
}

/* Names of rings this process created, unlinked at exit on every path. */
static char g_names[8][FE_NAME_MAX];
static int g_nnames;
static pid_t g_main_pid;

static void unlink_all(void)
{
    if (getpid() != g_main_pid)
        return;
    for (int i = 0; i < g_nnames; i++)
        fe_unlink(g_names[i]);
    g_nnames = 0;
}

static void on_signal(int sig)
{
    unlink_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

static fe_ring *create_ring(uint32_t slots, uint64_t slot_bytes)
{
    fe_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.slots = slots;
    cfg.slot_bytes = slot_bytes;
    cfg.nstages = 1;
    cfg.kinds[0] = FE_ORDERED;
    cfg.lookback = 0;
    fe_ring *r = NULL;
    int rc = fe_create(NULL, &cfg, &r);
    if (rc)
        die("fe_create", rc);
    if (g_nnames < 8)
        snprintf(g_names[g_nnames++], FE_NAME_MAX, "%s", fe_name(r));
    return r;
}

static fe_ring *open_ring(const char *name)
{
    fe_ring *r = NULL;
    int rc = fe_open(name, &r);
    if (rc) {
        fprintf(stderr, "ring_bench: fe_open %s: %s\n", name, fe_strerror(rc));
        _exit(1);
    }
    return r;
}

/* Shared between the parent and the workers of one case. */
struct shared {
    pthread_barrier_t ready; /* workers have opened their rings */
    pthread_barrier_t go;
    _Atomic int64_t t_start, t_end;
    atomic_int errors;
    uint64_t rtt[]; /* ping-pong round trips, ns */
};

static struct shared *shared_new(size_t rtt_count, unsigned parties, size_t *bytes)
{
    *bytes = sizeof(struct shared) + rtt_count * sizeof(uint64_t);
    struct shared *sh = mmap(NULL, *bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("mmap", 0);
    pthread_barrierattr_t a;
    pthread_barrierattr_init(&a);
    pthread_barrierattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_barrier_init(&sh->ready, &a, parties);
    pthread_barrier_init(&sh->go, &a, parties);
    pthread_barrierattr_destroy(&a);
    return sh;
}

static void shared_free(struct shared *sh, size_t bytes)
{
    pthread_barrier_destroy(&sh->ready);
    pthread_barrier_destroy(&sh->go);
    munmap(sh, bytes);
}

static pid_t spawn(void (*fn)(struct shared *, void *), struct shared *sh, void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", 0);
    if (pid == 0) {
        fn(sh, arg);
        _exit(atomic_load(&sh->errors) ? 1 : 0);
    }
    return pid;
}

static int reap(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void fail(struct shared *sh, fe_ring *r, const char *what, int rc)
{
    fprintf(stderr, "ring_bench: %s: %s\n", what, fe_strerror(rc));
    atomic_fetch_add(&sh->errors, 1);
    fe_abort(r); /* the other side stops waiting */
}

/* ---- throughput --------------------------------------------------------- */

struct stream {
    char name[FE_NAME_MAX];
    uint64_t items;
    uint32_t batch;
    uint64_t item_bytes; /* 8, or FRAME_BYTES: memcpy in and out */
};

static void stream_producer(struct shared *sh, void *arg)
{
    struct stream *c = arg;
    fe_ring *r = open_ring(c->name);
    uint8_t *src = NULL;
    if (c->item_bytes > 8) {
        src = malloc(c->item_bytes);
        for (uint64_t i = 0; i < c->item_bytes; i++)
            src[i] = (uint8_t)(i * 7);
    }
    const uint64_t stride = fe_stride(r);
    pthread_barrier_wait(&sh->ready);
    pthread_barrier_wait(&sh->go);
    atomic_store(&sh->t_start, now_ns());
    for (uint64_t next = 0; next < c->items;) {
        uint32_t n = c->batch;
        if (n > c->items - next)
            n = (uint32_t)(c->items - next);
        uint64_t seq;
        int rc = fe_claim(r, n, WAIT_NS, &seq);
        if (rc) {
            fail(sh, r, "fe_claim", rc);
            break;
        }
        uint8_t *base = fe_slot(r, seq);
        for (uint32_t i = 0; i < n; i++) {
            uint8_t *p = base + i * stride;
            if (src)
                memcpy(p, src, c->item_bytes);
            uint64_t s = seq + i;
            memcpy(p, &s, 8);
        }
        rc = fe_publish(r, seq, n);
        if (rc) {
            fail(sh, r, "fe_publish", rc);
            break;
        }
        next += n;
    }
    fe_end(r);
    free(src);
    fe_close(r);
}

static void stream_consumer(struct shared *sh, void *arg)
{
    struct stream *c = arg;
    fe_ring *r = open_ring(c->name);
    uint8_t *dst = c->item_bytes > 8 ? malloc(c->item_bytes) : NULL;
    const uint64_t stride = fe_stride(r);
    uint64_t expect = 0;
    pthread_barrier_wait(&sh->ready);
    pthread_barrier_wait(&sh->go);
    for (;;) {
        uint64_t seq;
        uint32_t n;
        int rc = fe_take(r, 1, c->batch, WAIT_NS, &seq, &n);
        if (rc == FE_EOF)
            break;
        if (rc) {
            fail(sh, r, "fe_take", rc);
            break;
        }
        const uint8_t *base = fe_slot(r, seq);
        for (uint32_t i = 0; i < n; i++) {
            const uint8_t *p = base + i * stride;
            uint64_t v;
            if (dst) {
                memcpy(dst, p, c->item_bytes);
                memcpy(&v, dst, 8);
            } else {
                memcpy(&v, p, 8);
            }
            if (v != seq + i || seq + i != expect + i) {
                fprintf(stderr, "ring_bench: item %" PRIu64 " holds %" PRIu64 "\n", seq + i, v);
                atomic_fetch_add(&sh->errors, 1);
            }
        }
        expect = seq + n;
        rc = fe_done(r, 1, seq, n);
        if (rc) {
            fail(sh, r, "fe_done", rc);
            break;
        }
    }
    atomic_store(&sh->t_end, now_ns());
    if (expect != c->items) {
        fprintf(stderr, "ring_bench: consumer saw %" PRIu64 " of %" PRIu64 " items\n", expect,
                c->items);
        atomic_fetch_add(&sh->errors, 1);
    }
    free(dst);
    fe_close(r);
}

static int run_stream(const char *label, uint32_t slots, uint64_t item_bytes, uint64_t items,
                      uint32_t batch)
{
    fe_ring *r = create_ring(slots, item_bytes);
    struct stream c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s", fe_name(r));
    c.items = items;
    c.batch = batch;
    c.item_bytes = item_bytes;
    size_t bytes;
    struct shared *sh = shared_new(0, 3, &bytes);
    pid_t cons = spawn(stream_consumer, sh, &c);
    pid_t prod = spawn(stream_producer, sh, &c);
    pthread_barrier_wait(&sh->ready);
    unlink_all(); /* both workers have mapped it */
    pthread_barrier_wait(&sh->go);
    int ok = reap(prod);
    ok &= reap(cons);
    ok &= atomic_load(&sh->errors) == 0;
    double secs = (atomic_load(&sh->t_end) - atomic_load(&sh->t_start)) / 1e9;
    fe_stage_stats st0, st1;
    fe_stats(r, 0, &st0);
    fe_stats(r, 1, &st1);
    if (item_bytes > 8)
        printf("{\"case\": \"%s\", \"batch\": %u, \"slots\": %u, \"frames\": %" PRIu64
               ", \"seconds\": %.4f, \"frames_per_s\": %.1f, \"gb_per_s\": %.3f, "
               "\"producer_waits\": %" PRIu64 ", \"consumer_waits\": %" PRIu64 ", \"ok\": %s}\n",
               label, batch, slots, items, secs, items / secs, items * (double)item_bytes / secs / 1e9,
               st0.waits, st1.waits, ok ? "true" : "false");
    else
        printf("{\"case\": \"%s\", \"batch\": %u, \"slots\": %u, \"items\": %" PRIu64
               ", \"seconds\": %.4f, \"items_per_s\": %.0f, \"ns_per_item\": %.1f, "
               "\"producer_waits\": %" PRIu64 ", \"consumer_waits\": %" PRIu64 ", \"ok\": %s}\n",
               label, batch, slots, items, secs, items / secs, secs * 1e9 / items, st0.waits,
               st1.waits, ok ? "true" : "false");
    fflush(stdout);
    fe_close(r);
    shared_free(sh, bytes);
    return ok;
}

/* ---- ping-pong ---------------------------------------------------------- */

struct pingpong {
    char there[FE_NAME_MAX], back[FE_NAME_MAX];
    uint64_t pings, warmup;
    int64_t spin_ns; /* < 0: the default */
};

static void ponger(struct shared *sh, void *arg)
{
    struct pingpong *c = arg;
    fe_ring *in = open_ring(c->there), *out = open_ring(c->back);
    if (c->spin_ns >= 0) {
        fe_set_spin_ns(in, c->spin_ns);
        fe_set_spin_ns(out, c->spin_ns);
    }
    pthread_barrier_wait(&sh->ready);
    pthread_barrier_wait(&sh->go);
    for (uint64_t i = 0; i < c->warmup + c->pings; i++) {
        uint64_t s, o;
        uint32_t n;
        int rc = fe_take(in, 1, 1, WAIT_NS, &s, &n);
        if (rc) {
            fail(sh, out, "pong fe_take", rc);
            break;
        }
        uint64_t v;
        memcpy(&v, fe_slot(in, s), 8);
        fe_done(in, 1, s, 1);
        rc = fe_claim(out, 1, WAIT_NS, &o);
        if (rc) {
            fail(sh, out, "pong fe_claim", rc);
            break;
        }
        memcpy(fe_slot(out, o), &v, 8);
        fe_publish(out, o, 1);
    }
    fe_close(in);
    fe_close(out);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int run_pingpong(uint64_t pings, int64_t spin_ns)
{
    fe_ring *there = create_ring(2, 8), *back = create_ring(2, 8);
    if (spin_ns >= 0) {
        fe_set_spin_ns(there, spin_ns);
        fe_set_spin_ns(back, spin_ns);
    }
    struct pingpong c;
    memset(&c, 0, sizeof c);
    snprintf(c.there, sizeof c.there, "%s", fe_name(there));
    snprintf(c.back, sizeof c.back, "%s", fe_name(back));
    c.pings = pings;
    c.warmup = pings / 10 + 100;
    c.spin_ns = spin_ns;
    size_t bytes;
    struct shared *sh = shared_new(pings, 2, &bytes);
    pid_t pid = spawn(ponger, sh, &c);
    pthread_barrier_wait(&sh->ready);
    unlink_all();
    pthread_barrier_wait(&sh->go);
    int ok = 1;
    for (uint64_t i = 0; i < c.warmup + pings && ok; i++) {
        uint64_t s, o;
        uint32_t n;
        int64_t t0 = now_ns();
        int rc = fe_claim(there, 1, WAIT_NS, &o);
        if (rc) {
            fail(sh, there, "ping fe_claim", rc);
            ok = 0;
            break;
        }
        memcpy(fe_slot(there, o), &i, 8);
        fe_publish(there, o, 1);
        rc = fe_take(back, 1, 1, WAIT_NS, &s, &n);
        if (rc) {
            fail(sh, there, "ping fe_take", rc);
            ok = 0;
            break;
        }
        uint64_t v;
        memcpy(&v, fe_slot(back, s), 8);
        fe_done(back, 1, s, 1);
        int64_t t1 = now_ns();
        if (v != i) {
            fprintf(stderr, "ring_bench: pong %" PRIu64 " came back as %" PRIu64 "\n", i, v);
            atomic_fetch_add(&sh->errors, 1);
        }
        if (i >= c.warmup)
            sh->rtt[i - c.warmup] = (uint64_t)(t1 - t0);
    }
    ok &= reap(pid);
    ok &= atomic_load(&sh->errors) == 0;
    double p50 = 0, p99 = 0, max = 0, mean = 0;
    if (ok) {
        qsort(sh->rtt, pings, sizeof sh->rtt[0], cmp_u64);
        for (uint64_t i = 0; i < pings; i++)
            mean += sh->rtt[i];
        mean /= pings;
        p50 = sh->rtt[pings / 2];
        p99 = sh->rtt[pings * 99 / 100];
        max = sh->rtt[pings - 1];
    }
    fe_stage_stats st;
    fe_stats(back, 1, &st);
    printf("{\"case\": \"pingpong\", \"spin_ns\": %s, \"round_trips\": %" PRIu64
           ", \"rtt_p50_us\": %.2f, \"rtt_p99_us\": %.2f, \"rtt_max_us\": %.2f, "
           "\"rtt_mean_us\": %.2f, \"ping_waits\": %" PRIu64 ", \"ok\": %s}\n",
           spin_ns < 0 ? "\"default\"" : "0", pings, p50 / 1e3, p99 / 1e3, max / 1e3, mean / 1e3,
           st.waits, ok ? "true" : "false");
    fflush(stdout);
    fe_close(there);
    fe_close(back);
    shared_free(sh, bytes);
    return ok;
}

/* ---- main --------------------------------------------------------------- */

static uint64_t arg_count(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "ring_bench: %s needs a number\n", argv[*i]);
        exit(2);
    }
    char *end;
    uint64_t v = strtoull(argv[++*i], &end, 10);
    if (*end || v == 0) {
        fprintf(stderr, "ring_bench: %s: not a positive count: %s\n", argv[*i - 1], argv[*i]);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    uint64_t items = 4000000, frames = 2000, pings = 100000;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--items"))
            items = arg_count(argc, argv, &i);
        else if (!strcmp(argv[i], "--frames"))
            frames = arg_count(argc, argv, &i);
        else if (!strcmp(argv[i], "--pings"))
            pings = arg_count(argc, argv, &i);
        else {
            fprintf(stderr, "usage: %s [--quick] [--items N] [--frames N] [--pings N]\n", argv[0]);
            return 2;
        }
    }
    if (quick) {
        items = items > 200000 ? 200000 : items;
        frames = frames > 200 ? 200 : frames;
        pings = pings > 10000 ? 10000 : pings;
    }
    g_main_pid = getpid();
    atexit(unlink_all);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    int ok = 1;
    const uint32_t batches[] = {1, 8, 64};
    for (size_t b = 0; b < 3; b++)
        ok &= run_stream("items8", 1024, 8, items, batches[b]);
    ok &= run_stream("frame1080p", 8, FRAME_BYTES, frames, 1);
    ok &= run_pingpong(pings, -1);
    ok &= run_pingpong(pings, 0);
    return ok ? 0 : 1;
}
