/* SPDX-License-Identifier: MIT */
/*
 * Zeroed options are the defaults, struct by struct; a NUMA node is named
 * only with the struct's NUMA_NODE flag.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(options, .init = th_init, .fini = th_fini, .timeout = 120);

static struct hugering_ring_info ring_with(const struct hugering_init_opts *o)
{
	struct io_uring_params p;
	struct hugering_ring_info info;
	struct io_uring ring;
	int ret;

	memset(&p, 0, sizeof(p));
	ret = hugering_queue_init_opts(64, &ring, &p, o);
	cr_assert_eq(ret, 0, "init: %s: %s", strerror(-ret), hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	th_nops(&ring, 8);
	/* The reasons are the library's only until the ring exits. */
	info.fallback_reason = th_keep(info.fallback_reason);
	info.iopoll_reason = th_keep(info.iopoll_reason);
	hugering_queue_exit(&ring);
	return info;
}

/* The mode NULL options give, which zeroed ones must give too. */
static struct hugering_ring_info default_ring(void)
{
	unsetenv("HUGERING_MODE");
	th_need_pool(SZ_2M, 1);
	return ring_with(NULL);
}

static void same_ring(const struct hugering_ring_info *want, const struct hugering_ring_info *got)
{
	cr_assert_eq(got->mode, want->mode, "mode %s, NULL options gave %s: %s",
		     hugering_mode_name(got->mode), hugering_mode_name(want->mode),
		     got->fallback_reason);
	cr_assert_eq(got->fallback_errno, want->fallback_errno);
	cr_assert_eq(got->page_size, want->page_size);
}

/* {0} with the auto policy once fell back, "pool of the node has 0 usable pages". */
Test(options, init_zero_auto_is_the_default_ring)
{
	struct hugering_ring_info want = default_ring(), got;
	struct hugering_init_opts o = { 0 };

	o.policy = HUGERING_POLICY_AUTO;
	got = ring_with(&o);
	same_ring(&want, &got);
}

Test(options, init_all_zero_is_the_default_ring)
{
	struct hugering_ring_info want = default_ring(), got;
	struct hugering_init_opts o = { 0 };

	got = ring_with(&o);
	same_ring(&want, &got);
}

Test(options, init_node_needs_its_flag)
{
	int nodes[8], n = hugering_numa_nodes(nodes, 8);
	struct hugering_ring_info want = default_ring(), got;
	struct hugering_init_opts o = { .numa_node = -1 };
	struct io_uring_params p;
	struct io_uring ring;

	cr_assert_gt(n, 0);
	got = ring_with(&o);	/* -1: the older spelling of "the arena's" */
	same_ring(&want, &got);
	memset(&p, 0, sizeof(p));
	o.numa_node = 1;
	cr_assert_eq(hugering_queue_init_opts(64, &ring, &p, &o), -EINVAL, "node 1, no flag");
	o.flags = HUGERING_INIT_NUMA_NODE;
	o.numa_node = -1;
	cr_assert_eq(hugering_queue_init_opts(64, &ring, &p, &o), -EINVAL, "flag, node -1");
	o.numa_node = 4000;
	cr_assert_eq(hugering_queue_init_opts(64, &ring, &p, &o), -EINVAL, "flag, no such node");
	o.numa_node = nodes[0];
	got = ring_with(&o);
	cr_assert_eq(got.mode, want.mode, "%s", got.fallback_reason);
	if (got.mode == HUGERING_MODE_NOMMAP_HUGE)
		cr_assert_eq(got.numa_node, nodes[0]);
}

/* Only the size is required: default page size, any node, no flags. */
Test(options, region_zero_but_size)
{
	struct hugering_region_opts o = { .size = SZ_2M };
	struct hugering_region_info ri;
	struct hugering_region *r;

	th_need_pool(SZ_2M, 1);
	cr_assert_eq(hugering_region_alloc(&o, &r), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_region_info(r, &ri), 0);
	cr_assert_eq(ri.page_size, hugering_default_page_size());
	cr_assert_eq(ri.fallback_errno, 0);
	hugering_region_free(r);
}

Test(options, region_node_needs_its_flag)
{
	int nodes[8], n = hugering_numa_nodes(nodes, 8);
	struct hugering_region_opts o = { .size = SZ_2M, .numa_node = 1 };
	struct hugering_region_info ri;
	struct hugering_region *r;

	cr_assert_gt(n, 0);
	th_need_pool(SZ_2M, 1);
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "node 1 without its flag");
	cr_assert_null(r);
	o.flags = HUGERING_REGION_NUMA_NODE;
	o.numa_node = 4000;
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "no such node");
	o.numa_node = nodes[0];
	cr_assert_eq(hugering_region_alloc(&o, &r), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_region_info(r, &ri), 0);
	cr_assert_eq(ri.numa_node, nodes[0]);
	hugering_region_free(r);
}

Test(options, arena_zero_is_the_default)
{
	struct hugering_ring_info want = default_ring(), got;
	struct hugering_arena_opts ao = { 0 };
	struct hugering_init_opts io = { 0 };
	struct hugering_arena_stats st;
	struct hugering_arena *a;

	cr_assert_eq(hugering_arena_create(&ao, &a), 0);
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_eq(st.page_size, hugering_default_page_size());
	io.arena = a;
	got = ring_with(&io);
	same_ring(&want, &got);
	cr_assert_eq(hugering_arena_destroy(a), 0);
	ao.numa_node = 1;
	cr_assert_eq(hugering_arena_create(&ao, &a), -EINVAL, "node 1 without its flag");
	ao.flags = HUGERING_ARENA_NUMA_NODE;
	ao.numa_node = 4000;
	cr_assert_eq(hugering_arena_create(&ao, &a), -EINVAL, "no such node");
}

/*
 * NODE_LOCAL: the node of the CPU.  Where the memory really is comes from
 * move_pages in query mode (no target nodes), read by the test itself.
 */
static int node_of(void *addr)
{
	int status = -1;

	cr_assert_eq(syscall(SYS_move_pages, 0, 1UL, &addr, NULL, &status, 0), 0,
		     "move_pages: %s", strerror(errno));
	return status;
}

static int my_node(void)
{
	unsigned cpu, node;

	cr_assert_eq(syscall(SYS_getcpu, &cpu, &node, NULL), 0);
	return (int)node;
}

/* A ring made with @o (and @flags, @sq_cpu) is in hugepages on @node. */
static void ring_on_node(const struct hugering_init_opts *o, unsigned flags, unsigned sq_cpu,
			 int node)
{
	struct hugering_ring_info info;
	struct io_uring_params p;
	struct io_uring ring;
	int ret;

	memset(&p, 0, sizeof(p));
	p.flags = flags;
	p.sq_thread_cpu = sq_cpu;
	ret = hugering_queue_init_opts(64, &ring, &p, o);
	cr_assert_eq(ret, 0, "init: %s: %s", strerror(-ret), hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE, "%s", info.fallback_reason);
	cr_assert_eq(node_of(info.mem), node, "ring memory on node %d, want %d",
		     node_of(info.mem), node);
	cr_assert_eq(info.numa_node, node);
	th_nops(&ring, 8);
	hugering_queue_exit(&ring);
}

static void bad_with_reason(int ret, const char *what)
{
	cr_assert_eq(ret, -EINVAL, "%s: %d", what, ret);
	cr_assert(strstr(hugering_last_error(), "NODE_LOCAL"), "%s: reason \"%s\"", what,
		  hugering_last_error());
}

Test(options, region_node_local)
{
	struct hugering_region_opts o = { .size = 2 * SZ_2M,
					  .flags = HUGERING_REGION_NODE_LOCAL };
	struct hugering_region_info ri;
	struct hugering_region *r;
	int node;

	th_need_pool(SZ_2M, 2);
	node = my_node();
	cr_assert_eq(hugering_region_alloc(&o, &r), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_region_info(r, &ri), 0);
	cr_assert_eq(ri.numa_node, node);
	for (size_t off = 0; off < ri.size; off += ri.page_size)
		cr_assert_eq(node_of((char *)ri.addr + off), node, "page at +%zu", off);
	hugering_region_free(r);

	o.flags |= HUGERING_REGION_NUMA_NODE;
	bad_with_reason(hugering_region_alloc(&o, &r), "NODE_LOCAL|NUMA_NODE");
	cr_assert_null(r);
	o.flags = HUGERING_REGION_NODE_LOCAL;
	o.numa_node = 1;
	bad_with_reason(hugering_region_alloc(&o, &r), "NODE_LOCAL with numa_node 1");
}

Test(options, arena_node_local)
{
	struct hugering_arena_opts ao = { .flags = HUGERING_ARENA_NODE_LOCAL };
	struct hugering_init_opts io = { 0 };
	struct hugering_arena *a;
	int ret;

	th_need_pool(SZ_2M, 2);
	ret = hugering_arena_create(&ao, &a);
	cr_assert_eq(ret, 0, "%s", hugering_last_error());
	io.arena = a;
	ring_on_node(&io, 0, 0, my_node());
	cr_assert_eq(hugering_arena_destroy(a), 0);

	ao.flags |= HUGERING_ARENA_NUMA_NODE;
	bad_with_reason(hugering_arena_create(&ao, &a), "NODE_LOCAL|NUMA_NODE");
	ao.flags = HUGERING_ARENA_NODE_LOCAL;
	ao.numa_node = 1;
	bad_with_reason(hugering_arena_create(&ao, &a), "NODE_LOCAL with numa_node 1");
}

Test(options, init_node_local)
{
	struct hugering_init_opts o = { .flags = HUGERING_INIT_NODE_LOCAL };
	struct io_uring_params p;
	struct io_uring ring;
	unsigned sq = IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF;
	long ncpu = sysconf(_SC_NPROCESSORS_CONF);
	char path[64];

	th_need_pool(SZ_2M, 2);
	ring_on_node(&o, 0, 0, my_node());
	/* The SQPOLL thread's CPU decides: here the last CPU's node. */
	snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%ld/online", ncpu - 1);
	if (ncpu > 0 && th_read_long(path) != 0) {
		char dir[64], buf[4096];
		int node = 0;

		snprintf(dir, sizeof(dir), "/sys/devices/system/cpu/cpu%ld", ncpu - 1);
		snprintf(buf, sizeof(buf), "ls -d %s/node* 2>/dev/null | sed 's/.*node//'", dir);
		if (th_run(buf, buf, sizeof(buf)) == 0 && buf[0])
			node = atoi(buf);
		ring_on_node(&o, sq, (unsigned)(ncpu - 1), node);
	}

	memset(&p, 0, sizeof(p));
	p.flags = sq;
	p.sq_thread_cpu = 100000;
	bad_with_reason(hugering_queue_init_opts(64, &ring, &p, &o), "sq_thread_cpu 100000");
	cr_assert(strstr(hugering_last_error(), "sq_thread_cpu"), "%s", hugering_last_error());
	memset(&p, 0, sizeof(p));
	o.flags |= HUGERING_INIT_NUMA_NODE;
	bad_with_reason(hugering_queue_init_opts(64, &ring, &p, &o), "NODE_LOCAL|NUMA_NODE");
	o.flags = HUGERING_INIT_NODE_LOCAL;
	o.numa_node = 1;
	bad_with_reason(hugering_queue_init_opts(64, &ring, &p, &o), "NODE_LOCAL with numa_node 1");
}

/* Every failure leaves a reason; the next call that can fail clears it. */
static void failed_with_reason(int ret, const char *call)
{
	cr_assert_lt(ret, 0, "%s succeeded", call);
	cr_assert_neq(hugering_last_error()[0], '\0', "%s: %s, with no reason", call,
		      strerror(-ret));
}

static void cleared(const char *call)
{
	cr_assert_str_empty(hugering_last_error(), "%s succeeded but left \"%s\"", call,
			    hugering_last_error());
}

Test(options, last_error_set_on_failure_cleared_on_success)
{
	struct hugering_region_opts ro = { 0 };
	struct hugering_pool pool;
	struct hugering_region *r;
	struct io_uring ring;
	size_t sizes[HUGERING_MAX_PAGE_SIZES];

	failed_with_reason(hugering_region_alloc(&ro, &r), "region_alloc(size 0)");
	cr_assert_gt(hugering_page_sizes(sizes, HUGERING_MAX_PAGE_SIZES), 0);
	cleared("page_sizes");
	failed_with_reason(hugering_pool_get(SZ_2M, -1, NULL), "pool_get(NULL)");
	cr_assert_eq(hugering_pool_get(SZ_2M, -1, &pool), 0);
	cleared("pool_get");
	failed_with_reason(hugering_arena_stats(NULL, NULL), "arena_stats(NULL)");
	failed_with_reason(hugering_mem_verify(NULL, 1, NULL), "mem_verify(NULL)");
	failed_with_reason(hugering_ring_layout(0, NULL, NULL), "ring_layout(NULL)");
	failed_with_reason(hugering_ring_info(NULL, NULL), "ring_info(NULL)");
	failed_with_reason(hugering_queue_init(0, &ring, 0), "queue_init(0 entries)");
	cr_assert_eq(hugering_queue_init(8, &ring, 0), 0);
	cleared("queue_init");
	hugering_queue_exit(&ring);
	failed_with_reason(hugering_arena_destroy(hugering_default_arena()), "destroy default");
	cr_assert_geq(hugering_pfn_visible(), 0);
	cleared("pfn_visible");
}

static void *fail_long(void *arg)
{
	struct io_uring ring;

	(void)arg;
	/* The reason is freed at this thread's exit (LeakSanitizer checks). */
	return (void *)(long)(hugering_queue_init(8, &ring, 0) == -EINVAL &&
			      strlen(hugering_last_error()) > 1000);
}

/* A reason longer than any fixed buffer comes back whole, on every thread. */
Test(options, last_error_is_whole)
{
	char mode[1200];
	struct io_uring ring;
	pthread_t t;
	void *ok;

	memset(mode, 'x', sizeof(mode) - 1);
	mode[sizeof(mode) - 1] = '\0';
	mode[sizeof(mode) - 2] = 'Z';	/* the end is what a cut loses */
	setenv("HUGERING_MODE", mode, 1);
	cr_assert_eq(hugering_queue_init(8, &ring, 0), -EINVAL);
	cr_assert(strstr(hugering_last_error(), mode), "%zu bytes: %s",
		  strlen(hugering_last_error()), hugering_last_error());
	cr_assert_gt(strlen(hugering_last_error()), 256);
	cr_assert_eq(pthread_create(&t, NULL, fail_long, NULL), 0);
	cr_assert_eq(pthread_join(t, &ok), 0);
	cr_assert(ok, "another thread's reason was cut");
	/* This thread's own reason is untouched by the other's. */
	cr_assert(strstr(hugering_last_error(), mode));
	unsetenv("HUGERING_MODE");
	cr_assert_eq(hugering_queue_init(8, &ring, 0), 0, "%s", hugering_last_error());
	cleared("queue_init");
	hugering_queue_exit(&ring);
}

struct heard {
	int n[HUGERING_LOG_DEBUG + 1];
	char last[HUGERING_LOG_DEBUG + 1][512];
};

static void hear(int level, const char *msg, void *arg)
{
	struct heard *h = arg;

	cr_assert(level >= HUGERING_LOG_WARN && level <= HUGERING_LOG_DEBUG, "level %d", level);
	h->n[level]++;
	snprintf(h->last[level], sizeof(h->last[level]), "%s", msg);
}

/* Fallbacks (WARN) and failure reasons (DEBUG) reach the callback; off is off. */
Test(options, log_callback_hears_fallbacks_and_failures)
{
	struct hugering_arena_opts ao = { .max_bytes = 1 };
	struct hugering_init_opts io = { .policy = HUGERING_POLICY_AUTO };
	struct hugering_region_opts ro = { 0 };
	struct hugering_ring_info info;
	struct hugering_arena *a;
	struct hugering_region *r;
	struct heard h = { 0 };

	cr_assert_eq(hugering_set_log(hear, 0, &h), -EINVAL);
	cr_assert_eq(hugering_set_log(hear, HUGERING_LOG_DEBUG + 1, &h), -EINVAL);
	cr_assert_eq(hugering_arena_create(&ao, &a), 0);
	io.arena = a;
	cr_assert_eq(hugering_set_log(hear, HUGERING_LOG_WARN, &h), 0);
	info = ring_with(&io);	/* the arena may hold nothing: a fallback */
	cr_assert_eq(info.mode, HUGERING_MODE_KERNEL);
	cr_assert_eq(h.n[HUGERING_LOG_WARN], 1);
	cr_assert(strstr(h.last[HUGERING_LOG_WARN], info.fallback_reason), "heard \"%s\", reason \"%s\"",
		  h.last[HUGERING_LOG_WARN], info.fallback_reason);
	cr_assert_eq(hugering_region_alloc(&ro, &r), -EINVAL);
	cr_assert_eq(h.n[HUGERING_LOG_DEBUG], 0, "DEBUG is above the level asked for");

	cr_assert_eq(hugering_set_log(hear, HUGERING_LOG_DEBUG, &h), 0);
	cr_assert_eq(hugering_region_alloc(&ro, &r), -EINVAL);
	cr_assert_eq(h.n[HUGERING_LOG_DEBUG], 1);
	cr_assert_str_eq(h.last[HUGERING_LOG_DEBUG], hugering_last_error());

	cr_assert_eq(hugering_set_log(NULL, 0, NULL), 0);
	info = ring_with(&io);
	cr_assert_eq(h.n[HUGERING_LOG_WARN], 1, "heard after the callback was turned off");
	cr_assert_eq(hugering_arena_destroy(a), 0);
}
