/*
 * frame-engine ring: the operating system beneath it.  See os.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MIN_PAGE 4096u

/* ---- process set-up: membarrier and fork -------------------------------- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
_Atomic bool os_membarrier_registered_;
static bool membarrier_off; /* FE_NO_MEMBARRIER=1: this process neither registers nor calls it */

/* The mappings of this process (os_map_segment()).  A registry rather than one
 * mapping per handle: fewer address-space reservations, and ThreadSanitizer
 * (which tracks addresses) sees the synchronisation between threads that use
 * separate handles. */
struct os_map {
    struct os_map *next;
    dev_t dev;
    ino_t ino;
    void *base;
    size_t span;
    unsigned refs;
};
static struct os_map *maps;
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;

bool os_membarrier_global(void)
{
    return !membarrier_off && syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
}

static void on_fork_prepare(void) { pthread_mutex_lock(&maps_lock); }
static void on_fork_parent(void) { pthread_mutex_unlock(&maps_lock); }
static void on_fork_child(void)
{
    pthread_mutex_unlock(&maps_lock);
    /* The kernel keeps the membarrier registration across fork (exec clears it,
     * and a program exec'd registers when it opens a ring). */
}

static void init(void)
{
    const char *off = getenv("FE_NO_MEMBARRIER");
    membarrier_off = off && *off && strcmp(off, "0") != 0;
    bool ok = !membarrier_off &&
              syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
    /* relaxed: pthread_once orders this before every thread's later use */
    atomic_store_explicit(&os_membarrier_registered_, ok, memory_order_relaxed);
    pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
}

void os_init(void) { pthread_once(&init_once, init); }


/* ---- futex -------------------------------------------------------------- */

int os_futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    /* Shared futex (no FUTEX_PRIVATE_FLAG): waiters and wakers are in different
     * processes mapping the same page. */
    if (syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, tsp, NULL, 0) == 0)
        return 0;
    return -errno;
}

void os_futex_wake_all(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* ---- time, pages -------------------------------------------------------- */

int64_t os_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void os_sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint64_t os_page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > (long)MIN_PAGE ? (uint64_t)p : MIN_PAGE;
}

/* ---- /proc -------------------------------------------------------------- */

/* Field `want` (>= 3) of /proc/<pid>/stat, as text in buf; NULL if unreadable. */
static const char *proc_stat_field(pid_t pid, int want, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0)
        return NULL;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may hold spaces; fields resume after ')' */
    if (!p)
        return NULL;
    int field = 2;
    for (; *p && field < want; p++)
        if (*p == ' ')
            field++;
    return *p ? p : NULL;
}

uint64_t os_proc_start_time(pid_t pid)
{
    char buf[1024];
    const char *f = proc_stat_field(pid, 22, buf, sizeof buf);
    return f ? strtoull(f, NULL, 10) : 0;
}

bool os_pid_alive(pid_t pid)
{
    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
        return false;
    char buf[1024];
    const char *f = proc_stat_field(pid, 3, buf, sizeof buf);
    char st = f ? f[0] : '?';
    return st != 'Z' && st != 'X';
}

/* ---- the mapping registry ----------------------------------------------- */

/* Map header + data, then the data again right after it, so a run that crosses
 * the end of the ring is contiguous in this process's address space.  The first
 * mapping is populated now: page faults are paid at attach, not as jitter in the
 * middle of playback (the mirror faults in lazily: only runs that wrap touch it). */
int os_map_segment(int fd, uint64_t data_off, uint64_t data_bytes, void **out)
{
    size_t total = data_off + data_bytes;
    size_t span = total + data_bytes;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    pthread_mutex_lock(&maps_lock);
    struct os_map *m = maps;
    while (m && !(m->dev == st.st_dev && m->ino == st.st_ino && m->span == span))
        m = m->next;
    if (!m) {
        void *base = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        void *a = base == MAP_FAILED ? MAP_FAILED
                                     : mmap(base, total, PROT_READ | PROT_WRITE,
                                            MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, 0);
        void *b = a == MAP_FAILED ? MAP_FAILED
                                  : mmap((uint8_t *)base + total, data_bytes,
                                         PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
                                         (off_t)data_off);
        m = b == MAP_FAILED ? NULL : malloc(sizeof *m);
        if (!m) {
            int e = b == MAP_FAILED ? errno : ENOMEM;
            if (base != MAP_FAILED)
                munmap(base, span);
            pthread_mutex_unlock(&maps_lock);
            return -e;
        }
        *m = (struct os_map){.next = maps, .dev = st.st_dev, .ino = st.st_ino, .base = base,
                             .span = span, .refs = 0};
        maps = m;
    }
    m->refs++;
    *out = m->base;
    pthread_mutex_unlock(&maps_lock);
    return 0;
}

void os_unmap_segment(void *base)
{
    pthread_mutex_lock(&maps_lock);
    for (struct os_map **p = &maps; *p; p = &(*p)->next) {
        struct os_map *m = *p;
        if (m->base == base) {
            if (--m->refs == 0) {
                munmap(m->base, m->span);
                *p = m->next;
                free(m);
            }
            break;
        }
    }
    pthread_mutex_unlock(&maps_lock);
}
