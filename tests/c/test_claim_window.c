/*
 * The claim window: a pool member stopped between its claim CAS and the records
 * of what it holds (a test-only hook in the core, ring_test_hooks.h, stops it
 * exactly there).
 *  killed_in_window: SIGKILLed there, it leaves 2 items claimed and owned by
 *      nobody.  Before fe_reclaim() the ordered stage gets nothing; fe_reclaim()
 *      of its pid moves both on flagged failed (stats failed == 2), and the
 *      third item, never claimed, goes to a live member and on unflagged.
 *  stopped_in_window_loses_run: SIGSTOPped there past the grace period while a
 *      supervisor reclaims another (dead) pid, it loses its run: the two items
 *      move on flagged failed, and when it continues its fe_take() hands it the
 *      next item instead; nothing is held twice.
 *  settler_dies_half_way: a supervisor SIGKILLed in the middle of settling
 *      (settles left odd, the settler role its) does not stop the next one: a
 *      later fe_reclaim() takes the role over, ends the dead settling and
 *      settles the items.
 */
#define _GNU_SOURCE
#include <signal.h>

#include "check.h"
#include "ring_test_hooks.h"

static void die(void) { raise(SIGKILL); }
static void stop_once(void)
{
    fe_test_hook_claimed = NULL;
    raise(SIGSTOP);
}

static void produce(fe_ring *prod, uint32_t count)
{
    uint64_t seq;
    CHECK_RC(fe_claim(prod, count, 0, &seq), FE_OK);
    for (uint32_t i = 0; i < count; i++)
        test_put_u64(fe_slot(prod, seq + i), 100 + seq + i);
    CHECK_RC(fe_publish(prod, seq, count), FE_OK);
}

static void take_exactly(fe_ring *r, uint32_t stage, uint32_t max_n, uint64_t want, uint32_t n)
{
    uint64_t s = UINT64_MAX;
    uint32_t got = 0;
    CHECK_RC(fe_take(r, stage, max_n, 0, &s, &got), FE_OK);
    CHECK_EQ(s, want);
    CHECK_EQ(got, n);
}

static uint64_t failed_at(fe_ring *r, uint32_t stage)
{
    fe_stage_stats st;
    CHECK_RC(fe_stats(r, stage, &st), FE_OK);
    return st.failed;
}

/* The ordered stage gets items 0..1 flagged failed and item 2 unflagged: after
 * `member` (a live pool member) finishes item 2, or, with NULL, at once (the
 * stopped member finished it). */
static void check_downstream(fe_ring *ord, fe_ring *member)
{
    take_exactly(ord, 2, 8, 0, member ? 2 : 3);
    CHECK_RC(fe_failed(ord, 0), 1);
    CHECK_RC(fe_failed(ord, 1), 1);
    CHECK_EQ(test_get_u64(fe_slot(ord, 1)), 101);
    if (member) {
        CHECK_RC(fe_done(ord, 2, 0, 2), FE_OK);
        take_exactly(member, 1, 8, 2, 1);
        CHECK_RC(fe_done(member, 1, 2, 1), FE_OK);
        take_exactly(ord, 2, 8, 2, 1);
    }
    CHECK_RC(fe_failed(ord, 2), 0);
    CHECK_EQ(test_get_u64(fe_slot(ord, 2)), 102);
    CHECK_RC(fe_done(ord, 2, member ? 2 : 0, member ? 1 : 3), FE_OK);
    CHECK_EQ(failed_at(ord, 1), 2);
}

static void killed_in_window(void)
{
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 8, 8, 0, 2, TEST_POOL_ORDERED), *ord, *member;
    test_open(name, &ord, &member);
    produce(prod, 3);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        fe_ring *r;
        test_open(name, &r);
        fe_test_hook_claimed = die;
        uint64_t s;
        uint32_t n;
        fe_take(r, 1, 2, 0, &s, &n);
        _exit(TEST_FAIL); /* not reached */
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    /* Claimed (only item 2 is left for the pool), finished by nobody. */
    uint64_t s;
    uint32_t n;
    CHECK_EQ(fe_ready(member, 1), 1);
    CHECK_EQ(fe_ready(ord, 2), 0);
    CHECK_RC(fe_take(ord, 2, 8, 0, &s, &n), -ETIMEDOUT);

    CHECK_RC(fe_reclaim(prod, pid), 2);
    check_downstream(ord, member);
    CHECK_RC(fe_reclaim(prod, pid), 0);
    test_close_unlink(name, member, ord, prod);
}

static void stopped_in_window_loses_run(void)
{
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 8, 8, 0, 2, TEST_POOL_ORDERED), *ord;
    test_open(name, &ord);
    produce(prod, 3);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        fe_ring *r;
        test_open(name, &r);
        fe_test_hook_claimed = stop_once;
        uint64_t s = UINT64_MAX;
        uint32_t n = 0;
        /* Stops in the window of its claim of 0..1, loses them, takes 2. */
        CHECK_RC(fe_take(r, 1, 2, 5000000000LL, &s, &n), FE_OK);
        CHECK_EQ(s, 2);
        CHECK_EQ(n, 1);
        CHECK_RC(fe_done(r, 1, 0, 1), FE_ENOTHELD);
        CHECK_RC(fe_done(r, 1, 2, 1), FE_OK);
        fe_close(r);
        _exit(TEST_PASS);
    }
    int status;
    CHECK(waitpid(pid, &status, WUNTRACED) == pid);
    CHECK(WIFSTOPPED(status));
    pid_t dead = fork();
    CHECK(dead >= 0);
    if (dead == 0)
        _exit(0);
    CHECK(waitpid(dead, &status, 0) == dead);

    CHECK_RC(fe_reclaim(prod, dead), 2); /* the stopped member's run, as unowned */
    CHECK(kill(pid, SIGCONT) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == TEST_PASS);
    check_downstream(ord, NULL);
    test_close_unlink(name, ord, prod);
}

/* A member killed in its claim window holding 0..1 of 3 published items. */
static pid_t kill_in_window(const char *name)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        fe_ring *r;
        test_open(name, &r);
        fe_test_hook_claimed = die;
        uint64_t s;
        uint32_t n;
        fe_take(r, 1, 2, 0, &s, &n);
        _exit(TEST_FAIL); /* not reached */
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    return pid;
}

static void settler_dies_half_way(void)
{
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 8, 8, 0, 2, TEST_POOL_ORDERED), *ord, *member;
    test_open(name, &ord, &member);
    produce(prod, 3);
    pid_t victim = kill_in_window(name);
    fflush(NULL);
    pid_t settler = fork();
    CHECK(settler >= 0);
    if (settler == 0) {
        fe_ring *r;
        test_open(name, &r);
        fe_test_hook_settling = die;
        fe_reclaim(r, victim);
        _exit(TEST_FAIL); /* not reached */
    }
    int status;
    CHECK(waitpid(settler, &status, 0) == settler);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_EQ(fe_ready(ord, 2), 0); /* it settled nothing */
    CHECK_RC(fe_reclaim(prod, victim), 2);
    check_downstream(ord, member);
    test_close_unlink(name, member, ord, prod);
}

int main(void)
{
    test_watchdog(30);
    RUN_SCENARIO(killed_in_window);
    RUN_SCENARIO(stopped_in_window_loses_run);
    RUN_SCENARIO(settler_dies_half_way);
    return TEST_PASS;
}
