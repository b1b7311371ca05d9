/*
 * Stress, threads: one producer thread and consumer stages of several threads,
 * each thread with its own handle from fe_open, all started at a barrier, with
 * random batch sizes (claim n in 1..8, take max_n in 1..8), random partial
 * finishes and random short stalls.  Every item's payload is its sequence.
 * Checked for every item: the payload is intact at every stage; each stage
 * sees it exactly once (a per-item, per-stage atomic counter); no stage sees
 * it before the previous stage finished it or after the next one started; the
 * ordered stage sees every sequence once, in increasing order; the producer
 * never reuses a slot (or a lookback slot) before the last stage finished
 * with it; with lookback L the L items before a held item keep their payload.
 * Then end of stream: every thread gets FE_EOF and joins, and the counters of
 * fe_stats match.  A watchdog aborts the ring (and fails) if it stalls.  The
 * roles and checks are in stress.h, shared with test_stress_procs.c.
 *
 *   test_stress_threads [items=200000] [pool3|pool2x2] [seed]
 *     pool3:   producer -> pool of 3 -> ordered, lookback 0
 *     pool2x2: producer -> pool of 2 -> pool of 2 -> ordered, lookback 3
 */
#define _GNU_SOURCE
/* Relaxed on purpose: the "finished" flags add no ordering of their own, so
 * whether a later stage (or the producer reusing a slot) sees a stage's writes
 * rests on the ring's acquire / release alone, and ThreadSanitizer checks
 * exactly that. */
#define STRESS_FIN_ORDER memory_order_relaxed
#include "stress.h"

static struct stress_shared g_shared;

int main(int argc, char **argv)
{
    g_sh = &g_shared;
    stress_args(argc, argv, "threads");

    const char *name = test_ring_name();
    fe_ring *ctl = test_create(name, V->slots, 64, V->lookback, V->nstages, V->kinds);
    for (uint32_t k = 0; k <= V->nstages; k++) {
        g_count[k] = calloc(N, 1);
        g_fin[k] = calloc(N, 1);
        CHECK(g_count[k] != NULL && g_fin[k] != NULL);
    }

    struct worker w[STRESS_MAX_WORKERS];
    uint32_t nw = stress_workers(w);
    for (uint32_t i = 0; i < nw; i++)
        test_open(name, &w[i].r);
    /* Every handle is mapped: the name is no longer needed, and nothing
     * stays in /dev/shm however the test ends. */
    CHECK_RC(fe_unlink(name), FE_OK);

    CHECK(pthread_barrier_init(&g_sh->start, NULL, nw + 1) == 0);
    for (uint32_t i = 0; i < nw; i++)
        CHECK(pthread_create(&w[i].thread, NULL, w[i].stage ? consumer : producer, &w[i]) == 0);
    int64_t t0 = test_now_ns();
    pthread_barrier_wait(&g_sh->start);

    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += DEADLINE_S;
    int timed_out = 0;
    for (uint32_t i = 0; i < nw; i++) {
        int e = timed_out ? pthread_join(w[i].thread, NULL)
                          : pthread_timedjoin_np(w[i].thread, NULL, &deadline);
        if (e == ETIMEDOUT) {
            timed_out = 1;
            stress_stalled(ctl);
            e = pthread_join(w[i].thread, NULL);
        }
        CHECK(e == 0);
    }
    double secs = (test_now_ns() - t0) / 1e9;
    CHECK(!timed_out);
    CHECK_EQ(atomic_load(&g_sh->failed), 0);
    stress_check_end(ctl, secs);

    for (uint32_t i = 0; i < nw; i++)
        fe_close(w[i].r);
    fe_close(ctl);
    for (uint32_t k = 0; k <= V->nstages; k++) {
        free(g_count[k]);
        free(g_fin[k]);
    }
    pthread_barrier_destroy(&g_sh->start);
    return TEST_PASS;
}
