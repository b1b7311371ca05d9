/*
 * Wrap-around: the data region is mapped twice back to back, so for a run
 * [s, s+n) that crosses the end of the ring, fe_slot(r, s) + i * fe_stride(r)
 * is item s+i, the same memory as fe_slot(r, s+i) (written through one address,
 * read through the other, every byte of every slot).  Checked for tiny slots
 * in a tiny ring (where the stride or region must be padded to whole pages),
 * for odd-sized slots and for large page-aligned slots, at every offset.
 */
#define _GNU_SOURCE
#include "check.h"

static uint8_t pattern(uint64_t item, uint64_t byte)
{
    return (uint8_t)(item * 37 + byte * 11 + 1);
}

static void check_ring(uint32_t slots, uint64_t slot_bytes)
{
    const char *name = test_ring_name();
    fe_ring *prod = test_create(name, slots, slot_bytes, 0, 2, TEST_POOL_ORDERED), *pool, *ord;
    test_open(name, &pool, &ord);
    const uint64_t stride = fe_stride(prod);
    CHECK_EQ(fe_stride(pool), stride);

    uint64_t next = 0;
    /* Every starting offset 1..slots-1 gives a run that crosses the end. */
    for (uint32_t offset = 0; offset < 2 * slots; offset++) {
        uint64_t seq, s;
        uint32_t n;
        /* Move the cursor so the next run starts at slot `offset % slots`. */
        while ((next & (slots - 1)) != (offset & (slots - 1))) {
            CHECK_RC(fe_claim(prod, 1, 0, &seq), FE_OK);
            CHECK_EQ(seq, next);
            CHECK_RC(fe_publish(prod, seq, 1), FE_OK);
            CHECK_RC(fe_take(pool, 1, 1, 0, &s, &n), FE_OK);
            CHECK_RC(fe_done(pool, 1, s, n), FE_OK);
            CHECK_RC(fe_take(ord, 2, 1, 0, &s, &n), FE_OK);
            CHECK_RC(fe_done(ord, 2, s, n), FE_OK);
            next++;
        }
        /* A full-ring run starting there: writes through the strided base. */
        CHECK_RC(fe_claim(prod, slots, 0, &seq), FE_OK);
        CHECK_EQ(seq, next);
        uint8_t *base = fe_slot(prod, seq);
        for (uint64_t i = 0; i < slots; i++) {
            uint8_t *p = base + i * stride;
            if (slot_bytes <= 4096) {
                for (uint64_t b = 0; b < slot_bytes; b++)
                    p[b] = pattern(seq + i, b);
            } else {
                memset(p, pattern(seq + i, 0), slot_bytes);
                p[slot_bytes - 1] = pattern(seq + i, slot_bytes - 1);
            }
        }
        CHECK_RC(fe_publish(prod, seq, slots), FE_OK);

        /* Read back item by item through fe_slot (the first mapping). */
        for (uint64_t i = 0; i < slots; i++) {
            const uint8_t *p = fe_slot(pool, seq + i);
            CHECK(p == (const uint8_t *)fe_slot(pool, 0) + ((seq + i) & (slots - 1)) * stride);
            if (slot_bytes <= 4096) {
                for (uint64_t b = 0; b < slot_bytes; b++)
                    CHECK_EQ(p[b], pattern(seq + i, b));
            } else {
                CHECK_EQ(p[0], pattern(seq + i, 0));
                CHECK_EQ(p[slot_bytes / 2], pattern(seq + i, 0));
                CHECK_EQ(p[slot_bytes - 1], pattern(seq + i, slot_bytes - 1));
            }
        }

        /* The pool takes it as one run and reads it strided from its base. */
        CHECK_RC(fe_take(pool, 1, slots, 0, &s, &n), FE_OK);
        CHECK_EQ(s, seq);
        CHECK_EQ(n, slots);
        uint8_t *pb = fe_slot(pool, s);
        for (uint64_t i = 0; i < n; i++) {
            uint8_t *p = pb + i * stride;
            CHECK_EQ(p[0], pattern(s + i, 0));
            CHECK_EQ(p[slot_bytes - 1], pattern(s + i, slot_bytes - 1));
            /* the pool writes a mark that the ordered stage will read back */
            p[0] ^= 0xFF;
        }
        CHECK_RC(fe_done(pool, 1, s, n), FE_OK);

        CHECK_RC(fe_take(ord, 2, slots, 0, &s, &n), FE_OK);
        CHECK_EQ(s, seq);
        CHECK_EQ(n, slots);
        for (uint64_t i = 0; i < n; i++) {
            CHECK_EQ(((const uint8_t *)fe_slot(ord, s + i))[0],
                     (uint8_t)(pattern(s + i, 0) ^ 0xFF));
            if (slot_bytes > 1)
                CHECK_EQ(((const uint8_t *)fe_slot(ord, s) + i * stride)[slot_bytes - 1],
                         pattern(s + i, slot_bytes - 1));
        }
        CHECK_RC(fe_done(ord, 2, s, n), FE_OK);
        next += slots;
    }
    test_close_unlink(name, ord, pool, prod);
}

int main(void)
{
    test_watchdog(30);
    check_ring(4, 8);
    check_ring(2, 1);
    check_ring(8, 100);
    check_ring(64, 200);
    check_ring(4, (1u << 20) + 1);
    return TEST_PASS;
}
