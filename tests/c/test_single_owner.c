/*
 * Single owners: the first process to claim is the producer; another live
 * process (a forked child with its own handle) gets -EBUSY from fe_claim and
 * fe_end, and from fe_publish an error, without disturbing the stream.  The
 * same for an ORDERED stage: once a process took from it, another live
 * process gets -EBUSY from fe_take on that stage (pool stages accept any
 * number of processes).  fe_reclaim of a live producer's pid does not hand
 * its role to someone else.
 */
#define _GNU_SOURCE
#include <sys/wait.h>
#include "check.h"

static const char *g_name;

/* Runs fn in a forked child with its own handle; returns fn's result. */
static int in_child(int (*fn)(fe_ring *r))
{
    int fds[2];
    pid_t pid = test_fork_reporting(fds);
    if (pid == 0) {
        fe_ring *r = NULL;
        int rc = fe_open(g_name, &r);
        if (rc == 0) {
            rc = fn(r);
            fe_close(r);
        } else {
            rc = -100000 + rc;
        }
        _exit(write(fds[1], &rc, sizeof rc) == sizeof rc ? 0 : 2);
    }
    int rc = -99999, status;
    int whole = test_reap_report(pid, fds[0], &rc, sizeof rc, &status);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(whole);
    return rc;
}

static int child_claim(fe_ring *r)
{
    uint64_t seq = 0;
    return fe_claim(r, 1, 0, &seq);
}
static int child_claim_wait(fe_ring *r)
{
    uint64_t seq = 0;
    return fe_claim(r, 1, 100000000LL, &seq);
}
static int child_end(fe_ring *r) { return fe_end(r); }
static int child_publish(fe_ring *r) { return fe_publish(r, 0, 1); }
static int child_take_ordered(fe_ring *r)
{
    uint64_t s;
    uint32_t n;
    return fe_take(r, 2, 1, 0, &s, &n);
}
static int child_take_pool(fe_ring *r)
{
    uint64_t s;
    uint32_t n;
    int rc = fe_take(r, 1, 1, 0, &s, &n);
    if (rc == 0)
        rc = fe_done(r, 1, s, n);
    return rc;
}

int main(void)
{
    test_watchdog(30);
    g_name = test_ring_name();
    fe_ring *r = test_create(g_name, 8, 64, 0, 2, TEST_POOL_ORDERED);

    /* Nobody produces yet: a child may claim, and it becomes the producer
     * until it exits. */
    CHECK_RC(in_child(child_claim), FE_OK);

    /* We claim: a child is refused. */
    uint64_t seq;
    CHECK_RC(fe_claim(r, 2, 0, &seq), FE_OK);
    CHECK_RC(in_child(child_claim), -EBUSY);
    CHECK_RC(in_child(child_claim_wait), -EBUSY);
    CHECK_RC(in_child(child_end), -EBUSY);
    int rc = in_child(child_publish);
    CHECK(rc < 0);
    CHECK_EQ(fe_ready(r, 1), 0);
    CHECK(fe_end_seq(r) == UINT64_MAX);

    /* Reclaiming our own (live) pid must not free the producer role. */
    CHECK_RC(fe_reclaim(r, getpid()), -EBUSY); /* refused: the producer lives */
    CHECK_RC(in_child(child_claim), -EBUSY);

    CHECK_RC(fe_publish(r, seq, 2), FE_OK);

    /* Pool stage: any process. */
    CHECK_RC(in_child(child_take_pool), FE_OK);
    uint64_t s;
    uint32_t n;
    CHECK_RC(fe_take(r, 1, 1, 0, &s, &n), FE_OK);
    CHECK_EQ(s, seq + 1);
    CHECK_RC(fe_done(r, 1, s, n), FE_OK);

    /* Ordered stage: we take first, a child is refused. */
    CHECK_RC(fe_take(r, 2, 1, 0, &s, &n), FE_OK);
    CHECK_EQ(s, seq);
    CHECK_RC(in_child(child_take_ordered), -EBUSY);
    CHECK_RC(fe_done(r, 2, s, n), FE_OK);
    CHECK_RC(in_child(child_take_ordered), -EBUSY);
    CHECK_RC(fe_take(r, 2, 1, 0, &s, &n), FE_OK);
    CHECK_EQ(s, seq + 1);
    CHECK_RC(fe_done(r, 2, s, n), FE_OK);

    test_close_unlink(g_name, r);
    return TEST_PASS;
}
