/*
 * frame-engine ring: a single-producer, multi-stage shared-memory ring of
 * pre-allocated slots, sequenced by 64-bit counters.
 *
 * Items are numbered by a free-running unsigned 64-bit sequence, the first item
 * of a ring 0; item s lives in slot (s & (slots - 1)).
 *
 * Stage 0 is the producer (claim, publish, end).  Stages 1..n are consumers,
 * each either a POOL (every item to exactly one member, members may finish out
 * of order) or ORDERED (one consumer that takes and finishes every item in
 * order).  An item reaches stage k only after stage k-1 finished it; the
 * producer reuses a slot only after the last stage finished its previous
 * occupant (and, with lookback L, the L items before any item in flight).
 *
 * Every blocking call takes a relative timeout in nanoseconds: < 0 waits
 * forever, 0 never sleeps.  Calls return 0 (or a count) on success and a
 * negative code on failure: a negated errno or one of FE_EOF / FE_ABORTED.
 *
 * The data region is mapped twice back to back, so any run of up to `slots`
 * consecutive items is one strided block of memory: fe_slot(r, s) + i * stride
 * is item s + i, even across the end of the ring.
 *
 * What a take makes visible: the slot's bytes as the previous stage left them,
 * from fe_take()'s return until fe_done().  How (release/acquire hand-offs, the
 * membarrier-based wake-up handshake, FE_NO_MEMBARRIER=1): the memory-ordering
 * contract at the top of ring.c, its one full statement.
 *
 * A handle (fe_ring) is process-local and must be used by one thread at a time
 * for each role; open one handle per thread.  Handles do not survive fork():
 * open the ring again in the child.
 */
#ifndef FE_RING_H
#define FE_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FE_VERSION_MAJOR 1
#define FE_MAX_STAGES 6      /* the producer plus up to 5 consumer stages */
#define FE_NAME_MAX 64       /* shm names: "fe-<pid>-<n>", at most 63 chars */
#define FE_USER_MAX 65536    /* the largest application area in a segment */

enum fe_status {
    FE_OK = 0,
    /* Negated errno values are used as they are (-ETIMEDOUT, -EINVAL, -EINTR,
     * -ENOENT, -EBUSY, ...).  Ours start far above any errno. */
    FE_EOF = -10001,      /* the producer ended the stream and it is drained */
    FE_ABORTED = -10002,  /* fe_abort() was called on the ring */
    FE_EBADRING = -10003, /* the segment is not a ring (fe_open_why() says why) */
    FE_EVERSION = -10004, /* the segment is a ring of another layout version */
    FE_ENOTHELD = -10005, /* a sequence that the caller does not hold */
    FE_ECLOSED = -10006,  /* the handle was released (fe_release) or closed */
};

enum fe_stage_kind {
    FE_PRODUCER = 0,
    FE_POOL = 1,
    FE_ORDERED = 2,
};

typedef struct fe_config {
    uint32_t slots;      /* power of two, >= 2 */
    uint64_t slot_bytes; /* >= 1; the stride is rounded up: a power of two >= 8 below
                            64 B, else to 64 B, or to the page size for large slots */
    uint32_t nstages;    /* consumer stages, 1..FE_MAX_STAGES-1 */
    uint8_t kinds[FE_MAX_STAGES - 1]; /* FE_POOL or FE_ORDERED, for stages 1..nstages */
    uint32_t lookback;   /* < slots: items before any in-flight item kept intact */
    uint32_t user_bytes; /* <= FE_USER_MAX: an area for the application, zeroed, 64-byte aligned */
} fe_config;

typedef struct fe_stage_stats {
    uint64_t items;   /* items finished (stage 0: published) */
    uint64_t taken;   /* items handed out (stage 0: claimed) */
    uint64_t waits;   /* times a caller slept on the futex */
    uint64_t stalls;  /* times a caller found nothing ready and had to wait */
    uint64_t failed;  /* items moved on by fe_reclaim() (flagged failed) */
} fe_stage_stats;

typedef struct fe_ring fe_ring;

/* Lifecycle.  `name` may be NULL for fe_create: a name "fe-<pid>-<n>" is made
 * ("fe-<pid>-<tag><n>" with FE_SHM_TAG=<tag>, 1 to 16 letters, in the environment).
 * The creator must fe_unlink() the name; fe_close() only unmaps. */
int fe_create(const char *name, const fe_config *cfg, fe_ring **out);
int fe_open(const char *name, fe_ring **out);
/* fe_open(), and where it returns FE_EBADRING or FE_EVERSION, *why (if why is
 * not NULL) names the check that failed: bad magic, version, geometry (which
 * part), size.  Static text; NULL for other codes. */
int fe_open_why(const char *name, fe_ring **out, const char **why);
/* Lets go of what the handle holds, at once: its roles are freed and the items it
 * holds move on flagged failed, as a dead process's do under fe_reclaim().  The
 * mapping stays: pointers into slots stay valid until fe_close().  Afterwards
 * fe_claim(), fe_end() and fe_take() return FE_ECLOSED; fe_close() releases too. */
void fe_release(fe_ring *r);
void fe_close(fe_ring *r);
int fe_unlink(const char *name);

/* Geometry and identity. */
const char *fe_name(const fe_ring *r);
uint32_t fe_slots(const fe_ring *r);
uint64_t fe_slot_bytes(const fe_ring *r);
uint64_t fe_stride(const fe_ring *r);
uint32_t fe_nstages(const fe_ring *r);              /* consumer stages */
int fe_stage_kind(const fe_ring *r, uint32_t stage); /* FE_PRODUCER/POOL/ORDERED, or -EINVAL */
uint32_t fe_lookback(const fe_ring *r);
pid_t fe_creator(const fe_ring *r);
uint64_t fe_creator_start(const fe_ring *r); /* creator's start time, /proc/<pid>/stat field 22 */

/* The application's area in the segment (fe_config.user_bytes), or NULL if none:
 * shared by every process attached, with no synchronisation of its own. */
void *fe_user(const fe_ring *r);
uint32_t fe_user_bytes(const fe_ring *r);

/* The slot of item `seq`; runs continue at + i * fe_stride(). */
void *fe_slot(const fe_ring *r, uint64_t seq);

/* 1 if the slot of `seq` holds it now: claimed, and not yet reused. */
int fe_in_ring(const fe_ring *r, uint64_t seq);

/* Spin budget before sleeping, per handle (default 20 us; 0 always sleeps).
 * The handle spins less while spins keep ending in sleep anyway. */
void fe_set_spin_ns(fe_ring *r, int64_t ns);

/* The next fe_claim/fe_take on this handle continues a wait that returned
 * -EINTR or timed out early (a binding waiting in slices): no new stall is
 * counted and it does not spin again. */
void fe_resume_wait(fe_ring *r);

/* Producer.  The first process to claim becomes the producer; another live
 * process claiming afterwards gets -EBUSY.  fe_claim waits until n slots are
 * free and returns the first of n consecutive sequences.  fe_publish must
 * publish claimed items in order.  fe_end marks the end of the stream after the
 * published items (claimed, unpublished items are abandoned). */
int fe_claim(fe_ring *r, uint32_t n, int64_t timeout_ns, uint64_t *seq);
int fe_publish(fe_ring *r, uint64_t seq, uint32_t n);
int fe_end(fe_ring *r);
/* The producer gives back the items it claimed and has not published (a batch
 * that the source could not fill): the next claim starts after the published. */
int fe_abandon(fe_ring *r);

/* Consumers.  fe_take waits for at least one item for `stage` and hands out a
 * run [*seq, *seq + *n) with 1 <= *n <= max_n.  FE_EOF once the stream ended
 * and this stage has handed out everything.  fe_done finishes a run (or part of
 * one) the caller holds; an ordered stage finishes in order.  The first process
 * to take from an ORDERED stage owns it; another live process gets -EBUSY. */
int fe_take(fe_ring *r, uint32_t stage, uint32_t max_n, int64_t timeout_ns,
            uint64_t *seq, uint32_t *n);
int fe_done(fe_ring *r, uint32_t stage, uint64_t seq, uint32_t n);

/* Items ready for `stage` right now, without waiting (0 if none). */
uint64_t fe_ready(const fe_ring *r, uint32_t stage);

/* Supervisor.  Every item held by the dead process `pid` at any consumer stage
 * is finished for that stage and flagged failed, and its roles are freed;
 * returns how many items, or -EBUSY if `pid` is still alive (a zombie counts
 * as dead).  Items of a pool stage claimed before the call and owned by nobody
 * 50 ms later (a member died between its claim and its records: the claim
 * window, see ring.c) are moved on the same way; the call then takes 50 ms.  fe_close() does the same for what one handle holds. */
int fe_reclaim(fe_ring *r, pid_t pid);
/* 1 if `seq` was flagged failed, 0 if not, negative if seq is not in the ring. */
int fe_failed(const fe_ring *r, uint64_t seq);

/* Wakes every waiter with FE_ABORTED, now and for every later wait. */
void fe_abort(fe_ring *r);
int fe_aborted(const fe_ring *r);
/* UINT64_MAX until fe_end(), then the number of items in the stream. */
uint64_t fe_end_seq(const fe_ring *r);

/* Counters, readable from any attached process without a lock. */
int fe_stats(const fe_ring *r, uint32_t stage, fe_stage_stats *out);

/* A short text for a status code (static storage). */
const char *fe_strerror(int rc);

#ifdef __cplusplus
}
#endif
#endif
