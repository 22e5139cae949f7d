/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: every sysfs/procfs/cgroup text parser, reached through
 * the public API with HUGERING_SYSROOT at a per-process temporary tree.
 * The input is split at NUL bytes; piece i becomes the file files[i] (a
 * missing piece removes the file), pieces NAME_HP and NAME_BLOCK name a
 * hugepages-*kB directory and a block device.  Then every reader runs,
 * hugering-diag's diag_collect() without the trial (tools/diag/collect.c,
 * linked in), and its text and JSON writers (tools/hugering-diag.c,
 * compiled in); the JSON must be
 * well-formed, valid UTF-8.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hugering.h>

/* The tool's formatting, with its main() renamed out of the way. */
int hugering_diag_tool_main(int argc, char **argv);
#define main hugering_diag_tool_main
#include "../../tools/hugering-diag.c"
#undef main

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HP2M "/sys/kernel/mm/hugepages/hugepages-2048kB"
#define N0 "/sys/devices/system/node/node0/hugepages/hugepages-2048kB"
#define N1 "/sys/devices/system/node/node1/hugepages/hugepages-2048kB"
#define CG "/sys/fs/cgroup/app"

static const char *const files[] = {
	"/sys/devices/system/node/online",		/* 0 */
	HP2M "/nr_hugepages",				/* 1 */
	HP2M "/free_hugepages",				/* 2 */
	HP2M "/resv_hugepages",				/* 3 */
	HP2M "/surplus_hugepages",			/* 4 */
	HP2M "/nr_overcommit_hugepages",		/* 5 */
	"/proc/meminfo",				/* 6 */
	"/proc/self/mounts",				/* 7 */
	"/proc/self/limits",				/* 8 */
	"/proc/buddyinfo",				/* 9 */
	"/proc/self/cgroup",				/* 10 */
	CG "/hugetlb.2MB.max",				/* 11 */
	CG "/hugetlb.2MB.rsvd.max",			/* 12 */
	"/proc/sys/kernel/osrelease",			/* 13 */
	"/sys/kernel/mm/transparent_hugepage/enabled",	/* 14 */
	N0 "/free_hugepages",				/* 15 */
	N1 "/free_hugepages",				/* 16 */
	"/proc/sys/kernel/version",			/* 17 */
	"/proc/self/status",				/* 18 */
	"/proc/sys/vm/min_free_kbytes",			/* 19 */
	"/proc/sys/net/core/busy_poll",			/* 20 */
	NULL,	/* 21: name of an extra /sys/kernel/mm/hugepages/ directory */
	NULL,	/* 22: name of a /sys/block/ device */
	"/sys/module/nvme/parameters/poll_queues",	/* 23 */
	N0 "/nr_hugepages",				/* 24 */
	N0 "/surplus_hugepages",			/* 25 */
	N1 "/nr_hugepages",				/* 26 */
	N1 "/surplus_hugepages",			/* 27 */
};
#define NFILES (sizeof(files) / sizeof(files[0]))
#define NAME_HP 21
#define NAME_BLOCK 22

static char root[64];
static struct diag diag;
static FILE *out;	/* the tool's stdout */

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_sysfs: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	abort();
}

#define require(cond) do { if (!(cond)) fail(#cond, NULL); } while (0)

static void remove_tree(void)
{
	char cmd[128];

	if (root[0] && snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root) < (int)sizeof(cmd) &&
	    system(cmd) != 0)
		fprintf(stderr, "fuzz_sysfs: could not remove %s\n", root);
}

static void mkdirs(const char *path)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s", path);
	for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		if (mkdir(p, 0755) && errno != EEXIST)
			fail("mkdir", p);
		*s = '/';
	}
}

/* @rel below the tree gets @len bytes of @text, or is removed (@text NULL). */
static void put(const char *rel, const uint8_t *text, size_t len)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s%s", root, rel);
	if (!text) {
		unlink(path);
		return;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 && errno == ENOENT) {
		mkdirs(path);	/* only the first time: mkdir per file halved exec/s */
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	}
	if (fd < 0)
		fail("open", path);
	if (len && write(fd, text, len) != (ssize_t)len)
		fail("write", path);
	close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(root, sizeof(root), "/tmp/hugering-fuzz.XXXXXX");
	if (!mkdtemp(root))
		fail("mkdtemp", strerror(errno));
	atexit(remove_tree);
	setenv("HUGERING_SYSROOT", root, 1);
	/* The tool writes to stdout: keep it in a file we read back. */
	out = tmpfile();
	if (!out || dup2(fileno(out), STDOUT_FILENO) < 0)
		fail("setup", strerror(errno));
	return 0;
}

/* A name for one path component: no '/', not "." or "..", not empty. */
static int safe_name(const uint8_t *s, size_t len, char *name, size_t size)
{
	size_t n = len < size - 1 ? len : size - 1;

	for (size_t i = 0; i < n; i++)
		name[i] = s[i] == '/' ? '_' : (char)s[i];
	name[n] = '\0';
	return n && strcmp(name, ".") && strcmp(name, "..");
}

/* ------------------------------------------------------------------ */
/* JSON: well-formed (RFC 8259) and valid UTF-8                        */
/* ------------------------------------------------------------------ */

static const char *json_value(const char *s, int depth);

static const char *ws(const char *s)
{
	while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')
		s++;
	return s;
}

static const char *json_string(const char *s)
{
	if (*s++ != '"')
		return NULL;
	while (*s != '"') {
		const unsigned char *u = (const unsigned char *)s;
		int n;

		if (*u < 0x20)
			return NULL;	/* also the end of the text */
		if (*s == '\\') {
			s++;
			if (*s == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!strchr("0123456789abcdefABCDEF", s[i]) || !s[i])
						return NULL;
				s += 5;
			} else if (*s && strchr("\"\\/bfnrt", *s)) {
				s++;
			} else {
				return NULL;
			}
			continue;
		}
		n = utf8_char(u);	/* the tool's own decoder, checked by the string tests */
		if (!n)
			return NULL;
		s += n;
	}
	return s + 1;
}

static const char *json_number(const char *s)
{
	const char *start;

	if (*s == '-')
		s++;
	start = s;
	while (*s >= '0' && *s <= '9')
		s++;
	if (s == start || (*start == '0' && s - start > 1))
		return NULL;
	if (*s == '.') {
		start = ++s;
		while (*s >= '0' && *s <= '9')
			s++;
		if (s == start)
			return NULL;
	}
	return s;
}

static const char *json_seq(const char *s, char close, int depth, int object)
{
	s = ws(s + 1);
	if (*s == close)
		return s + 1;
	for (;;) {
		if (object) {
			s = json_string(s);
			if (!s || *(s = ws(s)) != ':')
				return NULL;
			s = ws(s + 1);
		}
		s = json_value(s, depth + 1);
		if (!s)
			return NULL;
		s = ws(s);
		if (*s == close)
			return s + 1;
		if (*s != ',')
			return NULL;
		s = ws(s + 1);
	}
}

static const char *json_value(const char *s, int depth)
{
	if (depth > 32)
		return NULL;
	switch (*s) {
	case '{': return json_seq(s, '}', depth, 1);
	case '[': return json_seq(s, ']', depth, 0);
	case '"': return json_string(s);
	case 't': return strncmp(s, "true", 4) ? NULL : s + 4;
	case 'f': return strncmp(s, "false", 5) ? NULL : s + 5;
	case 'n': return strncmp(s, "null", 4) ? NULL : s + 4;
	default: return json_number(s);
	}
}

/* What the tool printed since the last call, NUL-terminated (static). */
static const char *tool_output(size_t *len)
{
	static char buf[1 << 20];
	long n;

	fflush(stdout);
	n = ftell(stdout);
	if (n < 0 || (size_t)n >= sizeof(buf))
		fail("tool output", "too long or unreadable");
	if (pread(STDOUT_FILENO, buf, (size_t)n, 0) != n)
		fail("tool output", "short read");
	buf[n] = '\0';
	rewind(stdout);
	if (ftruncate(STDOUT_FILENO, 0))
		fail("ftruncate", strerror(errno));
	*len = (size_t)n;
	return buf;
}

static void check_json(const struct diag *d)
{
	const char *s, *end;
	size_t len;

	print_json(d);
	s = tool_output(&len);
	require(strlen(s) == len);	/* no NUL bytes */
	end = json_value(ws(s), 0);
	if (!end || *ws(end))
		fail("invalid JSON", s);
}

static void print_text(const struct diag *d)
{
	size_t len;

	print_kernel(d);
	print_hugepages(d);
	print_process(d);
	print_blocks(d);
	print_trial(d);
	print_checks(d);
	tool_output(&len);
}

/* ------------------------------------------------------------------ */
/* Invariants of the public readers                                    */
/* ------------------------------------------------------------------ */

#define terminated(a) (memchr((a), '\0', sizeof(a)) != NULL)

static void check_pool(size_t ps, int node)
{
	struct hugering_pool p;
	int ret;

	memset(&p, 0x5a, sizeof(p));
	ret = hugering_pool_get(ps, node, &p);
	if (ret < 0) {
		require(hugering_last_error()[0]);
		if (ret == -EINVAL || ret == -ENODEV)
			return;	/* refused before reading: nothing filled */
	}
	require(ret <= 0);
	require(p.usable >= 0);
	require(p.page_size == ps && p.numa_node == node);
	for (int i = 0; i < 8; i++)
		require(p.resv[i] == 0);
	if (!ret) {
		require(p.total >= 0 && p.free >= 0 && p.surplus >= 0);
		require(p.usable <= p.free);
		if (node < 0)
			require(p.reserved >= 0 && p.overcommit >= 0);
	}
}

static void check_readers(void)
{
	size_t sizes[HUGERING_MAX_PAGE_SIZES + 1];
	int nodes[16];
	struct hugering_mount m[4];
	int n, nn, nm;

	n = hugering_page_sizes(sizes, HUGERING_MAX_PAGE_SIZES);
	require(n <= HUGERING_MAX_PAGE_SIZES);
	require(n >= 0 || hugering_last_error()[0]);
	for (int i = 0; i < n; i++) {
		require(sizes[i] && sizes[i] % 1024 == 0);
		require(i == 0 || sizes[i - 1] <= sizes[i]);
	}
	require(hugering_page_sizes(sizes, 1) <= 1);
	(void)hugering_default_page_size();
	nn = hugering_numa_nodes(nodes, 16);
	require(nn <= 16);
	require(nn >= 0 || hugering_last_error()[0]);
	for (int i = 0; i < nn; i++)
		require(nodes[i] >= 0);
	require(hugering_numa_nodes(nodes, 0) <= 0);
	for (int i = 0; i < n; i++)
		for (int node = -1; node < 2; node++)
			check_pool(sizes[i], node);
	check_pool(2048 * 1024, -1);
	nm = hugering_mounts(m, 4);
	require(nm <= 4);
	for (int i = 0; i < nm; i++)
		require(m[i].path && strlen(m[i].path) < SIZE_MAX);
}

static void check_diag(const struct diag *d)
{
	require(d->nsizes >= 0 && d->nsizes <= HUGERING_MAX_PAGE_SIZES);
	require(d->nnodes >= 0 && d->nblocks >= 0 && d->nchecks > 0);
	require(d->ntrials == 0);
	require(d->release && d->thp_enabled && terminated(d->caps.release));
	for (int i = 0; i < d->nsizes; i++) {
		const struct diag_size *s = &d->sizes[i];

		require(s->nnodes >= 0 && s->nnodes <= d->nnodes);
		require(s->nmounts >= 0);
		require(s->pool.usable >= 0);
		require(s->pool_err <= 0);
		require(s->reservable >= -1);
		for (int k = 0; k < s->nmounts; k++)
			require(s->mounts[k]);
	}
	for (int i = 0; i < d->nblocks; i++)
		require(d->blocks[i].name && d->blocks[i].name[0]);
	for (int i = 0; i < d->nchecks; i++) {
		const struct diag_check *c = &d->checks[i];

		require(c->id && c->message && c->fix);
		require(c->id[0] && c->message[0]);
		require(c->status >= DIAG_OK && c->status <= DIAG_FAIL);
	}
	require(diag_failed(d) == 0 || diag_failed(d) == 1);
}

/* ------------------------------------------------------------------ */

static char made_hp[300], made_block[300];

static void remove_named(void)
{
	char path[PATH_MAX];

	if (made_hp[0]) {
		static const char *const cnt[] = { "nr_hugepages", "free_hugepages" };

		for (int i = 0; i < 2; i++) {
			snprintf(path, sizeof(path), "%s%s/%s", root, made_hp, cnt[i]);
			unlink(path);
		}
		snprintf(path, sizeof(path), "%s%s", root, made_hp);
		rmdir(path);
		made_hp[0] = '\0';
	}
	if (made_block[0]) {
		snprintf(path, sizeof(path), "%s%s/queue/io_poll", root, made_block);
		unlink(path);
		snprintf(path, sizeof(path), "%s%s/queue", root, made_block);
		rmdir(path);
		snprintf(path, sizeof(path), "%s%s", root, made_block);
		rmdir(path);
		made_block[0] = '\0';
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *piece[NFILES] = { 0 };
	size_t len[NFILES] = { 0 };
	size_t at = 0;
	char name[128];

	for (size_t i = 0; i < NFILES && at <= size; i++) {
		const uint8_t *nul = memchr(data + at, '\0', size - at);
		size_t n = nul ? (size_t)(nul - (data + at)) : size - at;

		piece[i] = data + at;
		len[i] = n;
		at += n + 1;
	}
	for (size_t i = 0; i < NFILES; i++)
		if (files[i])
			put(files[i], piece[i], len[i]);
	if (piece[NAME_HP] && safe_name(piece[NAME_HP], len[NAME_HP], name, sizeof(name))) {
		char rel[300];

		snprintf(made_hp, sizeof(made_hp), "/sys/kernel/mm/hugepages/%s", name);
		snprintf(rel, sizeof(rel), "%s/nr_hugepages", made_hp);
		put(rel, piece[1], len[1]);
		snprintf(rel, sizeof(rel), "%s/free_hugepages", made_hp);
		put(rel, piece[2], len[2]);
	}
	if (piece[NAME_BLOCK] && safe_name(piece[NAME_BLOCK], len[NAME_BLOCK], name, sizeof(name))) {
		char rel[300];

		snprintf(made_block, sizeof(made_block), "/sys/block/%s", name);
		snprintf(rel, sizeof(rel), "%s/queue/io_poll", made_block);
		put(rel, piece[20], len[20]);
	}

	check_readers();
	require(diag_collect(&diag, 0) == 0);
	check_diag(&diag);
	check_json(&diag);
	print_text(&diag);
	diag_free(&diag);
	remove_named();
	return 0;
}
