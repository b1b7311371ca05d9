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
 * ring, then kills the children, if it stalls.  The roles and checks are in
 * stress.h, shared with test_stress_threads.c.
 *
 * ThreadSanitizer cannot see synchronisation between processes: skipped
 * (exit 77) in a TSan build.
 *
 *   test_stress_procs [items=200000] [pool3|pool2x2] [seed]
 *     pool3:   producer -> pool of 3 -> ordered, lookback 0
 *     pool2x2: producer -> pool of 2 -> pool of 2 -> ordered, lookback 3
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/wait.h>
/* Sequentially consistent: no ThreadSanitizer checks this test, so the
 * bookkeeping need not leave the ordering to the ring alone (as
 * test_stress_threads.c does with relaxed). */
#define STRESS_FIN_ORDER memory_order_seq_cst
#include "stress.h"

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
        atomic_fetch_add(&g_sh->failed, 1);
        pthread_barrier_wait(&g_sh->start); /* others must not wait for us forever */
        pthread_barrier_wait(&g_sh->start);
        _exit(TEST_FAIL);
    }
    pthread_barrier_wait(&g_sh->start); /* every handle mapped */
    /* the role waits at the barrier a second time: go */
    if (w->stage == 0)
        producer(w);
    else
        consumer(w);
    fe_close(w->r);
    _exit(atomic_load(&g_sh->failed) ? TEST_FAIL : TEST_PASS);
}

int main(int argc, char **argv)
{
#ifdef FE_TEST_TSAN
    printf("skipped: ThreadSanitizer cannot see synchronisation between processes\n");
    return TEST_SKIP;
#endif
    stress_args(argc, argv, "procs");

    const char *name = test_ring_name();
    fe_ring *ctl = test_create(name, V->slots, 64, V->lookback, V->nstages, V->kinds);
    g_sh = shared_alloc(sizeof *g_sh);
    for (uint32_t k = 0; k <= V->nstages; k++) {
        g_count[k] = shared_alloc(N); /* zero-filled */
        g_fin[k] = shared_alloc(N);
    }

    struct worker w[STRESS_MAX_WORKERS];
    uint32_t nw = stress_workers(w);

    pthread_barrierattr_t ba;
    CHECK(pthread_barrierattr_init(&ba) == 0);
    CHECK(pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED) == 0);
    CHECK(pthread_barrier_init(&g_sh->start, &ba, nw + 1) == 0);
    pthread_barrierattr_destroy(&ba);

    fflush(NULL);
    for (uint32_t i = 0; i < nw; i++) {
        w[i].pid = fork();
        CHECK(w[i].pid >= 0);
        if (w[i].pid == 0)
            run_child(&w[i], name);
    }
    pthread_barrier_wait(&g_sh->start);
    /* Every child has mapped the ring (or failed to): the name is no longer
     * needed, and nothing stays in /dev/shm however the test ends. */
    CHECK_RC(fe_unlink(name), FE_OK);
    if (atomic_load(&g_sh->failed))
        fe_abort(ctl);
    int64_t t0 = test_now_ns();
    pthread_barrier_wait(&g_sh->start);

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
            stress_stalled(ctl);
        } else if (timed_out && now > deadline + 5000000000LL) {
            for (uint32_t i = 0; i < nw; i++)
                if (w[i].pid > 0)
                    kill(w[i].pid, SIGKILL);
        }
        test_sleep_ns(2000000);
    }
    double secs = (test_now_ns() - t0) / 1e9;
    CHECK(!timed_out);
    CHECK_EQ(atomic_load(&g_sh->failed), 0);
    CHECK(!bad_exit);
    stress_check_end(ctl, secs);

    fe_close(ctl);
    pthread_barrier_destroy(&g_sh->start);
    for (uint32_t k = 0; k <= V->nstages; k++) {
        munmap(g_count[k], N);
        munmap(g_fin[k], N);
    }
    munmap(g_sh, sizeof *g_sh);
    return TEST_PASS;
}
