/*
 * frame-engine ring: the operating system beneath it (Linux).  Internal to the
 * C core (ring.c), not part of ring.h: futexes, membarrier, /proc, the clock,
 * fork hooks and this process's registry of mappings.
 */
#ifndef FE_OS_H
#define FE_OS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Once per process, before anything below: reads FE_NO_MEMBARRIER, registers for
 * membarrier(GLOBAL_EXPEDITED), installs the fork hooks. */
void os_init(void);

/* Is this process registered for membarrier(GLOBAL_EXPEDITED)?  Then a slow
 * side's membarrier call stands for the fast side's fence (see ring.c, memory
 * ordering).  Relaxed: set once by os_init(), before any ring is mapped here. */
extern _Atomic bool os_membarrier_registered_;
static inline bool os_membarrier_registered(void)
{
    return atomic_load_explicit(&os_membarrier_registered_, memory_order_relaxed);
}
/* A full barrier on every CPU that runs a registered process: true if done. */
bool os_membarrier_global(void);

/* Futexes shared between processes (no FUTEX_PRIVATE_FLAG).  os_futex_wait:
 * 0, or a negated errno (-EAGAIN: the word moved; -ETIMEDOUT; -EINTR). */
int os_futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t timeout_ns);
void os_futex_wake_all(_Atomic uint32_t *addr);

int64_t os_now_ns(void);           /* CLOCK_MONOTONIC */
void os_sleep_ns(int64_t ns);      /* through signals */
uint64_t os_page_size(void);       /* at least 4096 */

bool os_pid_alive(pid_t pid);           /* exists and is not a zombie */
uint64_t os_proc_start_time(pid_t pid); /* /proc/<pid>/stat field 22, 0 if unreadable */

/* The mappings of this process, one per segment, shared by its handles: header
 * and data of fd, then the data again right after it.  *base, or a negated
 * errno; os_unmap_segment() drops one reference. */
int os_map_segment(int fd, uint64_t data_off, uint64_t data_bytes, void **base);
void os_unmap_segment(void *base);

#endif
