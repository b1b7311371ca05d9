/*
 * Runs: fe_claim(n) returns the first of n consecutive sequences and the next
 * claim continues after them; a claimed run may be published in pieces, in
 * order; fe_take(max_n) hands out a run [seq, seq+n) with 1 <= n <= max_n,
 * taking as much as is ready up to max_n; runs handed to different pool
 * members are disjoint and together cover every item; fe_done may finish a
 * run in parts.
 */
#define _GNU_SOURCE
#include "check.h"

int main(void)
{
    test_watchdog(30);
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 16, 64, 0, 2, TEST_POOL_ORDERED), *m1, *m2, *ord;
    test_open(name, &m1, &m2, &ord);

    uint64_t seq, s;
    uint32_t n;
    CHECK_RC(fe_claim(prod, 8, 0, &seq), FE_OK);
    CHECK_EQ(seq, 0);
    uint64_t seq2;
    CHECK_RC(fe_claim(prod, 4, 0, &seq2), FE_OK);
    CHECK_EQ(seq2, 8);
    for (uint64_t i = 0; i < 12; i++)
        test_put_u64(fe_slot(prod, i), 500 + i);
    /* Publish the 12 claimed items in three pieces, in order. */
    CHECK_RC(fe_publish(prod, 0, 5), FE_OK);
    CHECK_EQ(fe_ready(m1, 1), 5);
    CHECK_RC(fe_publish(prod, 5, 3), FE_OK);
    CHECK_RC(fe_publish(prod, 8, 4), FE_OK);
    CHECK_EQ(fe_ready(m1, 1), 12);

    /* m1 asks for 3 of the 12 ready: gets exactly 3. */
    CHECK_RC(fe_take(m1, 1, 3, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 0);
    CHECK_EQ(n, 3);
    /* m2 asks for 100: gets the other 9, one consecutive run. */
    uint64_t s2;
    uint32_t n2;
    CHECK_RC(fe_take(m2, 1, 100, 0, &s2, &n2), FE_OK);
    CHECK_EQ(s2, 3);
    CHECK_EQ(n2, 9);
    uint64_t stride = fe_stride(m2);
    for (uint32_t i = 0; i < n2; i++)
        CHECK_EQ(test_get_u64((uint8_t *)fe_slot(m2, s2) + i * stride), 500 + s2 + i);
    CHECK_RC(fe_take(m1, 1, 1, 0, &s, &n), -ETIMEDOUT);
    CHECK_EQ(fe_ready(m1, 1), 0);

    /* m2 finishes its run in three parts, out of order; m1 in one piece. */
    CHECK_RC(fe_done(m2, 1, 8, 4), FE_OK);
    CHECK_RC(fe_done(m2, 1, 3, 2), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 0); /* 0..2 still held by m1 */
    CHECK_RC(fe_done(m1, 1, 0, 3), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 5); /* 0..4; 5..7 still held */
    CHECK_RC(fe_done(m2, 1, 5, 3), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 12);

    /* The ordered stage takes runs of exactly max_n while enough is ready. */
    const uint32_t want[] = {1, 4, 2, 5};
    uint64_t next = 0;
    for (size_t k = 0; k < 4; k++) {
        CHECK_RC(fe_take(ord, 2, want[k], 0, &s, &n), FE_OK);
        CHECK_EQ(s, next);
        CHECK_EQ(n, want[k]);
        for (uint32_t i = 0; i < n; i++)
            CHECK_EQ(test_get_u64((uint8_t *)fe_slot(ord, s) + i * stride), 500 + s + i);
        /* finish in two parts, in order */
        if (n > 1) {
            CHECK_RC(fe_done(ord, 2, s, 1), FE_OK);
            CHECK_RC(fe_done(ord, 2, s + 1, n - 1), FE_OK);
        } else {
            CHECK_RC(fe_done(ord, 2, s, n), FE_OK);
        }
        next += n;
    }
    CHECK_EQ(next, 12);
    CHECK_RC(fe_take(ord, 2, 8, 0, &s, &n), -ETIMEDOUT);

    /* All 16 slots are free again: a run of 16 is claimable. */
    CHECK_RC(fe_claim(prod, 16, 0, &seq), FE_OK);
    CHECK_EQ(seq, 12);
    CHECK_RC(fe_publish(prod, seq, 16), FE_OK);
    CHECK_RC(fe_take(m1, 1, 16, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 12);
    CHECK_EQ(n, 16);
    CHECK_RC(fe_done(m1, 1, s, n), FE_OK);
    CHECK_RC(fe_take(ord, 2, 16, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 12);
    CHECK_EQ(n, 16);
    CHECK_RC(fe_done(ord, 2, s, n), FE_OK);

    test_close_unlink(name, ord, m2, m1, prod);
    return TEST_PASS;
}
