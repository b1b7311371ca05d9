/*
 * Geometry and identity getters: slots, slot_bytes, stride (>= slot_bytes; below
 * 64 bytes a power of two of at least 8, so that no item crosses a cache line,
 * else a multiple of 64; exactly that in a ring of at least a page; page aligned
 * for large slots), slot addresses (the first 64-byte aligned, item s in slot
 * s & (slots-1)), nstages and stage kinds,
 * lookback, creator pid and start time (/proc/<pid>/stat field 22),
 * end_seq (UINT64_MAX before fe_end), aborted (0), fe_strerror.
 */
#define _GNU_SOURCE
#include "check.h"

static uint64_t self_start_time(void)
{
    char buf[4096];
    FILE *f = fopen("/proc/self/stat", "r");
    CHECK(f != NULL);
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *p = strrchr(buf, ')');
    CHECK(p != NULL);
    p += 2; /* field 3 starts here */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        CHECK(p != NULL);
        p++;
    }
    return strtoull(p, NULL, 10);
}

static void check_geometry(uint32_t slots, uint64_t slot_bytes, uint32_t lookback,
                           uint32_t nstages, const uint8_t *kinds)
{
    const char *name = test_ring_name();
    fe_ring *r = test_create(name, slots, slot_bytes, lookback, nstages, kinds), *o;
    test_open(name, &o);
    long page = sysconf(_SC_PAGESIZE);

    fe_ring *hs[2] = {r, o};
    for (int h = 0; h < 2; h++) {
        fe_ring *x = hs[h];
        CHECK_EQ(fe_slots(x), slots);
        CHECK_EQ(fe_slot_bytes(x), slot_bytes);
        uint64_t stride = fe_stride(x);
        CHECK(stride >= slot_bytes);
        if (stride < 64)
            CHECK(stride >= 8 && (stride & (stride - 1)) == 0);
        else
            CHECK_EQ(stride % 64, 0);
        if (slot_bytes >= (1u << 20))
            CHECK_EQ(stride % (uint64_t)page, 0);
        /* the data region is mapped twice back to back: a page multiple */
        CHECK_EQ((stride * slots) % (uint64_t)page, 0);
        CHECK_EQ(fe_nstages(x), nstages);
        CHECK_RC(fe_stage_kind(x, 0), FE_PRODUCER);
        for (uint32_t s = 1; s <= nstages; s++)
            CHECK_RC(fe_stage_kind(x, s), kinds[s - 1]);
        CHECK_RC(fe_stage_kind(x, nstages + 1), -EINVAL);
        CHECK_RC(fe_stage_kind(x, 1000), -EINVAL);
        CHECK_EQ(fe_lookback(x), lookback);
        CHECK_EQ(fe_creator(x), getpid());
        CHECK_EQ(fe_creator_start(x), self_start_time());
        CHECK(fe_end_seq(x) == UINT64_MAX);
        CHECK_EQ(fe_aborted(x), 0);
        for (uint32_t s = 1; s <= nstages; s++)
            CHECK_EQ(fe_ready(x, s), 0);

        uint8_t *base = fe_slot(x, 0);
        CHECK(base != NULL);
        CHECK_EQ((uintptr_t)base % 64, 0);
        if (slot_bytes >= (1u << 20))
            CHECK_EQ((uintptr_t)base % (uintptr_t)page, 0);
        for (uint64_t s = 0; s < 3ull * slots; s++) {
            uint8_t *p = fe_slot(x, s);
            CHECK(p == base + (s & (slots - 1)) * stride);
        }
        /* sequences far along the 64-bit range use the same mask */
        uint64_t big = UINT64_MAX - 2;
        CHECK((uint8_t *)fe_slot(x, big) == base + (big & (slots - 1)) * stride);
    }
    /* The whole slot is writable and distinct from its neighbours. */
    for (uint32_t s = 0; s < slots; s++)
        memset(fe_slot(r, s), (int)(s + 1), slot_bytes);
    for (uint32_t s = 0; s < slots; s++) {
        const uint8_t *p = fe_slot(o, s);
        CHECK_EQ(p[0], (uint8_t)(s + 1));
        CHECK_EQ(p[slot_bytes - 1], (uint8_t)(s + 1));
    }
    test_close_unlink(name, o, r);
}

int main(void)
{
    test_watchdog(30);
    const uint8_t po[] = {FE_POOL, FE_ORDERED};
    const uint8_t many[] = {FE_ORDERED, FE_POOL, FE_POOL, FE_ORDERED, FE_POOL};

    check_geometry(8, 256, 0, 2, po);
    check_geometry(2, 1, 1, 1, po + 1);
    check_geometry(4, 8, 3, 5, many);
    check_geometry(1024, 100, 17, 2, po);
    check_geometry(1024, 8, 5, 2, po); /* packed: 8-byte stride */
    check_geometry(64, 24, 0, 1, po);  /* packed, padded to a page: 64-byte stride */
    check_geometry(2, 6220800, 1, 1, po + 1); /* one 1080p BGR frame per slot */

    /* Small slots in a ring of at least a page: below 64 bytes the stride is the
     * next power of two (at least 8), else slot_bytes rounded up to 64; a
     * smaller ring pads the stride so that the region fills its pages. */
    const uint64_t sizes[] = {1, 8, 9, 33, 64, 65, 100, 128, 200};
    const uint64_t packed[] = {8, 8, 16, 64, 64, 128, 128, 128, 256};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (uint32_t slots = 64; slots <= 1024; slots *= 16) {
            const char *name = test_ring_name();
            fe_ring *r = test_create(name, slots, sizes[i], 0, 1, po);
            uint64_t want = packed[i], page = (uint64_t)sysconf(_SC_PAGESIZE);
            if ((want * slots) % page)
                want = page / slots; /* 64 slots of at most 64 bytes: one page */
            uint64_t got = fe_stride(r);
            test_close_unlink(name, r);
            if (got != want)
                fprintf(stderr, "slot_bytes %llu, %u slots: stride %llu, expected %llu\n",
                        (unsigned long long)sizes[i], slots, (unsigned long long)got,
                        (unsigned long long)want);
            CHECK_EQ(got, want);
        }

    /* fe_strerror names our codes and errno codes. */
    const int codes[] = {FE_OK, FE_EOF, FE_ABORTED, FE_EBADRING, FE_EVERSION,
                         FE_ENOTHELD, FE_ECLOSED, -ETIMEDOUT, -EINVAL, -12345678};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = fe_strerror(codes[i]);
        CHECK(s != NULL && s[0] != 0);
    }
    CHECK(strcmp(fe_strerror(FE_EOF), fe_strerror(FE_ABORTED)) != 0);
    CHECK(strcmp(fe_strerror(FE_EBADRING), fe_strerror(FE_ENOTHELD)) != 0);
    return TEST_PASS;
}
