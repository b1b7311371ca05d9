/*
 * frame-engine ring: implementation.  See ring.h for the interface, os.h for the
 * operating system beneath.
 *
 * THE MEMORY-ORDERING CONTRACT.  This is its one full statement; ring.h and the
 * README point here.  Every atomic operation below that orders something says
 * what it pairs with.
 *
 * Sequences.  Items are numbered by a free-running unsigned 64-bit sequence; item
 * s lives in slot s & (slots - 1).  Where two sequences may be on either side of
 * a wrap they are compared by signed difference ((int64_t)(a - b) < 0); 2^64
 * items never happen in practice (585 years at 10^9 a second), so fe_in_ring()
 * and the stats compare plainly.
 *
 * Handing an item on.  An item moves from stage k-1 to stage k through one
 * release store by whoever finished it (the frontier of an in-order stage: the
 * producer's in fe_publish(), an ordered stage's in fe_done(); or, for a pool,
 * the item's per-slot stamp) and one acquire load by whoever takes it
 * (finished(), ready_run()); the slot's bytes are readable and writable by the
 * taker after that acquire, and the producer reuses a slot only after an
 * acquire of the last stage's release.
 *
 * Pools.  Members arbitrate a run with a seq_cst CAS on the stage's next_seq;
 * the CAS only decides who owns the run, the data still flows through the
 * stamps.  The winner then records that it holds each item (owner, then
 * owner_seq with release), for fe_done() and fe_reclaim().
 *
 * Roles.  The producer's and an ordered consumer's role is an owner token taken
 * with a CAS (acquire: the cursors the last owner left) and freed with a release
 * store.
 *
 * End of stream.  fe_end() stores end_seq seq_cst after the last publish; a
 * consumer's re-check loads next_seq and then end_seq seq_cst, and pool members'
 * CAS is seq_cst, so the last member to run dry sees the end.
 *
 * Sleeping and waking: an asymmetric Dekker handshake.  A futex word per stage
 * (evt[k], "stage k made progress") and a sleeper count.  The waiter registers
 * (sleepers += 1), reads the word, re-checks its condition and sleeps on the
 * word; the waker makes progress (a release store), then looks for sleepers and
 * bumps the word if any.  A store then a load on both sides: without sequential
 * consistency between them each side can miss the other's store, and a wake-up
 * is lost.  The waker runs on every publish and every done, the waiter only on
 * its way to sleep, so the waiter pays for both: after its registration it puts
 * a seq_cst fence and then calls membarrier(GLOBAL_EXPEDITED), which runs a full
 * barrier on every CPU running a process registered for it.  A registered waker
 * (every process that opens a ring registers) then needs only a compiler barrier
 * between its store and its load (fast_side_barrier(r); a fence there waits for
 * the store to leave the store buffer: a cache-line transfer on every publish
 * and done).  Where membarrier is not available the waker fences; a waiter that
 * cannot call membarrier sleeps in 1 ms slices if any process that maps the ring
 * wakes without a fence (the header's fenceless flag: init_geometry(),
 * sleep_until()).  tests/c/test_wakeup_race.c catches a waiter without its
 * membarrier call.  fe_abort() stores its flag and bumps every word seq_cst.
 *
 * The claim window, the same handshake the other way round.  A pool member's
 * records follow its CAS; one killed between the two leaves items owned by
 * nobody, which fe_reclaim() settles after a grace period (settle_unowned()).
 * The member (fast side) stores its records, fast_side_barrier(), loads the
 * stage's settles; the settler (slow side) bumps settles seq_cst, then the
 * slow-side barrier (fence + membarrier), then reads the records.  Either the
 * settler sees the records (and leaves the items) or the member sees the bump
 * and waits for the settling to end to learn whether it lost its run.
 *
 * Counters (waits, stalls, failed, and the stats) are relaxed: each value is
 * exact, a set of them is not a snapshot.  Every process that maps a ring runs
 * this code: the layout version, checked at open, keeps out builds of another
 * protocol.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ring.h"
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics in the segment must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics in the segment must be lock-free");
_Static_assert(sizeof(_Atomic uint32_t) == 4, "the futex word is a plain aligned uint32_t");

#define FE_MAGIC UINT64_C(0x31676e6972656600) /* "\0fering1" */
#define FE_LAYOUT 3u /* 3: pool stats from stamps, the claim window's settles */
#define CACHE_LINE 64
#define DEFAULT_SPIN_NS 20000
#define NO_END UINT64_MAX

/* Test-only hooks (built into the C tests' copy of the core, never the wheel's):
 * see ring_test_hooks.h. */
#ifdef FE_TEST_HOOKS
#include "ring_test_hooks.h"
void (*fe_test_hook_claimed)(void);
void (*fe_test_hook_settling)(void);
#define TEST_HOOK(h) \
    do { \
        if (h) \
            h(); \
    } while (0)
#else
#define TEST_HOOK(h) ((void)0)
#endif

/* The slow path of a call whose fast path is inline: kept out of line, so that
 * the fast path does not pay for its stack frame. */
#define SLOW_PATH __attribute__((noinline, cold))

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

/* Written by the members of stage k (for stage 0, the producer).  Two lines:
 * the frontier, which the next stage (or the producer) polls, apart from what
 * only this stage writes, so that a claim or a take does not steal the line a
 * waiter is reading (sharing it cost a fifth of the 8-byte throughput). */
struct fe_stage_line {
    _Atomic uint64_t next_seq; /* the next sequence to hand out (stage 0: to claim) */
    _Atomic uint64_t waits;   /* counters: relaxed, read by anyone for stats */
    _Atomic uint64_t stalls;
    _Atomic uint64_t failed;
    _Atomic uint64_t owner;   /* producer / ordered consumer: role token (pid << 32 |
                                 handle id), 0 if free, RECLAIMING while a
                                 supervisor reclaims it */
    _Atomic uint64_t settles; /* pool: odd while a supervisor settles unowned items
                                 (settle_unowned()), bumped by 2 for each settling */
    _Atomic uint64_t settler; /* pool: the role token of that supervisor, 0 if none */
    /* In-order stages (the producer, ordered): every s < frontier is finished.
     * Pools finish out of order and have none: their per-slot stamps say it. */
    _Alignas(CACHE_LINE) _Atomic uint64_t frontier;
} __attribute__((aligned(CACHE_LINE)));

/* Futex handshake for those waiting on stage k's progress (stage k+1's members,
 * or the producer when k is the last stage).  Written on the slow path only. */
struct fe_wait_line {
    _Atomic uint32_t evt;      /* the futex word: bumped when stage k progresses */
    _Atomic uint32_t sleepers; /* waiters registered on evt */
} __attribute__((aligned(CACHE_LINE)));

struct fe_hdr {
    /* Identity first: fe_open() checks it before trusting anything else.
     * magic is stored last at create (release), loaded first at open (acquire). */
    _Atomic uint64_t magic;
    uint32_t version;
    uint32_t pad0_;
    uint64_t hdr_bytes;
    uint64_t total_bytes;
    uint64_t pad1_[4];

    /* Control, written rarely by the producer or a supervisor. */
    _Atomic uint64_t end_seq; /* NO_END until fe_end() */
    _Atomic uint32_t aborted;
    _Atomic uint32_t fenceless; /* 1 once a process that wakes without a fence
                                   (a registered one) has mapped the ring */
    uint64_t pad3_[6];

    struct fe_stage_line stage[FE_MAX_STAGES];
    struct fe_wait_line wait[FE_MAX_STAGES];

    /* Read-only configuration, written once before magic. */
    uint32_t slots;
    uint32_t nstages; /* consumer stages */
    uint32_t lookback;
    int32_t creator;
    uint64_t slot_bytes;
    uint64_t stride;
    uint64_t data_off;
    uint64_t creator_start;
    uint64_t user_off; /* the application area: after the slot headers */
    uint32_t user_bytes;
    uint32_t pad4_;
    uint8_t kinds[FE_MAX_STAGES]; /* kinds[0] = FE_PRODUCER */
} __attribute__((aligned(CACHE_LINE)));

_Static_assert(offsetof(struct fe_hdr, end_seq) % CACHE_LINE == 0, "control on its own line");
_Static_assert(offsetof(struct fe_hdr, stage) % CACHE_LINE == 0, "stage lines aligned");
_Static_assert(sizeof(struct fe_stage_line) == 2 * CACHE_LINE, "two lines per stage");
_Static_assert(offsetof(struct fe_hdr, wait) % CACHE_LINE == 0, "wait lines aligned");
_Static_assert(offsetof(struct fe_hdr, slots) % CACHE_LINE == 0, "config on its own line");
_Static_assert(sizeof(struct fe_hdr) == 22 * CACHE_LINE, "the header of layouts 2 and 3");

/* Per-slot header, one cache line.  Only pool stages stamp; in-order stages
 * (the producer and ordered stages) are described by their frontier. */
struct fe_slot_hdr {
    _Atomic uint64_t stamp[FE_MAX_STAGES - 1]; /* stamp[k-1]: last seq pool stage k finished here */
    _Atomic uint64_t owner_seq;                /* the seq a pool member recorded as held */
    _Atomic uint64_t failed_seq;               /* the last seq flagged failed here */
    _Atomic uint64_t owner;                    /* hold token of that member: pid << 32 |
                                                  stage << 24 | handle id */
};
_Static_assert(sizeof(struct fe_slot_hdr) == CACHE_LINE, "one line per slot header");

/* Process-local handle.  Caches of the other side's cursors live here, never in
 * the segment. */
struct fe_ring {
    struct fe_hdr *h;
    struct fe_slot_hdr *sh;
    uint8_t *data;
    size_t map_bytes;
    uint64_t mask;
    uint64_t stride;
    int64_t spin_ns;   /* the spin budget set by the user */
    int64_t spin_cur;  /* adapted: halves when spins end in sleep, grows when they pay */
    uint32_t waits_n;  /* waits begun, to probe with the full budget now and then */
    bool resume;       /* the next wait continues an interrupted one (fe_resume_wait) */
    bool released;     /* fe_release(): roles and held items let go, no new ones */
    pid_t pid;
    uint32_t hid; /* this handle's id, 24 bits, never 0: tells handles of one process apart */
    uint64_t token; /* role token: pid << 32 | hid */
    struct fe_ring *next_handle; /* this process's handles (fork_child()) */
    /* The header's configuration, copied at attach: the fast paths read the
     * handle, not the segment. */
    uint32_t slots, lookback, nstages, claim_max; /* claim_max: slots - lookback */
    uint8_t kinds[FE_MAX_STAGES];
    bool fenceless_wake; /* this process is registered for membarrier: wake() needs no fence */
    /* after[k]: the frontier of stage k-1 where that stage is in order, else NULL;
     * after[nstages + 1]: the last stage's, for the producer (fe_claim()'s
     * fast path).  fe_take()'s fast path reads stage k-1's frontier through
     * line[k] (take_fast has bit k only where after[k] is set). */
    _Atomic uint64_t *after[FE_MAX_STAGES + 1];
    _Atomic uint64_t *after_last; /* after[nstages + 1] */
    /* &h->stage[k] and &h->wait[k], so that the fast paths load an address
     * rather than compute it. */
    struct fe_stage_line *line[FE_MAX_STAGES];
    struct fe_wait_line *wline[FE_MAX_STAGES];
    /* producer */
    bool producer;
    bool claim_fast;  /* fe_claim()'s fast path may run: the last claim succeeded (the
                         producer, the stream not ended) and no wait is to be resumed */
    uint64_t p_head; /* next to claim */
    uint64_t p_pub;  /* next to publish */
    uint64_t p_free; /* every s < p_free is finished by the last stage */
    uint64_t p_room; /* fe_claim()'s fast path: a claim may end at p_room; at most
                        p_free + claim_max (stale: smaller), so that head + n <= p_room
                        also bounds n by claim_max */
    /* A handle that is not the producer keeps p_head == p_pub (both 0 until it
     * becomes the producer, set equal again when it stops), so that fe_publish()'s
     * one range check refuses it. */
    /* ordered stages this handle owns, by bit */
    unsigned ordered_owned;
    /* take_fast: the stages of ordered_owned whose previous stage is in order,
     * while no wait is to be resumed: fe_take()'s fast path, one bit test.
     * Set by take_slow() when it takes; cleared with the bit of ordered_owned
     * and by fe_resume_wait(). */
    unsigned take_fast;
    char name[FE_NAME_MAX];
};

/* ---- small helpers ------------------------------------------------------ */

#define RECLAIMING UINT64_MAX /* a role's owner while a supervisor reclaims it */
#define HID_MASK 0xFFFFFFu

/* Role token (producer, ordered consumer) and hold token (a pool member's
 * record on a slot).  fe_reclaim(pid) matches the pid part. */
static inline uint64_t role_token(const fe_ring *r) { return r->token; }
static inline uint64_t hold_token(const fe_ring *r, uint32_t stage)
{
    return r->token | (uint64_t)stage << 24;
}
static inline pid_t token_pid(uint64_t t) { return (pid_t)(t >> 32); }
#define HOLD_PID_STAGE_MASK UINT64_C(0xFFFFFFFFFF000000)

/* now + ns, saturating, so that a huge timeout means "forever", not a wrap. */
static int64_t deadline_after(int64_t now, int64_t ns)
{
    return ns < 0 || ns > INT64_MAX - now ? INT64_MAX : now + ns;
}

/* The two sides of an asymmetric Dekker handshake (a store, then a load of what
 * the other side stores).  The fast side, run on every publish, done or claim: a
 * seq_cst fence, or, where this process is registered for membarrier, only a
 * compiler barrier, and the slow side's membarrier call is the fence. */
static inline void fast_side_barrier(const fe_ring *r)
{
    if (r->fenceless_wake)
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
}

/* Tell those waiting on stage k's progress.  The caller has just made progress
 * visible with a release store. */
static void wake(fe_ring *r, uint32_t k)
{
    struct fe_wait_line *w = r->wline[k];
    /* Between our progress and this load: either the waiter's re-check sees our
     * progress, or we see its registration here and bump the word. */
    fast_side_barrier(r);
    if (atomic_load_explicit(&w->sleepers, memory_order_relaxed) != 0) {
        /* release: a waiter that reads the new word value also sees our progress */
        atomic_fetch_add_explicit(&w->evt, 1, memory_order_release);
        os_futex_wake_all(&w->evt);
    }
}

/* For fe_abort(): seq_cst, after the seq_cst store of the flag there. */
static void wake_unconditionally(fe_ring *r, uint32_t k)
{
    atomic_fetch_add_explicit(&r->h->wait[k].evt, 1, memory_order_seq_cst);
    os_futex_wake_all(&r->h->wait[k].evt);
}

static inline struct fe_slot_hdr *slot_hdr(const fe_ring *r, uint64_t s)
{
    return &r->sh[s & r->mask];
}

static inline bool in_order(const fe_ring *r, uint32_t k)
{
    return r->kinds[k] != FE_POOL;
}

/* Has stage k finished item s?  Valid while s is still in the ring. */
static inline bool finished(const fe_ring *r, uint32_t k, uint64_t s)
{
    if (in_order(r, k))
        /* acquire: pairs with the release store of frontier in fe_publish()/fe_done() */
        return (int64_t)(s - atomic_load_explicit(&r->h->stage[k].frontier, memory_order_acquire)) < 0;
    /* acquire: pairs with the release store of the stamp in fe_done()/fe_reclaim() */
    return atomic_load_explicit(&slot_hdr(r, s)->stamp[k - 1], memory_order_acquire) == s;
}

/* How many consecutive items from c (at most max) has stage k-1 finished? */
/* How many consecutive items from c (at most max) has pool stage u finished? */
static inline __attribute__((always_inline)) uint32_t ready_after_pool(const fe_ring *r, uint32_t u,
                                                           uint64_t c, uint32_t max)
{
    /* finished() for a pool, with the slot headers and the mask read once (each
     * acquire load would make the compiler read them again for every item) */
    const struct fe_slot_hdr *sh = r->sh;
    uint64_t mask = r->mask;
    uint32_t n = 0;
    /* acquire: pairs with the release store of the stamp in fe_done()/fe_reclaim() */
    while (n < max && atomic_load_explicit(&sh[(c + n) & mask].stamp[u - 1],
                                           memory_order_acquire) == c + n)
        n++;
    return n;
}

/* How many consecutive items from c (at most max) has stage k-1 finished? */
static inline uint32_t ready_run(const fe_ring *r, uint32_t k, uint64_t c, uint32_t max)
{
    uint32_t u = k - 1;
    if (!in_order(r, u))
        return ready_after_pool(r, u, c, max);
    /* acquire: pairs with the release store of frontier in fe_publish()/fe_done() */
    uint64_t done = atomic_load_explicit(&r->h->stage[u].frontier, memory_order_acquire);
    uint64_t avail = (int64_t)(done - c) > 0 ? done - c : 0;
    return avail < max ? (uint32_t)avail : max;
}

static inline bool hdr_aborted(const struct fe_hdr *h)
{
    return atomic_load_explicit(&h->aborted, memory_order_acquire) != 0;
}

static inline bool aborted(const fe_ring *r) { return hdr_aborted(r->h); }

/* ---- waiting ------------------------------------------------------------ */

typedef bool (*cond_fn)(fe_ring *r, uint32_t arg);

#define UNCOVERED_SLICE_NS 1000000 /* a sleeper without membarrier looks again after 1 ms */

/* The spin before a sleep: true if cond(r, arg) came to hold.  Spin briefly: a
 * handoff between two running processes is ~100 ns.  The budget adapts: where
 * spins keep ending in sleep (the other side shares our CPU, or is slow),
 * spinning only burns the CPU it needs; every 64th wait tries the full budget,
 * in case things changed.  The clock is read after a first round of polls: most
 * waits between running processes end in it.  *deadline is set either way. */
static bool spin_until(fe_ring *r, cond_fn cond, uint32_t arg, int64_t timeout_ns, bool resume,
                       int64_t *deadline)
{
    int64_t spin = resume ? 0 : (++r->waits_n & 63) == 0 ? r->spin_ns : r->spin_cur;
    if (spin <= 0) {
        *deadline = deadline_after(os_now_ns(), timeout_ns);
        return false;
    }
    int64_t spin_end = 0;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            cpu_relax();
            if (cond(r, arg)) {
                /* a spin that paid: the other side is running, spin fully again */
                r->spin_cur = r->spin_ns;
                return true;
            }
        }
        int64_t now = os_now_ns();
        if (spin_end == 0) {
            *deadline = deadline_after(now, timeout_ns);
            spin_end = deadline_after(now, spin);
            if (spin_end > *deadline)
                spin_end = *deadline;
        }
        if (now >= spin_end)
            break;
    }
    r->spin_cur = r->spin_cur / 2 < 500 ? 0 : r->spin_cur / 2;
    return false;
}

/* The sleep: on stage `on`'s futex word until cond(r, arg) holds or the deadline
 * passes; sleeps are counted against `st`.  The slow side of the wake-up
 * handshake whose fast side is wake() (see the top of this file). */
static int sleep_until(fe_ring *r, uint32_t on, struct fe_stage_line *st, cond_fn cond,
                       uint32_t arg, int64_t deadline)
{
    struct fe_wait_line *w = &r->h->wait[on];
    bool slept = false; /* the last futex wait was a slice of an uncovered sleep */
    for (;;) {
        /* seq_cst: the waiter's store of the handshake */
        atomic_fetch_add_explicit(&w->sleepers, 1, memory_order_seq_cst);
        /* acquire: pairs with the release bump in wake(); read before the re-check,
         * so a bump after the re-check makes the futex wait return at once */
        uint32_t val = atomic_load_explicit(&w->evt, memory_order_acquire);
        /* seq_cst: pairs with the fence in wake() of an unregistered waker; and
         * membarrier, a full barrier on every CPU that runs a registered waker,
         * stands for the fence that wake() leaves out.  Without it, a registered
         * waker's progress may reach us late: sleep in slices, so that it is seen
         * within one. */
        atomic_thread_fence(memory_order_seq_cst);
        /* seq_cst: after the fence; see init_geometry() */
        bool covered = os_membarrier_global() ||
                       !atomic_load_explicit(&r->h->fenceless, memory_order_seq_cst);
        if (cond(r, arg)) { /* the waiter's load of the handshake */
            atomic_fetch_sub_explicit(&w->sleepers, 1, memory_order_relaxed);
            return 0;
        }
        int64_t left = deadline == INT64_MAX ? -1 : deadline - os_now_ns();
        if (deadline != INT64_MAX && left <= 0) {
            atomic_fetch_sub_explicit(&w->sleepers, 1, memory_order_relaxed);
            return -ETIMEDOUT;
        }
        if (!covered && (left < 0 || left > UNCOVERED_SLICE_NS))
            left = UNCOVERED_SLICE_NS;
        if (!slept) /* a sleep in slices counts once */
            atomic_fetch_add_explicit(&st->waits, 1, memory_order_relaxed); /* counter */
        slept = !covered;
        int rc = os_futex_wait(&w->evt, val, left);
        atomic_fetch_sub_explicit(&w->sleepers, 1, memory_order_relaxed);
        if (cond(r, arg))
            return 0;
        if (rc != 0 && rc != -EAGAIN && rc != -ETIMEDOUT)
            return rc; /* EINTR for the caller to look at signals; anything else is fatal */
        /* woken for another reason, the word moved, or the timeout: loop re-checks */
        if (rc != -ETIMEDOUT)
            slept = false;
    }
}

/* Wait until cond(r, arg) holds, on stage `on`'s futex word: spin, then sleep.
 * Counts stalls and waits against stage `who` (a resumed wait is not a new
 * stall, and does not spin again).  0, -ETIMEDOUT, -EINTR, or another futex error. */
static int wait_until(fe_ring *r, uint32_t on, uint32_t who, cond_fn cond, uint32_t arg,
                      int64_t timeout_ns, bool resume)
{
    if (cond(r, arg))
        return 0;
    struct fe_stage_line *st = &r->h->stage[who];
    if (!resume)
        atomic_fetch_add_explicit(&st->stalls, 1, memory_order_relaxed); /* counter */
    if (timeout_ns == 0)
        return -ETIMEDOUT;
    int64_t deadline;
    if (spin_until(r, cond, arg, timeout_ns, resume, &deadline))
        return 0;
    return sleep_until(r, on, st, cond, arg, deadline);
}

/* ---- lifecycle ---------------------------------------------------------- */

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static int check_config(const fe_config *c)
{
    if (!c || c->slots < 2 || (c->slots & (c->slots - 1)) || c->slots > (1u << 30))
        return -EINVAL;
    if (c->slot_bytes < 1 || c->slot_bytes > (UINT64_C(1) << 40))
        return -EINVAL;
    if (c->nstages < 1 || c->nstages > FE_MAX_STAGES - 1)
        return -EINVAL;
    for (uint32_t i = 0; i < c->nstages; i++)
        if (c->kinds[i] != FE_POOL && c->kinds[i] != FE_ORDERED)
            return -EINVAL;
    if (c->user_bytes > FE_USER_MAX)
        return -EINVAL;
    if (c->lookback >= c->slots)
        return -EINVAL;
    return 0;
}

static int map_segment(int fd, uint64_t data_off, uint64_t data_bytes, fe_ring *r)
{
    void *base;
    int rc = os_map_segment(fd, data_off, data_bytes, &base);
    if (rc)
        return rc;
    r->h = base;
    r->sh = (struct fe_slot_hdr *)((uint8_t *)base + sizeof(struct fe_hdr));
    r->data = (uint8_t *)base + data_off;
    r->map_bytes = data_off + 2 * data_bytes;
    return 0;
}

/* The handles of this process.  A handle used in a forked child acts for the
 * child: its pid and token change and it holds no role.  The fork hook does that
 * for every handle, so that no call pays for a check. */
static fe_ring *handles;
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t handles_once = PTHREAD_ONCE_INIT;

static void set_pid(fe_ring *r, pid_t pid)
{
    r->pid = pid;
    r->token = (uint64_t)(uint32_t)pid << 32 | r->hid;
}

static void fork_prepare(void) { pthread_mutex_lock(&handles_lock); }
static void fork_parent(void) { pthread_mutex_unlock(&handles_lock); }
static void fork_child(void)
{
    pid_t pid = getpid();
    for (fe_ring *r = handles; r; r = r->next_handle) {
        set_pid(r, pid);
        r->producer = false;
        r->claim_fast = false;
        r->ordered_owned = 0;
        r->take_fast = 0;
        r->p_head = r->p_pub; /* see p_pub: fe_publish() refuses us */
    }
    pthread_mutex_unlock(&handles_lock);
}
static void handles_init(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

static fe_ring *new_handle(const char *name)
{
    static _Atomic uint32_t next_hid = 1;
    os_init();
    pthread_once(&handles_once, handles_init);
    fe_ring *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->spin_ns = r->spin_cur = DEFAULT_SPIN_NS;
    do
        r->hid = atomic_fetch_add_explicit(&next_hid, 1, memory_order_relaxed) & HID_MASK;
    while (r->hid == 0);
    pthread_mutex_lock(&handles_lock);
    set_pid(r, getpid());
    r->next_handle = handles;
    handles = r;
    pthread_mutex_unlock(&handles_lock);
    return r;
}

static void forget_handle(fe_ring *r)
{
    pthread_mutex_lock(&handles_lock);
    for (fe_ring **p = &handles; *p; p = &(*p)->next_handle)
        if (*p == r) {
            *p = r->next_handle;
            break;
        }
    pthread_mutex_unlock(&handles_lock);
}

static void init_geometry(fe_ring *r)
{
    r->mask = r->h->slots - 1;
    r->stride = r->h->stride;
    r->slots = r->h->slots;
    r->lookback = r->h->lookback;
    r->nstages = r->h->nstages;
    r->claim_max = r->slots - r->lookback;
    memcpy(r->kinds, r->h->kinds, sizeof r->kinds);
    for (uint32_t k = 1; k <= r->nstages + 1; k++)
        r->after[k] = r->kinds[k - 1] != FE_POOL ? &r->h->stage[k - 1].frontier : NULL;
    r->after_last = r->after[r->nstages + 1];
    for (uint32_t k = 0; k < FE_MAX_STAGES; k++) {
        r->line[k] = &r->h->stage[k];
        r->wline[k] = &r->h->wait[k];
    }
    r->fenceless_wake = os_membarrier_registered();
    if (os_membarrier_registered()) {
        /* seq_cst store and fence, before this process can wake anyone without
         * a fence: a sleeper that cannot call membarrier reads the flag after
         * its own fence (wait_until()); if it reads 0, our fence comes after its
         * fence, and every later wake of ours sees it registered as a sleeper. */
        atomic_store_explicit(&r->h->fenceless, 1, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
    }
}

static bool valid_name(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n < FE_NAME_MAX && !strchr(name + 1, '/');
}

/* Stride: small items are packed at a power of two of at least 8 bytes, so that
 * a batch of them is a few cache lines, not one line each (8-byte items at a
 * 64-byte stride made a batch of 64 touch 4 KiB, and ran at a third of the speed
 * of a packed ring); no item crosses a line.  Items of a line or more are 64-byte
 * aligned, large ones page aligned.  And the data region is a whole number of
 * pages, so that it can be mapped twice. */
static uint64_t slot_stride(uint64_t slot_bytes, uint32_t slots, uint64_t page)
{
    uint64_t stride = 8;
    while (stride < slot_bytes && stride < CACHE_LINE)
        stride *= 2;
    if (slot_bytes > CACHE_LINE)
        stride = round_up(slot_bytes, slot_bytes >= page ? page : CACHE_LINE);
    if ((stride * slots) % page) {
        /* slots and page are powers of two: a multiple of page / slots fills pages */
        uint64_t unit = stride < CACHE_LINE ? stride : CACHE_LINE;
        stride = round_up(stride, page / slots > unit ? page / slots : unit);
    }
    return stride;
}

/* FE_SHM_TAG: 1 to 16 letters put before the counter in the names fe_create()
 * makes ("fe-<pid>-<tag><n>"), so that a test suite, or any program, can tell
 * its own segments from those of other programs sharing /dev/shm.  Anything
 * else in it is ignored. */
static const char *name_tag(void)
{
    const char *tag = getenv("FE_SHM_TAG");
    if (!tag)
        return "";
    size_t n = 0;
    while (tag[n] && n <= 16 && ((tag[n] >= 'a' && tag[n] <= 'z') || (tag[n] >= 'A' && tag[n] <= 'Z')))
        n++;
    return (n >= 1 && n <= 16 && tag[n] == '\0') ? tag : "";
}

/* The segment's layout for cfg: its parts' offsets and sizes. */
struct layout {
    uint64_t stride, user_off, hdr_bytes, data_bytes, total;
};

static int plan_layout(const fe_config *cfg, struct layout *l)
{
    uint64_t page = os_page_size();
    l->stride = slot_stride(cfg->slot_bytes, cfg->slots, page);
    l->user_off = sizeof(struct fe_hdr) + (uint64_t)cfg->slots * sizeof(struct fe_slot_hdr);
    l->hdr_bytes = round_up(l->user_off + cfg->user_bytes, page);
    l->data_bytes = l->stride * cfg->slots;
    if (l->data_bytes / cfg->slots != l->stride || l->hdr_bytes + 2 * l->data_bytes < l->data_bytes)
        return -EINVAL;
    l->total = l->hdr_bytes + l->data_bytes;
    return 0;
}

/* Create the shm object (named, or "fe-<pid>-<tag><n>" for the first n free) of
 * `total` bytes, reserved: a full /dev/shm is an error here rather than a SIGBUS
 * in the middle of a run.  Its "/name" in path (FE_NAME_MAX + 2 bytes); the fd, or
 * a negated errno (the object is gone again then). */
static int create_segment(const char *name, uint64_t total, char *path)
{
    static _Atomic unsigned counter;
    int fd = -1;
    for (int tries = 0; tries < 1000 && fd < 0; tries++) {
        if (name)
            snprintf(path, FE_NAME_MAX + 2, "/%s", name[0] == '/' ? name + 1 : name);
        else
            snprintf(path, FE_NAME_MAX + 2, "/fe-%d-%s%u", (int)getpid(), name_tag(),
                     atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed));
        fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && (errno != EEXIST || name))
            return -errno;
    }
    if (fd < 0)
        return -EEXIST;
    int rc = ftruncate(fd, (off_t)total) != 0 ? errno : posix_fallocate(fd, 0, (off_t)total);
    if (rc == 0)
        return fd;
    close(fd);
    shm_unlink(path);
    return -rc;
}

/* Fill in the header and the slot headers of a new segment; magic last. */
static void init_header(fe_ring *r, const fe_config *cfg, const struct layout *l)
{
    struct fe_hdr *h = r->h;
    h->version = FE_LAYOUT;
    h->hdr_bytes = l->hdr_bytes;
    h->total_bytes = l->total;
    h->slots = cfg->slots;
    h->nstages = cfg->nstages;
    h->lookback = cfg->lookback;
    h->user_off = l->user_off;
    h->user_bytes = cfg->user_bytes;
    h->creator = getpid();
    h->creator_start = os_proc_start_time(h->creator);
    h->slot_bytes = cfg->slot_bytes;
    h->stride = l->stride;
    h->data_off = l->hdr_bytes;
    h->kinds[0] = FE_PRODUCER;
    for (uint32_t i = 0; i < cfg->nstages; i++)
        h->kinds[i + 1] = cfg->kinds[i];
    atomic_init(&h->end_seq, NO_END);
    init_geometry(r);
    for (uint64_t i = 0; i < cfg->slots; i++) {
        /* As if the previous occupant, i - slots, had been finished by every stage. */
        for (int k = 0; k < FE_MAX_STAGES - 1; k++)
            atomic_init(&r->sh[i].stamp[k], i - cfg->slots);
        atomic_init(&r->sh[i].owner_seq, NO_END);
        atomic_init(&r->sh[i].failed_seq, NO_END);
    }
    /* release: pairs with the acquire in header_problem(); the header is complete */
    atomic_store_explicit(&h->magic, FE_MAGIC, memory_order_release);
}

int fe_create(const char *name, const fe_config *cfg, fe_ring **out)
{
    struct layout l;
    int rc = check_config(cfg);
    if (rc == 0 && name && !valid_name(name))
        rc = -EINVAL;
    if (rc == 0)
        rc = plan_layout(cfg, &l);
    if (rc)
        return rc;
    char path[FE_NAME_MAX + 2];
    int fd = create_segment(name, l.total, path);
    if (fd < 0)
        return fd;
    fe_ring *r = new_handle(path + 1);
    rc = r ? map_segment(fd, l.hdr_bytes, l.data_bytes, r) : -ENOMEM;
    close(fd);
    if (rc) {
        forget_handle(r);
        free(r);
        shm_unlink(path);
        return rc;
    }
    init_header(r, cfg, &l);
    *out = r;
    return 0;
}

/* What is wrong with the header h of a segment of file_bytes, or NULL if it is a
 * ring this build can map; *rc is FE_EVERSION or FE_EBADRING.  Checked in order,
 * each check trusting only what the earlier ones established. */
static const char *header_problem(const struct fe_hdr *h, uint64_t file_bytes, int *rc)
{
    *rc = FE_EBADRING;
    /* acquire: pairs with the release in fe_create(); the header is complete */
    if (atomic_load_explicit(&h->magic, memory_order_acquire) != FE_MAGIC)
        return "bad magic: not a frame-engine ring, or one still being created";
    if (h->version != FE_LAYOUT) {
        *rc = FE_EVERSION;
        return "a ring of another layout version (made by another build)";
    }
    uint64_t slots = h->slots, stride = h->stride, data_off = h->data_off, page = os_page_size();
    uint64_t headers = sizeof(struct fe_hdr) + slots * sizeof(struct fe_slot_hdr);
    if (slots < 2 || (slots & (slots - 1)) || slots > (1u << 30))
        return "bad geometry: the slot count is not a power of two from 2 to 2^30";
    if (h->nstages < 1 || h->nstages >= FE_MAX_STAGES)
        return "bad geometry: the stage count is not 1 to 5";
    if (h->kinds[0] != FE_PRODUCER)
        return "bad geometry: stage 0 is not the producer";
    for (uint32_t k = 1; k <= h->nstages; k++)
        if (h->kinds[k] != FE_POOL && h->kinds[k] != FE_ORDERED)
            return "bad geometry: a stage is neither a pool nor ordered";
    if (h->lookback >= slots)
        return "bad geometry: the lookback is not below the slot count";
    if (stride < h->slot_bytes || stride > (UINT64_MAX / 4) / slots ||
        (stride < CACHE_LINE ? (stride & (stride - 1)) || stride < 8 : stride % CACHE_LINE) ||
        (stride * slots) % page)
        return "bad geometry: the slot stride does not fit the slot size or the page size";
    if (data_off % page || data_off > UINT64_MAX / 4 || data_off < headers)
        return "bad geometry: the data does not start on a page after the slot headers";
    if (h->user_bytes > FE_USER_MAX || h->user_off % CACHE_LINE || h->user_off < headers ||
        h->user_off + h->user_bytes > data_off)
        return "bad geometry: the user area is not between the slot headers and the data";
    if (h->total_bytes != data_off + stride * slots)
        return "bad size: the header's total does not match its geometry";
    if (h->total_bytes != file_bytes)
        return "bad size: the segment's size is not the header's total (truncated or grown)";
    return NULL;
}

int fe_open_why(const char *name, fe_ring **out, const char **why)
{
    const char *unused;
    if (!why)
        why = &unused;
    *why = NULL;
    if (!name || !valid_name(name))
        return -EINVAL;
    char buf[FE_NAME_MAX + 1];
    snprintf(buf, sizeof buf, "%s%s", name[0] == '/' ? "" : "/", name);
    int fd = shm_open(buf, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out_fd;
    }
    /* A smaller file cannot hold a header: reading it through a mapping would
     * raise SIGBUS, so refuse before mapping. */
    if ((uint64_t)st.st_size < sizeof(struct fe_hdr)) {
        rc = FE_EBADRING;
        *why = "bad size: too small to hold a ring header";
        goto out_fd;
    }
    struct fe_hdr *h = mmap(NULL, sizeof *h, PROT_READ, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        rc = -errno;
        goto out_fd;
    }
    *why = header_problem(h, (uint64_t)st.st_size, &rc);
    uint64_t data_off = h->data_off, data_bytes = h->stride * h->slots;
    munmap(h, sizeof *h);
    if (*why)
        goto out_fd;

    fe_ring *r = new_handle(buf + 1);
    if (!r) {
        rc = -ENOMEM;
        goto out_fd;
    }
    if ((rc = map_segment(fd, data_off, data_bytes, r)) != 0) {
        forget_handle(r);
        free(r);
        goto out_fd;
    }
    init_geometry(r);
    *out = r;
    rc = 0;
out_fd:
    close(fd);
    return rc;
}

int fe_open(const char *name, fe_ring **out) { return fe_open_why(name, out, NULL); }

static void release_roles(fe_ring *r); /* below */

void fe_release(fe_ring *r)
{
    if (!r || r->released)
        return;
    release_roles(r);
    r->producer = false;
    r->claim_fast = false;
    r->ordered_owned = 0;
    r->take_fast = 0;
    r->p_head = r->p_pub; /* see p_pub: fe_publish() refuses us */
    r->released = true;
}

void fe_close(fe_ring *r)
{
    if (!r)
        return;
    fe_release(r);
    os_unmap_segment(r->h);
    forget_handle(r);
    free(r);
}

int fe_unlink(const char *name)
{
    if (!name || !valid_name(name))
        return -EINVAL;
    char buf[FE_NAME_MAX + 1];
    snprintf(buf, sizeof buf, "%s%s", name[0] == '/' ? "" : "/", name);
    return shm_unlink(buf) == 0 ? 0 : -errno;
}

/* ---- geometry ----------------------------------------------------------- */

const char *fe_name(const fe_ring *r) { return r->name; }
uint32_t fe_slots(const fe_ring *r) { return r->h->slots; }
uint64_t fe_slot_bytes(const fe_ring *r) { return r->h->slot_bytes; }
uint64_t fe_stride(const fe_ring *r) { return r->stride; }
uint32_t fe_nstages(const fe_ring *r) { return r->h->nstages; }
uint32_t fe_lookback(const fe_ring *r) { return r->h->lookback; }
uint32_t fe_user_bytes(const fe_ring *r) { return r->h->user_bytes; }
void *fe_user(const fe_ring *r)
{
    return r->h->user_bytes ? (uint8_t *)r->h + r->h->user_off : NULL;
}
pid_t fe_creator(const fe_ring *r) { return r->h->creator; }
uint64_t fe_creator_start(const fe_ring *r) { return r->h->creator_start; }
void fe_set_spin_ns(fe_ring *r, int64_t ns) { r->spin_ns = r->spin_cur = ns < 0 ? 0 : ns; }
void fe_resume_wait(fe_ring *r)
{
    /* The next wait, in fe_claim() or fe_take(), goes to the slow path, which
     * reads and clears the flag, and lets the fast paths run again. */
    r->resume = true;
    r->claim_fast = false;
    r->take_fast = 0;
}

int fe_stage_kind(const fe_ring *r, uint32_t stage)
{
    return stage <= r->h->nstages ? r->h->kinds[stage] : -EINVAL;
}

void *fe_slot(const fe_ring *r, uint64_t seq)
{
    return r->data + (seq & r->mask) * r->stride;
}

int fe_in_ring(const fe_ring *r, uint64_t seq)
{
    /* acquire: pairs with the release in fe_claim(); sequences never wrap in
     * practice (2^64 items), so plain comparison is right here */
    uint64_t head = atomic_load_explicit(&r->h->stage[0].next_seq, memory_order_acquire);
    return seq < head && head - seq <= r->h->slots;
}

/* ---- roles -------------------------------------------------------------- */

/* Become the owner of a role (the producer's or an ordered stage's): free, ours
 * already, or held by a process that is gone.  *replaced is the dead owner's
 * token we took over from (0 if none): its unfinished work is now ours to settle,
 * and no supervisor can race us for it, since the owner is no longer that pid. */
static int acquire_role(fe_ring *r, _Atomic uint64_t *owner, uint64_t *replaced)
{
    uint64_t me = role_token(r);
    /* acquire: pairs with the release that freed the role (release_roles(),
     * fe_reclaim()), so we see the cursors the last owner left */
    uint64_t cur = atomic_load_explicit(owner, memory_order_acquire);
    *replaced = 0;
    for (;;) {
        if (cur == me)
            return 0;
        if (cur == RECLAIMING ||
            (cur != 0 && (token_pid(cur) == r->pid || os_pid_alive(token_pid(cur)))))
            return -EBUSY; /* another handle, here or in a live process */
        /* acq_rel: as the load above; the release side orders nothing we wrote */
        if (atomic_compare_exchange_weak_explicit(owner, &cur, me, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *replaced = cur;
            return 0;
        }
    }
}

static int become_producer(fe_ring *r)
{
    if (r->producer)
        return 0;
    if (r->released)
        return FE_ECLOSED;
    uint64_t replaced;
    int rc = acquire_role(r, &r->h->stage[0].owner, &replaced);
    if (rc)
        return rc;
    /* A producer that died may have claimed items it never published: they are
     * abandoned, and claiming starts again after the last published item. */
    struct fe_stage_line *p = &r->h->stage[0];
    /* acquire: pairs with the release in fe_publish() of any earlier producer */
    r->p_pub = atomic_load_explicit(&p->frontier, memory_order_acquire);
    r->p_head = r->p_pub;
    /* release: pairs with the acquire in fe_in_ring() */
    atomic_store_explicit(&p->next_seq, r->p_head, memory_order_release);
    /* Every item claimed so far left room for itself, so everything before
     * p_pub - slots is finished by the last stage (unsigned: wraps harmlessly). */
    r->p_free = r->p_pub - r->h->slots;
    r->p_room = r->p_free + r->claim_max;
    r->producer = true;
    return 0;
}

/* ---- producer ----------------------------------------------------------- */

/* Pool members finish out of order: walk the stamps from the cached frontier;
 * each acquire (in finished()) pairs with the release in done_pool(). */
static inline __attribute__((always_inline)) uint64_t frontier_after_pool(fe_ring *r, uint32_t last)
{
    while (r->p_free != r->p_pub && finished(r, last, r->p_free))
        r->p_free++;
    return r->p_free;
}

/* Advance p_free, the frontier of what the last stage finished. */
static uint64_t producer_frontier(fe_ring *r)
{
    uint32_t last = r->nstages;
    if (in_order(r, last)) {
        /* acquire: pairs with the release of frontier in fe_done(); the slots
         * before it are free for writing */
        r->p_free = atomic_load_explicit(&r->h->stage[last].frontier, memory_order_acquire);
        return r->p_free;
    }
    return frontier_after_pool(r, last);
}

static bool claim_ready(fe_ring *r, uint32_t n)
{
    if (aborted(r))
        return true;
    uint64_t need = r->p_head + n + r->lookback; /* the run, plus the items kept behind it */
    if (need - r->p_free <= r->slots)
        return true;
    return need - producer_frontier(r) <= r->slots;
}

/* fe_claim() when the fast path cannot: the first claim, one that must wait, an
 * abort, the end of the stream. */
SLOW_PATH static int claim_slow(fe_ring *r, uint32_t n, int64_t timeout_ns, uint64_t *seq)
{
    bool resume = r->resume;
    r->resume = false;
    if (n < 1 || (uint64_t)n + r->h->lookback > r->h->slots)
        return -EINVAL;
    if (aborted(r))
        return FE_ABORTED;
    int rc = become_producer(r);
    if (rc)
        return rc;
    /* relaxed: only this producer stores end_seq */
    if (atomic_load_explicit(&r->h->end_seq, memory_order_relaxed) != NO_END)
        return -EPIPE;
    rc = wait_until(r, r->h->nstages, 0, claim_ready, n, timeout_ns, resume);
    if (rc)
        return rc;
    if (aborted(r))
        return FE_ABORTED;
    *seq = r->p_head;
    r->p_head += n;
    /* release: pairs with the acquire in fe_in_ring(); the slots are claimed */
    atomic_store_explicit(&r->h->stage[0].next_seq, r->p_head, memory_order_release);
    r->p_room = r->p_free + r->claim_max; /* claim_ready() advanced p_free */
    r->claim_fast = true;
    return 0;
}

int fe_claim(fe_ring *r, uint32_t n, int64_t timeout_ns, uint64_t *seq)
{
    /* The fast path: this handle claimed last time (it is the producer, the
     * stream goes on, no wait to resume), and there is room by the cached
     * frontier or by the last stage's read now (acquire, below).  n = 0 is
     * refused here, n > claim_max by the room check (p_room <= p_free +
     * claim_max and p_free <= p_head): the slow path then refuses both. */
    uint64_t head = r->p_head;
    if (__builtin_expect(r->claim_fast && n != 0, 1)) {
        if (__builtin_expect((int64_t)(head + n - r->p_room) > 0, 0)) {
            _Atomic uint64_t *last = r->after_last;
            if (!last)
                goto slow; /* a last stage that is a pool: walk its stamps */
            /* acquire: pairs with the release of the last stage's frontier in
             * fe_done(); the slots before it are free for writing */
            r->p_free = atomic_load_explicit(last, memory_order_acquire);
            r->p_room = r->p_free + r->claim_max;
            if ((int64_t)(head + n - r->p_room) > 0)
                goto slow;
        }
        struct fe_hdr *h = r->h;
        if (__builtin_expect(!hdr_aborted(h), 1)) {
            *seq = head;
            r->p_head = head + n;
            /* release: pairs with the acquire in fe_in_ring(); the slots are claimed */
            atomic_store_explicit(&h->stage[0].next_seq, head + n, memory_order_release);
            return 0;
        }
    }
slow:
    return claim_slow(r, n, timeout_ns, seq);
}

int fe_publish(fe_ring *r, uint64_t seq, uint32_t n)
{
    /* One range check: a handle that is not the producer has p_head == p_pub. */
    if (__builtin_expect(seq != r->p_pub || n - 1 >= r->p_head - r->p_pub, 0))
        return FE_ENOTHELD;
    uint64_t pub = seq + n;
    r->p_pub = pub;
    /* release: pairs with the acquire in finished()/ready_run() of stage 1;
     * the slots' bytes are visible to whoever takes these items */
    atomic_store_explicit(&r->line[0]->frontier, pub, memory_order_release);
    wake(r, 0);
    return 0;
}

int fe_end(fe_ring *r)
{
    int rc = become_producer(r);
    if (rc)
        return rc;
    r->claim_fast = false;
    r->p_head = r->p_pub;
    /* release: pairs with the acquire in fe_in_ring() */
    atomic_store_explicit(&r->h->stage[0].next_seq, r->p_head, memory_order_release);
    /* seq_cst: ordered against the pool members' claim CAS and their EOF checks
     * in fe_take()/take_ready(), so the last member to run dry sees the end */
    atomic_store_explicit(&r->h->end_seq, r->p_pub, memory_order_seq_cst);
    for (uint32_t k = 0; k <= r->h->nstages; k++)
        wake(r, k);
    return 0;
}

int fe_abandon(fe_ring *r)
{
    if (!r->producer)
        return FE_ENOTHELD;
    r->p_head = r->p_pub;
    /* release: pairs with the acquire in fe_in_ring(); those slots are free again */
    atomic_store_explicit(&r->h->stage[0].next_seq, r->p_head, memory_order_release);
    return 0;
}

uint64_t fe_end_seq(const fe_ring *r)
{
    /* acquire: pairs with the store in fe_end(); the items before it are published */
    return atomic_load_explicit(&r->h->end_seq, memory_order_acquire);
}

/* ---- consumers ---------------------------------------------------------- */

static bool take_ready(fe_ring *r, uint32_t k)
{
    /* seq_cst, both loads: this re-check is one side of the EOF handshake with
     * fe_end() and with a peer's claim CAS in fe_take() */
    uint64_t c = atomic_load_explicit(&r->h->stage[k].next_seq, memory_order_seq_cst);
    if (ready_run(r, k, c, 1))
        return true;
    uint64_t end = atomic_load_explicit(&r->h->end_seq, memory_order_seq_cst);
    return (end != NO_END && (int64_t)(c - end) >= 0) || aborted(r);
}

static int finish_ordered(fe_ring *r, uint32_t k);
static bool keep_run(fe_ring *r, uint32_t k, uint64_t c, uint32_t got);
static void flag_failed(fe_ring *r, uint64_t s);

/* An ordered stage's consumer: this handle owns the role, or takes it (free, or
 * held by a dead process, whose items it then settles). */
static int own_ordered(fe_ring *r, uint32_t k)
{
    struct fe_stage_line *st = &r->h->stage[k];
    /* relaxed: a supervisor that reclaimed our role (meant for a dead pid) left 0 */
    if ((r->ordered_owned & (1u << k)) &&
        atomic_load_explicit(&st->owner, memory_order_relaxed) != role_token(r)) {
        r->ordered_owned &= ~(1u << k);
        r->take_fast &= ~(1u << k);
    }
    if (r->ordered_owned & (1u << k))
        return 0;
    uint64_t replaced;
    int rc = acquire_role(r, &st->owner, &replaced);
    if (rc)
        return rc;
    if (replaced)
        finish_ordered(r, k); /* the previous owner died holding items */
    r->ordered_owned |= 1u << k;
    return 0;
}

/* A pool member takes the run [c, c + got) that it found ready: true if it is
 * now its, false if another member took it first (or it was lost in the claim
 * window).  The CAS arbitrates; then the member records, item by item, that it
 * holds the run (for fe_done() and fe_reclaim()). */
static bool take_pool_run(fe_ring *r, uint32_t k, uint64_t c, uint32_t got)
{
    struct fe_stage_line *st = &r->h->stage[k];
    /* Before the CAS: a settling whose scan (after its grace) could reach our run
     * began before our claim, so it bumps settles after this load.  acquire:
     * pairs with the release bump at its end. */
    uint64_t settles0 = atomic_load_explicit(&st->settles, memory_order_acquire);
    /* seq_cst: arbitrates the run among members, and is ordered against fe_end()'s
     * store so that EOF is never missed */
    if (!atomic_compare_exchange_strong_explicit(&st->next_seq, &c, c + got,
                                                 memory_order_seq_cst, memory_order_seq_cst))
        return false;
    TEST_HOOK(fe_test_hook_claimed);
    /* The token first, then owner_seq with release: pairs with the acquire of
     * owner_seq in pool_holds()/reclaim_pool()/unowned(), which then see this
     * token (or a later one). */
    uint64_t tok = hold_token(r, k);
    for (uint32_t i = 0; i < got; i++) {
        struct fe_slot_hdr *sh = slot_hdr(r, c + i);
        atomic_store_explicit(&sh->owner, tok, memory_order_relaxed);
        atomic_store_explicit(&sh->owner_seq, c + i, memory_order_release);
    }
    /* The claim window: did a supervisor settle the run as unowned meanwhile?  Our
     * records, then this load: the fast side of the handshake whose slow side is
     * settle_unowned() (bump settles, slow-side barrier, read the records).  Either
     * it sees our records or we see its bump. */
    fast_side_barrier(r);
    if ((settles0 & 1) || atomic_load_explicit(&st->settles, memory_order_relaxed) != settles0)
        return keep_run(r, k, c, got);
    /* No wake here when we took the last items: a member asleep for more needs
     * none.  It went to sleep, registered, after a re-check (take_ready():
     * next_seq, then end_seq, seq_cst) that found neither an item nor the end.  If
     * it read next_seq before our CAS, our items were not ready yet at its
     * re-check, and the previous stage's wake when it finished them (after its
     * release store) wakes it.  If after, it read end_seq before fe_end() stored
     * it (seq_cst), and fe_end() then wakes the word of every stage.  Either wake
     * finds it registered and it re-checks: EOF. */
    return true;
}

/* fe_take() when the fast path cannot: a pool, the first take of an ordered
 * stage, one that must wait, an abort, the end of the stream. */
SLOW_PATH static int take_slow(fe_ring *r, uint32_t stage, uint32_t max_n, int64_t timeout_ns,
                     uint64_t *seq, uint32_t *n)
{
    struct fe_hdr *h = r->h;
    bool resume = r->resume;
    r->resume = false;
    if (stage < 1 || stage > h->nstages || max_n < 1 || r->released)
        return r->released ? FE_ECLOSED : -EINVAL;
    if (max_n > h->slots)
        max_n = h->slots;
    struct fe_stage_line *st = &h->stage[stage];
    bool pool = h->kinds[stage] == FE_POOL;
    if (!pool) {
        int rc = own_ordered(r, stage);
        if (rc)
            return rc;
    }
    int64_t deadline = 0; /* set at the first wait: a take that finds items reads no clock */
    for (;;) {
        if (aborted(r))
            return FE_ABORTED;
        /* seq_cst: see take_ready() */
        uint64_t c = atomic_load_explicit(&st->next_seq, memory_order_seq_cst);
        uint32_t got = ready_run(r, stage, c, max_n);
        if (got && pool && !take_pool_run(r, stage, c, got))
            continue; /* lost the race: look again */
        if (got) {
            if (!pool) {
                /* release: pairs with the acquire in finish_ordered() (a new owner
                 * or a supervisor settles what we took) */
                atomic_store_explicit(&st->next_seq, c + got, memory_order_release);
                if (r->after[stage]) /* owned, after an in-order stage, not resuming */
                    r->take_fast |= 1u << stage;
            }
            *seq = c;
            *n = got;
            return 0;
        }
        uint64_t end = atomic_load_explicit(&h->end_seq, memory_order_seq_cst);
        if (end != NO_END && (int64_t)(c - end) >= 0)
            return FE_EOF;
        /* A member that loses a race for the items it waited for waits again,
         * for what is left of its timeout. */
        int64_t left = timeout_ns;
        if (timeout_ns > 0) {
            int64_t now = os_now_ns();
            if (deadline == 0)
                deadline = deadline_after(now, timeout_ns);
            left = deadline - now;
            if (left <= 0)
                return -ETIMEDOUT;
        }
        int rc = wait_until(r, stage - 1, stage, take_ready, stage, left, resume);
        if (rc)
            return rc;
        resume = true; /* a lost race waits on as part of the same wait */
    }
}

int fe_take(fe_ring *r, uint32_t stage, uint32_t max_n, int64_t timeout_ns, uint64_t *seq,
            uint32_t *n)
{
    /* The fast path: an ordered stage this handle owns, after an in-order stage,
     * no wait to resume (take_fast), its role token still in place (a supervisor
     * has not taken it over), not aborted, with items ready now. */
    if (__builtin_expect(stage < FE_MAX_STAGES && (r->take_fast >> stage & 1), 1)) {
        struct fe_stage_line *st = r->line[stage];
        /* relaxed: the owner check as in own_ordered() */
        if (__builtin_expect(!hdr_aborted(r->h) &&
                                 atomic_load_explicit(&st->owner, memory_order_relaxed) == r->token,
                             1)) {
            /* relaxed: only this handle, the role's owner, writes next_seq */
            uint64_t c = atomic_load_explicit(&st->next_seq, memory_order_relaxed);
            /* acquire: pairs with the release of the previous stage's frontier in
             * fe_publish()/fe_done(); the slots' bytes are ours to read and write */
            uint64_t done = atomic_load_explicit(&st[-1].frontier, memory_order_acquire);
            /* At most slots: the previous stage finishes only claimed items, and
             * the producer claims no further than slots past our frontier. */
            uint32_t avail = (uint32_t)(done - c);
            uint32_t got = avail < max_n ? avail : max_n;
            if (__builtin_expect(got != 0, 1)) {
                /* release: pairs with the acquire in finish_ordered() (a new owner
                 * or a supervisor settles what we took) */
                atomic_store_explicit(&st->next_seq, c + got, memory_order_release);
                *seq = c;
                *n = got;
                return 0;
            }
        }
    }
    return take_slow(r, stage, max_n, timeout_ns, seq, n);
}

/* Does this handle hold the items [s, s + n) of pool stage k?  Handed out (in
 * the last `slots` of next_seq), not finished, and recorded as held by us:
 * only the claimer of an item records it, after the previous stage finished it. */
static bool pool_holds(const fe_ring *r, uint32_t k, uint64_t s, uint32_t n)
{
    /* acquire: pairs with the release of next_seq (the CAS in take_pool_run()) */
    uint64_t claim = atomic_load_explicit(&r->h->stage[k].next_seq, memory_order_acquire);
    if ((int64_t)(s + n - claim) > 0 || claim - s > r->slots)
        return false;
    uint64_t tok = hold_token(r, k);
    for (uint32_t i = 0; i < n; i++) {
        struct fe_slot_hdr *sh = slot_hdr(r, s + i);
        /* acquire: pairs with the release of owner_seq in take_pool_run(), so the
         * token read after it is the one recorded with it (or a later one) */
        if (atomic_load_explicit(&sh->owner_seq, memory_order_acquire) != s + i ||
            atomic_load_explicit(&sh->owner, memory_order_relaxed) != tok ||
            /* relaxed: our own stamp, or a supervisor's release of it (settled) */
            atomic_load_explicit(&sh->stamp[k - 1], memory_order_relaxed) == s + i)
            return false;
    }
    return true;
}

/* fe_done() of a pool member: a stamp for each item. */
__attribute__((noinline)) static int done_pool(fe_ring *r, uint32_t k, uint64_t seq,
                                               uint32_t n)
{
    if (!pool_holds(r, k, seq, n))
        return FE_ENOTHELD;
    for (uint32_t i = 0; i < n; i++)
        /* release: pairs with the acquire in finished() of the next stage or the producer */
        atomic_store_explicit(&slot_hdr(r, seq + i)->stamp[k - 1], seq + i, memory_order_release);
    /* No counter of finished items here: a shared line written by every member
     * on every batch.  fe_stats() counts them from the stamps. */
    wake(r, k);
    return 0;
}

/* fe_done() when the fast path cannot: a pool, or a call to refuse. */
SLOW_PATH static int done_slow(fe_ring *r, uint32_t stage, uint64_t seq, uint32_t n)
{
    if (stage - 1 >= r->nstages || n - 1 >= r->slots)
        return -EINVAL;
    if (r->kinds[stage] == FE_ORDERED)
        return FE_ENOTHELD; /* not the owner, or not the next items it holds */
    return done_pool(r, stage, seq, n);
}

int fe_done(fe_ring *r, uint32_t stage, uint64_t seq, uint32_t n)
{
    /* The fast path: an ordered stage this handle owns, finishing in order. */
    if (__builtin_expect(stage < FE_MAX_STAGES && (r->ordered_owned >> stage & 1), 1)) {
        struct fe_stage_line *st = r->line[stage];
        /* relaxed: only this handle, the role's owner, writes them */
        uint64_t done = atomic_load_explicit(&st->frontier, memory_order_relaxed);
        uint64_t claim = atomic_load_explicit(&st->next_seq, memory_order_relaxed);
        if (__builtin_expect(seq == done && n - 1 < claim - done, 1)) {
            /* release: pairs with the acquire in finished()/ready_run() of the
             * next stage (or the producer); we are done with the slot's bytes */
            atomic_store_explicit(&st->frontier, done + n, memory_order_release);
            wake(r, stage);
            return 0;
        }
    }
    return done_slow(r, stage, seq, n);
}

uint64_t fe_ready(const fe_ring *r, uint32_t stage)
{
    if (stage < 1 || stage > r->h->nstages)
        return 0;
    uint64_t c = atomic_load_explicit(&r->h->stage[stage].next_seq, memory_order_acquire);
    return ready_run(r, stage, c, r->h->slots);
}

/* ---- supervisor --------------------------------------------------------- */

/* relaxed: made visible by the release (stamp or frontier) that moves s on */
static void flag_failed(fe_ring *r, uint64_t s)
{
    atomic_store_explicit(&slot_hdr(r, s)->failed_seq, s, memory_order_relaxed);
}

/* Finish, flagged failed, what ordered stage k handed out and did not finish.
 * Only the role's holder calls this (a new owner, or a supervisor that has set
 * the owner to RECLAIMING), so nobody moves the cursors under it. */
static int finish_ordered(fe_ring *r, uint32_t k)
{
    struct fe_stage_line *st = &r->h->stage[k];
    /* acquire: pairs with the release stores in fe_take()/fe_done() of the dead owner */
    uint64_t done = atomic_load_explicit(&st->frontier, memory_order_acquire);
    uint64_t claim = atomic_load_explicit(&st->next_seq, memory_order_acquire);
    if (done == claim)
        return 0;
    for (uint64_t s = done; s != claim; s++)
        flag_failed(r, s);
    /* release: the failed flags and the items move on to the next stage */
    atomic_store_explicit(&st->frontier, claim, memory_order_release);
    atomic_fetch_add_explicit(&st->failed, claim - done, memory_order_relaxed); /* counter */
    wake(r, k);
    return (int)(claim - done);
}

/* Finish, flagged failed, the items of pool stage k whose hold token matches
 * `want` under `mask`. */
static int64_t reclaim_pool(fe_ring *r, uint32_t k, uint64_t mask, uint64_t want)
{
    struct fe_hdr *h = r->h;
    struct fe_stage_line *st = &h->stage[k];
    uint64_t claim = atomic_load_explicit(&st->next_seq, memory_order_acquire);
    int64_t count = 0;
    /* Only the last `slots` items handed out can still be held at stage k. */
    for (uint64_t s = claim - h->slots; s != claim; s++) {
        struct fe_slot_hdr *sh = slot_hdr(r, s);
        /* The stamp first: if it is s or later, s was finished (or the slot
         * moved on); the owner record read after it cannot be a stale match. */
        uint64_t stamp = atomic_load_explicit(&sh->stamp[k - 1], memory_order_acquire);
        if ((int64_t)(stamp - s) >= 0)
            continue;
        /* acquire: pairs with the release of owner_seq in fe_take() */
        if (atomic_load_explicit(&sh->owner_seq, memory_order_acquire) != s ||
            (atomic_load_explicit(&sh->owner, memory_order_relaxed) & mask) != want ||
            !finished(r, k - 1, s))
            continue;
        flag_failed(r, s);
        /* release: pairs with the acquire in finished(); the failed flag and the
         * item move on as if the member had finished it.  A CAS, so that two
         * supervisors never both count it, and a newer stamp is never undone. */
        if (atomic_compare_exchange_strong_explicit(&sh->stamp[k - 1], &stamp, s,
                                                    memory_order_release, memory_order_relaxed))
            count++;
    }
    if (count) {
        atomic_fetch_add_explicit(&st->failed, (uint64_t)count, memory_order_relaxed);
        wake(r, k);
    }
    return count;
}

/* ---- the claim window ----------------------------------------------------
 *
 * A pool member claims a run with a CAS on next_seq and then records, item by
 * item, that it holds them (owner, owner_seq).  One killed between the two
 * leaves items that are claimed and owned by nobody: fe_reclaim(pid) cannot find
 * them by pid.  So fe_reclaim() also settles the items of every pool stage that
 * were claimed before it began and are still unowned after SETTLE_GRACE_NS:
 * they move on flagged failed, as a dead member's do.  A live member that
 * stalls in its window that long (stopped, or starved of CPU) loses its run:
 * the settling and the member's records are arbitrated by a handshake (settles,
 * below, and keep_run()), so an item is either settled or held, never both. */

#define SETTLE_GRACE_NS 50000000 /* 50 ms: far beyond the window's nanoseconds */
#define SETTLER_LOOK_NS 10000000 /* a waiter looks whether a settler died every 10 ms */

/* The slow side of the handshake whose fast side is fast_side_barrier(). */
static void slow_side_barrier(fe_ring *r)
{
    atomic_thread_fence(memory_order_seq_cst);
    /* Where membarrier is refused and some process stores without a fence, wait
     * for its store buffer to drain: a best effort, as the sleeper's slices are. */
    /* seq_cst: after the fence; see init_geometry() */
    if (!os_membarrier_global() && atomic_load_explicit(&r->h->fenceless, memory_order_seq_cst))
        os_sleep_ns(UNCOVERED_SLICE_NS);
}

/* Is item s of pool stage k claimed, unfinished and owned by nobody?  *stamp is
 * its stamp, for the CAS that settles it. */
static bool unowned(const fe_ring *r, uint32_t k, uint64_t s, uint64_t *stamp)
{
    struct fe_slot_hdr *sh = slot_hdr(r, s);
    /* acquire: pairs with the release of the stamp in fe_done() and here */
    *stamp = atomic_load_explicit(&sh->stamp[k - 1], memory_order_acquire);
    /* acquire: pairs with the release of owner_seq in fe_take().  Only the
     * claimers of s and of earlier occupants of its slot write owner_seq. */
    return (int64_t)(*stamp - s) < 0 &&
           atomic_load_explicit(&sh->owner_seq, memory_order_acquire) != s;
}

/* A settler that died half-way (settles odd) has its settling ended for it: the
 * caller holds the settler role, in its place.  release: as the settler's own
 * end would (pairs with the acquire in fe_take() and wait_settled()). */
static void end_dead_settling(struct fe_stage_line *st)
{
    /* relaxed: the role's holder alone changes settles now */
    if (atomic_load_explicit(&st->settles, memory_order_relaxed) & 1)
        atomic_fetch_add_explicit(&st->settles, 1, memory_order_release);
}

/* Become the settler of pool stage k: the role is free, or its holder is dead.
 * false if another live supervisor holds it. */
static bool become_settler(fe_ring *r, struct fe_stage_line *st)
{
    uint64_t me = role_token(r);
    /* acquire: pairs with the release that freed the role (settles is even) */
    uint64_t who = atomic_load_explicit(&st->settler, memory_order_acquire);
    for (;;) {
        if (who != 0 && (who == RECLAIMING || os_pid_alive(token_pid(who))))
            return false;
        /* acq_rel: as the load above */
        if (atomic_compare_exchange_weak_explicit(&st->settler, &who, me, memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    if (who != 0)
        end_dead_settling(st);
    return true;
}

static int64_t settle_unowned(fe_ring *r, uint32_t k)
{
    struct fe_hdr *h = r->h;
    struct fe_stage_line *st = &h->stage[k];
    uint64_t stamp, before = atomic_load_explicit(&st->next_seq, memory_order_acquire);
    bool any = false;
    for (uint64_t s = before - h->slots; s != before && !any; s++)
        any = unowned(r, k, s, &stamp);
    if (!any)
        return 0;
    os_sleep_ns(SETTLE_GRACE_NS);
    if (!become_settler(r, st))
        return 0; /* another supervisor settles this stage now */
    /* seq_cst, then the slow-side barrier, then the records: the other side of
     * the handshake in fe_take() (records, fast-side barrier, load of settles) */
    atomic_fetch_add_explicit(&st->settles, 1, memory_order_seq_cst); /* odd: settling */
    TEST_HOOK(fe_test_hook_settling);
    slow_side_barrier(r);
    uint64_t claim = atomic_load_explicit(&st->next_seq, memory_order_acquire);
    uint64_t from = (int64_t)(before - (claim - h->slots)) > 0 ? claim - h->slots : before;
    int64_t count = 0;
    for (uint64_t s = from; s != before; s++) {
        if (!unowned(r, k, s, &stamp))
            continue;
        flag_failed(r, s);
        /* release: pairs with the acquire in finished() and keep_run(); the
         * failed flag and the item move on */
        if (atomic_compare_exchange_strong_explicit(&slot_hdr(r, s)->stamp[k - 1], &stamp, s,
                                                    memory_order_release, memory_order_relaxed))
            count++;
    }
    /* release: pairs with the acquire in fe_take() and wait_settled(); our stamps
     * are visible to a member that sees settles even again */
    atomic_fetch_add_explicit(&st->settles, 1, memory_order_release);
    /* release: a later settler that takes the role over sees settles even */
    atomic_store_explicit(&st->settler, 0, memory_order_release);
    if (count) {
        atomic_fetch_add_explicit(&st->failed, (uint64_t)count, memory_order_relaxed); /* counter */
        wake(r, k);
    }
    return count;
}

/* Wait until no settling of pool stage k is under way.  A settler that died
 * half-way leaves settles odd: its settling is ended for it. */
static void wait_settled(fe_ring *r, uint32_t k)
{
    struct fe_stage_line *st = &r->h->stage[k];
    int64_t look = os_now_ns() + SETTLER_LOOK_NS;
    /* acquire: pairs with the release bump at the end of settle_unowned() */
    for (uint64_t g; (g = atomic_load_explicit(&st->settles, memory_order_acquire)) & 1;) {
        if (os_now_ns() >= look) {
            look = os_now_ns() + SETTLER_LOOK_NS;
            /* relaxed: only to see whether the settler died; the CAS decides */
            uint64_t who = atomic_load_explicit(&st->settler, memory_order_relaxed);
            if (who != 0 && who != RECLAIMING && !os_pid_alive(token_pid(who)) &&
                atomic_compare_exchange_strong_explicit(&st->settler, &who, RECLAIMING,
                                                        memory_order_acq_rel,
                                                        memory_order_relaxed)) {
                end_dead_settling(st);
                /* release: pairs with the acquire in become_settler() */
                atomic_store_explicit(&st->settler, 0, memory_order_release);
            }
        }
        sched_yield();
    }
}

/* fe_take()'s slow path of the claim window: a settling overlapped our records.
 * Wait for it to end, then see whether it took any item of our run: if so we
 * were in the window past the grace period, and the rest of the run goes on
 * flagged failed too.  true if the whole run is still ours. */
static bool keep_run(fe_ring *r, uint32_t k, uint64_t c, uint32_t got)
{
    wait_settled(r, k);
    bool lost = false;
    for (uint32_t i = 0; i < got && !lost; i++)
        /* acquire: pairs with the release CAS of the stamp in settle_unowned() */
        lost = atomic_load_explicit(&slot_hdr(r, c + i)->stamp[k - 1], memory_order_acquire) ==
               c + i;
    if (!lost)
        return true;
    uint64_t n = 0;
    for (uint32_t i = 0; i < got; i++) {
        struct fe_slot_hdr *sh = slot_hdr(r, c + i);
        if (atomic_load_explicit(&sh->stamp[k - 1], memory_order_relaxed) == c + i)
            continue; /* settled */
        flag_failed(r, c + i);
        /* release: pairs with the acquire in finished(); the item moves on */
        atomic_store_explicit(&sh->stamp[k - 1], c + i, memory_order_release);
        n++;
    }
    if (n) {
        atomic_fetch_add_explicit(&r->h->stage[k].failed, n, memory_order_relaxed); /* counter */
        wake(r, k);
    }
    return false;
}

int fe_reclaim(fe_ring *r, pid_t pid)
{
    struct fe_hdr *h = r->h;
    if (pid <= 0)
        return -EINVAL;
    if (os_pid_alive(pid))
        return -EBUSY; /* its items are still being worked on */
    int64_t total = 0;
    for (uint32_t k = 1; k <= h->nstages; k++) {
        struct fe_stage_line *st = &h->stage[k];
        if (h->kinds[k] == FE_POOL) {
            total += reclaim_pool(r, k, HOLD_PID_STAGE_MASK, (uint64_t)(uint32_t)pid << 32 | (uint64_t)k << 24);
            total += settle_unowned(r, k); /* pid may have died in its claim window */
            continue;
        }
        /* An ordered stage: take the role from the dead owner (RECLAIMING keeps a
         * new owner out meanwhile), settle what it held, free the role. */
        uint64_t cur = atomic_load_explicit(&st->owner, memory_order_acquire);
        if (cur == 0 || cur == RECLAIMING || token_pid(cur) != pid ||
            !atomic_compare_exchange_strong_explicit(&st->owner, &cur, RECLAIMING,
                                                     memory_order_acq_rel, memory_order_relaxed))
            continue;
        total += finish_ordered(r, k);
        /* release: pairs with the acquire in acquire_role(); a new owner sees frontier */
        atomic_store_explicit(&st->owner, 0, memory_order_release);
    }
    /* A dead producer's role becomes free. */
    uint64_t cur = atomic_load_explicit(&h->stage[0].owner, memory_order_relaxed);
    if (cur != 0 && cur != RECLAIMING && token_pid(cur) == pid)
        atomic_compare_exchange_strong_explicit(&h->stage[0].owner, &cur, 0, memory_order_release,
                                                memory_order_relaxed);
    return total > INT32_MAX ? INT32_MAX : (int)total;
}

/* At close: what this handle holds moves on flagged failed, and its roles are free. */
static void release_roles(fe_ring *r)
{
    struct fe_hdr *h = r->h;
    for (uint32_t k = 1; k <= h->nstages; k++) {
        if (h->kinds[k] == FE_POOL) {
            reclaim_pool(r, k, UINT64_MAX, hold_token(r, k));
        } else if (r->ordered_owned & (1u << k)) {
            finish_ordered(r, k);
            uint64_t me = role_token(r);
            /* release: pairs with the acquire in acquire_role() */
            atomic_compare_exchange_strong_explicit(&h->stage[k].owner, &me, 0,
                                                    memory_order_release, memory_order_relaxed);
        }
    }
    if (r->producer) {
        /* claimed, unpublished items are abandoned; release: pairs with fe_in_ring() */
        atomic_store_explicit(&h->stage[0].next_seq, r->p_pub, memory_order_release);
        uint64_t me = role_token(r);
        atomic_compare_exchange_strong_explicit(&h->stage[0].owner, &me, 0, memory_order_release,
                                                memory_order_relaxed);
    }
}

int fe_failed(const fe_ring *r, uint64_t seq)
{
    if (!fe_in_ring(r, seq))
        return -EINVAL;
    /* acquire: the flag was published by the release that moved seq on */
    return atomic_load_explicit(&slot_hdr(r, seq)->failed_seq, memory_order_acquire) == seq;
}

void fe_abort(fe_ring *r)
{
    /* seq_cst with the bumps: every waiter either sees the flag in its re-check
     * or is asleep on a word that changes */
    atomic_store_explicit(&r->h->aborted, 1, memory_order_seq_cst);
    for (uint32_t k = 0; k <= r->h->nstages; k++)
        wake_unconditionally(r, k);
}

int fe_aborted(const fe_ring *r) { return aborted(r); }

int fe_stats(const fe_ring *r, uint32_t stage, fe_stage_stats *out)
{
    if (stage > r->h->nstages || !out)
        return -EINVAL;
    /* counters: relaxed; each value is exact, the set is not a snapshot */
    const struct fe_stage_line *st = &r->h->stage[stage];
    if (in_order(r, stage)) {
        out->items = atomic_load_explicit(&st->frontier, memory_order_relaxed);
    } else {
        /* A pool: what it handed out, less what of the last `slots` handed out
         * is not finished yet (every earlier item is: its slot was reused). */
        uint64_t next = atomic_load_explicit(&st->next_seq, memory_order_relaxed), open = 0;
        for (uint64_t s = next - r->h->slots; s != next; s++)
            open += atomic_load_explicit(&slot_hdr(r, s)->stamp[stage - 1],
                                         memory_order_relaxed) != s;
        out->items = next - open;
    }
    out->taken = atomic_load_explicit(&st->next_seq, memory_order_relaxed);
    out->waits = atomic_load_explicit(&st->waits, memory_order_relaxed);
    out->stalls = atomic_load_explicit(&st->stalls, memory_order_relaxed);
    out->failed = atomic_load_explicit(&st->failed, memory_order_relaxed);
    return 0;
}

const char *fe_strerror(int rc)
{
    switch (rc) {
    case FE_OK: return "success";
    case FE_EOF: return "end of stream";
    case FE_ABORTED: return "ring aborted";
    case FE_EBADRING: return "not a frame-engine ring (fe_open_why() says which check failed)";
    case FE_EVERSION: return "a frame-engine ring of another layout version";
    case FE_ENOTHELD: return "sequence not held by the caller";
    case FE_ECLOSED: return "ring is closed";
    case -EBUSY: return "role already held by another handle or live process";
    case -EPIPE: return "stream already ended";
    default: return rc < 0 ? strerror(-rc) : "unknown status";
    }
}
