/*
 * fe_open refuses segments that are not rings with FE_EBADRING: a segment
 * full of junk, an empty segment's worth of junk that is too small for a
 * header, and a real ring whose segment was truncated below its declared size.
 * A failed open leaves no handle and does not remove the segment.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include "check.h"

static void make_foreign(const char *name, size_t size, uint8_t fill)
{
    char path[FE_NAME_MAX + 1];
    snprintf(path, sizeof path, "/%.*s", FE_NAME_MAX - 1, name);
    int fd = shm_open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0);
    uint8_t *junk = malloc(size);
    CHECK(junk != NULL);
    for (size_t i = 0; i < size; i++)
        junk[i] = (uint8_t)(fill + i * 131);
    CHECK(write(fd, junk, size) == (ssize_t)size);
    free(junk);
    close(fd);
}

static void check_refused(const char *name, int want)
{
    fe_ring *r = NULL;
    CHECK_RC(fe_open(name, &r), want);
    CHECK(r == NULL);
    CHECK(test_shm_exists(name));
}

int main(void)
{
    test_watchdog(30);

    /* Junk, large enough for any header and several slots. */
    const char *junk = test_foreign_name();
    make_foreign(junk, 1 << 20, 0xA5);
    check_refused(junk, FE_EBADRING);

    /* Zeros: no magic. */
    const char *zeros = test_foreign_name();
    make_foreign(zeros, 64 << 10, 0);
    {
        char path[FE_NAME_MAX + 1];
        snprintf(path, sizeof path, "/%.*s", FE_NAME_MAX - 1, zeros);
        int fd = shm_open(path, O_RDWR, 0);
        CHECK(fd >= 0);
        CHECK(ftruncate(fd, 0) == 0);
        CHECK(ftruncate(fd, 64 << 10) == 0);
        close(fd);
    }
    check_refused(zeros, FE_EBADRING);

    /* Too small for a header. */
    const char *tiny = test_foreign_name();
    make_foreign(tiny, 16, 0x5A);
    check_refused(tiny, FE_EBADRING);

    /* A real ring, then truncated below its declared size. */
    const char *name = test_ring_name();
    fe_ring *r = test_create(name, 16, 4096, 0, 2, TEST_POOL_ORDERED);
    fe_close(r);

    char path[FE_NAME_MAX + 1];
    snprintf(path, sizeof path, "/%.*s", FE_NAME_MAX - 1, name);
    int fd = shm_open(path, O_RDWR, 0);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    CHECK(st.st_size >= 16 * 4096);

    /* Intact: opens. */
    CHECK_RC(fe_open(name, &r), FE_OK);
    fe_close(r);

    /* One byte short of the full size. */
    CHECK(ftruncate(fd, st.st_size - 1) == 0);
    check_refused(name, FE_EBADRING);
    /* Half of it. */
    CHECK(ftruncate(fd, st.st_size / 2) == 0);
    check_refused(name, FE_EBADRING);
    /* The first page only (header, no data region). */
    CHECK(ftruncate(fd, 4096) == 0);
    check_refused(name, FE_EBADRING);
    /* Eight bytes. */
    CHECK(ftruncate(fd, 8) == 0);
    check_refused(name, FE_EBADRING);
    close(fd);

    CHECK_RC(fe_unlink(name), FE_OK);
    CHECK(!test_shm_exists(name));
    return TEST_PASS;
}
