/*
 * Counters: fe_stats reports, per stage, items finished (stage 0: published),
 * items handed out (stage 0: claimed), stalls / waits (a take that found
 * nothing counts a stall; one that slept on the futex counts a wait), and
 * failed items; the numbers match what was done, read from another handle.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include "check.h"

static const char *g_name;

static uint64_t g_waits_before;

/* Publishes one item once the consumer sleeps (its wait is counted), or
 * after 5 s regardless. */
static void *late_publisher(void *arg)
{
    fe_ring *prod = arg;
    fe_stage_stats st;
    int64_t give_up = test_now_ns() + 5000000000LL;
    while (fe_stats(prod, 1, &st) == 0 && st.waits == g_waits_before &&
           test_now_ns() < give_up)
        test_sleep_ns(1000000);
    uint64_t seq;
    if (fe_claim(prod, 1, 0, &seq) == 0)
        fe_publish(prod, seq, 1);
    return NULL;
}

int main(void)
{
    test_watchdog(30);
    g_name = test_ring_name();
    const uint8_t kinds[] = {FE_POOL, FE_POOL, FE_ORDERED};
    fe_ring *prod = test_create(g_name, 16, 64, 0, 3, kinds), *a, *b, *o, *obs;
    test_open(g_name, &a, &b, &o, &obs);
    fe_stage_stats st;
    uint64_t seq, s;
    uint32_t n;

    for (uint32_t k = 0; k <= 3; k++) {
        memset(&st, 0xEE, sizeof st);
        CHECK_RC(fe_stats(obs, k, &st), FE_OK);
        CHECK_EQ(st.items, 0);
        CHECK_EQ(st.taken, 0);
        CHECK_EQ(st.waits, 0);
        CHECK_EQ(st.stalls, 0);
        CHECK_EQ(st.failed, 0);
    }

    /* Claim 10, publish 7. */
    CHECK_RC(fe_claim(prod, 6, 0, &seq), FE_OK);
    CHECK_RC(fe_claim(prod, 4, 0, &seq), FE_OK);
    CHECK_RC(fe_publish(prod, 0, 7), FE_OK);
    CHECK_RC(fe_stats(obs, 0, &st), FE_OK);
    CHECK_EQ(st.items, 7);
    CHECK_EQ(st.taken, 10);

    /* Stage 1: take 5, finish 3. */
    CHECK_RC(fe_take(a, 1, 5, 0, &s, &n), FE_OK);
    CHECK_EQ(n, 5);
    CHECK_RC(fe_done(a, 1, 0, 3), FE_OK);
    CHECK_RC(fe_stats(obs, 1, &st), FE_OK);
    CHECK_EQ(st.taken, 5);
    CHECK_EQ(st.items, 3);
    CHECK_EQ(st.failed, 0);

    /* Stage 2: takes 3 (all that is ready), finishes them. */
    CHECK_RC(fe_take(b, 2, 8, 0, &s, &n), FE_OK);
    CHECK_EQ(n, 3);
    CHECK_RC(fe_done(b, 2, s, n), FE_OK);
    CHECK_RC(fe_stats(obs, 2, &st), FE_OK);
    CHECK_EQ(st.taken, 3);
    CHECK_EQ(st.items, 3);
    uint64_t stalls_before = st.stalls;

    /* A take that finds nothing is a stall. */
    CHECK_RC(fe_take(b, 2, 8, 0, &s, &n), -ETIMEDOUT);
    CHECK_RC(fe_stats(obs, 2, &st), FE_OK);
    CHECK_EQ(st.stalls, stalls_before + 1);

    /* Stage 3: 2 of the 3. */
    CHECK_RC(fe_take(o, 3, 2, 0, &s, &n), FE_OK);
    CHECK_RC(fe_done(o, 3, s, n), FE_OK);
    CHECK_RC(fe_stats(obs, 3, &st), FE_OK);
    CHECK_EQ(st.taken, 2);
    CHECK_EQ(st.items, 2);

    /* Drain everything published so far. */
    CHECK_RC(fe_done(a, 1, 3, 2), FE_OK);
    CHECK_RC(fe_take(a, 1, 8, 0, &s, &n), FE_OK);
    CHECK_RC(fe_done(a, 1, s, n), FE_OK);
    CHECK_RC(fe_take(b, 2, 8, 0, &s, &n), FE_OK);
    CHECK_RC(fe_done(b, 2, s, n), FE_OK);
    CHECK_RC(fe_take(o, 3, 8, 0, &s, &n), FE_OK);
    CHECK_RC(fe_done(o, 3, s, n), FE_OK);
    for (uint32_t k = 1; k <= 3; k++) {
        CHECK_RC(fe_stats(obs, k, &st), FE_OK);
        CHECK_EQ(st.items, 7);
        CHECK_EQ(st.taken, 7);
    }

    /* A take that sleeps until a publish counts a stall and a wait.  The
     * producer publishes the claimed items first, in order. */
    CHECK_RC(fe_publish(prod, 7, 3), FE_OK);
    CHECK_RC(fe_take(a, 1, 8, 0, &s, &n), FE_OK);
    CHECK_EQ(n, 3);
    CHECK_RC(fe_done(a, 1, s, n), FE_OK);
    CHECK_RC(fe_stats(obs, 1, &st), FE_OK);
    uint64_t waits_before = st.waits, stalls1 = st.stalls;
    g_waits_before = waits_before;
    fe_set_spin_ns(a, 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, late_publisher, prod) == 0);
    CHECK_RC(fe_take(a, 1, 8, -1, &s, &n), FE_OK);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_EQ(s, 10);
    CHECK_EQ(n, 1);
    CHECK_RC(fe_done(a, 1, s, n), FE_OK);
    CHECK_RC(fe_stats(obs, 1, &st), FE_OK);
    CHECK_EQ(st.stalls, stalls1 + 1);
    CHECK(st.waits >= waits_before + 1);
    CHECK_EQ(st.items, 11);
    CHECK_EQ(st.taken, 11);
    CHECK_RC(fe_stats(obs, 0, &st), FE_OK);
    CHECK_EQ(st.items, 11);
    CHECK_EQ(st.taken, 11);
    CHECK_EQ(st.failed, 0);

    test_close_unlink(g_name, obs, o, b, a, prod);
    return TEST_PASS;
}
