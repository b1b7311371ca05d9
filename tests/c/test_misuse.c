/*
 * Misuse is refused with an error and changes nothing, one scenario each, on a
 * ring of 8 slots, lookback 2, a pool (m1, m2) then an ordered stage (ord):
 *   claims_past_slots_minus_lookback: claiming more than slots - lookback gives
 *       -EINVAL; a claim of exactly that works.
 *   stages_that_do_not_exist: stage 0 or a stage past nstages gives -EINVAL for
 *       take, done and stats.
 *   done_with_nothing_taken: FE_ENOTHELD at both stages.
 *   publish_out_of_order: publishing out of order, more than claimed, unclaimed
 *       items, or twice is refused, and nothing becomes ready.
 *   pool_done_not_held: fe_done of a sequence the member does not hold (never
 *       taken, partly held, not published, already done) gives FE_ENOTHELD.
 *   ordered_done_out_of_order: the ordered stage finishing out of order, or
 *       what it did not take, is refused.
 *   fast_paths_refuse_misuse: once the producer's fast path runs (a claim
 *       succeeded), claims of 0, of slots - lookback + 1 and of UINT32_MAX
 *       still give -EINVAL, and a handle that is not the producer (or no longer
 *       is, after fe_release) cannot publish.
 * After each refusal the ring still delivers every item exactly once (the
 * counters at the end of each scenario).
 */
#define _GNU_SOURCE
#include "check.h"

struct fx {
    const char *name;
    fe_ring *prod, *m1, *m2, *ord;
};

static struct fx setup(void)
{
    struct fx f;
    f.name = test_ring_name();
    f.prod = test_create(f.name, 8, 64, 2, 2, TEST_POOL_ORDERED);
    test_open(f.name, &f.m1, &f.m2, &f.ord);
    return f;
}

/* Every stage finished `items` items, and the ring is torn down. */
static void teardown(struct fx *f, uint64_t items)
{
    fe_stage_stats st;
    for (uint32_t k = 0; k <= 2; k++) {
        CHECK_RC(fe_stats(f->prod, k, &st), FE_OK);
        CHECK_EQ(st.items, items);
    }
    test_close_unlink(f->name, f->ord, f->m2, f->m1, f->prod);
}

/* Claims and publishes 4 items with payloads 900 + seq. */
static void publish4(struct fx *f)
{
    uint64_t seq;
    CHECK_RC(fe_claim(f->prod, 4, 0, &seq), FE_OK);
    for (uint64_t i = 0; i < 4; i++)
        test_put_u64(fe_slot(f->prod, seq + i), 900 + seq + i);
    CHECK_RC(fe_publish(f->prod, seq, 4), FE_OK);
}

/* Member r takes exactly [want, want + n) at stage k, at once. */
static void take_exactly(fe_ring *r, uint32_t k, uint32_t max_n, uint64_t want, uint32_t n)
{
    uint64_t s;
    uint32_t got;
    CHECK_RC(fe_take(r, k, max_n, 0, &s, &got), FE_OK);
    CHECK_EQ(s, want);
    CHECK_EQ(got, n);
}

/* Moves items [from, from + n) through both stages. */
static void pass_through(struct fx *f, uint64_t from, uint32_t n)
{
    take_exactly(f->m1, 1, 8, from, n);
    CHECK_RC(fe_done(f->m1, 1, from, n), FE_OK);
    take_exactly(f->ord, 2, 8, from, n);
    for (uint32_t i = 0; i < n; i++)
        CHECK_EQ(test_get_u64(fe_slot(f->ord, from + i)), 900 + from + i);
    CHECK_RC(fe_done(f->ord, 2, from, n), FE_OK);
}

static void claims_past_slots_minus_lookback(void)
{
    struct fx f = setup();
    uint64_t seq;
    CHECK_RC(fe_claim(f.prod, 7, 0, &seq), -EINVAL);
    CHECK_RC(fe_claim(f.prod, 8, -1, &seq), -EINVAL);
    CHECK_RC(fe_claim(f.prod, 100, -1, &seq), -EINVAL);
    CHECK_RC(fe_claim(f.prod, 6, 0, &seq), FE_OK);
    CHECK_EQ(seq, 0);
    for (uint64_t i = 0; i < 6; i++)
        test_put_u64(fe_slot(f.prod, i), 900 + i);
    CHECK_RC(fe_publish(f.prod, seq, 6), FE_OK);
    pass_through(&f, 0, 6);
    teardown(&f, 6);
}

static void stages_that_do_not_exist(void)
{
    struct fx f = setup();
    uint64_t s;
    uint32_t n;
    fe_stage_stats st;
    CHECK_RC(fe_take(f.m1, 0, 1, 0, &s, &n), -EINVAL);
    CHECK_RC(fe_take(f.m1, 3, 1, 0, &s, &n), -EINVAL);
    CHECK_RC(fe_take(f.m1, 1000, 1, -1, &s, &n), -EINVAL);
    CHECK_RC(fe_done(f.m1, 0, 0, 1), -EINVAL);
    CHECK_RC(fe_done(f.m1, 3, 0, 1), -EINVAL);
    CHECK_RC(fe_stats(f.m1, FE_MAX_STAGES + 1, &st), -EINVAL);
    CHECK_RC(fe_stats(f.m1, 3, &st), -EINVAL);
    publish4(&f);
    pass_through(&f, 0, 4);
    teardown(&f, 4);
}

static void done_with_nothing_taken(void)
{
    struct fx f = setup();
    CHECK_RC(fe_done(f.m1, 1, 0, 1), FE_ENOTHELD);
    CHECK_RC(fe_done(f.ord, 2, 0, 1), FE_ENOTHELD);
    publish4(&f);
    CHECK_RC(fe_done(f.m1, 1, 0, 1), FE_ENOTHELD); /* published, not taken */
    pass_through(&f, 0, 4);
    teardown(&f, 4);
}

static void publish_out_of_order(void)
{
    struct fx f = setup();
    uint64_t seq;
    CHECK_RC(fe_claim(f.prod, 4, 0, &seq), FE_OK);
    CHECK_EQ(seq, 0);
    for (uint64_t i = 0; i < 4; i++)
        test_put_u64(fe_slot(f.prod, i), 900 + i);
    CHECK(fe_publish(f.prod, 1, 1) < 0);
    CHECK(fe_publish(f.prod, 2, 2) < 0);
    CHECK(fe_publish(f.prod, 0, 5) < 0); /* one more than claimed */
    CHECK(fe_publish(f.prod, 4, 1) < 0); /* never claimed */
    CHECK_EQ(fe_ready(f.m1, 1), 0);
    CHECK_RC(fe_publish(f.prod, 0, 2), FE_OK);
    CHECK_EQ(fe_ready(f.m1, 1), 2);
    CHECK(fe_publish(f.prod, 0, 1) < 0); /* again */
    CHECK_EQ(fe_ready(f.m1, 1), 2);
    CHECK_RC(fe_publish(f.prod, 2, 2), FE_OK);
    CHECK_EQ(fe_ready(f.m1, 1), 4);
    pass_through(&f, 0, 4);
    teardown(&f, 4);
}

static void pool_done_not_held(void)
{
    struct fx f = setup();
    publish4(&f);
    take_exactly(f.m1, 1, 2, 0, 2); /* m1 holds 0..1 */
    take_exactly(f.m2, 1, 1, 2, 1); /* m2 holds 2 */
    /* (another member's items: see test_done_other_member.c) */
    CHECK_RC(fe_done(f.m1, 1, 3, 1), FE_ENOTHELD); /* not taken by anyone */
    CHECK_RC(fe_done(f.m2, 1, 2, 2), FE_ENOTHELD); /* 2 held, 3 not */
    CHECK_RC(fe_done(f.m1, 1, 7, 1), FE_ENOTHELD); /* not even published */
    CHECK_RC(fe_done(f.m1, 1, 100, 1), FE_ENOTHELD);
    CHECK_EQ(fe_ready(f.ord, 2), 0);
    CHECK_RC(fe_done(f.m1, 1, 1, 1), FE_OK);
    CHECK_RC(fe_done(f.m1, 1, 1, 1), FE_ENOTHELD); /* twice */
    CHECK_EQ(fe_ready(f.ord, 2), 0);
    CHECK_RC(fe_done(f.m1, 1, 0, 1), FE_OK);
    CHECK_RC(fe_done(f.m1, 1, 0, 2), FE_ENOTHELD);
    CHECK_EQ(fe_ready(f.ord, 2), 2);
    CHECK_RC(fe_done(f.m2, 1, 2, 1), FE_OK);
    take_exactly(f.m2, 1, 4, 3, 1);
    CHECK_RC(fe_done(f.m2, 1, 3, 1), FE_OK);
    CHECK_EQ(fe_ready(f.ord, 2), 4);
    take_exactly(f.ord, 2, 8, 0, 4);
    CHECK_RC(fe_done(f.ord, 2, 0, 4), FE_OK);
    teardown(&f, 4);
}

static void ordered_done_out_of_order(void)
{
    struct fx f = setup();
    publish4(&f);
    take_exactly(f.m1, 1, 8, 0, 4);
    CHECK_RC(fe_done(f.m1, 1, 0, 4), FE_OK);
    take_exactly(f.ord, 2, 3, 0, 3);
    CHECK(fe_done(f.ord, 2, 1, 1) < 0);
    CHECK(fe_done(f.ord, 2, 2, 1) < 0);
    CHECK_RC(fe_done(f.ord, 2, 3, 1), FE_ENOTHELD); /* ready but not taken */
    CHECK_RC(fe_done(f.ord, 2, 0, 4), FE_ENOTHELD);
    CHECK_RC(fe_done(f.ord, 2, 0, 1), FE_OK);
    CHECK_RC(fe_done(f.ord, 2, 0, 1), FE_ENOTHELD);
    CHECK_RC(fe_done(f.ord, 2, 1, 2), FE_OK);
    take_exactly(f.ord, 2, 3, 3, 1);
    CHECK_EQ(test_get_u64(fe_slot(f.ord, 3)), 903);
    CHECK_RC(fe_done(f.ord, 2, 3, 1), FE_OK);
    teardown(&f, 4);
}

static void fast_paths_refuse_misuse(void)
{
    struct fx f = setup();
    uint64_t seq;
    publish4(&f); /* the claim fast path is armed now */
    CHECK_RC(fe_claim(f.prod, 0, 0, &seq), -EINVAL);
    CHECK_RC(fe_claim(f.prod, 7, 0, &seq), -EINVAL);
    CHECK_RC(fe_claim(f.prod, UINT32_MAX, 0, &seq), -EINVAL);
    CHECK_RC(fe_publish(f.m1, 4, 1), FE_ENOTHELD);
    CHECK_RC(fe_publish(f.ord, 0, 1), FE_ENOTHELD);
    CHECK_RC(fe_claim(f.prod, 2, 0, &seq), FE_OK);
    CHECK_EQ(seq, 4);
    fe_release(f.prod); /* abandons [4, 6) */
    CHECK_RC(fe_publish(f.prod, 4, 2), FE_ENOTHELD);
    CHECK_RC(fe_publish(f.prod, 4, 1), FE_ENOTHELD);
    CHECK_EQ(fe_ready(f.m1, 1), 4);
    pass_through(&f, 0, 4);
    teardown(&f, 4);
}

int main(void)
{
    test_watchdog(30);
    RUN_SCENARIO(claims_past_slots_minus_lookback);
    RUN_SCENARIO(stages_that_do_not_exist);
    RUN_SCENARIO(done_with_nothing_taken);
    RUN_SCENARIO(publish_out_of_order);
    RUN_SCENARIO(pool_done_not_held);
    RUN_SCENARIO(ordered_done_out_of_order);
    RUN_SCENARIO(fast_paths_refuse_misuse);
    return TEST_PASS;
}
