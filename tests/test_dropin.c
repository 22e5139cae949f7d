/* SPDX-License-Identifier: MIT */
/*
 * A hugering ring must be indistinguishable from a liburing ring to the
 * program using it: no io_uring work left on the caller's thread, the same
 * lifetime when the program closes the ring's fd number, no waiting for a
 * pool that is simply empty.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(dropin, .init = th_init, .fini = th_fini, .timeout = 120);

#define URANDOM_READ (8 * MiB)
#define FIRST_CALL_REPEATS 24

/* Exit codes of a first-call child. */
enum { FC_FULL = 0, FC_SHORT = 1, FC_SETUP = 2, FC_READ = 3 };

/*
 * A fresh process: the first hugering call (which probes the kernel with
 * scratch rings), then one large read on the same thread.  Teardown work of
 * a ring closed on this thread would make the read end early.
 */
static int first_call_then_read(void)
{
	struct io_uring ring;
	char *buf = malloc(URANDOM_READ);
	int fd, ret;
	ssize_t n;

	if (!buf)
		return FC_READ;
	ret = hugering_queue_init(8, &ring, 0);
	if (ret)
		return FC_SETUP;
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return FC_READ;
	n = read(fd, buf, URANDOM_READ);
	close(fd);
	hugering_queue_exit(&ring);
	free(buf);
	if (n < 0)
		return FC_READ;
	return n == URANDOM_READ ? FC_FULL : FC_SHORT;
}

Test(dropin, first_call_leaves_no_work_on_the_caller)
{
	int shorts = 0;

	for (int i = 0; i < FIRST_CALL_REPEATS; i++) {
		pid_t pid = fork();
		int st;

		cr_assert_geq(pid, 0);
		if (!pid)
			_exit(first_call_then_read());
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		cr_assert(WIFEXITED(st), "child %d died", i);
		cr_assert_neq(WEXITSTATUS(st), FC_SETUP, "child %d: ring setup failed", i);
		cr_assert_neq(WEXITSTATUS(st), FC_READ, "child %d: read failed", i);
		shorts += WEXITSTATUS(st) == FC_SHORT;
	}
	cr_assert_eq(shorts, 0, "%d of %d reads of 8 MiB after the first hugering call "
		     "came back short", shorts, FIRST_CALL_REPEATS);
}

/* The next CQE, reaped without entering the ring (its fd may be gone). */
static int peek_cqe(struct io_uring *ring, int ms, int *res, __u64 *data)
{
	struct io_uring_cqe *cqe;

	for (int waited = 0; waited < ms; waited++) {
		if (!io_uring_peek_cqe(ring, &cqe)) {
			*res = cqe->res;
			*data = cqe->user_data;
			io_uring_cqe_seen(ring, cqe);
			return 0;
		}
		usleep(1000);	/* returning from it runs the ring's task work */
	}
	return -ETIME;
}

static void submit_read(struct io_uring *ring, int fd, char *buf, unsigned len, __u64 data)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	cr_assert_not_null(sqe);
	io_uring_prep_read(sqe, fd, buf, len, 0);
	sqe->user_data = data;
	cr_assert_eq(io_uring_submit(ring), 1);
}

/*
 * Close the ring's fd number behind hugering's back with reads in flight:
 * like a kernel-mapped ring (whose mappings hold the file), the ring lives
 * on and both reads complete with their data until hugering_queue_exit.
 */
Test(dropin, ring_outlives_its_closed_fd)
{
	struct hugering_ring_info info;
	struct io_uring ring;
	char a[4] = "", b[4] = "";
	int pipe1[2], pipe2[2], res;
	__u64 data;

	th_need_pool(SZ_2M, 1);
	cr_assert_eq(pipe(pipe1), 0);
	cr_assert_eq(pipe(pipe2), 0);
	cr_assert_eq(hugering_queue_init(8, &ring, 0), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE, "mode %s: %s",
		     hugering_mode_name(info.mode), info.fallback_reason);
	submit_read(&ring, pipe1[0], a, sizeof(a), 1);
	submit_read(&ring, pipe2[0], b, sizeof(b), 2);
	cr_assert_eq(close(ring.ring_fd), 0);

	cr_assert_eq(write(pipe1[1], "abcd", 4), 4);
	cr_assert_eq(peek_cqe(&ring, 2000, &res, &data), 0, "no completion");
	cr_assert_eq(data, 1);
	cr_assert_eq(res, 4, "first read: %s", res < 0 ? strerror(-res) : "short");
	cr_assert_eq(memcmp(a, "abcd", 4), 0);

	usleep(50 * 1000);	/* past the 12-19 ms a dying ring takes */
	cr_assert_eq(write(pipe2[1], "efgh", 4), 4);
	cr_assert_eq(peek_cqe(&ring, 2000, &res, &data), 0, "no completion");
	cr_assert_eq(data, 2);
	cr_assert_eq(res, 4, "second read: %s", res < 0 ? strerror(-res) : "short");
	cr_assert_eq(memcmp(b, "efgh", 4), 0);

	hugering_queue_exit(&ring);
	for (int i = 0; i < 2; i++) {
		close(pipe1[i]);
		close(pipe2[i]);
	}
}

/*
 * A ring recycled by resize at exit, whose fd number the program closed and
 * a second ring took: hugering_queue_exit resizes its own ring, never the
 * ring now behind that number.
 */
Test(dropin, exit_resizes_only_its_own_ring)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER |
					       IORING_SETUP_DEFER_TASKRUN |
					       IORING_SETUP_CQSIZE,
				     .cq_entries = 65536 };
	struct hugering_kernel_caps caps;
	struct hugering_ring_info info;
	struct io_uring mine, other;
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_sec = 1 };
	int fdnum;

	cr_assert_eq(hugering_probe_kernel(&caps), 0);
	if (!caps.resize)
		cr_skip_test("kernel cannot resize rings (needs Linux 6.13+)");
	th_need_pool(SZ_2M, 1);
	cr_assert_eq(hugering_queue_init_params(4096, &mine, &p), 0, "%s",
		     hugering_last_error());
	cr_assert_eq(hugering_ring_info(&mine, &info), 0);
	cr_assert_eq(info.recycle, HUGERING_RECYCLE_RESIZE, "recycle %d", info.recycle);
	fdnum = mine.ring_fd;
	cr_assert_eq(close(fdnum), 0);

	/* Takes the lowest free number: the one just closed. */
	cr_assert_eq(io_uring_queue_init(64, &other, IORING_SETUP_SINGLE_ISSUER |
					 IORING_SETUP_DEFER_TASKRUN), 0);
	cr_assert_eq(other.ring_fd, fdnum, "the second ring did not take fd %d", fdnum);
	/* So it survives the close of that number by the first ring's exit. */
	cr_assert_eq(io_uring_register_ring_fd(&other), 1);

	hugering_queue_exit(&mine);

	for (int i = 0; i < 8; i++)
		io_uring_prep_nop(io_uring_get_sqe(&other));
	cr_assert_eq(io_uring_submit(&other), 8, "the second ring lost its SQ");
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(io_uring_wait_cqe_timeout(&other, &cqe, &ts), 0,
			     "NOP %d never completed: the second ring was resized", i);
		cr_assert_eq(cqe->res, 0);
		io_uring_cqe_seen(&other, cqe);
	}
	io_uring_queue_exit(&other);
}

/*
 * A pool that cannot give a page (all of it held by another process) and no
 * ring of ours dying: auto rings fall back to kernel-mapped rings at once,
 * without waiting for a refill that will not come.
 */
Test(dropin, full_pool_falls_back_without_waiting)
{
	struct hugering_arena_stats st;
	struct hugering_arena *a;
	int ready[2], stop[2];
	pid_t pid;
	char c;

	th_need_pool(SZ_2M, 1);
	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pipe(stop), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid) {
		struct th_hog hog;

		/* Our end closed: the parent's exit, even by a failed assertion, ends us. */
		close(stop[1]);
		close(ready[0]);
		th_exhaust(SZ_2M, &hog);
		if (write(ready[1], "r", 1) != 1 || read(stop[0], &c, 1) < 0)
			_exit(1);	/* read returns 0 at EOF too */
		_exit(0);
	}
	cr_assert_eq(read(ready[0], &c, 1), 1, "the hog child failed");

	for (int i = 0; i < 40; i++) {
		struct hugering_ring_info info;
		struct io_uring ring;

		cr_assert_eq(hugering_queue_init(64, &ring, 0), 0, "%s", hugering_last_error());
		cr_assert_eq(hugering_ring_info(&ring, &info), 0);
		cr_assert_eq(info.mode, HUGERING_MODE_KERNEL, "ring %d: mode %s", i,
			     hugering_mode_name(info.mode));
		cr_assert_eq(info.fallback_errno, ENOMEM);
		cr_assert_null(strstr(info.fallback_reason, "waited"), "%s",
			       info.fallback_reason);
		hugering_queue_exit(&ring);
	}
	a = hugering_default_arena();
	cr_assert_not_null(a);
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_eq(st.pool_waits, 0, "%llu allocations waited for a pool no ring of "
		     "ours was refilling", (unsigned long long)st.pool_waits);

	cr_assert_eq(write(stop[1], "s", 1), 1);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
}

/* The same with no pool at all (root: nr_hugepages = 0, restored after). */
Test(dropin, empty_pool_falls_back_without_waiting)
{
	const char *path = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
	struct hugering_arena_stats st;
	long saved = th_read_long(path);
	char cmd[160], out[64];
	int bad = 0, kernel = 0;

	if (geteuid() != 0)
		cr_skip_test("needs root to empty the pool");
	cr_assert_geq(saved, 0);
	snprintf(cmd, sizeof(cmd), "echo 0 > %s", path);
	cr_assert_eq(th_run(cmd, out, sizeof(out)), 0);
	/* No assertion before the pool is restored. */
	for (int i = 0; i < 40 && !bad; i++) {
		struct hugering_ring_info info = { 0 };
		struct io_uring ring;

		if (hugering_queue_init(64, &ring, 0)) {
			bad = 1;
			break;
		}
		hugering_ring_info(&ring, &info);
		kernel += info.mode == HUGERING_MODE_KERNEL;
		hugering_queue_exit(&ring);
	}
	memset(&st, 0, sizeof(st));
	hugering_arena_stats(hugering_default_arena(), &st);
	snprintf(cmd, sizeof(cmd), "echo %ld > %s", saved, path);
	cr_assert_eq(th_run(cmd, out, sizeof(out)), 0);
	/* Refilled from scattered blocks: give later tests their contiguous run back. */
	th_need_contig_run(SZ_2M, 10);
	cr_assert_eq(bad, 0, "ring setup failed with no pool");
	cr_assert_eq(kernel, 40, "%d of 40 rings kernel-mapped with no pool", kernel);
	cr_assert_eq(st.pool_waits, 0);
}
