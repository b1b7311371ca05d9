/*
 * Idle waiting uses no CPU: a consumer blocked in fe_take for ~300 ms, and a
 * producer blocked in fe_claim on a full ring for ~300 ms, each use under
 * 5 ms of CPU time (getrusage RUSAGE_THREAD around the call), and are woken
 * by the publish / done that they wait for: the call (with an infinite
 * timeout, so only a wake-up can end it; the watchdog fails a lost one)
 * returns that item.  Latency is not asserted; the sleeps only make the
 * waiter actually block.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include "check.h"

#define MS 1000000LL
#define CPU_LIMIT_NS (5 * MS)

static const char *g_name;
static atomic_int g_ready, g_released;

struct result {
    int rc;
    uint64_t seq;
    uint32_t n;
    uint64_t payload;
    int released_before_return; /* the waker's flag was set when the call returned */
    int64_t cpu_ns;
    int64_t wall_ns;
};

static int64_t thread_cpu_ns(void)
{
    struct rusage ru;
    CHECK(getrusage(RUSAGE_THREAD, &ru) == 0);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

static int64_t g_spin_ns = -1; /* -1: the default */

/* The waiting thread's own handle, with its spin set to g_spin_ns. */
static fe_ring *open_waiter(void)
{
    fe_ring *r;
    test_open(g_name, &r);
    if (g_spin_ns >= 0)
        fe_set_spin_ns(r, g_spin_ns);
    return r;
}

static void *consumer(void *arg)
{
    struct result *res = arg;
    fe_ring *r = open_waiter();
    atomic_store(&g_ready, 1);
    int64_t c0 = thread_cpu_ns(), t0 = test_now_ns();
    res->rc = fe_take(r, 1, 4, -1, &res->seq, &res->n);
    res->released_before_return = atomic_load(&g_released);
    res->wall_ns = test_now_ns() - t0;
    res->cpu_ns = thread_cpu_ns() - c0;
    if (res->rc == 0) {
        res->payload = test_get_u64(fe_slot(r, res->seq));
        CHECK_RC(fe_done(r, 1, res->seq, res->n), FE_OK);
    }
    fe_close(r);
    return NULL;
}

/* The producer: fills the ring, then waits for one more slot. */
static void *producer(void *arg)
{
    struct result *res = arg;
    fe_ring *r = open_waiter();
    uint64_t seq;
    CHECK_RC(fe_claim(r, fe_slots(r), 0, &seq), FE_OK);
    CHECK_RC(fe_publish(r, seq, fe_slots(r)), FE_OK);
    atomic_store(&g_ready, 1);
    int64_t c0 = thread_cpu_ns(), t0 = test_now_ns();
    res->rc = fe_claim(r, 1, -1, &res->seq);
    res->released_before_return = atomic_load(&g_released);
    res->wall_ns = test_now_ns() - t0;
    res->cpu_ns = thread_cpu_ns() - c0;
    res->n = 1;
    fe_close(r);
    return NULL;
}

static void report(const char *what, const struct result *res)
{
    printf("%s: rc=%d seq=%llu n=%u cpu=%.3f ms wall=%.1f ms\n", what, res->rc,
           (unsigned long long)res->seq, res->n, res->cpu_ns / 1e6, res->wall_ns / 1e6);
}

/* Makes a one-stage ring of `kind`, starts `waiter` (with its own handle)
 * and gives it time to block; returns the creator's handle. */
static fe_ring *start_blocked(uint8_t kind, void *(*waiter)(void *), int64_t spin_ns,
                              struct result *res, pthread_t *t)
{
    g_name = test_ring_name();
    const uint8_t kinds[] = {kind};
    fe_ring *r = test_create(g_name, 4, 64, 0, 1, kinds);
    atomic_store(&g_ready, 0);
    atomic_store(&g_released, 0);
    g_spin_ns = spin_ns;
    memset(res, 0, sizeof *res);
    CHECK(pthread_create(t, NULL, waiter, res) == 0);
    while (!atomic_load(&g_ready))
        sched_yield();
    test_sleep_ns(300 * MS); /* the waiter blocks meanwhile */
    return r;
}

/* The waiter was woken by our call, not before, and slept without CPU. */
static void check_slept(const struct result *res)
{
    CHECK_EQ(res->released_before_return, 1);
    CHECK(res->cpu_ns < CPU_LIMIT_NS);
}

static void consumer_case(int64_t spin_ns)
{
    struct result res;
    pthread_t t;
    fe_ring *prod = start_blocked(FE_POOL, consumer, spin_ns, &res, &t);
    uint64_t seq;
    CHECK_RC(fe_claim(prod, 1, 0, &seq), FE_OK);
    test_put_u64(fe_slot(prod, seq), 0xC0FFEE);
    atomic_store(&g_released, 1);
    CHECK_RC(fe_publish(prod, seq, 1), FE_OK);
    CHECK(pthread_join(t, NULL) == 0);
    report(spin_ns < 0 ? "take, default spin" : "take, spin 0", &res);
    CHECK_RC(res.rc, FE_OK);
    CHECK_EQ(res.seq, 0);
    CHECK_EQ(res.n, 1);
    CHECK_EQ(res.payload, 0xC0FFEE);
    check_slept(&res);
    test_close_unlink(g_name, prod);
}

static void producer_case(int64_t spin_ns)
{
    struct result res;
    pthread_t t;
    fe_ring *cons = start_blocked(FE_ORDERED, producer, spin_ns, &res, &t);
    uint64_t s;
    uint32_t n;
    CHECK_RC(fe_take(cons, 1, 1, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 0);
    atomic_store(&g_released, 1);
    CHECK_RC(fe_done(cons, 1, s, n), FE_OK);
    CHECK(pthread_join(t, NULL) == 0);
    report(spin_ns < 0 ? "claim, default spin" : "claim, spin 0", &res);
    CHECK_RC(res.rc, FE_OK);
    CHECK_EQ(res.seq, 4);
    check_slept(&res);
    test_close_unlink(g_name, cons);
}

int main(void)
{
    test_watchdog(50);
    consumer_case(-1);
    consumer_case(0);
    producer_case(-1);
    producer_case(0);
    return TEST_PASS;
}
