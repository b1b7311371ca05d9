/*
 * Test-only hooks of the ring's C core.  They exist only where ring.c is built
 * with FE_TEST_HOOKS (the C tests' copy, fe_ring_test), never in the Python
 * extension.  A hook is a function pointer, NULL (not called) by default.
 */
#ifndef FE_RING_TEST_HOOKS_H
#define FE_RING_TEST_HOOKS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Called by a pool member in fe_take() between its claim CAS and the records of
 * its ownership of the run: the claim window (see ring.c). */
extern void (*fe_test_hook_claimed)(void);

/* Called by a supervisor in fe_reclaim() once it began settling a pool stage's
 * unowned items (settles odd), before it looks at them. */
extern void (*fe_test_hook_settling)(void);

#ifdef __cplusplus
}
#endif
#endif
