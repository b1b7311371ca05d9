/*
 * Closing a handle that holds items moves them on, flagged failed, and frees
 * its roles: fe_close() does for one handle what fe_reclaim() does for a dead
 * process.  All handles here are in this one process (fe_open each).
 *  (i) A pool member takes 2 items and closes without fe_done: the ordered
 *      stage (another handle) receives both, fe_failed() == 1 for both (0 for
 *      the others), fe_stats(stage 1).failed == 2.  An item another member
 *      handle holds stays held, and that member finishes it normally.
 * (ii) The ordered stage's handle takes an item and closes: a new handle
 *      takes the ordered stage (no -EBUSY) and continues after the item,
 *      which moved on flagged failed (to the pool stage behind it, or, when
 *      the ordered stage is the last, to the producer), and the producer
 *      reuses its slot.  Before the close, the new handle gets -EBUSY and the
 *      producer cannot claim that slot.
 * (iii) A producer handle claims 2 items, publishes 1 and closes: a new
 *      producer handle claims (no -EBUSY; -EBUSY before the close), its first
 *      claim is the sequence right after the published item, and the
 *      consumers see both producers' items in order, none flagged failed.
 * (iv) fe_release() does all this at once but keeps the mapping until fe_close().
 */
#define _GNU_SOURCE
#include "check.h"

/* Claims `count` items (no waiting), checks the first is `want`, writes the
 * payload base + seq into each and publishes them. */
static void produce(fe_ring *prod, uint32_t count, uint64_t want, uint64_t base)
{
    uint64_t seq = UINT64_MAX;
    CHECK_RC(fe_claim(prod, count, 0, &seq), FE_OK);
    CHECK_EQ(seq, want);
    for (uint32_t i = 0; i < count; i++)
        test_put_u64(fe_slot(prod, seq + i), base + seq + i);
    CHECK_RC(fe_publish(prod, seq, count), FE_OK);
}

/* One fe_take of `stage` (no waiting) hands out exactly [want, want + n). */
static void take_exactly(fe_ring *r, uint32_t stage, uint32_t max_n, uint64_t want, uint32_t n)
{
    uint64_t s = UINT64_MAX;
    uint32_t got = 0;
    CHECK_RC(fe_take(r, stage, max_n, 0, &s, &got), FE_OK);
    CHECK_EQ(s, want);
    CHECK_EQ(got, n);
}

/* Items [s, s + n) hold payload base + seq and are flagged `failed` (0/1). */
static void check_items(fe_ring *r, uint64_t s, uint32_t n, uint64_t base, int failed)
{
    for (uint32_t i = 0; i < n; i++) {
        CHECK_EQ(test_get_u64(fe_slot(r, s + i)), base + s + i);
        CHECK_RC(fe_failed(r, s + i), failed);
    }
}

static fe_stage_stats stats(fe_ring *r, uint32_t stage)
{
    fe_stage_stats st;
    CHECK_RC(fe_stats(r, stage, &st), FE_OK);
    return st;
}

/* (i) A pool member closes holding 2 items. */
static void pool_member_closes(void)
{
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 8, 64, 0, 2, TEST_POOL_ORDERED), *m1, *m2, *ord;
    test_open(name, &m1, &m2, &ord);
    const uint64_t base = 1000;
    uint64_t s;
    uint32_t n;

    produce(prod, 6, 0, base);
    take_exactly(m1, 1, 2, 0, 2); /* m1 holds 0..1 */
    take_exactly(m2, 1, 1, 2, 1); /* m2 holds 2 */
    CHECK_EQ(fe_ready(ord, 2), 0);
    CHECK_RC(fe_take(ord, 2, 8, 0, &s, &n), -ETIMEDOUT);
    CHECK_EQ(stats(prod, 1).failed, 0);

    fe_close(m1); /* without fe_done */

    /* 0..1 moved on flagged failed; 2 is still m2's. */
    CHECK_EQ(stats(prod, 1).failed, 2);
    CHECK_EQ(stats(prod, 1).items, 2);
    CHECK_EQ(stats(prod, 2).failed, 0);
    CHECK_EQ(fe_ready(ord, 2), 2);
    take_exactly(ord, 2, 8, 0, 2);
    check_items(ord, 0, 2, base, 1);
    CHECK_RC(fe_done(ord, 2, 0, 2), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 0);
    CHECK_RC(fe_failed(ord, 2), 0);

    /* m2 still holds 2 and finishes it, then the rest, none failed. */
    CHECK_RC(fe_done(m2, 1, 2, 1), FE_OK);
    take_exactly(m2, 1, 8, 3, 3);
    CHECK_RC(fe_done(m2, 1, 3, 3), FE_OK);
    take_exactly(ord, 2, 8, 2, 4);
    check_items(ord, 2, 4, base, 0);
    CHECK_RC(fe_done(ord, 2, 2, 4), FE_OK);
    CHECK_EQ(stats(prod, 1).failed, 2);
    CHECK_EQ(stats(prod, 1).items, 6);
    CHECK_EQ(stats(prod, 2).failed, 0);
    CHECK_EQ(stats(prod, 2).items, 6);

    /* The failed items' slots are reused, and the flag is not the new item's. */
    produce(prod, 8, 6, base);
    CHECK_RC(fe_failed(ord, 8), 0);
    CHECK_RC(fe_failed(ord, 9), 0);

    test_close_unlink(name, ord, m2, prod);
}

/* (ii) The ordered stage's handle closes holding 1 item.  kinds: the ordered
 * stage is stage `ord_stage`, the other stage a pool. */
static void ordered_owner_closes(const uint8_t kinds[2], uint32_t ord_stage)
{
    const uint32_t pool_stage = 3 - ord_stage;
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 4, 64, 0, 2, kinds), *pool, *o1, *o2;
    test_open(name, &pool, &o1, &o2);
    const uint64_t base = 2000 + 100 * ord_stage;
    uint64_t s, seq;
    uint32_t n;

    produce(prod, 4, 0, base); /* the ring is full */
    if (pool_stage == 1) {
        take_exactly(pool, 1, 8, 0, 4);
        CHECK_RC(fe_done(pool, 1, 0, 4), FE_OK);
    }
    take_exactly(o1, ord_stage, 1, 0, 1); /* o1 owns the ordered stage, holds 0 */
    CHECK_RC(fe_take(o2, ord_stage, 8, 0, &s, &n), -EBUSY);
    CHECK_RC(fe_claim(prod, 1, 0, &seq), -ETIMEDOUT); /* slot 0 is still held */
    CHECK_EQ(stats(prod, ord_stage).failed, 0);

    fe_close(o1); /* without fe_done */

    CHECK_EQ(stats(prod, ord_stage).failed, 1);
    CHECK_EQ(stats(prod, ord_stage).items, 1);
    CHECK_EQ(stats(prod, pool_stage).failed, 0);
    CHECK_RC(fe_failed(prod, 0), 1);
    if (pool_stage == 2) {
        /* 0 moved on to the pool stage, flagged failed; 1..3 did not */
        CHECK_EQ(fe_ready(pool, 2), 1);
        take_exactly(pool, 2, 8, 0, 1);
        check_items(pool, 0, 1, base, 1);
        CHECK_RC(fe_done(pool, 2, 0, 1), FE_OK);
    }
    /* 0 is finished by the last stage: the producer reuses slot 0. */
    produce(prod, 1, 4, base);
    CHECK_RC(fe_failed(prod, 0), -EINVAL); /* no longer in the ring */
    CHECK_RC(fe_failed(prod, 4), 0);

    /* A new handle takes the ordered stage and continues after 0. */
    take_exactly(o2, ord_stage, 3, 1, 3);
    check_items(o2, 1, 3, base, 0);
    CHECK_RC(fe_done(o2, ord_stage, 1, 3), FE_OK);
    if (pool_stage == 1) {
        take_exactly(pool, 1, 8, 4, 1);
        CHECK_RC(fe_done(pool, 1, 4, 1), FE_OK);
        take_exactly(o2, ord_stage, 8, 4, 1);
        check_items(o2, 4, 1, base, 0);
        CHECK_RC(fe_done(o2, ord_stage, 4, 1), FE_OK);
    } else {
        take_exactly(o2, ord_stage, 8, 4, 1);
        check_items(o2, 4, 1, base, 0);
        CHECK_RC(fe_done(o2, ord_stage, 4, 1), FE_OK);
        take_exactly(pool, 2, 8, 1, 4);
        check_items(pool, 1, 4, base, 0);
        CHECK_RC(fe_done(pool, 2, 1, 4), FE_OK);
    }
    CHECK_EQ(stats(prod, ord_stage).failed, 1);
    CHECK_EQ(stats(prod, ord_stage).items, 5);
    CHECK_EQ(stats(prod, pool_stage).failed, 0);
    CHECK_EQ(stats(prod, pool_stage).items, 5);

    test_close_unlink(name, o2, pool, prod);
}

/* (iii) A producer handle closes with 2 claimed, 1 published. */
static void producer_closes(void)
{
    const char *name = test_ring_name();
    fe_ring *ctl = test_create(name, 8, 64, 0, 2, TEST_POOL_ORDERED), *p1, *p2, *pool, *ord;
    test_open(name, &p1, &p2, &pool, &ord);
    const uint64_t base1 = 3000, base2 = 4000;
    uint64_t seq = UINT64_MAX, s;
    uint32_t n;

    CHECK_RC(fe_claim(p1, 2, 0, &seq), FE_OK);
    CHECK_EQ(seq, 0);
    test_put_u64(fe_slot(p1, 0), base1 + 0);
    test_put_u64(fe_slot(p1, 1), base1 + 1);
    CHECK_RC(fe_publish(p1, 0, 1), FE_OK);
    CHECK_RC(fe_claim(p2, 1, 0, &seq), -EBUSY);
    CHECK_EQ(fe_in_ring(ctl, 1), 1);

    fe_close(p1);

    /* The unpublished item is abandoned: no longer claimed, never published. */
    CHECK_EQ(fe_in_ring(ctl, 0), 1);
    CHECK_EQ(fe_in_ring(ctl, 1), 0);
    CHECK_EQ(fe_ready(pool, 1), 1);
    seq = UINT64_MAX;
    CHECK_RC(fe_claim(p2, 2, 0, &seq), FE_OK);
    CHECK_EQ(seq, 1);
    for (uint64_t i = 1; i < 3; i++)
        test_put_u64(fe_slot(p2, i), base2 + i);
    CHECK_RC(fe_publish(p2, 1, 2), FE_OK);
    CHECK_RC(fe_end(p2), FE_OK);

    /* The consumers see 0 (from p1), then 1..2 (from p2), none failed. */
    take_exactly(pool, 1, 8, 0, 3);
    CHECK_EQ(test_get_u64(fe_slot(pool, 0)), base1 + 0);
    CHECK_EQ(test_get_u64(fe_slot(pool, 1)), base2 + 1);
    CHECK_EQ(test_get_u64(fe_slot(pool, 2)), base2 + 2);
    CHECK_RC(fe_done(pool, 1, 0, 3), FE_OK);
    take_exactly(ord, 2, 8, 0, 3);
    for (uint64_t i = 0; i < 3; i++)
        CHECK_RC(fe_failed(ord, i), 0);
    CHECK_RC(fe_done(ord, 2, 0, 3), FE_OK);
    CHECK_RC(fe_take(pool, 1, 8, 0, &s, &n), FE_EOF);
    CHECK_RC(fe_take(ord, 2, 8, 0, &s, &n), FE_EOF);
    CHECK(fe_end_seq(ctl) == 3);
    CHECK_EQ(stats(ctl, 0).items, 3);
    CHECK_EQ(stats(ctl, 0).taken, 3);
    for (uint32_t k = 0; k <= 2; k++)
        CHECK_EQ(stats(ctl, k).failed, 0);

    test_close_unlink(name, ord, pool, p2, ctl);
}

/* (iv) fe_release() lets go at once but keeps the mapping: the released
 * member's items move on flagged failed, its slot pointers stay valid until
 * fe_close(), and it can take nothing more. */
static void release_keeps_mapping(void)
{
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 8, 64, 0, 2, TEST_POOL_ORDERED), *m, *ord;
    test_open(name, &m, &ord);
    uint64_t s;
    uint32_t n;
    produce(prod, 3, 0, 5000);
    take_exactly(m, 1, 2, 0, 2);
    uint64_t *p = fe_slot(m, 1);
    fe_release(m);
    take_exactly(ord, 2, 8, 0, 2);
    check_items(ord, 0, 2, 5000, 1);
    CHECK_RC(fe_take(m, 1, 8, 0, &s, &n), FE_ECLOSED);
    CHECK_RC(fe_claim(m, 1, 0, &s), FE_ECLOSED);
    CHECK_RC(fe_done(m, 1, 0, 2), FE_ENOTHELD);
    CHECK_EQ(*p, 5001); /* still mapped */
    fe_release(m); /* again: nothing */
    CHECK_EQ(stats(prod, 1).failed, 2);
    test_close_unlink(name, m, ord, prod);
}

int main(void)
{
    test_watchdog(30);
    pool_member_closes();
    const uint8_t ordered_last[] = {FE_POOL, FE_ORDERED};
    const uint8_t ordered_first[] = {FE_ORDERED, FE_POOL};
    ordered_owner_closes(ordered_last, 2);
    ordered_owner_closes(ordered_first, 1);
    producer_closes();
    release_keeps_mapping();
    return TEST_PASS;
}
