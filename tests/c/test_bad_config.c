/*
 * fe_create rejects bad configurations with -EINVAL and leaves nothing in
 * /dev/shm: slots not a power of two (0, 1, 3, 6, 1000), lookback >= slots,
 * slot_bytes 0, no consumer stages, more than FE_MAX_STAGES-1 consumer stages,
 * and stage kinds other than FE_POOL / FE_ORDERED.  Boundary values that are
 * valid (slots 2, lookback slots-1, FE_MAX_STAGES-1 stages) are accepted.
 */
#define _GNU_SOURCE
#include "check.h"

static void expect_einval(fe_config cfg, const char *what)
{
    const char *name = test_ring_name();
    fe_ring *r = (fe_ring *)&r; /* must be left alone or set to NULL */
    int rc = fe_create(name, &cfg, &r);
    if (rc != -EINVAL)
        fprintf(stderr, "config '%s': fe_create returned %d (%s)\n", what, rc,
                fe_strerror(rc));
    CHECK_RC(rc, -EINVAL);
    CHECK(!test_shm_exists(name));
    fe_ring *o = NULL;
    CHECK_RC(fe_open(name, &o), -ENOENT);
}

static void expect_ok(fe_config cfg, const char *what)
{
    const char *name = test_ring_name();
    fe_ring *r = NULL;
    int rc = fe_create(name, &cfg, &r);
    if (rc != 0)
        fprintf(stderr, "config '%s': fe_create returned %d (%s)\n", what, rc,
                fe_strerror(rc));
    CHECK_RC(rc, FE_OK);
    fe_close(r);
    CHECK_RC(fe_unlink(name), FE_OK);
}

int main(void)
{
    test_watchdog(30);
    const uint8_t po[] = {FE_POOL, FE_ORDERED};
    const uint8_t five[] = {FE_POOL, FE_POOL, FE_ORDERED, FE_POOL, FE_ORDERED};

    const uint32_t bad_slots[] = {0, 1, 3, 6, 12, 1000, 0x80000001u};
    for (size_t i = 0; i < sizeof bad_slots / sizeof bad_slots[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "slots=%u", bad_slots[i]);
        expect_einval(test_config(bad_slots[i], 64, 0, 2, po), what);
    }
    expect_einval(test_config(8, 64, 8, 2, po), "lookback == slots");
    expect_einval(test_config(8, 64, 9, 2, po), "lookback > slots");
    expect_einval(test_config(8, 64, UINT32_MAX, 2, po), "lookback huge");
    expect_einval(test_config(8, 0, 0, 2, po), "slot_bytes 0");
    expect_einval(test_config(8, 64, 0, 0, po), "0 stages");

    fe_config c = test_config(8, 64, 0, 5, five);
    c.nstages = FE_MAX_STAGES; /* one too many */
    expect_einval(c, "FE_MAX_STAGES consumer stages");
    c.nstages = 1000;
    expect_einval(c, "1000 stages");

    const uint8_t bad_kinds[] = {FE_PRODUCER, 3, 255};
    for (size_t i = 0; i < sizeof bad_kinds; i++) {
        char what[64];
        snprintf(what, sizeof what, "kind %u first", bad_kinds[i]);
        uint8_t k[2] = {bad_kinds[i], FE_ORDERED};
        expect_einval(test_config(8, 64, 0, 2, k), what);
        snprintf(what, sizeof what, "kind %u last", bad_kinds[i]);
        uint8_t k2[2] = {FE_POOL, bad_kinds[i]};
        expect_einval(test_config(8, 64, 0, 2, k2), what);
    }

    /* Valid boundaries. */
    expect_ok(test_config(2, 1, 0, 1, po), "slots 2");
    expect_ok(test_config(8, 64, 7, 2, po), "lookback slots-1");
    expect_ok(test_config(8, 64, 0, FE_MAX_STAGES - 1, five), "max stages");
    /* Kinds past nstages are ignored. */
    fe_config tail = test_config(8, 64, 0, 1, po);
    tail.kinds[1] = 200;
    expect_ok(tail, "junk kind past nstages");
    return TEST_PASS;
}
