/*
 * End of stream: after fe_end, fe_end_seq is the number of published items,
 * consumers first drain what was published and then get FE_EOF (and keep
 * getting it), at every stage, with any timeout.  Scenarios:
 *   zero_items_wake_a_blocked_consumer: a stream of zero items ends at once,
 *       and a consumer blocked with an infinite timeout is woken with FE_EOF.
 *   drain_then_eof_unpublished_abandoned: five published, two claimed and
 *       abandoned; the pool drains and gets FE_EOF; the ordered stage, blocked,
 *       waits while the pool holds items, then drains all 5 in order.
 *   last_item_held_is_not_the_end: a stage whose last item is still held by
 *       the stage before it waits for that item (-ETIMEDOUT, not FE_EOF).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include "check.h"

static const char *g_name;
static atomic_int g_returned;
static uint64_t g_items; /* items the thread drained, in order from 0 */

/* Drains `stage` with its own handle and infinite timeouts, checking order;
 * returns the code that ended the loop (FE_EOF when all went well). */
static void *drain(void *arg)
{
    uint32_t stage = (uint32_t)(uintptr_t)arg;
    fe_ring *r = NULL;
    int rc = fe_open(g_name, &r);
    g_items = 0;
    while (rc == 0) {
        uint64_t s;
        uint32_t n;
        rc = fe_take(r, stage, 4, -1, &s, &n);
        if (rc != 0)
            break;
        if (s != g_items) {
            fprintf(stderr, "drain: got seq %llu, expected %llu\n",
                    (unsigned long long)s, (unsigned long long)g_items);
            rc = -1;
            break;
        }
        rc = fe_done(r, stage, s, n);
        g_items += n;
    }
    if (r)
        fe_close(r);
    atomic_store(&g_returned, 1);
    return (void *)(intptr_t)rc;
}

/* Starts drain() of `stage` in a thread. */
static pthread_t start_drain(uint32_t stage)
{
    pthread_t t;
    atomic_store(&g_returned, 0);
    CHECK(pthread_create(&t, NULL, drain, (void *)(uintptr_t)stage) == 0);
    return t;
}

/* drain() ended with FE_EOF after `items` items. */
static void join_drain(pthread_t t, uint64_t items)
{
    void *ret;
    CHECK(pthread_join(t, &ret) == 0);
    CHECK_RC((int)(intptr_t)ret, FE_EOF);
    CHECK_EQ(g_items, items);
}

static void zero_items_wake_a_blocked_consumer(void)
{
    g_name = test_ring_name();
    fe_ring *prod = test_create(g_name, 8, 64, 0, 2, TEST_POOL_ORDERED), *c;
    test_open(g_name, &c);
    pthread_t t = start_drain(1);
    test_sleep_ns(50 * 1000000LL); /* let it block; not asserted */
    CHECK_EQ(atomic_load(&g_returned), 0);
    CHECK(fe_end_seq(prod) == UINT64_MAX);
    CHECK_RC(fe_end(prod), FE_OK);
    join_drain(t, 0);
    CHECK_EQ(fe_end_seq(c), 0);
    uint64_t s;
    uint32_t n;
    CHECK_RC(fe_take(c, 1, 1, 0, &s, &n), FE_EOF);
    CHECK_RC(fe_take(c, 2, 1, -1, &s, &n), FE_EOF);
    test_close_unlink(g_name, c, prod);
}

static void drain_then_eof_unpublished_abandoned(void)
{
    g_name = test_ring_name();
    fe_ring *prod = test_create(g_name, 8, 64, 0, 2, TEST_POOL_ORDERED), *p1, *p2, *ord;
    test_open(g_name, &p1, &p2, &ord);
    uint64_t seq, s, s2;
    uint32_t n, n2;
    CHECK_RC(fe_claim(prod, 5, 0, &seq), FE_OK);
    for (uint64_t i = 0; i < 5; i++)
        test_put_u64(fe_slot(prod, i), 100 + i);
    CHECK_RC(fe_publish(prod, 0, 5), FE_OK);
    CHECK_RC(fe_claim(prod, 2, 0, &seq), FE_OK);
    CHECK_EQ(seq, 5);

    /* The ordered stage waits (blocked) while the pool still works. */
    pthread_t t = start_drain(2);
    CHECK_RC(fe_end(prod), FE_OK);
    CHECK_EQ(fe_end_seq(p1), 5);
    CHECK_EQ(fe_end_seq(ord), 5);

    /* Pool drains: 3 to p1, 2 to p2, then EOF for both. */
    CHECK_RC(fe_take(p1, 1, 3, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 0);
    CHECK_EQ(n, 3);
    CHECK_RC(fe_take(p2, 1, 8, -1, &s2, &n2), FE_OK);
    CHECK_EQ(s2, 3);
    CHECK_EQ(n2, 2);
    CHECK_RC(fe_take(p2, 1, 8, -1, &s2, &n2), FE_EOF);
    CHECK_RC(fe_take(p1, 1, 8, 0, &s2, &n2), FE_EOF);
    CHECK_RC(fe_take(p1, 1, 8, 10 * 1000000LL, &s2, &n2), FE_EOF);
    /* The ordered stage has not ended: the pool still holds its items. */
    CHECK_EQ(atomic_load(&g_returned), 0);
    CHECK_RC(fe_done(p2, 1, 3, 2), FE_OK);
    CHECK_RC(fe_done(p1, 1, 0, 3), FE_OK);

    /* The ordered consumer, blocked until now, drains all 5 in order. */
    join_drain(t, 5);
    CHECK_RC(fe_take(ord, 2, 8, 0, &s, &n), FE_EOF);
    test_close_unlink(g_name, ord, p2, p1, prod);
}

static void last_item_held_is_not_the_end(void)
{
    g_name = test_ring_name();
    fe_ring *prod = test_create(g_name, 8, 64, 0, 2, TEST_POOL_ORDERED), *p1, *ord;
    test_open(g_name, &p1, &ord);
    uint64_t seq, s, last_s;
    uint32_t n, last_n;
    CHECK_RC(fe_claim(prod, 5, 0, &seq), FE_OK);
    CHECK_RC(fe_publish(prod, 0, 5), FE_OK);
    CHECK_RC(fe_claim(prod, 1, 0, &seq), FE_OK);
    CHECK_RC(fe_end(prod), FE_OK);
    CHECK_EQ(fe_end_seq(ord), 5);
    /* The pool finishes 0..3 and holds the last item, 4. */
    CHECK_RC(fe_take(p1, 1, 4, -1, &s, &n), FE_OK);
    CHECK_EQ(s, 0);
    CHECK_EQ(n, 4);
    CHECK_RC(fe_done(p1, 1, s, n), FE_OK);
    CHECK_RC(fe_take(p1, 1, 4, -1, &last_s, &last_n), FE_OK);
    CHECK_EQ(last_s, 4);
    CHECK_EQ(last_n, 1);
    CHECK_RC(fe_take(p1, 1, 2, -1, &s, &n), FE_EOF);
    /* The ordered stage drains 0..3; the last item is not ready, and that
     * is not the end of the stream yet. */
    uint64_t got = 0;
    while (got < 4) {
        CHECK_RC(fe_take(ord, 2, 3, 0, &s, &n), FE_OK);
        CHECK_EQ(s, got);
        for (uint32_t i = 0; i < n; i++)
            CHECK_EQ(fe_failed(ord, s + i), 0);
        CHECK_RC(fe_done(ord, 2, s, n), FE_OK);
        got += n;
    }
    CHECK_EQ(got, 4);
    CHECK_RC(fe_take(ord, 2, 2, 0, &s, &n), -ETIMEDOUT);
    CHECK_RC(fe_take(ord, 2, 2, 10 * 1000000LL, &s, &n), -ETIMEDOUT);
    CHECK_RC(fe_done(p1, 1, last_s, last_n), FE_OK);
    CHECK_RC(fe_take(ord, 2, 2, -1, &s, &n), FE_OK);
    CHECK_EQ(s, 4);
    CHECK_EQ(n, 1);
    CHECK_RC(fe_done(ord, 2, s, n), FE_OK);
    CHECK_RC(fe_take(ord, 2, 2, 0, &s, &n), FE_EOF);
    CHECK_RC(fe_take(p1, 1, 2, 0, &s, &n), FE_EOF);
    CHECK_EQ(fe_ready(ord, 1), 0);
    CHECK_EQ(fe_ready(ord, 2), 0);
    test_close_unlink(g_name, ord, p1, prod);
}

int main(void)
{
    test_watchdog(30);
    RUN_SCENARIO(zero_items_wake_a_blocked_consumer);
    RUN_SCENARIO(drain_then_eof_unpublished_abandoned);
    RUN_SCENARIO(last_item_held_is_not_the_end);
    return TEST_PASS;
}
