/*
 * No wake-up is lost.  A ring producer -> stage 1 -> ordered stage 2, where the
 * main process is the producer and stage 2, and forked partners are stage 1:
 * each item makes a round trip, main -> partner -> main, with a spin budget of
 * 0 everywhere, so that every wait sleeps on the futex.  Every wait has a 5 s
 * timeout: in a round trip nothing else moves, so a lost wake-up shows as
 * -ETIMEDOUT instead of a hang.  Three pairings of the two halves of the
 * handshake (see the top of ring.c):
 *   registered <-> registered        wakers without a fence, waiters that call
 *                                     membarrier (the default)
 *   registered <-> FE_NO_MEMBARRIER  the partner (re-executed with the variable
 *                                     set) fences as a waker and, unable to call
 *                                     membarrier, sleeps in slices as a waiter
 *   registered <-> a pool of 2       two members asleep on each item
 * And a stream through 4 slots with both sides always sleeping, where publishes
 * race with the consumer's way to sleep.
 * Checked: every item comes back in order with the value sent, every partner
 * sees the end and exits 0.
 *
 *   test_wakeups [round trips=20000]
 *   test_wakeups --partner NAME     (internal: one member of stage 1)
 */
#define _GNU_SOURCE
#include <stdbool.h>

#include "check.h"

#define WAIT_NS 5000000000LL

/* Stage 1 until the end: take one item, finish it. */
static int partner(const char *name)
{
    fe_ring *r;
    test_open(name, &r);
    fe_set_spin_ns(r, 0);
    for (;;) {
        uint64_t seq;
        uint32_t n;
        int rc = fe_take(r, 1, 1, WAIT_NS, &seq, &n);
        if (rc == FE_EOF)
            break;
        CHECK_RC(rc, 0);
        CHECK_RC(fe_done(r, 1, seq, n), 0);
    }
    fe_close(r);
    return TEST_PASS;
}

static void round_trips(uint64_t count, bool partner_registered, unsigned members)
{
    const uint8_t kinds[] = {members > 1 ? FE_POOL : FE_ORDERED, FE_ORDERED};
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 4, 8, 0, 2, kinds), *back;
    test_open(name, &back);
    fe_set_spin_ns(prod, 0);
    fe_set_spin_ns(back, 0);

    pid_t pids[2];
    for (unsigned m = 0; m < members; m++) {
        pids[m] = fork();
        CHECK(pids[m] >= 0);
        if (pids[m] == 0) {
            if (partner_registered)
                _exit(partner(name));
            setenv("FE_NO_MEMBARRIER", "1", 1);
            execl("/proc/self/exe", "test_wakeups", "--partner", name, (char *)NULL);
            _exit(127);
        }
    }
    for (uint64_t i = 0; i < count; i++) {
        uint64_t seq, v;
        uint32_t n;
        CHECK_RC(fe_claim(prod, 1, WAIT_NS, &seq), 0);
        memcpy(fe_slot(prod, seq), &i, 8);
        CHECK_RC(fe_publish(prod, seq, 1), 0);
        CHECK_RC(fe_take(back, 2, 1, WAIT_NS, &seq, &n), 0);
        memcpy(&v, fe_slot(back, seq), 8);
        CHECK_EQ(v, i);
        CHECK_RC(fe_done(back, 2, seq, 1), 0);
    }
    CHECK_RC(fe_end(prod), 0);
    for (unsigned m = 0; m < members; m++) {
        int status;
        CHECK(waitpid(pids[m], &status, 0) == pids[m]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    test_close_unlink(name, back, prod);
}

/* Items streamed into a ring of 4 slots, both sides always sleeping: the
 * producer publishes while the consumer is on its way to sleep, over and over,
 * and a lost wake-up leaves both asleep (the producer on a full ring). */
static void stream(uint64_t count)
{
    const uint8_t kinds[] = {FE_ORDERED};
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 4, 8, 0, 1, kinds);
    fe_set_spin_ns(prod, 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(partner(name));
    for (uint64_t i = 0; i < count; i++) {
        uint64_t seq;
        CHECK_RC(fe_claim(prod, 1, WAIT_NS, &seq), 0);
        memcpy(fe_slot(prod, seq), &i, 8);
        CHECK_RC(fe_publish(prod, seq, 1), 0);
    }
    CHECK_RC(fe_end(prod), 0);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    test_close_unlink(name, prod);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--partner"))
        return partner(argv[2]);
    uint64_t count = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000;
    test_watchdog(50);
    round_trips(count, true, 1);
    round_trips(count / 4, false, 1);
    round_trips(count, true, 2);
    stream(count * 10);
    return TEST_PASS;
}
