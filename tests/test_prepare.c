/* SPDX-License-Identifier: MIT */
/*
 * HUGERING_ARENA_PREPARE: the background worker faults in the next fresh
 * page while plain and SQPOLL rings churn.  A ready page must be as safe as
 * one faulted in by the caller (never a frame a dying ring may write), the
 * thread must exist only while there is work, and an arena must be
 * destroyable, trimmable and forkable while the worker runs for it.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(prepare, .init = th_init, .fini = th_fini, .timeout = 300);

static struct hugering_arena *arena_with(unsigned flags, size_t max_bytes)
{
	struct hugering_arena_opts o = { .flags = flags, .max_bytes = max_bytes };
	struct hugering_arena *a;

	cr_assert_eq(hugering_arena_create(&o, &a), 0, "%s", hugering_last_error());
	return a;
}

/* A ring that fills most of a 2 MiB page (1.3 MiB): every exit retires it. */
static int big_ring(struct hugering_arena *a, unsigned flags, struct io_uring *ring)
{
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE | flags, .cq_entries = 65536 };
	struct hugering_init_opts o = { .arena = a, .policy = HUGERING_POLICY_NOMMAP };

	return hugering_queue_init_opts(4096, ring, &p, &o);
}

static void sleep_ms(int ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&t, NULL);
}

/* Threads of this process named like the worker. */
static int worker_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		char path[300], comm[32] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;	/* the thread just ended */
		if (fgets(comm, sizeof(comm), f) && !strncmp(comm, "hugering-bg", 11))
			n++;
		fclose(f);
	}
	closedir(d);
	return n;
}

static struct hugering_arena_stats stats_of(struct hugering_arena *a)
{
	struct hugering_arena_stats st;

	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	return st;
}

static void cycle(struct hugering_arena *a, unsigned flags)
{
	struct io_uring ring;

	cr_assert_eq(big_ring(a, flags, &ring), 0, "%s", hugering_last_error());
	th_nops(&ring, 64);
	hugering_queue_exit(&ring);
}

/*
 * The witness: destroy a ring mid-use, take the next ring from a ready
 * page, wait past the dying ring's late writes (40 ms), and every NOP of
 * 3 x SQ size must complete exactly once.  Plain and SQPOLL rings.
 */
static void ready_pages_are_safe(unsigned flags)
{
	struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 0);
	struct io_uring ring;

	th_need_pool(SZ_2M, 8);
	for (int i = 0; i < 15; i++) {
		cr_assert_eq(big_ring(a, flags, &ring), 0, "%s", hugering_last_error());
		th_nops(&ring, ring.sq.ring_entries);
		hugering_queue_exit(&ring);
		sleep_ms(5);	/* room for the worker to have a page ready */
		cr_assert_eq(big_ring(a, flags, &ring), 0, "round %d: %s", i,
			     hugering_last_error());
		sleep_ms(40);
		th_nops(&ring, 3 * ring.sq.ring_entries);
		hugering_queue_exit(&ring);
	}
	cr_assert_gt(stats_of(a).prepared_used, 0, "no ring ever took a ready page");
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

Test(prepare, ready_pages_are_safe_plain)  { ready_pages_are_safe(0); }
Test(prepare, ready_pages_are_safe_sqpoll) { ready_pages_are_safe(IORING_SETUP_SQPOLL); }

/* Off by default: no thread, nothing prepared. */
Test(prepare, off_by_default)
{
	struct hugering_arena *a = arena_with(0, 0);

	th_need_pool(SZ_2M, 4);
	for (int i = 0; i < 20; i++) {
		cycle(a, 0);
		cr_assert_eq(worker_threads(), 0, "a worker thread without HUGERING_ARENA_PREPARE");
	}
	cr_assert_eq(stats_of(a).pages_prepared, 0);
	cr_assert_gt(stats_of(a).pages_retired, 0);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* The thread starts with the work and ends about 1 s after it. */
Test(prepare, thread_comes_and_goes)
{
	struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 0);
	int seen = 0;

	th_need_pool(SZ_2M, 4);
	cr_assert_eq(worker_threads(), 0);
	for (int i = 0; i < 20; i++) {
		cycle(a, 0);
		sleep_ms(2);
		seen += worker_threads();
	}
	cr_assert_gt(seen, 0, "no hugering-bg thread while rings churned");
	for (int waited = 0; worker_threads() && waited < 5000; waited += 50)
		sleep_ms(50);
	cr_assert_eq(worker_threads(), 0, "the worker outlived its work by 5 s");
	cr_assert_gt(stats_of(a).pages_prepared, 0);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* Destroy right after the exit that asked for a page: no wait, no leak, no use after free. */
Test(prepare, destroy_while_preparing)
{
	th_need_pool(SZ_2M, 4);
	for (int i = 0; i < 20; i++) {
		struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 0);

		cycle(a, 0);
		cycle(a, 0);
		cr_assert_eq(hugering_arena_destroy(a), 0, "round %d: %s", i, hugering_last_error());
	}
}

/* Trim gives the ready page back too, and no refill under way brings one back. */
Test(prepare, trim_takes_the_ready_page)
{
	struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 0);

	th_need_pool(SZ_2M, 4);
	for (int i = 0; i < 5; i++)
		cycle(a, 0);
	cr_assert_geq(hugering_arena_trim(a), 0);
	cr_assert_eq(stats_of(a).pages_held, 0, "after the trim: %u pages held, %u rings live, "
		     "%zu bytes free", stats_of(a).pages_held, stats_of(a).rings_live,
		     stats_of(a).bytes_free);
	sleep_ms(50);
	cr_assert_eq(stats_of(a).pages_held, 0, "a page came back after the trim");
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/*
 * The ready page counts against max_bytes but is a cache: with room for two
 * pages, one holding a live ring, a churning ring never fails for it.
 */
Test(prepare, ready_page_yields_to_max_bytes)
{
	struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 2 * SZ_2M);
	struct io_uring keep;

	th_need_pool(SZ_2M, 4);
	cr_assert_eq(big_ring(a, 0, &keep), 0, "%s", hugering_last_error());
	for (int i = 0; i < 30; i++) {
		cycle(a, 0);
		if (i % 3 == 0)
			sleep_ms(3);
		cr_assert_leq(stats_of(a).pages_held, 2);
	}
	hugering_queue_exit(&keep);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* A child of a process whose worker runs gets a worker of its own. */
Test(prepare, fork_child_prepares_its_own)
{
	struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 0);
	int status;
	pid_t pid;

	th_need_pool(SZ_2M, 6);
	for (int i = 0; i < 5; i++)
		cycle(a, 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct hugering_arena_opts o = { .flags = HUGERING_ARENA_PREPARE };
		struct hugering_arena *mine;
		struct hugering_arena_stats st;
		int ok = 1;

		if (hugering_arena_create(&o, &mine))
			_exit(2);
		for (int i = 0; i < 10; i++) {
			struct io_uring ring;

			if (big_ring(mine, 0, &ring))
				_exit(3);
			hugering_queue_exit(&ring);
			sleep_ms(3);
		}
		ok = !hugering_arena_stats(mine, &st) && st.prepared_used > 0;
		_exit(ok && !hugering_arena_destroy(mine) ? 0 : 4);
	}
	for (int i = 0; i < 5; i++)
		cycle(a, 0);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}
