/*
 * Shared helpers for the C tests of the ring: CHECK macros that print
 * file:line and the failed expression and exit 1, unique ring names that are
 * unlinked at exit on every path, a watchdog, a ThreadSanitizer probe, and
 * the usual ring set-up (create, open, close and unlink, checked).
 *
 * Exit codes: 0 pass, 1 fail, 77 skip (ctest SKIP_RETURN_CODE).
 */
#ifndef FE_TEST_CHECK_H
#define FE_TEST_CHECK_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

#define TEST_PASS 0
#define TEST_FAIL 1
#define TEST_SKIP 77

/* Defined when the test is built with ThreadSanitizer. */
#if defined(__SANITIZE_THREAD__)
#define FE_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FE_TEST_TSAN 1
#endif
#endif

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            exit(TEST_FAIL);                                                   \
        }                                                                      \
    } while (0)

/* CHECK(a == b) that prints both values (as signed 64-bit integers). */
#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);        \
        if (check_a_ != check_b_) {                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n",  \
                    __FILE__, __LINE__, #a, #b, check_a_, check_b_);           \
            exit(TEST_FAIL);                                                   \
        }                                                                      \
    } while (0)

/* A ring call returned `want` (a status code); prints both codes by name. */
#define CHECK_RC(expr, want)                                                   \
    do {                                                                       \
        int check_got_ = (int)(expr), check_want_ = (int)(want);               \
        if (check_got_ != check_want_) {                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s returned %d (%s), "       \
                    "expected %d (%s)\n", __FILE__, __LINE__, #expr,           \
                    check_got_, fe_strerror(check_got_), check_want_,          \
                    fe_strerror(check_want_));                                 \
            exit(TEST_FAIL);                                                   \
        }                                                                      \
    } while (0)

/* A ring call succeeded (returned >= 0). */
#define CHECK_OK(expr)                                                         \
    do {                                                                       \
        int check_got_ = (int)(expr);                                          \
        if (check_got_ < 0) {                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s returned %d (%s)\n",      \
                    __FILE__, __LINE__, #expr, check_got_,                     \
                    fe_strerror(check_got_));                                  \
            exit(TEST_FAIL);                                                   \
        }                                                                      \
    } while (0)

/* ---- names that never outlive the test ---------------------------------- */

#define TEST_MAX_NAMES 64
static char test_names_[TEST_MAX_NAMES][FE_NAME_MAX];
static int test_name_raw_[TEST_MAX_NAMES]; /* 1: plain shm_open() name */
static int test_nnames_;
static pid_t test_owner_; /* only this process unlinks (children inherit atexit) */

static void test_cleanup_names_(void)
{
    if (getpid() != test_owner_)
        return;
    for (int i = 0; i < test_nnames_; i++) {
        if (test_name_raw_[i]) {
            char path[FE_NAME_MAX + 1];
            snprintf(path, sizeof path, "/%.*s", FE_NAME_MAX - 1, test_names_[i]);
            shm_unlink(path);
        } else {
            fe_unlink(test_names_[i]);
        }
    }
}

static const char *test_register_(const char *fmt, int raw)
{
    if (test_nnames_ == 0) {
        test_owner_ = getpid();
        atexit(test_cleanup_names_);
    }
    if (test_nnames_ >= TEST_MAX_NAMES) {
        fprintf(stderr, "check.h: too many ring names\n");
        exit(TEST_FAIL);
    }
    int i = test_nnames_++;
    snprintf(test_names_[i], FE_NAME_MAX, fmt, (int)getpid(), i);
    test_name_raw_[i] = raw;
    return test_names_[i];
}

/* A unique ring name "fe-<pid>-t<n>", fe_unlink()ed at exit (it is fine if the
 * test already unlinked it, or never created it). */
static inline const char *test_ring_name(void)
{
    return test_register_("fe-%d-t%d", 0);
}

/* A unique name for a plain (non-ring) shm segment, shm_unlink()ed at exit. */
static inline const char *test_foreign_name(void)
{
    return test_register_("fe-%d-foreign%d", 1);
}

/* 1 if /dev/shm holds `name`. */
static inline int test_shm_exists(const char *name)
{
    char path[FE_NAME_MAX + 16];
    snprintf(path, sizeof path, "/dev/shm/%.*s", FE_NAME_MAX - 1, name);
    return access(path, F_OK) == 0;
}

/* ---- watchdog ------------------------------------------------------------- */

static void test_watchdog_fire_(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: test did not finish in time\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    test_cleanup_names_();
    _exit(TEST_FAIL);
}

/* Fail (and clean up) if the test is still running after `seconds`. */
static inline void test_watchdog(unsigned seconds)
{
    signal(SIGALRM, test_watchdog_fire_);
    alarm(seconds);
}

/* ---- time ------------------------------------------------------------------ */

static inline int64_t test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void test_sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A config with `nstages` consumer stages of the given kinds. */
static inline fe_config test_config(uint32_t slots, uint64_t slot_bytes,
                                    uint32_t lookback, uint32_t nstages,
                                    const uint8_t *kinds)
{
    fe_config c;
    memset(&c, 0, sizeof c);
    c.slots = slots;
    c.slot_bytes = slot_bytes;
    c.lookback = lookback;
    c.nstages = nstages;
    for (uint32_t i = 0; i < nstages && i < FE_MAX_STAGES - 1; i++)
        c.kinds[i] = kinds[i];
    return c;
}

/* ---- a child that reports back --------------------------------------------- */

/* fork()s with a pipe from the child to this process: returns 0 in the child,
 * which writes its report to fds[1], and the child's pid in this process,
 * which reads it from fds[0] (test_reap_report); the other end is closed. */
static inline pid_t test_fork_reporting(int fds[2])
{
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    close(fds[pid == 0 ? 0 : 1]);
    return pid;
}

/* Reads the child's report of `bytes` from fd (then closes it) and waits for
 * the child (its wait status in *status); returns 1 if the report was whole. */
static inline int test_reap_report(pid_t pid, int fd, void *report, size_t bytes, int *status)
{
    ssize_t got = read(fd, report, bytes);
    close(fd);
    CHECK(waitpid(pid, status, 0) == pid);
    return got == (ssize_t)bytes;
}

/* ---- named scenarios --------------------------------------------------------- */

/* Runs a scenario, a `static void name(void)` function, with its name on stderr
 * first: a failed CHECK's file:line then follows the name of its scenario. */
#define RUN_SCENARIO(fn) test_run_scenario_(#fn, fn)
static inline void test_run_scenario_(const char *name, void (*fn)(void))
{
    fprintf(stderr, "-- %s\n", name);
    fn();
}

/* ---- ring set-up and tear-down -------------------------------------------- */

/* The stage kinds of the usual two-stage ring: a pool, then an ordered stage. */
#define TEST_POOL_ORDERED ((const uint8_t[]){FE_POOL, FE_ORDERED})

/* A ring call returned `got` where FE_OK was wanted: report at the caller's
 * file:line, as CHECK_RC would there, and fail. */
static inline void test_expect_ok_(const char *file, int line, const char *what,
                                   const char *name, int got)
{
    if (got != FE_OK) {
        fprintf(stderr, "%s:%d: CHECK failed: %s(\"%s\") returned %d (%s), "
                "expected %d (%s)\n", file, line, what, name, got, fe_strerror(got),
                FE_OK, fe_strerror(FE_OK));
        exit(TEST_FAIL);
    }
}

static inline fe_ring *test_create_at_(const char *file, int line, const char *name,
                                       fe_config cfg)
{
    fe_ring *r = NULL;
    test_expect_ok_(file, line, "fe_create", name, fe_create(name, &cfg, &r));
    return r;
}

static inline void test_open_at_(const char *file, int line, const char *name,
                                 fe_ring **const *handles, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        *handles[i] = NULL;
        test_expect_ok_(file, line, "fe_open", name, fe_open(name, handles[i]));
    }
}

static inline void test_close_unlink_at_(const char *file, int line, const char *name,
                                         fe_ring *const *handles, size_t count)
{
    for (size_t i = 0; i < count; i++)
        fe_close(handles[i]);
    test_expect_ok_(file, line, "fe_unlink", name, fe_unlink(name));
}

/* fe_create()s ring `name` with test_config(slots, slot_bytes, lookback,
 * nstages, kinds) and returns the creator's handle; fails the test otherwise. */
#define test_create(name, slots, slot_bytes, lookback, nstages, kinds)          \
    test_create_at_(__FILE__, __LINE__, (name),                                 \
                    test_config((slots), (slot_bytes), (lookback), (nstages), (kinds)))

/* fe_open()s a handle of ring `name` into each `fe_ring **` given, in order;
 * fails the test if any open fails. */
#define test_open(name, ...)                                                    \
    test_open_at_(__FILE__, __LINE__, (name), (fe_ring **const[]){__VA_ARGS__},    \
                  sizeof((fe_ring **const[]){__VA_ARGS__}) / sizeof(fe_ring **))

/* fe_close()s the handles given, in order, then fe_unlink(name) must succeed. */
#define test_close_unlink(name, ...)                                            \
    test_close_unlink_at_(__FILE__, __LINE__, (name), (fe_ring *const[]){__VA_ARGS__}, \
                          sizeof((fe_ring *const[]){__VA_ARGS__}) / sizeof(fe_ring *))

/* Writes / reads an 8-byte payload at p (slots are 64-byte aligned). */
static inline void test_put_u64(void *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint64_t test_get_u64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

#endif
