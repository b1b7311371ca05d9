/*
 * Lookback: with lookback=2 and slots=4 the producer may not claim a slot that
 * would overwrite one of the 2 items before the oldest item in flight
 * (claimed, published, or held by any stage).  fe_claim with timeout 0 fails
 * with -ETIMEDOUT until the last stage finishes that oldest item, a producer
 * blocked in fe_claim is woken by that fe_done, and while an item is held its
 * 2 predecessors keep their payload.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include "check.h"

static fe_ring *prod, *pool, *ord;

static void payload_is(fe_ring *r, uint64_t seq)
{
    CHECK_EQ(test_get_u64(fe_slot(r, seq)), 7000 + seq);
}

static void produce(uint32_t n, uint64_t want_seq)
{
    uint64_t seq;
    CHECK_RC(fe_claim(prod, n, 0, &seq), FE_OK);
    CHECK_EQ(seq, want_seq);
    for (uint32_t i = 0; i < n; i++)
        test_put_u64(fe_slot(prod, seq + i), 7000 + seq + i);
    CHECK_RC(fe_publish(prod, seq, n), FE_OK);
}

static void consume_all(uint32_t stage, fe_ring *r, uint64_t first, uint32_t count)
{
    uint64_t s;
    uint32_t n;
    CHECK_RC(fe_take(r, stage, count, 0, &s, &n), FE_OK);
    CHECK_EQ(s, first);
    CHECK_EQ(n, count);
    CHECK_RC(fe_done(r, stage, s, n), FE_OK);
}

static atomic_int g_claimed;
static uint64_t g_claim_seq;
static int g_claim_rc;

static void *blocked_claim(void *arg)
{
    (void)arg;
    g_claim_rc = fe_claim(prod, 1, -1, &g_claim_seq);
    atomic_store(&g_claimed, 1);
    return NULL;
}

int main(void)
{
    test_watchdog(30);
    const char *name = test_ring_name();
    prod = test_create(name, 4, 64, 2, 2, TEST_POOL_ORDERED);
    test_open(name, &pool, &ord);
    CHECK_EQ(fe_lookback(pool), 2);
    uint64_t seq, s;
    uint32_t n;

    /* Run items 0..3 through so that every slot has a past. */
    produce(2, 0);
    consume_all(1, pool, 0, 2);
    consume_all(2, ord, 0, 2);
    produce(2, 2);
    consume_all(1, pool, 2, 2);
    consume_all(2, ord, 2, 2);

    /* Nothing in flight: 4 and 5 may overwrite items 0 and 1; 6 would
     * overwrite item 2, a lookback item of 4. */
    produce(2, 4);
    CHECK_RC(fe_claim(prod, 1, 0, &seq), -ETIMEDOUT);
    CHECK_RC(fe_claim(prod, 1, 10 * 1000000LL, &seq), -ETIMEDOUT);
    payload_is(pool, 2);
    payload_is(pool, 3);

    /* The pool holds 4: its predecessors 2 and 3 are intact. */
    CHECK_RC(fe_take(pool, 1, 1, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 4);
    payload_is(pool, 2);
    payload_is(pool, 3);
    CHECK_RC(fe_claim(prod, 1, 0, &seq), -ETIMEDOUT);
    CHECK_RC(fe_done(pool, 1, 4, 1), FE_OK);
    /* Finished by the pool, not by the last stage: still in flight. */
    CHECK_RC(fe_claim(prod, 1, 0, &seq), -ETIMEDOUT);
    CHECK_RC(fe_take(ord, 2, 1, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 4);
    payload_is(ord, 2);
    payload_is(ord, 3);

    /* A producer blocked in claim is woken when the last stage finishes 4. */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocked_claim, NULL) == 0);
    test_sleep_ns(50 * 1000000LL); /* let it block; not asserted */
    CHECK_EQ(atomic_load(&g_claimed), 0);
    CHECK_RC(fe_done(ord, 2, 4, 1), FE_OK);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_RC(g_claim_rc, FE_OK);
    CHECK_EQ(g_claim_seq, 6); /* overwrites item 2; 5 in flight keeps 3, 4 */
    payload_is(pool, 3);
    payload_is(pool, 4);
    payload_is(pool, 5);
    /* 7 would overwrite item 3, a lookback item of 5. */
    CHECK_RC(fe_claim(prod, 1, 0, &seq), -ETIMEDOUT);
    test_put_u64(fe_slot(prod, 6), 7006);
    CHECK_RC(fe_publish(prod, 6, 1), FE_OK);

    /* Pool takes 5 and 6 and reads their predecessors in place. */
    CHECK_RC(fe_take(pool, 1, 2, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 5);
    CHECK_EQ(n, 2);
    for (uint64_t i = 3; i <= 6; i++)
        payload_is(pool, i);
    CHECK_RC(fe_done(pool, 1, 6, 1), FE_OK);
    CHECK_RC(fe_claim(prod, 1, 0, &seq), -ETIMEDOUT);
    CHECK_RC(fe_done(pool, 1, 5, 1), FE_OK);
    CHECK_RC(fe_claim(prod, 1, 0, &seq), -ETIMEDOUT);
    consume_all(2, ord, 5, 1);
    /* 5 finished; 6 in flight keeps 4 and 5: 7 (over 3) ok, 8 (over 4) not. */
    CHECK_RC(fe_claim(prod, 2, 0, &seq), -ETIMEDOUT);
    CHECK_RC(fe_claim(prod, 1, 0, &seq), FE_OK);
    CHECK_EQ(seq, 7);
    payload_is(ord, 4);
    payload_is(ord, 5);
    payload_is(ord, 6);
    /* 7 claimed but unpublished is in flight too: its past (5, 6) stays. */
    consume_all(2, ord, 6, 1);
    CHECK_RC(fe_claim(prod, 1, 0, &seq), FE_OK);
    CHECK_EQ(seq, 8); /* over 4 */
    CHECK_RC(fe_claim(prod, 1, 0, &seq), -ETIMEDOUT); /* over 5 */
    payload_is(ord, 5);
    payload_is(ord, 6);

    test_close_unlink(name, ord, pool, prod);
    return TEST_PASS;
}
