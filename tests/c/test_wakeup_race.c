/*
 * No wake-up is lost when a publish races the consumer's way to sleep.  The
 * consumer (a child, pinned to one CPU, spin budget 0) takes items of an ordered
 * stage one by one: it takes one, says so (and whether the take slept) on a
 * line of its own, works on it a little, finishes it and takes the next.  The
 * producer (this process, pinned to another CPU) publishes item i after a delay
 * once the consumer took item i - 1, and waits until it took item i.  The delay
 * tracks the edge between the consumer finding the item before it sleeps and
 * sleeping for it (its registration and re-check: the race): one turn longer
 * after a take that did not sleep, one shorter after one that did, whatever the
 * machine's speed and load.  If the consumer is asleep (state S in /proc) 20 ms
 * after a publish and has not taken the item, the wake-up was lost: the
 * consumer's 200 ms timeout ends that sleep, and the test fails.  Before each
 * publish the producer writes 32 cache lines that the consumer wrote (as a
 * producer writes a frame): the publish leaves the store buffer behind them,
 * late, while the producer's look for sleepers goes ahead of it; that is what
 * makes the race bite.
 *
 * This is the guard of the asymmetric handshake (ring.c): with the waiter's
 * membarrier call taken out, the consumer misses a publish still in the
 * producer's store buffer, and the producer misses the consumer's registration.
 * Needs 2 CPUs (skips otherwise).
 *
 *   test_wakeup_race [cycles=250000]   (or 5 s, whichever comes first)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>

#include "check.h"

#define CONSUMER_WAIT_NS 200000000LL /* ends a lost wake-up's sleep */
#define LOST_AFTER_NS 20000000LL      /* asleep this long after a publish: lost */
#define AREA_LINES 32                 /* cache lines the producer writes before a publish */
#define WORK 3000                     /* the consumer's work on an item, in loop turns */
#define BUDGET_NS 5000000000LL        /* at most this long: 250000 cycles take ~10 s here */

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    CHECK(sched_setaffinity(0, sizeof set, &set) == 0);
}

/* The first two CPUs this process may run on, or -1. */
static int two_cpus(int cpu[2])
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return -1;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, &set))
            cpu[n++] = c;
    return n == 2 ? 0 : -1;
}

/* The state letter of process pid (R, S, D, ...), '?' if unreadable. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

/* Sleeps of stage 1's consumer so far. */
static uint64_t sleeps(fe_ring *r)
{
    fe_stage_stats st;
    CHECK_RC(fe_stats(r, 1, &st), FE_OK);
    return st.waits;
}

static int consumer(const char *name, int cpu)
{
    pin(cpu);
    fe_ring *r;
    test_open(name, &r);
    fe_set_spin_ns(r, 0);
    for (;;) {
        uint64_t seq;
        uint32_t n;
        uint64_t waits = sleeps(r);
        int rc = fe_take(r, 1, 1, CONSUMER_WAIT_NS, &seq, &n);
        if (rc == FE_EOF)
            break;
        if (rc == -ETIMEDOUT)
            continue;
        CHECK_RC(rc, FE_OK);
        CHECK_EQ(test_get_u64(fe_slot(r, seq)), seq);
        /* Write the lines the producer writes before its next publish: its
         * stores then wait for them to come from this CPU. */
        volatile uint64_t *area = fe_user(r);
        for (unsigned l = 0; l < AREA_LINES; l++)
            area[l * 8 + 1] = seq;
        /* The item taken, and whether the take slept: the producer's timing.
         * relaxed: a hint only; the producer checks fe_stats() */
        __atomic_store_n((uint64_t *)fe_user(r) + AREA_LINES * 8,
                         (seq + 1) << 1 | (sleeps(r) != waits), __ATOMIC_RELAXED);
        /* Some work on the item: room for the producer's delay to find the edge. */
        for (volatile unsigned w = WORK; w > 0; w--)
            ;
        CHECK_RC(fe_done(r, 1, seq, n), FE_OK);
    }
    fe_close(r);
    return TEST_PASS;
}

int main(int argc, char **argv)
{
    uint64_t cycles = argc > 1 ? strtoull(argv[1], NULL, 10) : 250000;
    int cpu[2];
    if (two_cpus(cpu) != 0) {
        fprintf(stderr, "test_wakeup_race: needs 2 CPUs; skipped\n");
        return TEST_SKIP;
    }
    test_watchdog(120);
    const char *name = test_ring_name();
    const uint8_t kinds[] = {FE_ORDERED};
    fe_config cfg = test_config(4, 8, 0, 1, kinds);
    cfg.user_bytes = (AREA_LINES + 1) * 64; /* and the consumer's line: items taken */
    fe_ring *prod = NULL;
    CHECK_RC(fe_create(name, &cfg, &prod), FE_OK);
    volatile uint64_t *area = fe_user(prod);
    fe_set_spin_ns(prod, 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(consumer(name, cpu[1]));
    pin(cpu[0]);

    uint64_t lost = 0, i;
    uint64_t *acked = (uint64_t *)fe_user(prod) + AREA_LINES * 8;
    unsigned delay = 0;
    int64_t stop = test_now_ns() + BUDGET_NS;
    for (i = 0; i < cycles && !lost && (i & 1023 || test_now_ns() < stop); i++) {
        /* The consumer took item i - 1 (seen below) and works on it, then finishes
         * it and waits for item i.  The publish of item i should land on the
         * edge between "the consumer found it and did not sleep" and "it slept
         * and was woken": the race.  The delay tracks that edge whatever the
         * machine's speed and load: one turn longer after a take that did not
         * sleep (too early), one shorter after one that did. */
        for (volatile unsigned d = delay; d > 0; d--)
            ;
        uint64_t seq;
        CHECK_RC(fe_claim(prod, 1, 5000000000LL, &seq), FE_OK);
        CHECK_EQ(seq, i);
        /* Stores to lines the consumer wrote: they leave the store buffer
         * slowly and in order, and the publish waits behind them, while the
         * publisher's look for sleepers goes ahead of it (as a producer that
         * has just written a frame). */
        for (unsigned l = 0; l < AREA_LINES; l++)
            area[l * 8] = i;
        test_put_u64(fe_slot(prod, seq), seq);
        CHECK_RC(fe_publish(prod, seq, 1), FE_OK);
        /* Wait until the consumer took item i (its own line, not the stage's:
         * polling fe_stats() would slow the consumer by a varying cache-line
         * transfer), or find it asleep with the item published long ago. */
        int64_t published = test_now_ns();
        bool counted = false;
        uint64_t ack;
        while ((ack = __atomic_load_n(acked, __ATOMIC_RELAXED)) >> 1 <= i) {
            if (!counted && test_now_ns() - published > LOST_AFTER_NS &&
                proc_state(pid) == 'S' && __atomic_load_n(acked, __ATOMIC_RELAXED) >> 1 <= i) {
                lost++;
                counted = true;
            }
        }
        delay = ack & 1 ? (delay > 0 ? delay - 1 : 0) : delay + 1;
    }
    CHECK_RC(fe_end(prod), FE_OK);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == TEST_PASS);
    test_close_unlink(name, prod);
    if (lost) {
        fprintf(stderr, "test_wakeup_race: a wake-up was lost, publish %llu of %llu\n",
                (unsigned long long)i, (unsigned long long)cycles);
        return TEST_FAIL;
    }
    return TEST_PASS;
}
