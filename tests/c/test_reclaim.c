/*
 * Reclaim: a pool member (a forked child) takes a run and exits without
 * fe_done; the stages behind it stall until the supervisor calls
 * fe_reclaim(child pid) after waitpid(), which returns how many items the
 * child held (here 2, then 0 on a second call), finishes them for that stage
 * and flags them failed (fe_failed() == 1, others 0, stats.failed counts them).
 * The ordered stage still receives every item, in order.  The same for a
 * child that dies by SIGKILL holding an ordered-stage item: after reclaim the
 * next ordered consumer (another process) continues and the slot is reused.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/wait.h>
#include "check.h"

static const char *g_name;

/* Forks a child that takes up to max_n items of `stage`, reports the run on
 * a pipe and dies without finishing (by _exit, or by SIGKILL if `kill_self`).
 * Returns the child's pid; *seq / *n the run it took. */
static pid_t child_takes_and_dies(uint32_t stage, uint32_t max_n, int kill_self,
                                  uint64_t *seq, uint32_t *n)
{
    int fds[2];
    pid_t pid = test_fork_reporting(fds);
    if (pid == 0) {
        fe_ring *r = NULL;
        uint64_t msg[2] = {0, 0};
        uint32_t taken = 0;
        int rc = fe_open(g_name, &r);
        if (rc == 0)
            rc = fe_take(r, stage, max_n, 1000000000LL, &msg[0], &taken);
        msg[1] = taken;
        if (rc != 0) {
            fprintf(stderr, "child: %s\n", fe_strerror(rc));
            _exit(3);
        }
        if (write(fds[1], msg, sizeof msg) != (ssize_t)sizeof msg)
            _exit(4);
        if (kill_self)
            raise(SIGKILL);
        _exit(0);
    }
    uint64_t msg[2];
    int status;
    int whole = test_reap_report(pid, fds[0], msg, sizeof msg, &status);
    if (kill_self)
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    else
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(whole);
    *seq = msg[0];
    *n = (uint32_t)msg[1];
    return pid;
}

int main(void)
{
    test_watchdog(30);
    g_name = test_ring_name();
    fe_ring *prod = test_create(g_name, 8, 64, 0, 2, TEST_POOL_ORDERED), *pool, *ord;
    test_open(g_name, &pool, &ord);
    uint64_t seq, s;
    uint32_t n;

    CHECK_RC(fe_claim(prod, 6, 0, &seq), FE_OK);
    for (uint64_t i = 0; i < 6; i++)
        test_put_u64(fe_slot(prod, i), 3000 + i);
    CHECK_RC(fe_publish(prod, 0, 6), FE_OK);

    /* A pool member takes 0..1 and exits without finishing them. */
    uint64_t cs;
    uint32_t cn;
    pid_t a = child_takes_and_dies(1, 2, 0, &cs, &cn);
    CHECK_EQ(cs, 0);
    CHECK_EQ(cn, 2);

    /* Another member does the rest; the ordered stage stalls behind 0..1. */
    CHECK_RC(fe_take(pool, 1, 8, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 2);
    CHECK_EQ(n, 4);
    CHECK_RC(fe_done(pool, 1, s, n), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 0);
    CHECK_RC(fe_take(ord, 2, 8, 0, &s, &n), -ETIMEDOUT);
    for (uint64_t i = 0; i < 6; i++)
        CHECK_EQ(fe_failed(ord, i), 0);

    /* A dead process that held nothing. */
    fflush(NULL);
    pid_t idle = fork();
    CHECK(idle >= 0);
    if (idle == 0)
        _exit(0);
    CHECK(waitpid(idle, NULL, 0) == idle);
    CHECK_RC(fe_reclaim(prod, idle), 0);
    CHECK_RC(fe_reclaim(prod, a), 2);
    CHECK_RC(fe_reclaim(prod, a), 0);
    CHECK_EQ(fe_failed(ord, 0), 1);
    CHECK_EQ(fe_failed(ord, 1), 1);
    for (uint64_t i = 2; i < 6; i++)
        CHECK_EQ(fe_failed(ord, i), 0);
    fe_stage_stats st;
    CHECK_RC(fe_stats(prod, 1, &st), FE_OK);
    CHECK_EQ(st.failed, 2);
    CHECK_RC(fe_stats(prod, 2, &st), FE_OK);
    CHECK_EQ(st.failed, 0);

    /* The ordered stage receives all six in order, 0 and 1 flagged. */
    CHECK_EQ(fe_ready(ord, 2), 6);
    uint64_t next = 0;
    while (next < 6) {
        CHECK_RC(fe_take(ord, 2, 4, 0, &s, &n), FE_OK);
        CHECK_EQ(s, next);
        for (uint32_t i = 0; i < n; i++) {
            CHECK_EQ(fe_failed(ord, s + i), s + i < 2);
            CHECK_EQ(test_get_u64(fe_slot(ord, s + i)), 3000 + s + i);
        }
        CHECK_RC(fe_done(ord, 2, s, n), FE_OK);
        next += n;
    }

    test_close_unlink(g_name, ord, pool, prod);

    /* Ordered stage: its first taker is a child, killed holding item 0. */
    g_name = test_ring_name();
    prod = test_create(g_name, 4, 64, 0, 2, TEST_POOL_ORDERED);
    test_open(g_name, &pool, &ord);
    CHECK_RC(fe_claim(prod, 4, 0, &seq), FE_OK);
    for (uint64_t i = 0; i < 4; i++)
        test_put_u64(fe_slot(prod, i), 4000 + i);
    CHECK_RC(fe_publish(prod, 0, 4), FE_OK);
    CHECK_RC(fe_take(pool, 1, 4, 0, &s, &n), FE_OK);
    CHECK_EQ(n, 4);
    CHECK_RC(fe_done(pool, 1, s, n), FE_OK);

    pid_t b = child_takes_and_dies(2, 1, 1, &cs, &cn);
    CHECK_EQ(cs, 0);
    CHECK_EQ(cn, 1);
    CHECK_RC(fe_claim(prod, 1, 0, &seq), -ETIMEDOUT); /* slot 0 still held */
    CHECK_RC(fe_reclaim(prod, b), 1);
    CHECK_EQ(fe_failed(ord, 0), 1);
    CHECK_RC(fe_stats(prod, 2, &st), FE_OK);
    CHECK_EQ(st.failed, 1);
    CHECK_RC(fe_stats(prod, 1, &st), FE_OK);
    CHECK_EQ(st.failed, 0);
    /* Slot 0 is free again; the next ordered consumer (us) continues at 1. */
    CHECK_RC(fe_claim(prod, 1, 0, &seq), FE_OK);
    CHECK_EQ(seq, 4);
    CHECK_RC(fe_take(ord, 2, 8, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 1);
    CHECK_EQ(n, 3);
    for (uint32_t i = 0; i < n; i++) {
        CHECK_EQ(fe_failed(ord, s + i), 0);
        CHECK_EQ(test_get_u64(fe_slot(ord, s + i)), 4000 + s + i);
    }
    CHECK_RC(fe_done(ord, 2, s, n), FE_OK);

    test_close_unlink(g_name, ord, pool, prod);
    return TEST_PASS;
}
