/*
 * A pool member cannot finish another member's items: fe_done of an item
 * held by a different member returns FE_ENOTHELD and leaves it held, whether
 * the other member is another process or another handle in this process (the
 * header asks for one handle per thread, so each handle is a member).  The
 * rightful holder then finishes it normally.
 */
#define _GNU_SOURCE
#include <sys/wait.h>
#include "check.h"

int main(void)
{
    test_watchdog(30);
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, 8, 64, 0, 2, TEST_POOL_ORDERED), *m1, *m2, *ord;
    test_open(name, &m1, &m2, &ord);
    uint64_t seq, s;
    uint32_t n;
    CHECK_RC(fe_claim(prod, 4, 0, &seq), FE_OK);
    CHECK_RC(fe_publish(prod, seq, 4), FE_OK);

    /* Another process holds item 0 until we tell it to finish. */
    int to_child[2], to_parent[2];
    CHECK(pipe(to_child) == 0 && pipe(to_parent) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        fe_ring *c = NULL;
        char b = 0;
        int rc = fe_open(name, &c);
        if (rc == 0)
            rc = fe_take(c, 1, 1, 1000000000LL, &s, &n);
        if (rc == 0 && (s != 0 || n != 1))
            rc = -1;
        if (write(to_parent[1], &rc, sizeof rc) != sizeof rc)
            _exit(2);
        if (read(to_child[0], &b, 1) != 1)
            _exit(2);
        rc = fe_done(c, 1, 0, 1);
        fe_close(c);
        _exit(rc == 0 ? 0 : 1);
    }
    int child_rc = -1;
    CHECK(read(to_parent[0], &child_rc, sizeof child_rc) == sizeof child_rc);
    CHECK_RC(child_rc, FE_OK);
    CHECK_RC(fe_done(m1, 1, 0, 1), FE_ENOTHELD);
    CHECK_EQ(fe_ready(ord, 2), 0);
    CHECK(write(to_child[1], "x", 1) == 1);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(fe_ready(ord, 2), 1);

    /* Another handle of this process holds item 1. */
    CHECK_RC(fe_take(m2, 1, 1, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 1);
    CHECK_RC(fe_take(m1, 1, 1, 0, &s, &n), FE_OK);
    CHECK_EQ(s, 2);
    CHECK_RC(fe_done(m1, 1, 1, 1), FE_ENOTHELD);
    CHECK_RC(fe_done(m1, 1, 1, 2), FE_ENOTHELD);
    CHECK_RC(fe_done(m2, 1, 2, 1), FE_ENOTHELD);
    CHECK_EQ(fe_ready(ord, 2), 1);
    CHECK_RC(fe_done(m2, 1, 1, 1), FE_OK);
    CHECK_RC(fe_done(m1, 1, 2, 1), FE_OK);
    CHECK_EQ(fe_ready(ord, 2), 3);

    test_close_unlink(name, ord, m2, m1, prod);
    return TEST_PASS;
}
