/*
 * The roles of the stress tests, shared by test_stress_threads.c (a thread per
 * role) and test_stress_procs.c (a forked process per role): one producer and
 * consumer stages of several members, each with its own handle, all started
 * at a barrier, with random batch sizes (claim n in 1..8, take max_n in 1..8),
 * random partial finishes and random short stalls.  Every item's payload is
 * its sequence.  Checked for every item: the payload is intact at every stage;
 * each stage sees it exactly once (a per-item, per-stage atomic counter); no
 * stage sees it before the previous stage finished it or after the next one
 * started; the ordered stage sees every sequence once, in increasing order;
 * the producer never reuses a slot (or a lookback slot) before the last stage
 * finished with it; with lookback L the L items before a held item keep their
 * payload.  A failed check is reported once and aborts the ring, which wakes
 * and stops every role.
 *
 * The including file defines STRESS_FIN_ORDER, the memory order of the
 * "finished" bookkeeping (g_fin), before including this.  It also allocates
 * g_sh, g_count[k] and g_fin[k] (N bytes each, zero-filled) for stages
 * 0..V->nstages, initialises g_sh->start for every worker plus itself, and
 * runs producer() / consumer() for each worker.
 *
 *   <test> [items=200000] [pool3|pool2x2] [seed]
 *     pool3:   producer -> pool of 3 -> ordered, lookback 0
 *     pool2x2: producer -> pool of 2 -> pool of 2 -> ordered, lookback 3
 */
#ifndef FE_TEST_STRESS_H
#define FE_TEST_STRESS_H

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include "check.h"

#ifndef STRESS_FIN_ORDER
#error "define STRESS_FIN_ORDER (a memory_order) before including stress.h"
#endif

#define STRESS_MAX_WORKERS 16
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

/* State every role shares (for processes: MAP_SHARED, made before fork). */
struct stress_shared {
    pthread_barrier_t start; /* every worker and main; process-shared for processes */
    atomic_int failed;
    atomic_uint_fast64_t progress[FE_MAX_STAGES]; /* items finished, for the watchdog */
    /* Set by the ordered stage at FE_EOF (relaxed: main reads it only after
     * that role's thread was joined or its process reaped). */
    _Atomic uint64_t ordered_seen;
};
static struct stress_shared *g_sh;
static _Atomic uint8_t *g_count[FE_MAX_STAGES]; /* [stage][seq]: times stage k took seq */
static _Atomic uint8_t *g_fin[FE_MAX_STAGES];   /* [stage][seq]: 1 once stage k finished seq */

struct worker {
    fe_ring *r;
    uint32_t stage; /* 0: producer */
    uint32_t index;
    uint64_t rng;
    pthread_t thread; /* test_stress_threads */
    pid_t pid;        /* test_stress_procs */
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
    if (atomic_fetch_add(&g_sh->failed, 1) == 0)
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
    pthread_barrier_wait(&g_sh->start);
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
                if (!EXPECT(w, atomic_load_explicit(&g_fin[last][must], STRESS_FIN_ORDER) == 1,
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
        atomic_store(&g_sh->progress[0], next);
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
        atomic_store_explicit(&g_fin[w->stage][s + i], 1, STRESS_FIN_ORDER);
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
    pthread_barrier_wait(&g_sh->start);
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
                if (!EXPECT(w, atomic_load_explicit(&g_fin[j][q], STRESS_FIN_ORDER) == 1,
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
        atomic_fetch_add(&g_sh->progress[k], n);
    }
    if (ordered)
        atomic_store_explicit(&g_sh->ordered_seen, expect_next, memory_order_relaxed);
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

/* Reads [items] [variant] [seed] into N, V and g_seed (exit 1 on bad ones),
 * prints them and arms the last-resort watchdog. */
static void stress_args(int argc, char **argv, const char *what)
{
    N = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    const char *vname = argc > 2 ? argv[2] : "pool3";
    g_seed = argc > 3 ? strtoull(argv[3], NULL, 0) : (uint64_t)test_now_ns();
    V = NULL;
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        if (strcmp(variants[i].name, vname) == 0)
            V = &variants[i];
    if (!V || N == 0 || N > (1ull << 32)) {
        fprintf(stderr, "usage: %s [items] [pool3|pool2x2] [seed]\n", argv[0]);
        exit(TEST_FAIL);
    }
    printf("stress %s: %s, %" PRIu64 " items, seed 0x%" PRIx64 "\n", what, V->name, N, g_seed);
    fflush(stdout);
    test_watchdog(DEADLINE_S + 8); /* last resort; the test's own abort comes first */
}

/* Fills w[] with the roles of V (the producer first, then every member of
 * every stage) and their random seeds; returns how many. */
static uint32_t stress_workers(struct worker w[STRESS_MAX_WORKERS])
{
    uint32_t nw = 0;
    memset(w, 0, STRESS_MAX_WORKERS * sizeof *w);
    w[nw++].stage = 0;
    for (uint32_t k = 1; k <= V->nstages; k++)
        for (uint32_t m = 0; m < V->members[k - 1]; m++) {
            w[nw].stage = k;
            w[nw].index = m;
            nw++;
        }
    for (uint32_t i = 0; i < nw; i++)
        w[i].rng = (g_seed ^ (0x9E3779B97F4A7C15ull * (i + 1))) | 1;
    return nw;
}

/* The deadline passed: report the progress of every stage and abort the ring
 * (which wakes every role). */
static void stress_stalled(fe_ring *ctl)
{
    fprintf(stderr, "watchdog: no end after %d s; progress:", DEADLINE_S);
    for (uint32_t k = 0; k <= V->nstages; k++)
        fprintf(stderr, " %" PRIu64, (uint64_t)atomic_load(&g_sh->progress[k]));
    fprintf(stderr, "\n");
    print_stats(ctl);
    fe_abort(ctl);
}

/* Every role has ended without a failure: every item went exactly once
 * through every stage, the ordered one in order, and fe_stats agrees. */
static void stress_check_end(fe_ring *ctl, double secs)
{
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
}

#endif
