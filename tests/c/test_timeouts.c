/*
 * Timeouts: fe_take with nothing published returns -ETIMEDOUT for a timeout
 * of 0 (at once) and of 10 ms (after at least 10 ms); fe_claim on a full ring
 * (or for more slots than are free) returns -ETIMEDOUT likewise.  A timed-out
 * call changes nothing: the ring works normally afterwards.
 */
#define _GNU_SOURCE
#include "check.h"

#define MS 1000000LL

int main(void)
{
    test_watchdog(30);
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 8, 64, 0, 2, TEST_POOL_ORDERED), *pool, *ord;
    test_open(name, &pool, &ord);

    uint64_t seq, s = 777;
    uint32_t n = 777;
    int64_t t0, dt;

    /* Nothing published. */
    CHECK_RC(fe_take(pool, 1, 1, 0, &s, &n), -ETIMEDOUT);
    CHECK_RC(fe_take(ord, 2, 4, 0, &s, &n), -ETIMEDOUT);
    t0 = test_now_ns();
    CHECK_RC(fe_take(pool, 1, 1, 10 * MS, &s, &n), -ETIMEDOUT);
    dt = test_now_ns() - t0;
    CHECK(dt >= 10 * MS);
    t0 = test_now_ns();
    CHECK_RC(fe_take(ord, 2, 1, 10 * MS, &s, &n), -ETIMEDOUT);
    dt = test_now_ns() - t0;
    CHECK(dt >= 10 * MS);

    /* With spinning off, the same. */
    fe_set_spin_ns(pool, 0);
    t0 = test_now_ns();
    CHECK_RC(fe_take(pool, 1, 1, 10 * MS, &s, &n), -ETIMEDOUT);
    dt = test_now_ns() - t0;
    CHECK(dt >= 10 * MS);

    /* Claimed but unpublished items are not takeable. */
    CHECK_RC(fe_claim(prod, 2, 0, &seq), FE_OK);
    CHECK_EQ(seq, 0);
    CHECK_RC(fe_take(pool, 1, 1, 10 * MS, &s, &n), -ETIMEDOUT);

    /* Fill the ring: 6 more claimable, then nothing. */
    uint64_t seq2;
    CHECK_RC(fe_claim(prod, 7, 0, &seq2), -ETIMEDOUT);
    CHECK_RC(fe_claim(prod, 6, 0, &seq2), FE_OK);
    CHECK_EQ(seq2, 2);
    CHECK_RC(fe_claim(prod, 1, 0, &seq2), -ETIMEDOUT);
    t0 = test_now_ns();
    CHECK_RC(fe_claim(prod, 1, 10 * MS, &seq2), -ETIMEDOUT);
    dt = test_now_ns() - t0;
    CHECK(dt >= 10 * MS);

    /* Published but held by the pool: still full. */
    CHECK_RC(fe_publish(prod, 0, 8), FE_OK);
    CHECK_RC(fe_take(pool, 1, 8, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 0);
    CHECK_EQ(n, 8);
    CHECK_RC(fe_claim(prod, 1, 0, &seq2), -ETIMEDOUT);
    /* Finished by the pool but not by the last stage: still full. */
    CHECK_RC(fe_done(pool, 1, 0, 8), FE_OK);
    CHECK_RC(fe_claim(prod, 1, 10 * MS, &seq2), -ETIMEDOUT);
    CHECK_RC(fe_take(pool, 1, 1, 0, &s, &n), -ETIMEDOUT);

    /* The last stage finishes 3: exactly 3 slots free up. */
    CHECK_RC(fe_take(ord, 2, 3, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 0);
    CHECK_EQ(n, 3);
    CHECK_RC(fe_done(ord, 2, 0, 3), FE_OK);
    CHECK_RC(fe_claim(prod, 4, 0, &seq2), -ETIMEDOUT);
    CHECK_RC(fe_claim(prod, 3, 10 * MS, &seq2), FE_OK);
    CHECK_EQ(seq2, 8);
    CHECK_RC(fe_claim(prod, 1, 0, &seq2), -ETIMEDOUT);

    /* Everything still flows. */
    CHECK_RC(fe_publish(prod, 8, 3), FE_OK);
    CHECK_RC(fe_take(pool, 1, 8, 10 * MS, &s, &n), FE_OK);
    CHECK_EQ(s, 8);
    CHECK_EQ(n, 3);
    CHECK_RC(fe_done(pool, 1, s, n), FE_OK);
    CHECK_RC(fe_take(ord, 2, 8, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 3);
    CHECK_EQ(n, 8);
    CHECK_RC(fe_done(ord, 2, s, n), FE_OK);
    CHECK_RC(fe_take(ord, 2, 8, 0, &s, &n), -ETIMEDOUT);
    CHECK_RC(fe_claim(prod, 8, 0, &seq2), FE_OK);
    CHECK_EQ(seq2, 11);

    test_close_unlink(name, ord, pool, prod);
    return TEST_PASS;
}
