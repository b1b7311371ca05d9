/*
 * Misuse is refused with an error and changes nothing: fe_done of a sequence
 * the caller does not hold (never taken, taken by another member, already
 * done, partly held) gives FE_ENOTHELD; stage 0 or a stage past nstages gives
 * -EINVAL for take, done and stats; publishing out of order or
 * publishing unclaimed items is an error; an ordered stage finishing out of
 * order is an error; claiming more than slots - lookback gives -EINVAL.
 * After each refusal the ring still delivers every item exactly once.
 */
#define _GNU_SOURCE
#include "check.h"

int main(void)
{
    test_watchdog(30);
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 8, 64, 2, 2, TEST_POOL_ORDERED), *m1, *m2, *ord;
    test_open(name, &m1, &m2, &ord);
    uint64_t seq, s;
    uint32_t n;
    int rc;

    /* Claim limits: slots - lookback = 6. */
    CHECK_RC(fe_claim(prod, 7, 0, &seq), -EINVAL);
    CHECK_RC(fe_claim(prod, 8, -1, &seq), -EINVAL);
    CHECK_RC(fe_claim(prod, 100, -1, &seq), -EINVAL);

    /* Bad stages. */
    CHECK_RC(fe_take(m1, 0, 1, 0, &s, &n), -EINVAL);
    CHECK_RC(fe_take(m1, 3, 1, 0, &s, &n), -EINVAL);
    CHECK_RC(fe_take(m1, 1000, 1, -1, &s, &n), -EINVAL);
    CHECK_RC(fe_done(m1, 0, 0, 1), -EINVAL);
    CHECK_RC(fe_done(m1, 3, 0, 1), -EINVAL);
    fe_stage_stats st;
    CHECK_RC(fe_stats(m1, FE_MAX_STAGES + 1, &st), -EINVAL);
    CHECK_RC(fe_stats(m1, 3, &st), -EINVAL);

    /* Done with nothing taken. */
    CHECK_RC(fe_done(m1, 1, 0, 1), FE_ENOTHELD);
    CHECK_RC(fe_done(ord, 2, 0, 1), FE_ENOTHELD);

    /* Publish out of order and publish of unclaimed items. */
    CHECK_RC(fe_claim(prod, 4, 0, &seq), FE_OK);
    CHECK_EQ(seq, 0);
    for (uint64_t i = 0; i < 4; i++)
        test_put_u64(fe_slot(prod, i), 900 + i);
    rc = fe_publish(prod, 1, 1);
    CHECK(rc < 0);
    rc = fe_publish(prod, 2, 2);
    CHECK(rc < 0);
    rc = fe_publish(prod, 0, 5); /* one more than claimed */
    CHECK(rc < 0);
    rc = fe_publish(prod, 4, 1); /* never claimed */
    CHECK(rc < 0);
    CHECK_EQ(fe_ready(m1, 1), 0);
    CHECK_RC(fe_publish(prod, 0, 2), FE_OK);
    CHECK_EQ(fe_ready(m1, 1), 2);
    rc = fe_publish(prod, 0, 1); /* again */
    CHECK(rc < 0);
    CHECK_EQ(fe_ready(m1, 1), 2);
    CHECK_RC(fe_publish(prod, 2, 2), FE_OK);
    CHECK_EQ(fe_ready(m1, 1), 4);

    /* Pool: m1 holds 0..1, m2 holds 2. */
    CHECK_RC(fe_take(m1, 1, 2, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 0);
    CHECK_EQ(n, 2);
    CHECK_RC(fe_take(m2, 1, 1, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 2);
    CHECK_EQ(n, 1);
    /* (another member's items: see test_done_other_member.c) */
    CHECK_RC(fe_done(m1, 1, 3, 1), FE_ENOTHELD);  /* not taken by anyone */
    CHECK_RC(fe_done(m2, 1, 2, 2), FE_ENOTHELD);  /* 2 held, 3 not */
    CHECK_RC(fe_done(m1, 1, 7, 1), FE_ENOTHELD);  /* not even published */
    CHECK_RC(fe_done(m1, 1, 100, 1), FE_ENOTHELD);
    CHECK_EQ(fe_ready(ord, 2), 0);
    CHECK_RC(fe_done(m1, 1, 1, 1), FE_OK);
    CHECK_RC(fe_done(m1, 1, 1, 1), FE_ENOTHELD); /* twice */
    CHECK_EQ(fe_ready(ord, 2), 0);
    CHECK_RC(fe_done(m1, 1, 0, 1), FE_OK);
    CHECK_RC(fe_done(m1, 1, 0, 2), FE_ENOTHELD);
    CHECK_EQ(fe_ready(ord, 2), 2);
    CHECK_RC(fe_done(m2, 1, 2, 1), FE_OK);
    CHECK_RC(fe_take(m2, 1, 4, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 3);
    CHECK_EQ(n, 1);
    CHECK_RC(fe_done(m2, 1, 3, 1), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 4);

    /* Ordered: finishing out of order, or what it does not hold, is refused. */
    CHECK_RC(fe_take(ord, 2, 3, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 0);
    CHECK_EQ(n, 3);
    rc = fe_done(ord, 2, 1, 1);
    CHECK(rc < 0);
    rc = fe_done(ord, 2, 2, 1);
    CHECK(rc < 0);
    CHECK_RC(fe_done(ord, 2, 3, 1), FE_ENOTHELD); /* ready but not taken */
    CHECK_RC(fe_done(ord, 2, 0, 4), FE_ENOTHELD);
    CHECK_RC(fe_done(ord, 2, 0, 1), FE_OK);
    CHECK_RC(fe_done(ord, 2, 0, 1), FE_ENOTHELD);
    CHECK_RC(fe_done(ord, 2, 1, 2), FE_OK);
    CHECK_RC(fe_take(ord, 2, 3, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 3);
    CHECK_EQ(n, 1);
    CHECK_EQ(test_get_u64(fe_slot(ord, 3)), 903);
    CHECK_RC(fe_done(ord, 2, 3, 1), FE_OK);

    /* Claims of up to slots - lookback work. */
    CHECK_RC(fe_claim(prod, 6, 0, &seq), FE_OK);
    CHECK_EQ(seq, 4);
    CHECK_RC(fe_publish(prod, seq, 6), FE_OK);
    CHECK_RC(fe_take(m1, 1, 8, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 4);
    CHECK_EQ(n, 6);
    CHECK_RC(fe_done(m1, 1, s, n), FE_OK);
    CHECK_RC(fe_take(ord, 2, 8, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 4);
    CHECK_EQ(n, 6);
    CHECK_RC(fe_done(ord, 2, s, n), FE_OK);

    /* Counters saw exactly the 10 real items. */
    CHECK_RC(fe_stats(prod, 0, &st), FE_OK);
    CHECK_EQ(st.items, 10);
    CHECK_RC(fe_stats(prod, 1, &st), FE_OK);
    CHECK_EQ(st.items, 10);
    CHECK_RC(fe_stats(prod, 2, &st), FE_OK);
    CHECK_EQ(st.items, 10);

    test_close_unlink(name, ord, m2, m1, prod);
    return TEST_PASS;
}
