# cython: language_level=3
# Declarations of csrc/ring.h, and nothing else.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from posix.types cimport pid_t

cdef extern from "ring.h" nogil:
    enum:
        FE_MAX_STAGES
        FE_NAME_MAX
        FE_USER_MAX
        FE_OK
        FE_EOF
        FE_ABORTED
        FE_EBADRING
        FE_EVERSION
        FE_ENOTHELD
        FE_ECLOSED
        FE_PRODUCER
        FE_POOL
        FE_ORDERED

    ctypedef struct fe_config:
        uint32_t slots
        uint64_t slot_bytes
        uint32_t nstages
        uint8_t kinds[5]
        uint32_t lookback
        uint32_t user_bytes

    ctypedef struct fe_stage_stats:
        uint64_t items
        uint64_t taken
        uint64_t waits
        uint64_t stalls
        uint64_t failed

    ctypedef struct fe_ring:
        pass

    int fe_create(const char *name, const fe_config *cfg, fe_ring **out)
    int fe_open(const char *name, fe_ring **out)
    int fe_open_why(const char *name, fe_ring **out, const char **why)
    void fe_release(fe_ring *r)
    void fe_close(fe_ring *r)
    int fe_unlink(const char *name)

    const char *fe_name(const fe_ring *r)
    uint32_t fe_slots(const fe_ring *r)
    uint64_t fe_slot_bytes(const fe_ring *r)
    uint64_t fe_stride(const fe_ring *r)
    uint32_t fe_nstages(const fe_ring *r)
    int fe_stage_kind(const fe_ring *r, uint32_t stage)
    uint32_t fe_lookback(const fe_ring *r)
    pid_t fe_creator(const fe_ring *r)
    uint64_t fe_creator_start(const fe_ring *r)

    void *fe_slot(const fe_ring *r, uint64_t seq)
    void *fe_user(const fe_ring *r)
    uint32_t fe_user_bytes(const fe_ring *r)
    int fe_in_ring(const fe_ring *r, uint64_t seq)
    void fe_set_spin_ns(fe_ring *r, int64_t ns)
    void fe_resume_wait(fe_ring *r)

    int fe_claim(fe_ring *r, uint32_t n, int64_t timeout_ns, uint64_t *seq)
    int fe_publish(fe_ring *r, uint64_t seq, uint32_t n)
    int fe_end(fe_ring *r)
    int fe_abandon(fe_ring *r)
    int fe_take(fe_ring *r, uint32_t stage, uint32_t max_n, int64_t timeout_ns,
                uint64_t *seq, uint32_t *n)
    int fe_done(fe_ring *r, uint32_t stage, uint64_t seq, uint32_t n)
    uint64_t fe_ready(const fe_ring *r, uint32_t stage)

    int fe_reclaim(fe_ring *r, pid_t pid)
    int fe_failed(const fe_ring *r, uint64_t seq)
    void fe_abort(fe_ring *r)
    int fe_aborted(const fe_ring *r)
    uint64_t fe_end_seq(const fe_ring *r)
    int fe_stats(const fe_ring *r, uint32_t stage, fe_stage_stats *out)
    const char *fe_strerror(int rc)
