/*
 * fe_in_ring(seq) is 1 exactly while the slot of seq holds it: from its claim
 * until the producer claims seq + slots into the same slot; 0 before the
 * claim and after the reuse, also for sequences far off.  fe_failed answers
 * 0 / 1 for items in the ring and a negative code for the others.
 */
#define _GNU_SOURCE
#include "check.h"

int main(void)
{
    test_watchdog(30);
    const char *name = test_ring_name();
    const uint8_t kinds[] = {FE_ORDERED};
    fe_ring *prod = test_create(name, 4, 64, 0, 1, kinds), *cons;
    test_open(name, &cons);
    uint64_t seq, s;
    uint32_t n;

    for (uint64_t q = 0; q < 8; q++)
        CHECK_EQ(fe_in_ring(cons, q), 0);
    CHECK(fe_failed(cons, 0) < 0);

    CHECK_RC(fe_claim(prod, 2, 0, &seq), FE_OK);
    CHECK_EQ(fe_in_ring(cons, 0), 1);
    CHECK_EQ(fe_in_ring(cons, 1), 1);
    CHECK_EQ(fe_in_ring(cons, 2), 0);
    CHECK_EQ(fe_failed(cons, 0), 0);
    CHECK(fe_failed(cons, 2) < 0);

    /* 0..3 through, then 4 claimed into slot 0: item 0 is gone. */
    CHECK_RC(fe_claim(prod, 2, 0, &seq), FE_OK);
    CHECK_RC(fe_publish(prod, 0, 4), FE_OK);
    CHECK_RC(fe_take(cons, 1, 4, 0, &s, &n), FE_OK);
    CHECK_EQ(n, 4);
    for (uint64_t q = 0; q < 4; q++)
        CHECK_EQ(fe_in_ring(cons, q), 1);
    CHECK_RC(fe_done(cons, 1, s, n), FE_OK);
    for (uint64_t q = 0; q < 4; q++)
        CHECK_EQ(fe_in_ring(cons, q), 1); /* finished, not yet reused */
    CHECK_RC(fe_claim(prod, 1, 0, &seq), FE_OK);
    CHECK_EQ(seq, 4);
    CHECK_EQ(fe_in_ring(cons, 0), 0);
    CHECK(fe_failed(cons, 0) < 0);
    for (uint64_t q = 1; q <= 4; q++)
        CHECK_EQ(fe_in_ring(cons, q), 1);
    CHECK_EQ(fe_in_ring(cons, 5), 0);
    CHECK_EQ(fe_in_ring(cons, 4 + (1ull << 40)), 0);
    CHECK_EQ(fe_failed(cons, 4), 0);

    test_close_unlink(name, cons, prod);

    /* Sequence UINT64_MAX ("item -1") was never claimed in a fresh ring, nor
     * after a few items: it is not in the ring and has no failed flag. */
    name = test_ring_name();
    prod = test_create(name, 4, 64, 0, 1, kinds);
    int fresh_in = fe_in_ring(prod, UINT64_MAX), fresh_failed = fe_failed(prod, UINT64_MAX);
    CHECK_RC(fe_claim(prod, 2, 0, &seq), FE_OK);
    int later_in = fe_in_ring(prod, UINT64_MAX), later_failed = fe_failed(prod, UINT64_MAX);
    test_close_unlink(name, prod);
    CHECK_EQ(fresh_in, 0);
    CHECK(fresh_failed < 0);
    CHECK_EQ(later_in, 0);
    CHECK(later_failed < 0);
    return TEST_PASS;
}
