/*
 * Abort: fe_abort from one thread wakes every waiter with FE_ABORTED: a pool
 * consumer and an ordered consumer blocked in fe_take and a producer blocked
 * in fe_claim on a full ring, all with infinite timeouts and their own
 * handles.  Afterwards every blocking call returns FE_ABORTED (with any
 * timeout, on every handle, and on handles opened later) and fe_aborted() is 1.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include "check.h"

static const char *g_name;
static atomic_int g_started, g_returned;

enum role { TAKE_POOL, TAKE_ORDERED, CLAIM };

static void *waiter(void *arg)
{
    enum role role = (enum role)(uintptr_t)arg;
    fe_ring *r = NULL;
    int rc = fe_open(g_name, &r);
    if (rc != 0)
        return (void *)(intptr_t)rc;
    uint64_t s;
    uint32_t n;
    atomic_fetch_add(&g_started, 1);
    switch (role) {
    case TAKE_POOL:
        rc = fe_take(r, 1, 1, -1, &s, &n);
        break;
    case TAKE_ORDERED:
        rc = fe_take(r, 2, 1, -1, &s, &n);
        break;
    case CLAIM:
        /* fill the ring with claimed, unpublished items, then wait for more */
        rc = fe_claim(r, 4, 0, &s);
        if (rc == 0)
            rc = fe_claim(r, 1, -1, &s);
        else
            rc = -1000 + rc;
        break;
    }
    atomic_fetch_add(&g_returned, 1);
    fe_close(r);
    return (void *)(intptr_t)rc;
}

int main(void)
{
    test_watchdog(30);
    g_name = test_ring_name();
    fe_ring *r = test_create(g_name, 4, 64, 0, 2, TEST_POOL_ORDERED), *ctl;
    test_open(g_name, &ctl);
    CHECK_EQ(fe_aborted(ctl), 0);

    /* The producer thread fills the ring with claimed, unpublished items:
     * then nobody can proceed. */
    uint64_t seq;
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&t[i], NULL, waiter, (void *)(uintptr_t)i) == 0);
    while (atomic_load(&g_started) < 3)
        sched_yield();
    test_sleep_ns(100 * 1000000LL); /* let them reach their futex waits */
    CHECK_EQ(atomic_load(&g_returned), 0);

    fe_abort(ctl);
    for (int i = 0; i < 3; i++) {
        void *ret;
        CHECK(pthread_join(t[i], &ret) == 0);
        if ((int)(intptr_t)ret != FE_ABORTED)
            fprintf(stderr, "waiter %d\n", i);
        CHECK_RC((int)(intptr_t)ret, FE_ABORTED);
    }

    CHECK_EQ(fe_aborted(ctl), 1);
    CHECK_EQ(fe_aborted(r), 1);
    uint64_t s;
    uint32_t n;
    CHECK_RC(fe_take(ctl, 1, 1, 0, &s, &n), FE_ABORTED);
    CHECK_RC(fe_take(ctl, 2, 1, 10 * 1000000LL, &s, &n), FE_ABORTED);
    CHECK_RC(fe_take(ctl, 1, 1, -1, &s, &n), FE_ABORTED);

    /* A handle opened after the abort sees it. */
    fe_ring *late = NULL;
    CHECK_RC(fe_open(g_name, &late), FE_OK);
    CHECK_EQ(fe_aborted(late), 1);
    CHECK_RC(fe_take(late, 1, 1, -1, &s, &n), FE_ABORTED);

    fe_abort(ctl); /* idempotent */
    CHECK_EQ(fe_aborted(ctl), 1);

    test_close_unlink(g_name, late, ctl, r);

    /* Abort on a flowing ring: published items are refused after it too. */
    g_name = test_ring_name();
    r = test_create(g_name, 4, 64, 0, 2, TEST_POOL_ORDERED);
    CHECK_RC(fe_claim(r, 2, 0, &seq), FE_OK);
    CHECK_RC(fe_publish(r, seq, 2), FE_OK);
    CHECK_RC(fe_take(r, 1, 1, 0, &s, &n), FE_OK);
    fe_abort(r);
    CHECK_RC(fe_take(r, 1, 1, 0, &s, &n), FE_ABORTED);
    CHECK_RC(fe_take(r, 1, 1, -1, &s, &n), FE_ABORTED);
    CHECK_RC(fe_claim(r, 1, -1, &seq), FE_ABORTED);
    test_close_unlink(g_name, r);
    return TEST_PASS;
}
