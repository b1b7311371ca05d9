/*
 * ring_instr: the ring's own instructions per batch, for callgrind.  One
 * process, one handle per role, no waiting: `batches` rounds of fe_claim(64),
 * fe_publish, fe_take(64), fe_done on a ring of 256 slots of 8 bytes with one
 * stage (ordered, or a pool), the payloads written and read between the calls.
 *
 *   valgrind --tool=callgrind --callgrind-out-file=cg.out ./ring_instr ordered 10000
 *   callgrind_annotate --inclusive=yes cg.out | grep -E 'fe_(claim|publish|take|done) '
 *
 * and divide each function's inclusive count by the batches (bench/c/instr.sh
 * does both and prints instructions per batch).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

#define BATCH 64

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "ordered") && strcmp(argv[1], "pool"))) {
        fprintf(stderr, "usage: %s ordered|pool BATCHES\n", argv[0]);
        return 2;
    }
    unsigned long batches = strtoul(argv[2], NULL, 10);
    fe_config cfg = {.slots = 256, .slot_bytes = 8, .nstages = 1, .lookback = 0, .user_bytes = 0};
    cfg.kinds[0] = strcmp(argv[1], "pool") ? FE_ORDERED : FE_POOL;
    fe_ring *prod, *cons;
    int rc = fe_create(NULL, &cfg, &prod);
    if (rc || (rc = fe_open(fe_name(prod), &cons))) {
        fprintf(stderr, "ring_instr: %s\n", fe_strerror(rc));
        return 1;
    }
    fe_unlink(fe_name(prod));
    uint64_t sum = 0, want = 0, seq;
    uint32_t n;
    for (unsigned long b = 0; b < batches; b++) {
        if ((rc = fe_claim(prod, BATCH, 0, &seq)))
            break;
        for (uint32_t i = 0; i < BATCH; i++)
            *(uint64_t *)((char *)fe_slot(prod, seq) + i * 8) = seq + i;
        if ((rc = fe_publish(prod, seq, BATCH)) || (rc = fe_take(cons, 1, BATCH, 0, &seq, &n)))
            break;
        for (uint32_t i = 0; i < n; i++)
            sum += *(uint64_t *)((char *)fe_slot(cons, seq) + i * 8);
        want += seq * n + (uint64_t)n * (n - 1) / 2;
        if ((rc = fe_done(cons, 1, seq, n)))
            break;
    }
    fe_close(cons);
    fe_close(prod);
    if (rc || sum != want) {
        fprintf(stderr, "ring_instr: %s\n", rc ? fe_strerror(rc) : "wrong payloads");
        return 1;
    }
    return 0;
}
