/*
 * Lifecycle of a ring: fe_create makes a segment that fe_open attaches to by
 * name; two handles see the same memory; fe_close only unmaps (the name stays
 * until fe_unlink); fe_create of a taken name fails without disturbing the
 * ring; fe_open / fe_unlink of a missing name give -ENOENT; fe_create(NULL)
 * makes a name "fe-<pid>-...".
 */
#define _GNU_SOURCE
#include "check.h"

int main(void)
{
    test_watchdog(30);
    const char *name = test_ring_name();
    const uint8_t kinds[] = {FE_POOL, FE_ORDERED};
    fe_config cfg = test_config(8, 256, 0, 2, kinds);

    fe_ring *a = NULL, *b = NULL;
    CHECK_RC(fe_create(name, &cfg, &a), FE_OK);
    CHECK(a != NULL);
    CHECK(test_shm_exists(name));
    CHECK(strcmp(fe_name(a), name) == 0);

    /* A second create of the same name fails and leaves the ring alone. */
    test_put_u64(fe_slot(a, 5), 0x1122334455667788ull);
    fe_ring *dup = NULL;
    fe_config other = test_config(16, 64, 0, 1, kinds);
    int rc = fe_create(name, &other, &dup);
    CHECK(rc < 0);
    CHECK(dup == NULL);
    CHECK_EQ(fe_slots(a), 8);
    CHECK(test_get_u64(fe_slot(a, 5)) == 0x1122334455667788ull);

    /* fe_open sees the same geometry and the same memory. */
    CHECK_RC(fe_open(name, &b), FE_OK);
    CHECK(b != NULL);
    CHECK(strcmp(fe_name(b), name) == 0);
    CHECK_EQ(fe_slots(b), 8);
    CHECK_EQ(fe_slot_bytes(b), 256);
    CHECK_EQ(fe_nstages(b), 2);
    CHECK(test_get_u64(fe_slot(b, 5)) == 0x1122334455667788ull);
    test_put_u64(fe_slot(b, 2), 42);
    CHECK_EQ(test_get_u64(fe_slot(a, 2)), 42);

    /* Closing the creator's handle does not remove the segment. */
    fe_close(a);
    CHECK(test_shm_exists(name));
    CHECK_EQ(test_get_u64(fe_slot(b, 2)), 42);
    fe_ring *c = NULL;
    CHECK_RC(fe_open(name, &c), FE_OK);
    CHECK_EQ(test_get_u64(fe_slot(c, 5)), 0x1122334455667788ull);
    fe_close(c);

    /* Unlink removes the name; mapped handles keep working. */
    CHECK_RC(fe_unlink(name), FE_OK);
    CHECK(!test_shm_exists(name));
    CHECK_EQ(test_get_u64(fe_slot(b, 2)), 42);
    fe_close(b);

    fe_ring *missing = (fe_ring *)&missing;
    CHECK_RC(fe_open(name, &missing), -ENOENT);
    CHECK_RC(fe_unlink(name), -ENOENT);

    /* A name that was never created. */
    const char *never = test_ring_name();
    CHECK_RC(fe_open(never, &missing), -ENOENT);
    CHECK(!test_shm_exists(never));

    /* fe_create(NULL) makes a name of the form fe-<pid>-... */
    fe_ring *anon = NULL;
    CHECK_RC(fe_create(NULL, &cfg, &anon), FE_OK);
    const char *made = fe_name(anon);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "fe-%d-", (int)getpid());
    int made_ok = strncmp(made, prefix, strlen(prefix)) == 0 &&
                  strlen(made) > strlen(prefix) && strlen(made) < FE_NAME_MAX;
    char made_copy[FE_NAME_MAX];
    snprintf(made_copy, sizeof made_copy, "%s", made);
    int exists = test_shm_exists(made_copy);
    fe_close(anon);
    int unl = fe_unlink(made_copy);
    if (!made_ok)
        fprintf(stderr, "fe_create(NULL) made name '%s'\n", made_copy);
    CHECK(made_ok);
    CHECK(exists);
    CHECK_RC(unl, FE_OK);
    CHECK(!test_shm_exists(made_copy));

    /* Two anonymous rings get different names. */
    fe_ring *x = NULL, *y = NULL;
    CHECK_RC(fe_create(NULL, &cfg, &x), FE_OK);
    char xname[FE_NAME_MAX];
    snprintf(xname, sizeof xname, "%s", fe_name(x));
    rc = fe_create(NULL, &cfg, &y);
    char yname[FE_NAME_MAX] = "";
    if (rc == 0)
        snprintf(yname, sizeof yname, "%s", fe_name(y));
    fe_close(x);
    fe_unlink(xname);
    if (rc == 0) {
        fe_close(y);
        fe_unlink(yname);
    }
    CHECK_RC(rc, FE_OK);
    CHECK(strcmp(xname, yname) != 0);
    return TEST_PASS;
}
