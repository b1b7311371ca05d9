/*
 * The basic flow through a pool stage then an ordered stage, single threaded:
 * claim / publish / take / done.  An item is ready for stage k only after
 * stage k-1 finished it; pool members may finish out of order (and finish
 * part of a run), but the ordered stage still receives items in sequence
 * order; fe_ready counts what a stage could take now.  Sequences start at 0.
 */
#define _GNU_SOURCE
#include "check.h"

int main(void)
{
    test_watchdog(30);
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 8, 64, 0, 2, TEST_POOL_ORDERED), *pool_a, *pool_b, *ord;
    test_open(name, &pool_a, &pool_b, &ord);

    uint64_t seq = 12345, s;
    uint32_t n = 0;

    /* One item end to end. */
    CHECK_RC(fe_claim(prod, 1, 0, &seq), FE_OK);
    CHECK_EQ(seq, 0);
    test_put_u64(fe_slot(prod, seq), 1000);
    CHECK_EQ(fe_ready(pool_a, 1), 0); /* claimed is not published */
    CHECK_RC(fe_take(pool_a, 1, 1, 0, &s, &n), -ETIMEDOUT);
    CHECK_RC(fe_publish(prod, seq, 1), FE_OK);
    CHECK_EQ(fe_ready(pool_a, 1), 1);
    CHECK_EQ(fe_ready(ord, 2), 0);

    CHECK_RC(fe_take(pool_a, 1, 4, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(test_get_u64(fe_slot(pool_a, s)), 1000);
    CHECK_EQ(fe_ready(pool_b, 1), 0);
    CHECK_RC(fe_take(pool_b, 1, 4, 0, &s, &n), -ETIMEDOUT);
    CHECK_EQ(fe_ready(ord, 2), 0);
    CHECK_RC(fe_take(ord, 2, 1, 0, &s, &n), -ETIMEDOUT);
    /* the pool member writes a result next to the payload */
    test_put_u64((uint8_t *)fe_slot(pool_a, 0) + 8, 2000);
    CHECK_RC(fe_done(pool_a, 1, 0, 1), FE_OK);

    CHECK_EQ(fe_ready(ord, 2), 1);
    CHECK_RC(fe_take(ord, 2, 4, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(test_get_u64(fe_slot(ord, 0)), 1000);
    CHECK_EQ(test_get_u64((uint8_t *)fe_slot(ord, 0) + 8), 2000);
    CHECK_RC(fe_done(ord, 2, 0, 1), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 0);

    /* Items 1..4: two pool members take single items, finish out of order. */
    CHECK_RC(fe_claim(prod, 4, 0, &seq), FE_OK);
    CHECK_EQ(seq, 1);
    for (uint32_t i = 0; i < 4; i++)
        test_put_u64(fe_slot(prod, seq + i), 1000 + seq + i);
    CHECK_RC(fe_publish(prod, seq, 4), FE_OK);
    CHECK_EQ(fe_ready(pool_a, 1), 4);

    uint64_t sa, sb;
    uint32_t na, nb;
    CHECK_RC(fe_take(pool_a, 1, 1, 0, &sa, &na), FE_OK);
    CHECK_RC(fe_take(pool_b, 1, 1, 0, &sb, &nb), FE_OK);
    CHECK_EQ(na, 1);
    CHECK_EQ(nb, 1);
    CHECK_EQ(sa, 1);
    CHECK_EQ(sb, 2);
    CHECK_EQ(fe_ready(pool_a, 1), 2);
    /* b finishes item 2 first: the ordered stage must not see it yet. */
    CHECK_RC(fe_done(pool_b, 1, sb, 1), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 0);
    CHECK_RC(fe_take(ord, 2, 4, 0, &s, &n), -ETIMEDOUT);
    CHECK_RC(fe_done(pool_a, 1, sa, 1), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 2);

    /* a takes the remaining run 3..4, finishes the second half first. */
    CHECK_RC(fe_take(pool_a, 1, 8, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 3);
    CHECK_EQ(n, 2);
    CHECK_RC(fe_take(pool_b, 1, 8, 0, &sb, &nb), -ETIMEDOUT);
    CHECK_RC(fe_done(pool_a, 1, 4, 1), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 2);
    CHECK_RC(fe_done(pool_a, 1, 3, 1), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 4);

    /* The ordered stage gets 1..4 in order, in runs of at most max_n. */
    uint64_t next = 1;
    while (next < 5) {
        CHECK_RC(fe_take(ord, 2, 3, 0, &s, &n), FE_OK);
        CHECK_EQ(s, next);
        CHECK(n >= 1 && n <= 3);
        for (uint32_t i = 0; i < n; i++)
            CHECK_EQ(test_get_u64(fe_slot(ord, s + i)), 1000 + s + i);
        CHECK_RC(fe_done(ord, 2, s, n), FE_OK);
        next += n;
    }
    CHECK_EQ(next, 5);
    CHECK_RC(fe_take(ord, 2, 3, 0, &s, &n), -ETIMEDOUT);
    for (uint32_t st = 1; st <= 2; st++)
        CHECK_EQ(fe_ready(prod, st), 0);

    /* Enough cycles to reuse every slot several times. */
    for (uint64_t round = 0; round < 40; round++) {
        CHECK_RC(fe_claim(prod, 3, 0, &seq), FE_OK);
        CHECK_EQ(seq, 5 + round * 3);
        for (uint32_t i = 0; i < 3; i++)
            test_put_u64(fe_slot(prod, seq + i), 1000 + seq + i);
        CHECK_RC(fe_publish(prod, seq, 3), FE_OK);
        uint64_t got = 0;
        while (got < 3) {
            fe_ring *m = (got & 1) ? pool_b : pool_a;
            CHECK_RC(fe_take(m, 1, 2, 0, &s, &n), FE_OK);
            CHECK_EQ(s, seq + got);
            for (uint32_t i = 0; i < n; i++)
                CHECK_EQ(test_get_u64(fe_slot(m, s + i)), 1000 + s + i);
            CHECK_RC(fe_done(m, 1, s, n), FE_OK);
            got += n;
        }
        CHECK_RC(fe_take(ord, 2, 3, 0, &s, &n), FE_OK);
        CHECK_EQ(s, seq);
        CHECK_EQ(n, 3);
        CHECK_RC(fe_done(ord, 2, s, n), FE_OK);
    }

    test_close_unlink(name, ord, pool_b, pool_a, prod);
    return TEST_PASS;
}
