/*
 * Stress, processes: the threaded stress test (test_stress_threads.c) with a
 * forked process per role over one shared segment: one producer, consumer
 * stages of several processes, each opening the ring itself, all started at a
 * process-shared barrier, with random batch sizes, partial finishes and short
 * stalls.  The per-item, per-stage counters live in a MAP_SHARED anonymous
 * mapping.  Checked: payloads intact at every stage, each stage sees every
 * item exactly once, after the previous stage and before the next, the ordered
 * stage in increasing order, no slot (or lookback slot) reused early, then
 * FE_EOF everywhere and fe_stats counters that match.  A watchdog aborts the
 * ring, then kills the children, if it stalls.
 *
 * ThreadSanitizer cannot see synchronisation between processes: skipped
 * (exit 77) in a TSan build.
 *
 *   test_stress_procs [items=200000] [pool3|pool2x2] [seed]
 *     pool3:   producer -> pool of 3 -> ordered, lookback 0
 *     pool2x2: producer -> pool of 2 -> pool of 2 -> ordered, lookback 3
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/wait.h>
#include "check.h"

#define MAX_THREADS 16 /* processes */
#define DEADLINE_S 50

struct variant {
    const char *name;
    uint32_t nstages;
    uint8_t kinds[FE_MAX_STAGES - 1];
    uint32_t members[FE_MAX_STAGES - 1];
    uint32_t lookback;
    uint32_t slots;
};

static const struct variant variants[] = {
    {"pool3", 2, {FE_POOL, FE_ORDERED}, {3, 1}, 0, 16},
    {"pool2x2", 3, {FE_POOL, FE_POOL, FE_ORDERED}, {2, 2, 1}, 3, 16},
};

static const struct variant *V;
static uint64_t N;
static uint64_t g_seed;
/* Shared by all processes (MAP_SHARED | MAP_ANONYMOUS, made before fork). */
struct shared {
    pthread_barrier_t start; /* process-shared */
    atomic_int failed;
    atomic_uint_fast64_t progress[FE_MAX_STAGES]; /* items finished, for the watchdog */
    _Atomic uint64_t ordered_seen;
};
static struct shared *g_sh;
static _Atomic uint8_t *g_count[FE_MAX_STAGES]; /* [stage][seq]: times stage k took seq */
static _Atomic uint8_t *g_fin[FE_MAX_STAGES];   /* [stage][seq]: 1 once stage k finished seq */
#define g_failed (g_sh->failed)
#define g_progress (g_sh->progress)
#define g_start (g_sh->start)

struct worker {
    pid_t pid;
    fe_ring *r;
    uint32_t stage; /* 0: producer */
    uint32_t index;
    uint64_t rng;
};

static uint64_t rnd(struct worker *w)
{
    /* xorshift64* */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void maybe_stall(struct worker *w)
{
    uint64_t x = rnd(w);
    if (x % 64 == 0) {
        sched_yield();
    } else if (x % 512 == 1) {
        struct timespec ts = {0, (long)(1000 + (x >> 32) % 20000)};
        nanosleep(&ts, NULL);
    }
}

/* Report, stop everybody (the abort wakes every waiter), and return false. */
#define EXPECT(w, cond, ...)                                                    \
    ((cond) ? 1 : (fail_((w), __LINE__, #cond), fprintf(stderr, "  " __VA_ARGS__), \
                   fprintf(stderr, "\n"), 0))

static void fail_(struct worker *w, int line, const char *what)
{
    if (atomic_fetch_add(&g_failed, 1) == 0)
        fprintf(stderr, "%s:%d: stage %u member %u: CHECK failed: %s\n", __FILE__, line,
                w->stage, w->index, what);
    fe_abort(w->r);
}

static void *producer(void *arg)
{
    struct worker *w = arg;
    fe_ring *r = w->r;
    const uint64_t stride = fe_stride(r), slots = fe_slots(r);
    const uint32_t last = V->nstages, L = V->lookback;
    uint64_t next = 0;
    pthread_barrier_wait(&g_start);
    while (next < N) {
        uint32_t n = 1 + (uint32_t)(rnd(w) % 8);
        if (n > N - next)
            n = (uint32_t)(N - next);
        uint64_t seq;
        int rc = fe_claim(r, n, -1, &seq);
        if (!EXPECT(w, rc == 0, "fe_claim: %s", fe_strerror(rc)))
            return NULL;
        if (!EXPECT(w, seq == next, "claimed %" PRIu64 ", expected %" PRIu64, seq, next))
            return NULL;
        uint8_t *base = fe_slot(r, seq);
        for (uint32_t i = 0; i < n; i++) {
            uint64_t s = seq + i;
            /* The previous occupant of this slot, and every item whose
             * lookback covers it, must be finished by the last stage. */
            if (s + L >= slots) {
                uint64_t must = s + L - slots;
                if (!EXPECT(w, atomic_load(&g_fin[last][must]) == 1,
                            "claimed %" PRIu64 " while item %" PRIu64 " is not finished by the "
                            "last stage (lookback %u)", s, must, L))
                    return NULL;
            }
            test_put_u64(base + i * stride, s);
            test_put_u64(base + i * stride + 8, ~s);
        }
        maybe_stall(w);
        /* publish in one or two pieces */
        uint32_t first = n > 1 && rnd(w) % 4 == 0 ? 1 + (uint32_t)(rnd(w) % (n - 1)) : n;
        rc = fe_publish(r, seq, first);
        if (rc == 0 && first < n)
            rc = fe_publish(r, seq + first, n - first);
        if (!EXPECT(w, rc == 0, "fe_publish: %s", fe_strerror(rc)))
            return NULL;
        next += n;
        atomic_store(&g_progress[0], next);
    }
    int rc = fe_end(r);
    EXPECT(w, rc == 0, "fe_end: %s", fe_strerror(rc));
    return NULL;
}

/* Stage k's mark in item q's slot: written while held, read by later stages. */
static uint64_t mark(uint64_t q, uint32_t k) { return q * 31 + k; }
#define MARK_OFF(k) (16 + 8 * (size_t)(k))

/* The run [s, s+n) held by stage w->stage: payloads, marks of the earlier
 * stages, and the lookback items before each are intact. */
static int check_run(struct worker *w, uint64_t s, uint32_t n, const char *when)
{
    fe_ring *r = w->r;
    const uint32_t k = w->stage, L = V->lookback;
    const uint64_t stride = fe_stride(r);
    const uint8_t *base = fe_slot(r, s);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t q = s + i;
        const uint8_t *p = base + i * stride;
        uint64_t p0 = test_get_u64(p), p1 = test_get_u64(p + 8);
        if (!EXPECT(w, p0 == q && p1 == ~q, "%s: item %" PRIu64 " holds payload %" PRIu64,
                    when, q, p0))
            return 0;
        for (uint32_t j = 1; j < k; j++) {
            uint64_t m = test_get_u64(p + MARK_OFF(j));
            if (!EXPECT(w, m == mark(q, j),
                        "%s: item %" PRIu64 " lacks the mark of stage %u (%" PRIu64 ")", when, q,
                        j, m))
                return 0;
        }
        for (uint32_t d = 1; d <= L && d <= q; d++) {
            uint64_t b = test_get_u64(fe_slot(r, q - d));
            if (!EXPECT(w, b == q - d,
                        "%s: lookback item %" PRIu64 " (held: %" PRIu64 ") holds %" PRIu64, when,
                        q - d, q, b))
                return 0;
        }
    }
    return 1;
}

/* Re-check, record as finished, then fe_done a part of the held run. */
static int finish(struct worker *w, uint64_t s, uint32_t n)
{
    if (!check_run(w, s, n, "before done"))
        return 0;
    for (uint32_t i = 0; i < n; i++)
        atomic_store(&g_fin[w->stage][s + i], 1);
    int rc = fe_done(w->r, w->stage, s, n);
    return EXPECT(w, rc == 0, "fe_done(%" PRIu64 ", %u): %s", s, n, fe_strerror(rc));
}

static void *consumer(void *arg)
{
    struct worker *w = arg;
    fe_ring *r = w->r;
    const uint32_t k = w->stage, last = V->nstages;
    const int ordered = V->kinds[k - 1] == FE_ORDERED;
    const uint64_t stride = fe_stride(r);
    uint64_t expect_next = 0;
    pthread_barrier_wait(&g_start);
    for (;;) {
        uint32_t max_n = 1 + (uint32_t)(rnd(w) % 8), n = 0;
        uint64_t s = 0;
        int rc = fe_take(r, k, max_n, -1, &s, &n);
        if (rc == FE_EOF)
            break;
        if (!EXPECT(w, rc == 0, "fe_take: %s", fe_strerror(rc)))
            return NULL;
        if (!EXPECT(w, n >= 1 && n <= max_n, "took %u, max_n %u", n, max_n))
            return NULL;
        if (!EXPECT(w, s + n <= N, "took [%" PRIu64 ", +%u) past the %" PRIu64 " items", s, n, N))
            return NULL;
        if (ordered && !EXPECT(w, s == expect_next,
                               "ordered stage got %" PRIu64 ", expected %" PRIu64, s, expect_next))
            return NULL;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t q = s + i;
            uint8_t before = atomic_fetch_add(&g_count[k][q], 1);
            if (!EXPECT(w, before == 0, "item %" PRIu64 " taken twice by stage %u", q, k))
                return NULL;
            for (uint32_t j = 1; j < k; j++)
                if (!EXPECT(w, atomic_load(&g_fin[j][q]) == 1,
                            "item %" PRIu64 " reached stage %u before stage %u finished it", q,
                            k, j))
                    return NULL;
            for (uint32_t j = k + 1; j <= last; j++)
                if (!EXPECT(w, atomic_load(&g_count[j][q]) == 0,
                            "item %" PRIu64 " already at stage %u while stage %u holds it", q, j, k))
                    return NULL;
        }
        if (!check_run(w, s, n, "after take"))
            return NULL;
        uint8_t *base = fe_slot(r, s);
        for (uint32_t i = 0; i < n; i++)
            test_put_u64(base + i * stride + MARK_OFF(k), mark(s + i, k));
        maybe_stall(w);
        /* Finish the whole run, or in two parts: a pool the tail first. */
        int ok;
        if (n > 1 && rnd(w) % 4 == 0) {
            uint32_t head = 1 + (uint32_t)(rnd(w) % (n - 1));
            if (ordered)
                ok = finish(w, s, head) && finish(w, s + head, n - head);
            else
                ok = finish(w, s + head, n - head) && finish(w, s, head);
        } else {
            ok = finish(w, s, n);
        }
        if (!ok)
            return NULL;
        expect_next = s + n;
        atomic_fetch_add(&g_progress[k], n);
    }
    if (ordered)
        atomic_store(&g_sh->ordered_seen, expect_next);
    return NULL;
}

static void print_stats(fe_ring *r)
{
    for (uint32_t k = 0; k <= V->nstages; k++) {
        fe_stage_stats st;
        if (fe_stats(r, k, &st) == 0)
            fprintf(stderr,
                    "  stage %u: items %" PRIu64 " taken %" PRIu64 " waits %" PRIu64
                    " stalls %" PRIu64 " failed %" PRIu64 " (ready %" PRIu64 ")\n",
                    k, st.items, st.taken, st.waits, st.stalls, st.failed,
                    k ? fe_ready(r, k) : 0);
    }
}

static void *shared_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

/* The body of a forked child: its own handle, the barrier, its role. */
static void run_child(struct worker *w, const char *name)
{
    int rc = fe_open(name, &w->r);
    if (rc != 0) {
        fprintf(stderr, "child %u/%u: fe_open: %s\n", w->stage, w->index, fe_strerror(rc));
        atomic_fetch_add(&g_failed, 1);
        pthread_barrier_wait(&g_start); /* others must not wait for us forever */
        pthread_barrier_wait(&g_start);
        _exit(TEST_FAIL);
    }
    pthread_barrier_wait(&g_start); /* every handle mapped */
    /* the role waits at the barrier a second time: go */
    if (w->stage == 0)
        producer(w);
    else
        consumer(w);
    fe_close(w->r);
    _exit(atomic_load(&g_failed) ? TEST_FAIL : TEST_PASS);
}

int main(int argc, char **argv)
{
#ifdef FE_TEST_TSAN
    printf("skipped: ThreadSanitizer cannot see synchronisation between processes\n");
    return TEST_SKIP;
#endif
    N = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    const char *vname = argc > 2 ? argv[2] : "pool3";
    g_seed = argc > 3 ? strtoull(argv[3], NULL, 0) : (uint64_t)test_now_ns();
    V = NULL;
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        if (strcmp(variants[i].name, vname) == 0)
            V = &variants[i];
    if (!V || N == 0 || N > (1ull << 32)) {
        fprintf(stderr, "usage: %s [items] [pool3|pool2x2] [seed]\n", argv[0]);
        return TEST_FAIL;
    }
    printf("stress procs: %s, %" PRIu64 " items, seed 0x%" PRIx64 "\n", V->name, N, g_seed);
    fflush(stdout);
    test_watchdog(DEADLINE_S + 8); /* last resort; the abort below comes first */

    const char *name = test_ring_name();
    fe_config cfg = test_config(V->slots, 64, V->lookback, V->nstages, V->kinds);
    fe_ring *ctl = NULL;
    CHECK_RC(fe_create(name, &cfg, &ctl), FE_OK);
    g_sh = shared_alloc(sizeof *g_sh);
    for (uint32_t k = 0; k <= V->nstages; k++) {
        g_count[k] = shared_alloc(N); /* zero-filled */
        g_fin[k] = shared_alloc(N);
    }

    struct worker w[MAX_THREADS];
    uint32_t nw = 0;
    memset(w, 0, sizeof w);
    w[nw++].stage = 0;
    for (uint32_t k = 1; k <= V->nstages; k++)
        for (uint32_t m = 0; m < V->members[k - 1]; m++) {
            w[nw].stage = k;
            w[nw].index = m;
            nw++;
        }
    for (uint32_t i = 0; i < nw; i++)
        w[i].rng = (g_seed ^ (0x9E3779B97F4A7C15ull * (i + 1))) | 1;

    pthread_barrierattr_t ba;
    CHECK(pthread_barrierattr_init(&ba) == 0);
    CHECK(pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED) == 0);
    CHECK(pthread_barrier_init(&g_start, &ba, nw + 1) == 0);
    pthread_barrierattr_destroy(&ba);

    fflush(NULL);
    for (uint32_t i = 0; i < nw; i++) {
        w[i].pid = fork();
        CHECK(w[i].pid >= 0);
        if (w[i].pid == 0)
            run_child(&w[i], name);
    }
    pthread_barrier_wait(&g_start);
    /* Every child has mapped the ring (or failed to): the name is no longer
     * needed, and nothing stays in /dev/shm however the test ends. */
    CHECK_RC(fe_unlink(name), FE_OK);
    if (atomic_load(&g_failed))
        fe_abort(ctl);
    int64_t t0 = test_now_ns();
    pthread_barrier_wait(&g_start);

    /* Reap the children; abort the ring at the deadline, kill 5 s later. */
    int64_t deadline = t0 + DEADLINE_S * 1000000000LL;
    uint32_t left = nw;
    int timed_out = 0, bad_exit = 0;
    while (left > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        CHECK(pid >= 0);
        if (pid > 0) {
            for (uint32_t i = 0; i < nw; i++)
                if (w[i].pid == pid) {
                    w[i].pid = 0;
                    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                        fprintf(stderr, "child stage %u member %u: %s %d\n", w[i].stage,
                                w[i].index, WIFEXITED(status) ? "exit" : "signal",
                                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                        bad_exit = 1;
                    }
                }
            left--;
            continue;
        }
        int64_t now = test_now_ns();
        if (!timed_out && now > deadline) {
            timed_out = 1;
            fprintf(stderr, "watchdog: no end after %d s; progress:", DEADLINE_S);
            for (uint32_t k = 0; k <= V->nstages; k++)
                fprintf(stderr, " %" PRIu64, (uint64_t)atomic_load(&g_progress[k]));
            fprintf(stderr, "\n");
            print_stats(ctl);
            fe_abort(ctl);
        } else if (timed_out && now > deadline + 5000000000LL) {
            for (uint32_t i = 0; i < nw; i++)
                if (w[i].pid > 0)
                    kill(w[i].pid, SIGKILL);
        }
        test_sleep_ns(2000000);
    }
    double secs = (test_now_ns() - t0) / 1e9;
    CHECK(!timed_out);
    CHECK_EQ(atomic_load(&g_failed), 0);
    CHECK(!bad_exit);

    /* Every item exactly once at every stage, all of them in order. */
    CHECK_EQ(atomic_load(&g_sh->ordered_seen), N);
    for (uint32_t k = 1; k <= V->nstages; k++)
        for (uint64_t q = 0; q < N; q++)
            if (atomic_load(&g_count[k][q]) != 1 || atomic_load(&g_fin[k][q]) != 1) {
                fprintf(stderr, "item %" PRIu64 " seen %u times by stage %u\n", q,
                        (unsigned)atomic_load(&g_count[k][q]), k);
                CHECK(!"every item exactly once per stage");
            }
    CHECK(fe_end_seq(ctl) == N);
    CHECK_EQ(fe_aborted(ctl), 0);
    for (uint32_t k = 0; k <= V->nstages; k++) {
        fe_stage_stats st;
        CHECK_RC(fe_stats(ctl, k, &st), FE_OK);
        CHECK_EQ(st.items, N);
        CHECK_EQ(st.taken, N);
        CHECK_EQ(st.failed, 0);
        if (k)
            CHECK_EQ(fe_ready(ctl, k), 0);
    }
    printf("ok: %" PRIu64 " items in %.2f s (%.0f items/s)\n", N, secs, N / secs);
    print_stats(ctl);

    fe_close(ctl);
    pthread_barrier_destroy(&g_start);
    for (uint32_t k = 0; k <= V->nstages; k++) {
        munmap(g_count[k], N);
        munmap(g_fin[k], N);
    }
    munmap(g_sh, sizeof *g_sh);
    return TEST_PASS;
}
