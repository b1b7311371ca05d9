/*
 * The basic flow through a pool stage then an ordered stage, single threaded:
 * claim / publish / take / done.  Scenarios, each on its own ring:
 *   one_item_end_to_end: a claimed item is not ready until published; it is
 *       ready for the ordered stage only after the pool finished it, with what
 *       the pool member wrote next to the payload.  Sequences start at 0.
 *   pool_out_of_order_ordered_in_order: two members take single items and
 *       finish them out of order, and a run finished second half first; the
 *       ordered stage still receives 0..3 in sequence order, in runs of at most
 *       max_n; fe_ready counts what a stage could take now.
 *   slots_reused_many_times: 40 rounds of 3 items through a ring of 8.
 */
#define _GNU_SOURCE
#include "check.h"

struct fx {
    const char *name;
    fe_ring *prod, *pool_a, *pool_b, *ord;
};

static struct fx setup(void)
{
    struct fx f;
    f.name = test_ring_name();
    f.prod = test_create(f.name, 8, 64, 0, 2, TEST_POOL_ORDERED);
    test_open(f.name, &f.pool_a, &f.pool_b, &f.ord);
    return f;
}

static void teardown(struct fx *f)
{
    test_close_unlink(f->name, f->ord, f->pool_b, f->pool_a, f->prod);
}

/* Claims and publishes n items with payloads 1000 + seq; the first must be `want`. */
static void publish(struct fx *f, uint32_t n, uint64_t want)
{
    uint64_t seq = UINT64_MAX;
    CHECK_RC(fe_claim(f->prod, n, 0, &seq), FE_OK);
    CHECK_EQ(seq, want);
    for (uint32_t i = 0; i < n; i++)
        test_put_u64(fe_slot(f->prod, seq + i), 1000 + seq + i);
    CHECK_RC(fe_publish(f->prod, seq, n), FE_OK);
}

static void take_exactly(fe_ring *r, uint32_t k, uint32_t max_n, uint64_t want, uint32_t n)
{
    uint64_t s = UINT64_MAX;
    uint32_t got = 0;
    CHECK_RC(fe_take(r, k, max_n, 0, &s, &got), FE_OK);
    CHECK_EQ(s, want);
    CHECK_EQ(got, n);
}

static void nothing_to_take(fe_ring *r, uint32_t k)
{
    uint64_t s;
    uint32_t n;
    CHECK_EQ(fe_ready(r, k), 0);
    CHECK_RC(fe_take(r, k, 4, 0, &s, &n), -ETIMEDOUT);
}

static void one_item_end_to_end(void)
{
    struct fx f = setup();
    uint64_t seq = 12345;
    CHECK_RC(fe_claim(f.prod, 1, 0, &seq), FE_OK);
    CHECK_EQ(seq, 0);
    test_put_u64(fe_slot(f.prod, seq), 1000);
    nothing_to_take(f.pool_a, 1); /* claimed is not published */
    CHECK_RC(fe_publish(f.prod, seq, 1), FE_OK);
    CHECK_EQ(fe_ready(f.pool_a, 1), 1);
    CHECK_EQ(fe_ready(f.ord, 2), 0);

    take_exactly(f.pool_a, 1, 4, 0, 1);
    CHECK_EQ(test_get_u64(fe_slot(f.pool_a, 0)), 1000);
    nothing_to_take(f.pool_b, 1);
    nothing_to_take(f.ord, 2);
    /* the pool member writes a result next to the payload */
    test_put_u64((uint8_t *)fe_slot(f.pool_a, 0) + 8, 2000);
    CHECK_RC(fe_done(f.pool_a, 1, 0, 1), FE_OK);

    CHECK_EQ(fe_ready(f.ord, 2), 1);
    take_exactly(f.ord, 2, 4, 0, 1);
    CHECK_EQ(test_get_u64(fe_slot(f.ord, 0)), 1000);
    CHECK_EQ(test_get_u64((uint8_t *)fe_slot(f.ord, 0) + 8), 2000);
    CHECK_RC(fe_done(f.ord, 2, 0, 1), FE_OK);
    CHECK_EQ(fe_ready(f.ord, 2), 0);
    teardown(&f);
}

static void pool_out_of_order_ordered_in_order(void)
{
    struct fx f = setup();
    publish(&f, 4, 0);
    CHECK_EQ(fe_ready(f.pool_a, 1), 4);
    take_exactly(f.pool_a, 1, 1, 0, 1);
    take_exactly(f.pool_b, 1, 1, 1, 1);
    CHECK_EQ(fe_ready(f.pool_a, 1), 2);
    /* b finishes item 1 first: the ordered stage must not see it yet. */
    CHECK_RC(fe_done(f.pool_b, 1, 1, 1), FE_OK);
    nothing_to_take(f.ord, 2);
    CHECK_RC(fe_done(f.pool_a, 1, 0, 1), FE_OK);
    CHECK_EQ(fe_ready(f.ord, 2), 2);

    /* a takes the remaining run 2..3, finishes the second half first. */
    take_exactly(f.pool_a, 1, 8, 2, 2);
    nothing_to_take(f.pool_b, 1);
    CHECK_RC(fe_done(f.pool_a, 1, 3, 1), FE_OK);
    CHECK_EQ(fe_ready(f.ord, 2), 2);
    CHECK_RC(fe_done(f.pool_a, 1, 2, 1), FE_OK);
    CHECK_EQ(fe_ready(f.ord, 2), 4);

    /* The ordered stage gets 0..3 in order, in runs of at most max_n. */
    uint64_t next = 0, s;
    uint32_t n;
    while (next < 4) {
        CHECK_RC(fe_take(f.ord, 2, 3, 0, &s, &n), FE_OK);
        CHECK_EQ(s, next);
        CHECK(n >= 1 && n <= 3);
        for (uint32_t i = 0; i < n; i++)
            CHECK_EQ(test_get_u64(fe_slot(f.ord, s + i)), 1000 + s + i);
        CHECK_RC(fe_done(f.ord, 2, s, n), FE_OK);
        next += n;
    }
    CHECK_EQ(next, 4);
    nothing_to_take(f.ord, 2);
    CHECK_EQ(fe_ready(f.prod, 1), 0);
    teardown(&f);
}

static void slots_reused_many_times(void)
{
    struct fx f = setup();
    uint64_t s;
    uint32_t n;
    for (uint64_t round = 0; round < 40; round++) {
        uint64_t seq = round * 3;
        publish(&f, 3, seq);
        uint64_t got = 0;
        while (got < 3) {
            fe_ring *m = (got & 1) ? f.pool_b : f.pool_a;
            CHECK_RC(fe_take(m, 1, 2, 0, &s, &n), FE_OK);
            CHECK_EQ(s, seq + got);
            for (uint32_t i = 0; i < n; i++)
                CHECK_EQ(test_get_u64(fe_slot(m, s + i)), 1000 + s + i);
            CHECK_RC(fe_done(m, 1, s, n), FE_OK);
            got += n;
        }
        take_exactly(f.ord, 2, 3, seq, 3);
        CHECK_RC(fe_done(f.ord, 2, seq, 3), FE_OK);
    }
    teardown(&f);
}

int main(void)
{
    test_watchdog(30);
    RUN_SCENARIO(one_item_end_to_end);
    RUN_SCENARIO(pool_out_of_order_ordered_in_order);
    RUN_SCENARIO(slots_reused_many_times);
    return TEST_PASS;
}
