/* SPDX-License-Identifier: MIT */
/*
 * Test helpers.  The pagemap reader here is deliberately independent of the
 * library's, so a test's reading can contradict the library.
 */
#ifndef HUGERING_TEST_HELPERS_H
#define HUGERING_TEST_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hugering.h>

#include "../lib/compat.h"

#define MiB (1UL << 20)
#define GiB (1UL << 30)

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
/* Sleep @ms milliseconds. */
void th_sleep_ms(int ms);
/* A new arena of default options (asserted). */
struct hugering_arena *th_new_arena(void);
/* Root: drop CAP_IPC_LOCK from the effective set, so the kernel charges RLIMIT_MEMLOCK. */
void th_drop_ipc_lock(void);

#endif
#define SZ_2M (2 * MiB)
#define SZ_1G (1024 * MiB)

/* PFN of the 4 KiB page at @addr; 0 if hidden or absent. */
uint64_t th_pfn(const void *addr);

/*
 * Physically contiguous runs over [addr, addr+len), counted at 4 KiB
 * granularity from our own pagemap reading; -1 if any PFN is unreadable.
 */
long th_runs(const void *addr, size_t len);

/* Do we see real PFNs?  Read independently of the library. */
bool th_pfn_visible(void);

/*
 * The harness states whether this run is privileged (HUGERING_TEST_EXPECT_PFN
 * = 1/0); assert that PFN visibility matches, so an unprivileged run cannot
 * pass by accident as a privileged one (or the reverse).
 */
void th_check_privilege_expectation(void);

/*
 * Suite hooks for every test: init checks the privilege expectation; fini,
 * in sanitizer builds, runs LeakSanitizer now (Criterion's workers end
 * without the exit-time check) and fails the test on any leak.
 */
void th_init(void);
void th_fini(void);

/* Run @cmd through the shell; its stdout into @buf; returns the exit status. */
int th_run(const char *cmd, char *buf, size_t len);

/* A number from a sysfs/procfs file, read independently of the library; -1 if unreadable. */
long th_read_long(const char *path);

/* One field of /sys/kernel/mm/hugepages/hugepages-NkB/. */
long th_pool_field(size_t page_size, const char *field);

/*
 * Make sure @n pages of @page_size can be allocated.  Where they cannot, the
 * test is skipped outside CI and fails in CI (CI=true): nothing silently skips
 * there.
 */
void th_need_pool(size_t page_size, long n);

/* Environment variable @name, or @fallback when unset (paths the harness passes). */
const char *th_env_or(const char *name, const char *fallback);
/* hugering-diag and the test data, where run-tests.sh says (or the build tree). */
const char *th_diag_tool(void);
const char *th_data_dir(void);

/* As root: grow the pool until @n physically adjacent pages of @page_size are free. */
void th_need_contig_run(size_t page_size, long n);

/* Is this a CI run (CI set, not "false")?  What a CI run needs must not skip. */
/* @path's text into @buf (NUL-terminated, cut to @len - 1; "" if unreadable). */
void th_slurp(const char *path, char *buf, size_t len);
/* FALLOC_FL_PUNCH_HOLE @len bytes at @off of @fd (gives hugepages back). */
void th_punch(int fd, size_t off, size_t len);
/* As root, grow the pool to @n pages (the harness restores it); else skip. */
void th_grow_pool(size_t page_size, long n);
bool th_ci(void);

/* Every byte of [p, p+len) zero? */
bool th_all_zero(const void *p, size_t len);

/*
 * Wait (at most 2 s) until the usable count of @page_size holds still for
 * 100 ms: pages of rings an earlier test process destroyed come back late.
 */
void th_settle_pool(size_t page_size);

/* Take every usable page of @page_size; returns a handle for th_release(). */
struct th_hog {
	int fd;
	void *addr;
	size_t len;
};
void th_exhaust(size_t page_size, struct th_hog *h);
void th_release(struct th_hog *h);

/*
 * Wait (at most @ms) until @n pages of @page_size are usable again: rings
 * that were just destroyed keep their pages pinned until the kernel's
 * asynchronous teardown.  Returns whether they are.
 */
bool th_wait_pool(size_t page_size, long n, int ms);

struct io_uring;
/*
 * Submit @n NOPs in batches of at most the SQ size, reap each batch, and
 * assert that every completion arrives once, in order, with res 0, and that
 * nothing overflowed.
 */
void th_nops(struct io_uring *ring, unsigned n);
/*
 * A thread body: writes @total bytes of @pattern to @fd in chunks of
 * 1..3000 bytes (so receives vary in size), then shuts down its write side.
 */
struct th_sender {
	int fd;
	size_t total;
	unsigned char (*pattern)(size_t i);
};
void *th_send_all(void *arg);

/*
 * io_uring_setup(@entries, copy of @p into @out).  Unprivileged, -ENOMEM
 * is retried for up to 2 s: the memlock charge of rings closed a moment ago
 * is released asynchronously.
 */
struct io_uring_params;
int th_setup_retry(unsigned entries, const struct io_uring_params *p,
		   struct io_uring_params *out);

/*
 * Make a ring with hugering_queue_init_opts(@entries, @p, @o), assert it
 * succeeded in @mode, run @nops NOPs on it, destroy it; returns its info.
 */
/* A copy of @s for the rest of the test (a reason that outlives its ring). */
const char *th_keep(const char *s);
struct hugering_ring_info th_ring_in_mode(unsigned entries, struct io_uring_params *p,
					  const struct hugering_init_opts *o, int mode,
					  unsigned nops);

/* Open file descriptors of this process. */
int th_fd_count(void);
/* Threads of this process whose name starts with @prefix ("iou-wrk-", "hugering-bg"). */
int th_threads_named(const char *prefix);

/*
 * The running liburing (the one loaded, not the headers'), as the factory
 * sees it (lib/layout.c, lib/ring.c).  IORING_SETUP_NO_SQARRAY where the
 * factory sets it (liburing 2.6+; every kernel the suite runs on has it),
 * else 0: layouts a test computes must be the factory's.
 */
unsigned th_no_sqarray(void);

/*
 * NULL, or why the running liburing cannot set a ring with @flags up in user
 * memory, so that the factory falls back to a kernel-mapped ring.  Tests of
 * such shapes check the fallback, then skip with this reason.
 */
const char *th_liburing_cannot(unsigned flags);

/* Sleep @ms milliseconds. */
void th_sleep_ms(int ms);
/* A new arena of default options (asserted). */
struct hugering_arena *th_new_arena(void);
/* Root: drop CAP_IPC_LOCK from the effective set, so the kernel charges RLIMIT_MEMLOCK. */
void th_drop_ipc_lock(void);

#endif
