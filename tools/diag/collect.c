/* SPDX-License-Identifier: MIT */
/*
 * hugering-diag's collection: what this machine's hugepages and io_uring
 * can do, what is wrong, and the command that fixes it (model.h).  It is
 * the tool's, not the library's; it reads through the library's internal
 * readers (hr_*), which is why the tool links the library's objects (see
 * the Makefile).
 *
 * Files come from HUGERING_SYSROOT when set (a captured or fake tree), so the
 * report can be tested against known inputs; the kernel probe and the live
 * trial always ask the running kernel.
 *
 * Nothing is cut: lists grow to what is found, text is allocated whole.  An
 * allocation that fails sets d->nomem, and diag_collect() then gives back
 * -ENOMEM and nothing else.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <mntent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "internal.h"
#include "model.h"

#define BUDDY_ORDERS 11

/* What the pool fixes ask for (hugering-diag --fix reserves the same). */
#define DIAG_POOL_2M 64
#define DIAG_POOL_1G 2
/* Below this many usable pages the default pool gets a fix. */
#define DIAG_POOL_LOW 8

/*
 * Node ids are below the kernel's MAX_NUMNODES, 1 << CONFIG_NODES_SHIFT,
 * which no architecture lets above 1 << 10: a longer online list is not a
 * kernel's, and is reported as unreadable, like any other garbage list.
 */
#define DIAG_MAX_NUMNODES 1024

/* ------------------------------------------------------------------ */
/* Allocation                                                          */
/* ------------------------------------------------------------------ */

/* @arr (@n elements) with room for one more, zeroed; NULL if none. */
static void *grow(struct diag *d, void *arr, int n, size_t elem)
{
	char *p = realloc(arr, ((size_t)n + 1) * elem);

	if (!p) {
		d->nomem = 1;
		return NULL;
	}
	memset(p + (size_t)n * elem, 0, elem);
	return p;
}

/* A new zeroed last element of the array @arr of @n (both updated), or NULL. */
#define APPEND(d, arr, n) ({						\
	__typeof__(arr) grown_ = grow((d), (arr), (n), sizeof(*(arr)));	\
	grown_ ? ((arr) = grown_, &grown_[(n)++]) : NULL;		\
})

static char *dup_str(struct diag *d, const char *s)
{
	char *p = strdup(s);

	if (!p)
		d->nomem = 1;
	return p;
}

static char *fmt_str(struct diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *fmt_str(struct diag *d, const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0) {
		d->nomem = 1;
		return NULL;
	}
	return p;
}

/* ------------------------------------------------------------------ */
/* Small readers                                                       */
/* ------------------------------------------------------------------ */

static int read_at(const char *root, const char *abs, char *buf, size_t len)
{
	char path[1024];

	hr_path(root, abs, path, sizeof(path));
	return hr_read_text(path, buf, len);
}

/*
 * The file's text, whole (up to its first NUL byte, which a hostile tree
 * may hold): > 0, the bytes read, with the text in *@out to free; else
 * the file is empty or unreadable and *@out is NULL.
 */
static ssize_t read_whole(struct diag *d, const char *root, const char *abs, char **out)
{
	char path[1024], *buf = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;

	*out = NULL;
	hr_path(root, abs, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return -1;
	n = getdelim(&buf, &cap, '\0', f);
	if (n < 0 && !feof(f) && errno == ENOMEM)
		d->nomem = 1;
	fclose(f);
	if (n > 0)
		*out = buf;
	else
		free(buf);
	return n;
}

static long long long_at(const char *root, const char *abs, long long dflt)
{
	char buf[64], *end;
	long long v;

	if (read_at(root, abs, buf, sizeof(buf)) < 0)
		return dflt;
	if (!strncmp(buf, "max", 3))
		return -1;
	v = strtoll(buf, &end, 10);
	return end == buf ? dflt : v;
}

/* "always [madvise] never" -> "madvise" */
static char *bracketed(struct diag *d, const char *s)
{
	const char *a = strchr(s, '['), *b = a ? strchr(a, ']') : NULL;

	if (!a || !b)
		return dup_str(d, "unknown");
	return fmt_str(d, "%.*s", (int)(b - a - 1), a + 1);
}

/* ------------------------------------------------------------------ */
/* Collection                                                          */
/* ------------------------------------------------------------------ */

/* This process's hugetlb cgroup limits (v1 hierarchy, else v2). */
static void cgroup_limits(const char *root, struct diag_size *s)
{
	struct hr_hugetlb_cg cg;

	s->cgroup_max = s->cgroup_rsvd_max = -1;
	if (hr_hugetlb_cgroup_at(root, s->pool.page_size, &cg))
		return;
	s->cgroup_max = cg.max;
	s->cgroup_rsvd_max = cg.rsvd_max;
}

/*
 * How many more pages of @ps the buddy allocator could hand over now: free
 * blocks of at least that order, all zones.  Sizes above the largest buddy
 * order (1 GiB) are allocated by contiguous-range search: unknown.
 */
/*
 * Add to @total the blocks of 2^@order base pages that one buddyinfo
 * line's free counts make up.  False for a count that is negative, too
 * large or makes the sum overflow: no kernel writes that (a hostile
 * HUGERING_SYSROOT tree may), so the answer is unknown.
 */
static bool buddy_line(const char *p, unsigned order, long *total)
{
	for (int k = 0; k < BUDDY_ORDERS; k++) {
		char *end;
		long cnt, pages;

		errno = 0;
		cnt = strtol(p, &end, 10);
		if (end == p)
			return true;	/* a kernel with fewer orders */
		if (errno || cnt < 0)
			return false;
		p = end;
		if (k < (int)order)
			continue;
		if (__builtin_mul_overflow(cnt, 1L << (k - order), &pages) ||
		    __builtin_add_overflow(*total, pages, total))
			return false;
	}
	return true;
}

static long buddy_reservable(const char *root, size_t ps)
{
	char buf[16384], *line, *save = NULL;
	unsigned order = hr_log2(ps / HR_BASE_PAGE);
	long total = 0;
	bool seen = false;

	/* Below a base page (a "hugepages-1kB" dir) there is no buddy order. */
	if (ps < HR_BASE_PAGE || order >= BUDDY_ORDERS ||
	    read_at(root, "/proc/buddyinfo", buf, sizeof(buf)) < 0)
		return -1;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *p = strstr(line, "zone");

		if (!p)
			continue;
		p += 4;
		while (*p == ' ')
			p++;
		while (*p && *p != ' ')
			p++;	/* zone name */
		if (!buddy_line(p, order, &total))
			return -1;
		seen = true;
	}
	return seen ? total : -1;
}

/* The online NUMA nodes; none when the list cannot be read or is no kernel's. */
static void collect_nodes(const char *root, struct diag *d)
{
	int n;

	d->nodes = calloc(DIAG_MAX_NUMNODES + 1, sizeof(*d->nodes));
	if (!d->nodes) {
		d->nomem = 1;
		return;
	}
	n = hr_numa_nodes_at(root, d->nodes, DIAG_MAX_NUMNODES + 1);
	d->nnodes = n < 0 || n > DIAG_MAX_NUMNODES ? 0 : n;
}

struct mount {
	char *path;
	size_t page_size;
};

struct mount_list {
	int n;
	struct mount *v;
};

/* The longest line of @f, plus its newline and a NUL; @f is rewound. */
static size_t longest_line(FILE *f)
{
	char *line = NULL;
	size_t cap = 0, longest = 0;
	ssize_t got;

	while ((got = getline(&line, &cap, f)) > 0)
		if ((size_t)got > longest)
			longest = (size_t)got;
	free(line);
	rewind(f);
	return longest + 2;
}

/*
 * Every hugetlbfs mount with its path whole: getmntent_r drops the part of
 * a line that does not fit its buffer, so the buffer fits the longest line.
 */
static void collect_mounts(const char *root, struct diag *d, struct mount_list *m)
{
	char path[1024], *buf;
	struct mntent ent;
	size_t len;
	FILE *f;

	hr_path(root, "/proc/self/mounts", path, sizeof(path));
	f = setmntent(path, "re");
	if (!f)
		return;
	len = longest_line(f);
	buf = malloc(len);
	if (!buf)
		d->nomem = 1;
	while (buf && len <= INT_MAX && getmntent_r(f, &ent, buf, (int)len)) {
		struct mount *mt;

		if (strcmp(ent.mnt_type, "hugetlbfs") || !(mt = APPEND(d, m->v, m->n)))
			continue;
		mt->path = dup_str(d, ent.mnt_dir);
		mt->page_size = hr_mount_page_size(root, ent.mnt_opts);
	}
	free(buf);
	endmntent(f);
}

static void mount_list_free(struct mount_list *m)
{
	for (int i = 0; i < m->n; i++)
		free(m->v[i].path);
	free(m->v);
}

/* One size's pool, per node pools and mounts. */
static void collect_size(const char *root, struct diag *d, struct diag_size *s, size_t ps,
			 const struct mount_list *m)
{
	s->pool_err = hr_pool_get_at(root, ps, -1, &s->pool);
	if (s->pool_err < 0) {
		/* Unknown, not absent: the size stays in the report, said so. */
		memset(&s->pool, 0, sizeof(s->pool));
		s->pool.page_size = ps;
		s->pool.numa_node = -1;
		s->pool.is_default = ps == hr_default_page_size_at(root);
	}
	if (!s->pool_err && d->nnodes > 0) {
		s->nodes = calloc((size_t)d->nnodes, sizeof(*s->nodes));
		d->nomem |= !s->nodes;
	}
	for (int k = 0; s->nodes && k < d->nnodes; k++)
		if (!hr_pool_get_at(root, ps, d->nodes[k], &s->nodes[s->nnodes]))
			s->nnodes++;
	for (int k = 0; k < m->n; k++) {
		char **p;

		if (m->v[k].page_size == ps && (p = APPEND(d, s->mounts, s->nmounts)))
			*p = dup_str(d, m->v[k].path);
	}
	cgroup_limits(root, s);
	s->reservable = buddy_reservable(root, ps);
}

static void collect_sizes(const char *root, struct diag *d)
{
	size_t sizes[HUGERING_MAX_PAGE_SIZES];
	struct mount_list m = { 0 };
	int n = hr_page_sizes_at(root, sizes, HUGERING_MAX_PAGE_SIZES);

	collect_mounts(root, d, &m);
	for (int i = 0; i < n; i++) {
		struct diag_size *s = APPEND(d, d->sizes, d->nsizes);

		if (!s)
			break;
		collect_size(root, d, s, sizes[i], &m);
	}
	mount_list_free(&m);
}

/* Disks and whether their queues can poll (IOPOLL needs io_poll = 1). */
static void collect_blocks(const char *root, struct diag *d)
{
	char path[1024];
	struct dirent **names;
	int n, nvme_pq;

	hr_path(root, "/sys/block", path, sizeof(path));
	n = scandir(path, &names, NULL, alphasort);
	if (n < 0)
		return;
	nvme_pq = (int)long_at(root, "/sys/module/nvme/parameters/poll_queues", -1);
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		struct diag_block *b;

		if (name[0] != '.' && strncmp(name, "loop", 4) && strncmp(name, "ram", 3) &&
		    strncmp(name, "zram", 4) && (b = APPEND(d, d->blocks, d->nblocks))) {
			char abs[300];

			b->name = dup_str(d, name);
			snprintf(abs, sizeof(abs), "/sys/block/%s/queue/io_poll", name);
			b->io_poll = (int)long_at(root, abs, -1);
			b->poll_queues = strncmp(name, "nvme", 4) ? -1 : nvme_pq;
		}
		free(names[i]);
	}
	free(names);
}

/* "Max locked memory  8388608  8388608  bytes" from a (fake) /proc/self/limits. */
static void memlock_limits(const char *root, struct diag *d)
{
	char buf[4096], soft[32], hard[32], *p;
	struct rlimit rl;

	d->memlock_soft = d->memlock_hard = ~0ULL;
	if (!*root) {
		if (!getrlimit(RLIMIT_MEMLOCK, &rl)) {
			d->memlock_soft = rl.rlim_cur == RLIM_INFINITY ? ~0ULL : rl.rlim_cur;
			d->memlock_hard = rl.rlim_max == RLIM_INFINITY ? ~0ULL : rl.rlim_max;
		} else {
			d->memlock_err = -errno;
		}
		return;
	}
	/* Unreadable or garbage is unknown, never "unlimited". */
	d->memlock_err = read_at(root, "/proc/self/limits", buf, sizeof(buf));
	if (d->memlock_err >= 0)
		d->memlock_err = 0;
	if (!d->memlock_err && (!(p = strstr(buf, "Max locked memory")) ||
				sscanf(p + 17, "%31s %31s", soft, hard) != 2))
		d->memlock_err = -EIO;
	if (d->memlock_err)
		return;
	if (strcmp(soft, "unlimited"))
		d->memlock_soft = strtoull(soft, NULL, 10);
	if (strcmp(hard, "unlimited"))
		d->memlock_hard = strtoull(hard, NULL, 10);
}

/* PREEMPT_NONE / VOLUNTARY kernels never preempt a busy kernel thread. */
static int preemptible(const char *root)
{
	char ver[256] = "", cmdline[4096] = "";
	struct utsname u;

	if (read_at(root, "/proc/sys/kernel/version", ver, sizeof(ver)) < 0 && !uname(&u))
		hr_copy_str(ver, sizeof(ver), u.version);
	if (!*ver)
		return -1;
	read_at(root, "/proc/cmdline", cmdline, sizeof(cmdline));
	if (strstr(ver, "PREEMPT_DYNAMIC"))
		return !strstr(cmdline, "preempt=none") && !strstr(cmdline, "preempt=voluntary");
	return strstr(ver, "PREEMPT") != NULL;
}

/* Can this user create a tiny ring with these flags? */
static int can_create(unsigned flags)
{
	struct io_uring_params p = { .flags = flags };
	int fd = hr_sys_io_uring_setup(1, &p);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/*
 * The trial's rings pin their pages until the kernel has torn them down,
 * milliseconds after they are closed: wait (bounded) until the pool is
 * back to @before, so that neither the next program nor the next diag run
 * finds it short because of us.
 */
static void wait_pool_back(size_t ps, long before)
{
	long deadline = hr_now_ms() + 2000, now = 0;

	while (!hr_pool_usable(ps, -1, &now) && now < before && hr_now_ms() < deadline)
		usleep(1000);
}

/* One trial ring of @dr's shape in arena @a (NULL: the arena failed, @arena_why). */
static void trial_ring(struct diag *d, struct diag_ring *dr, struct hugering_arena *a,
		       const char *arena_why)
{
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE, .cq_entries = dr->cq };
	struct hugering_init_opts io = { .policy = HUGERING_POLICY_AUTO, .arena = a,
					 .numa_node = -1 };
	struct hugering_ring_info info;
	struct io_uring ring;

	dr->err = a ? hugering_queue_init_opts(dr->sq, &ring, &p, &io) : -ENOMEM;
	if (dr->err) {
		dr->reason = dup_str(d, a ? hugering_last_error() : arena_why);
		return;
	}
	hugering_ring_info(&ring, &info);
	dr->mode = info.mode;
	dr->fallback_errno = info.fallback_errno;
	dr->reason = dup_str(d, info.fallback_reason);
	hugering_queue_exit(&ring);
}

static void trial_size(struct diag *d, struct diag_trial *t, size_t ps)
{
	static const unsigned shapes[2][2] = { { 256, 512 }, { 4096, 65536 } };
	struct hugering_region_opts ro = { .size = ps, .page_size = ps, .numa_node = -1,
					   .flags = HUGERING_REGION_CONTIG };
	struct hugering_arena_opts ao = { .page_size = ps, .numa_node = -1, .wait_ms = -1 };
	struct hugering_region *r;
	struct hugering_arena *a = NULL;
	char *arena_why = NULL;
	long before = 0;

	t->page_size = ps;
	if (hr_pool_usable(ps, -1, &before))
		before = 0;
	t->region_err = hugering_region_alloc(&ro, &r);
	if (!t->region_err) {
		struct hugering_region_info ri;

		hugering_region_info(r, &ri);
		t->contiguous = ri.contiguous;
		t->proof = ri.proof;
		hugering_region_free(r);
	}
	if (hugering_arena_create(&ao, &a))
		arena_why = fmt_str(d, "trial arena: %s", hugering_last_error());
	for (int k = 0; k < 2; k++) {
		t->rings[k].sq = shapes[k][0];
		t->rings[k].cq = shapes[k][1];
		trial_ring(d, &t->rings[k], a, arena_why ? arena_why : "");
	}
	free(arena_why);
	hugering_arena_destroy(a);
	wait_pool_back(ps, before);
}

static void collect_trial(struct diag *d)
{
	for (int i = 0; i < d->nsizes; i++) {
		struct diag_trial *t = APPEND(d, d->trials, d->ntrials);

		if (!t)
			return;
		trial_size(d, t, d->sizes[i].pool.page_size);
	}
}

struct rings_call {
	struct diag *d;
	bool trial;
};

/*
 * Everything that makes rings, on a helper thread: closing them would leave
 * teardown work on the caller's thread (hr_run_on_helper).
 */
static void collect_rings(void *p)
{
	struct rings_call *c = p;
	struct diag *d = c->d;

	d->sqpoll = d->caps.io_uring ? 0 : can_create(IORING_SETUP_SQPOLL);
	d->iopoll = d->caps.io_uring ? 0 : can_create(IORING_SETUP_IOPOLL);
	if (c->trial && !d->caps.io_uring)
		collect_trial(d);
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

static void add_check(struct diag *d, const char *id, int status, const char *fix,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add_check(struct diag *d, const char *id, int status, const char *fix,
		      const char *fmt, ...)
{
	struct diag_check *c = APPEND(d, d->checks, d->nchecks);
	va_list ap;

	if (!c)
		return;
	c->id = dup_str(d, id);
	c->status = status;
	c->fix = dup_str(d, fix ? fix : "");
	va_start(ap, fmt);
	if (vasprintf(&c->message, fmt, ap) < 0) {
		c->message = NULL;
		d->nomem = 1;
	}
	va_end(ap);
}

static void check_io_uring(struct diag *d)
{
	if (d->caps.io_uring == -EPERM)
		add_check(d, "io_uring", DIAG_FAIL, "sudo sysctl -w kernel.io_uring_disabled=0",
			  "io_uring is disabled for this process (kernel.io_uring_disabled = %d)",
			  d->io_uring_disabled);
	else if (d->caps.io_uring < 0)
		add_check(d, "io_uring", DIAG_FAIL, "use a kernel built with CONFIG_IO_URING=y",
			  "this kernel has no io_uring");
	else
		add_check(d, "io_uring", DIAG_OK, NULL, "io_uring is available");
}

static void check_nommap(struct diag *d)
{
	switch (d->caps.nommap) {
	case HUGERING_NOMMAP_ANY:
		add_check(d, "nommap", DIAG_OK, NULL,
			  "rings can live in any hugepage memory (Linux 6.10+ / 6.6.84+ behaviour)");
		break;
	case HUGERING_NOMMAP_CONTIG:
		add_check(d, "nommap", DIAG_WARN,
			  "upgrade to Linux 6.10+ (or 6.6.84+) to lift the contiguity rule",
			  "ring memory must be physically contiguous (Linux 6.6.5-6.9): large rings "
			  "need adjacent hugepages (root) or one 1 GiB page");
		break;
	case HUGERING_NOMMAP_SINGLE_PAGE:
		add_check(d, "nommap", DIAG_WARN,
			  "upgrade the kernel: 6.5.x was never fixed; 6.6.5+ or 6.10+ work",
			  "Linux 6.5 NO_MMAP bug: ring memory regions over one 4 KiB page fail with "
			  "EFAULT, so most rings fall back to kernel-mapped memory");
		break;
	default:
		if (d->caps.io_uring == 0)
			add_check(d, "nommap", DIAG_WARN, "upgrade to Linux 6.10+",
				  "kernel has no IORING_SETUP_NO_MMAP (< 6.5): rings are kernel-mapped");
	}
}

static void check_pool(struct diag *d, const struct diag_size *s)
{
	size_t kb = s->pool.page_size >> 10;
	char id[64], fix[192];

	snprintf(id, sizeof(id), "hugepages_%zukB", kb);
	snprintf(fix, sizeof(fix),
		 "echo %d | sudo tee /sys/kernel/mm/hugepages/hugepages-%zukB/nr_hugepages",
		 s->pool.page_size >= (1UL << 30) ? DIAG_POOL_1G : DIAG_POOL_2M, kb);
	if (s->cgroup_max == 0)
		add_check(d, id, DIAG_FAIL, "raise this cgroup's hugetlb limit",
			  "the cgroup hugetlb limit for %zu kB pages is 0", kb);
	if (s->pool_err) {
		add_check(d, id, DIAG_WARN,
			  "run as root, or make /sys/kernel/mm/hugepages readable",
			  "cannot read the %zu kB pool's counters (%s): the pool check could "
			  "not run", kb, strerror(-s->pool_err));
		return;
	}
	if (!s->pool.is_default && s->pool.total == 0)
		return;	/* an unused optional size is not a problem */
	if (s->pool.usable == 0)
		add_check(d, id, s->pool.is_default ? DIAG_FAIL : DIAG_WARN,
			  fix, "no usable %zu kB hugepages (total %ld, free %ld, reserved %ld): "
			  "rings fall back to kernel-mapped memory", kb, s->pool.total,
			  s->pool.free, s->pool.reserved);
	else if (s->pool.usable < DIAG_POOL_LOW && s->pool.is_default)
		add_check(d, id, DIAG_WARN, fix,
			  "only %ld usable %zu kB hugepages", s->pool.usable, kb);
	else
		add_check(d, id, DIAG_OK, NULL, "%ld usable %zu kB hugepages",
			  s->pool.usable, kb);
}

static void check_pools(struct diag *d)
{
	for (int i = 0; i < d->nsizes; i++)
		check_pool(d, &d->sizes[i]);
	if (!d->nsizes)
		add_check(d, "hugepages", DIAG_FAIL,
			  "use a kernel built with CONFIG_HUGETLBFS=y",
			  "this kernel offers no hugepages");
}

static void check_memlock(struct diag *d)
{
	/* A 4096-entry ring needs ~400 KiB; 6.14+ charges every ring per user. */
	if (d->memlock_err && !d->cap_ipc_lock)
		add_check(d, "memlock", DIAG_WARN, "ulimit -l (to see the limit)",
			  "RLIMIT_MEMLOCK is unknown (%s): the check could not run",
			  strerror(-d->memlock_err));
	else if (d->cap_ipc_lock || d->memlock_soft == ~0ULL || d->memlock_soft >= (64ULL << 20))
		add_check(d, "memlock", DIAG_OK, NULL, "RLIMIT_MEMLOCK is no constraint");
	else
		add_check(d, "memlock", DIAG_WARN,
			  "ulimit -l unlimited (or LimitMEMLOCK=infinity in the service unit)",
			  "RLIMIT_MEMLOCK is %llu kB: Linux 6.14+ charges ring memory to it, per "
			  "user (a 4096-entry ring takes ~400 kB)", d->memlock_soft >> 10);
}

static void check_pfn(struct diag *d)
{
	if (d->pfn_visible)
		add_check(d, "pagemap", DIAG_OK, NULL, "PFNs visible: contiguity is proven");
	else
		add_check(d, "pagemap",
			  d->caps.nommap == HUGERING_NOMMAP_CONTIG ? DIAG_WARN : DIAG_OK,
			  "run as root (CAP_SYS_ADMIN) to prove contiguity across hugepages",
			  "PFNs hidden: contiguity is proven only inside one hugepage");
}

static void check_sqpoll_napi(struct diag *d)
{
	if (d->preemptible == 0 && d->busy_poll > 0)
		add_check(d, "sqpoll_napi", DIAG_WARN,
			  "pin SQPOLL threads (IORING_SETUP_SQ_AFF) away from busy-polling CPUs, or "
			  "boot with preempt=full",
			  "non-preemptible kernel with NAPI busy polling (net.core.busy_poll = %d): "
			  "an SQPOLL thread on a busy-polling CPU can starve other rings and softirqs",
			  d->busy_poll);
}

static void check_trials(struct diag *d)
{
	for (int i = 0; i < d->ntrials; i++) {
		const struct diag_trial *t = &d->trials[i];
		size_t kb = t->page_size >> 10;
		char id[64];

		snprintf(id, sizeof(id), "trial_%zukB", kb);
		for (int k = 0; k < 2; k++) {
			const struct diag_ring *r = &t->rings[k];

			if (r->err)
				add_check(d, id, DIAG_FAIL, NULL, "%u/%u ring failed: %s",
					  r->sq, r->cq, r->reason);
			else if (r->mode == HUGERING_MODE_KERNEL)
				add_check(d, id, DIAG_WARN, NULL,
					  "%u/%u ring fell back to kernel-mapped memory: %s", r->sq,
					  r->cq, r->reason);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Fragmentation avoidance, swap, surplus pages (hugeadm's checks)     */
/* ------------------------------------------------------------------ */

/* "Key:   123 kB" from the tree's /proc/meminfo; -1 if absent. */
static long long meminfo_kb(const char *root, const char *key)
{
	char buf[8192], *p;
	size_t klen = strlen(key);

	if (read_at(root, "/proc/meminfo", buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, key, klen) && p[klen] == ':')
			return strtoll(p + klen + 1, NULL, 10);
	return -1;
}

/* Populated zones: one buddyinfo line each. */
static int zone_count(const char *root)
{
	char buf[16384], *p;
	int n = 0;

	if (read_at(root, "/proc/buddyinfo", buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; (p = strstr(p, "zone")); p += 4)
		n++;
	return n;
}

/*
 * The min_free_kbytes fragmentation avoidance needs (hugeadm's
 * --recommended-min_free_kbytes, the rule khugepaged applies too): per zone,
 * 2 free pageblocks for the atomic reserve and 3 x 3 so each of the three
 * movability types has a block to fall back to without mixing; at most 5%
 * of memory.  Pageblocks are 2 MiB (order 9) on x86-64 and arm64 4K.
 */
static long long recommended_min_free(const char *root)
{
	long long zones = zone_count(root), mem = meminfo_kb(root, "MemTotal"), rec;

	if (zones <= 0)
		return -1;
	rec = 2048LL * zones * (2 + 3 * 3);
	if (mem > 0 && rec > mem / 20)
		rec = mem / 20;
	return rec;
}

static void check_min_free(const char *root, struct diag *d)
{
	long long cur = long_at(root, "/proc/sys/vm/min_free_kbytes", -1);
	long long rec = recommended_min_free(root);
	char fix[96];

	if (cur < 0 || rec < 0)
		return;
	if (cur >= rec) {
		add_check(d, "min_free_kbytes", DIAG_OK, NULL,
			  "vm.min_free_kbytes = %lld kB: enough for fragmentation avoidance", cur);
		return;
	}
	snprintf(fix, sizeof(fix), "sudo sysctl -w vm.min_free_kbytes=%lld", rec);
	add_check(d, "min_free_kbytes", DIAG_WARN, fix,
		  "vm.min_free_kbytes = %lld kB, below the %lld kB fragmentation avoidance needs "
		  "(11 free 2 MiB pageblocks per zone, %d zones): memory fragments and hugepage "
		  "reservations fail sooner", cur, rec, zone_count(root));
}

/* The default size's pool is short of what the pool fix asks for. */
static bool pool_needs_resize(const struct diag *d)
{
	for (int i = 0; i < d->nsizes; i++)
		if (d->sizes[i].pool.is_default)
			return d->sizes[i].pool.usable < DIAG_POOL_LOW;
	return false;
}

static void check_swap(const char *root, struct diag *d)
{
	long long swap = meminfo_kb(root, "SwapTotal");

	if (swap < 0)
		return;
	if (swap > 0)
		add_check(d, "swap", DIAG_OK, NULL, "%lld kB of swap", swap);
	else if (pool_needs_resize(d))
		add_check(d, "swap", DIAG_WARN,
			  "add swap (a swapfile and swapon), or reserve the pool at boot: "
			  "hugering-diag --persist",
			  "no swap: growing the pool may fail, since anonymous pages that fragment "
			  "memory cannot be swapped out to make room (only compaction can move them)");
	else
		add_check(d, "swap", DIAG_OK, NULL,
			  "no swap, but the pool needs no resize");
}

/* Surplus pages: an option, never a problem. */
static void check_overcommit(struct diag *d)
{
	for (int i = 0; i < d->nsizes; i++) {
		const struct hugering_pool *p = &d->sizes[i].pool;

		if (!p->is_default || p->overcommit < 0)
			continue;
		if (p->overcommit == 0)
			add_check(d, "overcommit", DIAG_OK, NULL,
				  "no surplus hugepages (vm.nr_overcommit_hugepages = 0); for bursty "
				  "use, let the pool grow on demand: sudo sysctl -w "
				  "vm.nr_overcommit_hugepages=%d", DIAG_POOL_2M);
		else
			add_check(d, "overcommit", DIAG_OK, NULL,
				  "up to %ld surplus hugepages on demand (vm.nr_overcommit_hugepages): "
				  "not reserved ahead, so they may fail when memory is fragmented",
				  p->overcommit);
	}
}

/*
 * The tree's osrelease, else the running kernel's.  A file that is there
 * but says nothing (a blank line) is "unknown", not the live release.
 */
static void collect_release(const char *root, struct diag *d)
{
	struct utsname u;
	char *buf;

	if (read_whole(d, root, "/proc/sys/kernel/osrelease", &buf) > 0) {
		buf[strcspn(buf, "\n")] = '\0';
		d->release = buf[0] ? buf : dup_str(d, "unknown");
		if (!buf[0])
			free(buf);
		return;
	}
	d->release = dup_str(d, uname(&u) ? "" : u.release);
}

static void collect_thp(const char *root, struct diag *d)
{
	char *buf;

	if (read_whole(d, root, "/sys/kernel/mm/transparent_hugepage/enabled", &buf) > 0)
		d->thp_enabled = bracketed(d, buf);
	else
		d->thp_enabled = dup_str(d, "unavailable");
	free(buf);
}

static void collect_checks(const char *root, struct diag *d)
{
	check_io_uring(d);
	check_nommap(d);
	check_pools(d);
	check_memlock(d);
	check_pfn(d);
	check_sqpoll_napi(d);
	check_min_free(root, d);
	check_swap(root, d);
	check_overcommit(d);
	check_trials(d);
}

int diag_collect(struct diag *d, unsigned flags)
{
	const char *root = hr_sysroot();
	struct rings_call rc;

	if (!d || flags & ~DIAG_TRIAL)
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	hugering_probe_kernel(&d->caps);
	collect_release(root, d);
	d->io_uring_disabled = (int)long_at(root, "/proc/sys/kernel/io_uring_disabled", -1);
	d->busy_poll = (int)long_at(root, "/proc/sys/net/core/busy_poll", -1);
	d->preemptible = preemptible(root);
	collect_thp(root, d);
	memlock_limits(root, d);
	d->cap_ipc_lock = hr_cap_effective(root, HR_CAP_IPC_LOCK);
	d->pfn_visible = hugering_pfn_visible() > 0;
	collect_nodes(root, d);
	collect_sizes(root, d);
	collect_blocks(root, d);
	rc.d = d;
	rc.trial = (flags & DIAG_TRIAL) != 0;
	hr_run_on_helper(collect_rings, &rc);
	collect_checks(root, d);
	if (d->nomem) {
		diag_free(d);
		return -ENOMEM;
	}
	return 0;
}

void diag_free(struct diag *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->nsizes; i++) {
		for (int k = 0; k < d->sizes[i].nmounts; k++)
			free(d->sizes[i].mounts[k]);
		free(d->sizes[i].mounts);
		free(d->sizes[i].nodes);
	}
	for (int i = 0; i < d->ntrials; i++)
		for (int k = 0; k < 2; k++)
			free(d->trials[i].rings[k].reason);
	for (int i = 0; i < d->nblocks; i++)
		free(d->blocks[i].name);
	for (int i = 0; i < d->nchecks; i++) {
		free(d->checks[i].id);
		free(d->checks[i].message);
		free(d->checks[i].fix);
	}
	free(d->release);
	free(d->thp_enabled);
	free(d->nodes);
	free(d->sizes);
	free(d->trials);
	free(d->blocks);
	free(d->checks);
	memset(d, 0, sizeof(*d));
}

int diag_failed(const struct diag *d)
{
	if (!d)
		return -EINVAL;
	for (int i = 0; i < d->nchecks; i++)
		if (d->checks[i].status == DIAG_FAIL)
			return 1;
	return 0;
}

const char *diag_status_name(int status)
{
	switch (status) {
	case DIAG_OK: return "ok";
	case DIAG_WARN: return "warn";
	default: return "fail";
	}
}
