/* SPDX-License-Identifier: MIT */
/*
 * /init of a tiny initramfs booted under QEMU with a real older kernel:
 * probe, allocate a contiguous region on the boot-time hugepages, create
 * rings of representative shapes with hugering_queue_init_params, run 2x
 * CQ-size NOPs on each with exact checks, print one line per case and a
 * verdict, and power off through the isa-debug-exit port so that the
 * verdict becomes QEMU's exit status (pass: 1, fail: 3).
 *
 * The expectation comes from the kernel command line:
 *   hugering.expect=unsupported|single_page|contiguous|any
 *   hugering.mode=kernel|nommap_huge   (the mode every ring must get)
 *   hugering.iopoll=1   (null_blk and configfs modules are in /lib/modules:
 *                        check polled I/O on a device with poll queues)
 *   hugering.poll_queues=N   (nullb0's poll queues, default 1: 0 must fail)
 *   hugering.numa=1   (a two-node guest, a CPU on each: only the NUMA
 *                      checks run, see numa_checks())
 * Buffer memory (issue 13) on every boot, expectations by kernel version:
 * a buffer ring, IOU_PBUF_RING_INC (6.12+, else refused with the reason),
 * a registered pool and its clone (6.12+, else registered again with the
 * repeated charge reported); see buffer_checks().
 * The ring pool (issue 14) on every boot: a used ring comes back reset
 * where rings are in user memory, and is never pooled where they are
 * kernel-mapped; a personality left registered closes it; a plain ring
 * that submitted is drained and comes back in order; see pool_checks().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* O_DIRECT */
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/syscall.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hugering.h>

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

#define EXIT_PORT 0xf4

static const struct {
	const char *name;
	unsigned entries, cq, flags;
} cases[] = {
	{ "small", 64, 0, 0 },
	{ "256/16384", 256, 16384, 0 },
	{ "4096/65536", 4096, 65536, 0 },
	{ "1024/4096-cqe32", 1024, 4096, IORING_SETUP_CQE32 },
	{ "512/1024-sqe128", 512, 1024, IORING_SETUP_SQE128 },
};

static void console(void)
{
	int fd;

	mkdir("/dev", 0755);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	fd = open("/dev/console", O_RDWR);
	if (fd < 0)
		fd = open("/dev/ttyS0", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
}

static void power_off(int pass)
{
	fflush(stdout);
	sync();
	if (!ioperm(EXIT_PORT, 1, 1))
		outb(pass ? 0 : 1, EXIT_PORT);	/* QEMU exits (v << 1) | 1 */
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

/* "hugering.KEY=value" from the kernel command line, or "". */
static void cmdline_value(const char *key, char *out, size_t len)
{
	char buf[4096], *p;
	FILE *f = fopen("/proc/cmdline", "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

	if (f)
		fclose(f);
	buf[n] = '\0';
	out[0] = '\0';
	p = strstr(buf, key);
	if (p && sscanf(p + strlen(key), "%63[^ \n]", out) != 1)
		out[0] = '\0';
	(void)len;
}

static int nops(struct io_uring *ring, unsigned n)
{
	unsigned sq = ring->sq.ring_entries, done = 0;

	while (done < n) {
		unsigned batch = n - done < sq ? n - done : sq;

		for (unsigned i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			if (!sqe)
				return -1;
			io_uring_prep_nop(sqe);
			sqe->user_data = done + i + 1;
		}
		if (io_uring_submit_and_wait(ring, batch) != (int)batch)
			return -1;
		for (unsigned i = 0; i < batch; i++) {
			struct io_uring_cqe *cqe;

			if (io_uring_peek_cqe(ring, &cqe) || cqe->res ||
			    cqe->user_data != (unsigned long long)done + i + 1)
				return -1;
			io_uring_cqe_seen(ring, cqe);
		}
		done += batch;
	}
	return io_uring_cq_ready(ring) || *ring->cq.koverflow ? -1 : 0;
}

/* Load /lib/modules/NAME.ko (6.1) or NAME.ko.xz (6.12: the kernel unpacks it). */
static int load_module(const char *name, const char *params)
{
	static const struct { const char *ext; int flags; } forms[] = {
		{ ".ko", 0 }, { ".ko.xz", MODULE_INIT_COMPRESSED_FILE },
	};
	char path[128];

	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		int fd, ret;

		snprintf(path, sizeof(path), "/lib/modules/%s%s", name, forms[i].ext);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ret = (int)syscall(SYS_finit_module, fd, params, forms[i].flags);
		ret = ret ? -errno : 0;
		close(fd);
		return ret == -EEXIST ? 0 : ret;
	}
	return -ENOENT;
}

/* devtmpfs makes the node when the disk is added: give it a moment. */
static int open_when_there(const char *path, int flags)
{
	for (int i = 0; i < 200; i++) {
		int fd = open(path, flags);

		if (fd >= 0 || errno != ENOENT)
			return fd;
		usleep(10000);
	}
	return -1;
}

/* @n 4 KiB reads at distinct offsets (polled on an IOPOLL ring): all 4096. */
static int reads_4k(struct io_uring *ring, int fd, unsigned n)
{
	static char buf[8][4096] __attribute__((aligned(4096)));
	unsigned done = 0;

	while (done < n) {
		unsigned batch = n - done < 8 ? n - done : 8;

		for (unsigned i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			if (!sqe)
				return -1;
			io_uring_prep_read(sqe, fd, buf[i], 4096, (done + i) * 4096ULL);
			sqe->user_data = done + i + 1;
		}
		if (io_uring_submit(ring) != (int)batch)
			return -1;
		for (unsigned i = 0; i < batch; i++) {
			struct io_uring_cqe *cqe;

			/* IOPOLL: waiting is what reaps the completions. */
			if (io_uring_wait_cqe(ring, &cqe) || cqe->res != 4096 ||
			    cqe->user_data < done + 1 || cqe->user_data > done + batch)
				return -1;
			io_uring_cqe_seen(ring, cqe);
		}
		done += batch;
	}
	return 0;
}

static int iopoll_line(int ok, const char *what, const char *detail)
{
	printf("iopoll %s: %s (%s)\n", what, ok ? "ok" : "FAIL", detail);
	return ok;
}

static int put(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY), ok;

	if (fd < 0)
		return -errno;
	ok = write(fd, value, strlen(value)) == (ssize_t)strlen(value);
	close(fd);
	return ok ? 0 : -EIO;
}

/*
 * The second null_blk disk, made through configfs without a poll queue.  It
 * takes the directory's name (6.12) or nullb<index> (6.1, index 1 after the
 * module's nullb0): "nullb1" either way.
 */
#define NOPOLL_DISK "nullb1"

static int disk_without_poll(void)
{
	static const char *const attrs[][2] = {
		{ "queue_mode", "2" }, { "poll_queues", "0" }, { "power", "1" },
	};
	const char *dir = "/sys/kernel/config/nullb/" NOPOLL_DISK;
	char path[128];

	mkdir("/sys/kernel/config", 0755);
	if (mount("configfs", "/sys/kernel/config", "configfs", 0, NULL) && errno != EBUSY)
		return -errno;
	if (mkdir(dir, 0755))
		return -errno;
	for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
		int ret;

		snprintf(path, sizeof(path), "%s/%s", dir, attrs[i][0]);
		if ((ret = put(path, attrs[i][1])))
			return ret;
	}
	return access("/sys/block/" NOPOLL_DISK, F_OK) ? -ENODEV : 0;
}

/* Since 6.11 the block layer refuses polled I/O on a queue without poll queues. */
static int refuses_unpolled(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	uname(&u);
	sscanf(u.release, "%d.%d", &major, &minor);
	return major > 6 || (major == 6 && minor >= 11);
}

/* One 4 KiB read on a raw IOPOLL ring (what an application would do): its res. */
static int raw_polled_read(int fd)
{
	static char buf[4096] __attribute__((aligned(4096)));
	struct io_uring_cqe *cqe;
	struct io_uring ring;
	int res;

	if (io_uring_queue_init(4, &ring, IORING_SETUP_IOPOLL))
		return -EINVAL;
	io_uring_prep_read(io_uring_get_sqe(&ring), fd, buf, sizeof(buf), 0);
	io_uring_submit(&ring);
	res = io_uring_wait_cqe(&ring, &cqe) ? -EIO : cqe->res;
	io_uring_queue_exit(&ring);
	return res;
}

/*
 * The same checks on a disk without poll queues: the probe says no from
 * sysfs, the factory degrades and says why, and a polled read the
 * application forces anyway fails -EOPNOTSUPP on 6.11+ (explained, naming
 * the disk) or quietly uses interrupts before.
 */
static int check_no_poll(void)
{
	struct hugering_init_opts o = { .numa_node = -1, .n_iopoll_fds = 1 };
	struct io_uring_params p = { .flags = IORING_SETUP_IOPOLL };
	struct hugering_iopoll_verdict v;
	struct hugering_ring_info info;
	struct io_uring_cqe cqe = { 0 };
	const char *name = NOPOLL_DISK, *dev = "/dev/" NOPOLL_DISK;
	char why[256];
	struct io_uring ring;
	int fd, ret, pass = 1;

	if ((ret = disk_without_poll()))
		return iopoll_line(0, "configfs disk", strerror(-ret));
	fd = open_when_there(dev, O_RDONLY | O_DIRECT);
	if (fd < 0)
		return iopoll_line(0, dev, strerror(errno));
	ret = hugering_iopoll_probe(fd, &v);
	pass &= iopoll_line(!ret && v.supported == 0 && strstr(v.reason, name) &&
			    strstr(v.reason, "no poll queues"), "probe no-poll disk", v.reason);

	o.iopoll_fds = &fd;
	ret = hugering_queue_init_opts(8, &ring, &p, &o);
	if (ret)
		return iopoll_line(0, "degraded ring", hugering_last_error());
	hugering_ring_info(&ring, &info);
	ret = reads_4k(&ring, fd, 64);
	snprintf(why, sizeof(why), "degraded=%d reason \"%s\", 64 reads %s", info.iopoll_degraded,
		 info.iopoll_reason, ret ? "WRONG" : "exact");
	pass &= iopoll_line(!(ring.flags & IORING_SETUP_IOPOLL) && info.iopoll_degraded &&
			    strstr(info.iopoll_reason, name) && !ret, "degraded ring", why);
	hugering_queue_exit(&ring);

	cqe.res = raw_polled_read(fd);
	if (refuses_unpolled()) {
		ret = hugering_iopoll_explain(&cqe, fd, why, sizeof(why));
		pass &= iopoll_line(cqe.res == -EOPNOTSUPP && ret == 1 && strstr(why, name),
				    "forced polled read (6.11+ refuses)", ret == 1 ? why :
				    strerror(cqe.res < 0 ? -cqe.res : 0));
	} else {
		snprintf(why, sizeof(why), "res %d: interrupts used quietly", cqe.res);
		pass &= iopoll_line(cqe.res == 4096, "forced polled read (before 6.11)", why);
	}
	close(fd);
	return pass;
}

/*
 * A null_blk disk with a poll queue: the probe's live polled read says yes,
 * the factory keeps IOPOLL and polled reads complete; the same disk opened
 * without O_DIRECT is refused, and STRICT turns that into -EOPNOTSUPP.
 */
static int check_iopoll(const char *poll_queues)
{
	struct hugering_init_opts o = { .numa_node = -1 };
	struct io_uring_params p = { .flags = IORING_SETUP_IOPOLL };
	struct hugering_iopoll_verdict v;
	struct hugering_ring_info info;
	struct io_uring_cqe fake = { .res = -EOPNOTSUPP };
	struct io_uring ring;
	char why[256];
	int fd, buffered, ret, pass = 1;

	ret = load_module("configfs", "");
	snprintf(why, sizeof(why), "nr_devices=1 queue_mode=2 poll_queues=%s",
		 *poll_queues ? poll_queues : "1");
	if (!ret)
		ret = load_module("null_blk", why);
	if (ret)
		return iopoll_line(0, "null_blk", strerror(-ret));
	fd = open_when_there("/dev/nullb0", O_RDONLY | O_DIRECT);
	buffered = open("/dev/nullb0", O_RDONLY);
	if (fd < 0 || buffered < 0)
		return iopoll_line(0, "open /dev/nullb0", strerror(errno));

	ret = hugering_iopoll_probe(fd, &v);
	pass &= iopoll_line(!ret && v.supported == 1 && strstr(v.reason, "polled read worked"),
			    "probe O_DIRECT", v.reason);
	ret = hugering_iopoll_probe(buffered, &v);
	pass &= iopoll_line(!ret && v.supported == 0 && strstr(v.reason, "O_DIRECT"),
			    "probe buffered", v.reason);
	/* The file polls: an EOPNOTSUPP from it is not a polling problem. */
	ret = hugering_iopoll_explain(&fake, fd, why, sizeof(why));
	pass &= iopoll_line(ret == 0 && !why[0], "explain", ret ? why : "not a polling refusal");

	o.iopoll_fds = &fd;
	o.n_iopoll_fds = 1;
	ret = hugering_queue_init_opts(8, &ring, &p, &o);
	if (ret)
		return iopoll_line(0, "ring", hugering_last_error());
	hugering_ring_info(&ring, &info);
	snprintf(why, sizeof(why), "mode=%s degraded=%d, 64 %s reads %s",
		 hugering_mode_name(info.mode), info.iopoll_degraded,
		 ring.flags & IORING_SETUP_IOPOLL ? "polled" : "unpolled",
		 reads_4k(&ring, fd, 64) ? "WRONG" : "exact");
	pass &= iopoll_line((ring.flags & IORING_SETUP_IOPOLL) && !info.iopoll_degraded &&
			    strstr(why, "exact"), "ring", why);
	hugering_queue_exit(&ring);

	o.iopoll_fds = &buffered;
	o.flags = HUGERING_INIT_IOPOLL_STRICT;
	p = (struct io_uring_params){ .flags = IORING_SETUP_IOPOLL };
	ret = hugering_queue_init_opts(8, &ring, &p, &o);
	if (!ret)
		hugering_queue_exit(&ring);
	pass &= iopoll_line(ret == -EOPNOTSUPP, "strict buffered", ret ? strerror(-ret) : "made");
	close(buffered);
	close(fd);
	return pass & check_no_poll();
}

static int run_case(int i, const char *want_mode)
{
	struct io_uring_params p = { .flags = cases[i].flags };
	struct hugering_ring_info info;
	struct io_uring ring;
	int ret, ok;

	if (cases[i].cq) {
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = cases[i].cq;
	}
	ret = hugering_queue_init_params(cases[i].entries, &ring, &p);
	if (ret) {
		printf("case %s: FAIL init %s: %s\n", cases[i].name, strerror(-ret),
		       hugering_last_error());
		return 0;
	}
	hugering_ring_info(&ring, &info);
	ret = nops(&ring, 2 * p.cq_entries);
	ok = !ret && !strcmp(hugering_mode_name(info.mode), want_mode) &&
	     (info.mode != HUGERING_MODE_KERNEL || info.fallback_reason[0]);
	printf("case %s: %s mode=%s sq=%u cq=%u nops=%s fallback_errno=%d reason=\"%s\"\n",
	       cases[i].name, ok ? "ok" : "FAIL", hugering_mode_name(info.mode), p.sq_entries,
	       p.cq_entries, ret ? "WRONG" : "exact", info.fallback_errno, info.fallback_reason);
	hugering_queue_exit(&ring);
	return ok;
}

/* ------------------------------------------------------------------ */
/* Buffer memory (issue 13)                                            */
/* ------------------------------------------------------------------ */

/* Whether the running kernel is at least @maj.@min. */
static int kernel_at_least(int maj, int min)
{
	struct utsname u;
	int a = 0, b = 0;

	if (uname(&u) || sscanf(u.release, "%d.%d", &a, &b) != 2)
		return 0;
	return a > maj || (a == maj && b >= min);
}

static int buf_line(int ok, const char *what, const char *detail)
{
	printf("buffers %s: %s %s\n", what, ok ? "ok" : "FAIL", detail);
	return ok;
}

/* One datagram through buffer group @bgid's only buffer. */
static int recv_through(struct io_uring *ring, struct io_uring_buf_ring *br, int bgid)
{
	static char buf[64];
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	int fds[2], ok;

	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, fds))
		return 0;
	io_uring_buf_ring_add(br, buf, sizeof(buf), 42, io_uring_buf_ring_mask(64), 0);
	io_uring_buf_ring_advance(br, 1);
	ok = write(fds[1], "kinit", 6) == 6;
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_recv(sqe, fds[0], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (uint16_t)bgid;
	ok = ok && io_uring_submit_and_wait(ring, 1) == 1 && !io_uring_wait_cqe(ring, &cqe);
	if (ok) {
		ok = cqe->res == 6 && (cqe->flags >> IORING_CQE_BUFFER_SHIFT) == 42 &&
		     !strcmp(buf, "kinit");
		io_uring_cqe_seen(ring, cqe);
	}
	close(fds[0]);
	close(fds[1]);
	return ok;
}

/*
 * A buffer ring (user memory since 5.19: in hugepages, or liburing's with a
 * reason); IOU_PBUF_RING_INC works on 6.12 and is refused -EINVAL with the
 * reason on older kernels.
 */
static int buf_ring_checks(struct io_uring *ring)
{
	struct hugering_buf_ring_info info;
	struct io_uring_buf_ring *br;
	int inc = kernel_at_least(6, 12), err, ok, pass = 1;
	char d[512];

	br = hugering_setup_buf_ring(ring, 64, 1, 0, &err);
	if (!br)
		return buf_line(0, "ring", hugering_last_error());
	hugering_buf_ring_info(ring, 1, &info);
	ok = recv_through(ring, br, 1) &&
	     (info.mode == HUGERING_BUF_RING_HUGE || info.fallback_reason[0]);
	snprintf(d, sizeof(d), "mode=%s page=%zu kB recv=%s reason=\"%s\"",
		 info.mode == HUGERING_BUF_RING_HUGE ? "huge" : "liburing", info.page_size >> 10,
		 ok ? "exact" : "WRONG", info.fallback_reason);
	pass &= buf_line(ok, "ring", d);
	hugering_free_buf_ring(ring, br, 64, 1);
	br = hugering_setup_buf_ring(ring, 64, 2, IOU_PBUF_RING_INC, &err);
	if (inc) {
		ok = br && recv_through(ring, br, 2);
		snprintf(d, sizeof(d), "IOU_PBUF_RING_INC works (%s)", br ? "set up" : hugering_last_error());
	} else {
		ok = !br && err == -EINVAL && strstr(hugering_last_error(), "needs Linux 6.12");
		snprintf(d, sizeof(d), "IOU_PBUF_RING_INC refused %d: \"%s\"", err,
			 hugering_last_error());
	}
	if (br)
		hugering_free_buf_ring(ring, br, 64, 2);
	return pass & buf_line(ok, "inc", d);
}

/* Block 0 of /fixed.dat read into registered buffer 0 of @ring; compared with @want. */
static int read_fixed(struct io_uring *ring, void *buf, const char *want, size_t len)
{
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	int fd = open("/fixed.dat", O_RDONLY), ok;

	if (fd < 0)
		return 0;
	memset(buf, 0, len);
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_read_fixed(sqe, fd, buf, (unsigned)len, 0, 0);
	ok = io_uring_submit_and_wait(ring, 1) == 1 && !io_uring_wait_cqe(ring, &cqe);
	if (ok) {
		ok = cqe->res == (int)len && !memcmp(buf, want, len);
		io_uring_cqe_seen(ring, cqe);
	}
	close(fd);
	return ok;
}

/*
 * A registered pool, cloned into a second ring: shared on 6.12 (no second
 * charge), registered again on 6.1 with the repeated charge reported; the
 * second ring reads through its table either way.
 */
static int regbuf_checks(struct io_uring *a)
{
	struct hugering_bufpool_opts o = { 0 };
	struct hugering_reg_charge first, c;
	struct io_uring_params p = { 0 };
	struct hugering_bufpool *pool;
	struct hugering_bufpool_info in;
	static char want[65536];
	struct io_uring b;
	int clone = kernel_at_least(6, 12), ok, fd, ret;
	char d[512];

	if (hugering_bufpool_create(8, sizeof(want), &o, &pool))
		return buf_line(0, "pool", hugering_last_error());
	hugering_bufpool_info(pool, &in);
	for (size_t i = 0; i < sizeof(want); i++)
		want[i] = (char)(i * 7 + 3);
	fd = open("/fixed.dat", O_CREAT | O_TRUNC | O_WRONLY, 0644);
	ok = fd >= 0 && write(fd, want, sizeof(want)) == (ssize_t)sizeof(want);
	if (fd >= 0)
		close(fd);
	ret = hugering_register_buffers(a, pool, NULL, 0, 0, &first);
	ok = ok && !ret && read_fixed(a, hugering_bufpool_buf(pool, 0), want, sizeof(want));
	snprintf(d, sizeof(d), "8 x 64 KiB on %zu kB pages (%s), charge %llu bytes, read_fixed %s",
		 in.page_size >> 10, in.fallback_reason[0] ? in.fallback_reason : "no fallback",
		 (unsigned long long)first.charge_bytes, ok ? "exact" : "WRONG");
	if (!buf_line(ok, "register", ret ? hugering_last_error() : d)) {
		hugering_bufpool_destroy(pool);
		return 0;
	}
	if (hugering_queue_init_params(8, &b, &p)) {
		buf_line(0, "clone", hugering_last_error());
		hugering_bufpool_destroy(pool);
		return 0;
	}
	ret = hugering_clone_buffers(&b, a, &c);
	ok = !ret && read_fixed(&b, hugering_bufpool_buf(pool, 0), want, sizeof(want)) &&
	     (clone ? c.cloned == 1 && c.charge_bytes == 0 :
		      c.cloned == 0 && c.charge_bytes == first.charge_bytes && c.charge_bytes);
	snprintf(d, sizeof(d), "%s, charge %llu bytes%s", ret ? hugering_last_error() :
		 c.cloned ? "shared (IORING_REGISTER_CLONE_BUFFERS)" :
		 "registered again (no IORING_REGISTER_CLONE_BUFFERS)",
		 (unsigned long long)c.charge_bytes, c.cloned ? "" : " repeated");
	buf_line(ok, "clone", d);
	hugering_queue_exit(&b);
	hugering_unregister_buffers(a);
	hugering_bufpool_destroy(pool);
	return ok;
}

static int buffer_checks(void)
{
	struct io_uring_params p = { 0 };
	struct io_uring ring;
	int pass;

	if (hugering_queue_init_params(8, &ring, &p))
		return buf_line(0, "ring", hugering_last_error());
	pass = buf_ring_checks(&ring);
	pass &= regbuf_checks(&ring);
	hugering_queue_exit(&ring);
	return pass;
}

/* ------------------------------------------------------------------ */
/* The ring pool (issue 14)                                            */
/* ------------------------------------------------------------------ */

static int pool_line(int ok, const char *what, const char *detail)
{
	printf("pool %s: %s %s\n", what, ok ? "ok" : "FAIL", detail);
	return ok;
}

#define POOL_DEFER (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)

static int pooled_ring(struct io_uring *ring, unsigned flags, int *pooled)
{
	struct io_uring_params p = { .flags = flags };
	struct hugering_init_opts o = { .numa_node = -1, .flags = HUGERING_INIT_POOLED };
	struct hugering_ring_info info;
	int ret = hugering_queue_init_opts(64, ring, &p, &o);

	if (ret)
		return ret;
	hugering_ring_info(ring, &info);
	*pooled = info.pooled;
	return 0;
}

/*
 * A plain ring (any thread may submit) that submitted NOPs is drained at
 * exit with an IOSQE_IO_DRAIN NOP and a plain one after it: it comes back,
 * and the next NOPs complete inline, in order (draining ended).
 */
static int plain_pool_check(void)
{
	struct io_uring ring;
	int pooled = 0, ok;
	char detail[96];

	if (pooled_ring(&ring, 0, &pooled))
		return pool_line(0, "plain", hugering_last_error());
	ok = !nops(&ring, 8);
	hugering_queue_exit(&ring);
	if (pooled_ring(&ring, 0, &pooled))
		return pool_line(0, "plain", "second create failed");
	ok = ok && pooled && !nops(&ring, 8);
	hugering_queue_exit(&ring);
	snprintf(detail, sizeof(detail), "pooled=%d after NOPs, 8 NOPs in order", pooled);
	return pool_line(ok, "plain drained", detail);
}

/*
 * Registered files, a poll left in flight and a NOP reaped: the next
 * create gets the ring back empty, with nothing registered and no stray
 * completion, in user memory (@user_mem); kernel-mapped rings are never
 * pooled.  A personality left registered closes the ring.
 */
static int pool_checks(int user_mem)
{
	struct io_uring ring;
	int pipefd[2], pooled = 0, pass = 1, ok;
	char detail[160];
	struct io_uring_sqe *sqe;

	if (pipe(pipefd) || pooled_ring(&ring, POOL_DEFER, &pooled))
		return pool_line(0, "ring", hugering_last_error());
	ok = !io_uring_register_files(&ring, pipefd, 2) && !nops(&ring, 8);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_poll_add(sqe, pipefd[0], POLLIN);	/* never completes by itself */
	ok = ok && io_uring_submit(&ring) == 1;
	hugering_queue_exit(&ring);
	if (!ok || pooled_ring(&ring, POOL_DEFER, &pooled))
		return pool_line(0, "used ring", "setup or second create failed");
	if (!user_mem) {
		pass = pool_line(!pooled, "kernel-mapped", pooled ? "pooled" : "closed, not pooled");
		hugering_queue_exit(&ring);
		close(pipefd[0]);
		close(pipefd[1]);
		return pass;
	}
	ok = pooled && !io_uring_sq_ready(&ring) && !io_uring_cq_ready(&ring) &&
	     !io_uring_register_files(&ring, pipefd, 2) && !nops(&ring, 8);
	snprintf(detail, sizeof(detail), "pooled=%d: SQ and CQ empty, files registered anew, "
		 "8 NOPs exact", pooled);
	pass &= pool_line(ok, "reset", detail);
	ok = io_uring_register_personality(&ring) > 0;
	hugering_queue_exit(&ring);
	ok = ok && !pooled_ring(&ring, POOL_DEFER, &pooled) && !pooled;
	pass &= pool_line(ok, "personality", ok ? "left registered: the ring was closed" :
			  "a ring with a personality left was handed out again");
	hugering_queue_exit(&ring);
	close(pipefd[0]);
	close(pipefd[1]);
	return pass & plain_pool_check();
}

/* ------------------------------------------------------------------ */
/* Two NUMA nodes                                                      */
/* ------------------------------------------------------------------ */

#define NUMA_PAGES 8	/* 2 MiB pages reserved on each node */

/* The node of the page at each of @n addresses, by move_pages in query mode; each printed. */
static int numa_where(const char *what, void *const *addrs, int n, int want)
{
	int status[8], ok = 1;

	if (syscall(SYS_move_pages, 0, (unsigned long)n, addrs, NULL, status, 0)) {
		printf("numa %s: FAIL move_pages: %s\n", what, strerror(errno));
		return 0;
	}
	for (int i = 0; i < n; i++) {
		printf("numa %s: %p on node %d (want %d)\n", what, addrs[i], status[i], want);
		ok &= status[i] == want;
	}
	return ok;
}

static int numa_line(int ok, const char *what, const char *detail)
{
	printf("numa %s: %s (%s)\n", what, ok ? "ok" : "FAIL", detail);
	return ok;
}

static int on_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return !sched_setaffinity(0, sizeof(set), &set) && sched_getcpu() == cpu;
}

/* Reserve NUMA_PAGES 2 MiB pages on @node through its own sysfs file; read back. */
static int numa_reserve(int node)
{
	char path[128], buf[32];
	int fd, n;

	snprintf(path, sizeof(path),
		 "/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/nr_hugepages", node);
	snprintf(buf, sizeof(buf), "%d", NUMA_PAGES);
	if (put(path, buf))
		return 0;
	fd = open(path, O_RDONLY);
	n = fd < 0 ? -1 : (int)read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	printf("numa reserve: node %d has %s", node, n > 0 ? buf : "?\n");
	return atoi(buf) == NUMA_PAGES;
}

/* A region made with @flags (and numa_node @node): every page on @want. */
static int numa_region(const char *what, unsigned flags, int node, int want)
{
	struct hugering_region_opts o = { .size = 2 * (2 << 20), .page_size = 2 << 20,
					  .numa_node = node, .flags = flags };
	struct hugering_region_info ri;
	struct hugering_region *r;
	void *pages[2];
	int ok, ret = hugering_region_alloc(&o, &r);

	if (ret)
		return numa_line(0, what, hugering_last_error());
	hugering_region_info(r, &ri);
	pages[0] = ri.addr;
	pages[1] = (char *)ri.addr + ri.page_size;
	ok = numa_where(what, pages, 2, want) && ri.numa_node == want;
	hugering_region_free(r);
	return ok;
}

/* A ring made with @o (@p's flags): its SQEs and rings on @want, NOPs exact. */
static int numa_ring(const char *what, const struct hugering_init_opts *o, unsigned flags,
		     unsigned sq_cpu, int want)
{
	struct io_uring_params p = { .flags = flags, .sq_thread_cpu = sq_cpu };
	struct hugering_ring_info info;
	struct io_uring ring;
	void *where[2];
	int ok, ret = hugering_queue_init_opts(256, &ring, &p, o);

	if (ret)
		return numa_line(0, what, hugering_last_error());
	hugering_ring_info(&ring, &info);
	where[0] = info.mem;
	where[1] = (char *)info.mem + info.rings_offset;
	ok = info.mode == HUGERING_MODE_NOMMAP_HUGE && numa_where(what, where, 2, want) &&
	     !nops(&ring, 512);
	printf("numa %s: mode=%s info.numa_node=%d recycle=%d\n", what,
	       hugering_mode_name(info.mode), info.numa_node, info.recycle);
	hugering_queue_exit(&ring);
	return ok;
}

/* hugering-diag --json (static, in the initramfs): both nodes and both pools. */
static int numa_diag(void)
{
	static char out[65536];
	size_t got = 0;
	int pfd[2], status = 0, ok = 1;
	char want[96];
	pid_t pid;

	if (pipe(pfd))
		return numa_line(0, "diag", strerror(errno));
	pid = fork();
	if (!pid) {
		dup2(pfd[1], 1);
		execl("/bin/hugering-diag", "hugering-diag", "--json", "--no-trial", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	for (ssize_t n; got < sizeof(out) - 1 &&
			(n = read(pfd[0], out + got, sizeof(out) - 1 - got)) > 0;)
		got += (size_t)n;
	out[got] = '\0';
	close(pfd[0]);
	waitpid(pid, &status, 0);
	printf("numa diag json: %s\n", out);
	/* Matched without blanks: the JSON's layout is not the point. */
	for (size_t i = 0, j = 0;; i++) {
		if (out[i] != ' ' && out[i] != '\n')
			out[j++] = out[i];
		if (!out[i])
			break;
	}
	ok &= numa_line(strstr(out, "\"numa\":{\"nodes\":[0,1]}") != NULL, "diag nodes",
			"numa.nodes = [0, 1]");
	for (int node = 0; node < 2; node++) {
		snprintf(want, sizeof(want), "{\"node\":%d,\"total\":%d,\"free\":%d",
			 node, NUMA_PAGES, NUMA_PAGES);
		ok &= numa_line(strstr(out, want) != NULL, "diag pool", want);
	}
	return ok && WIFEXITED(status) && WEXITSTATUS(status) <= 1;
}

/*
 * Placement on node 1 by name (region, ring with its own region, ring
 * packed in a node-1 arena), by the local-node option from a thread on
 * CPU 1 (and, as a contrast, on CPU 0), by the SQPOLL thread's CPU; all
 * proven by move_pages.  Then the diag's view of both nodes.
 */
static int numa_checks(void)
{
	struct hugering_init_opts io = { .numa_node = 1, .flags = HUGERING_INIT_NUMA_NODE };
	struct hugering_arena_opts ao = { .numa_node = 1, .flags = HUGERING_ARENA_NUMA_NODE };
	struct hugering_arena *a;
	int nodes[4], n = hugering_numa_nodes(nodes, 4), pass = 1;
	char buf[64];

	snprintf(buf, sizeof(buf), "%d node(s): %d %d", n, n > 0 ? nodes[0] : -1,
		 n > 1 ? nodes[1] : -1);
	if (!numa_line(n == 2 && nodes[0] == 0 && nodes[1] == 1, "nodes", buf))
		return 0;
	if (!numa_line(numa_reserve(0) && numa_reserve(1), "reserve per node", "2048kB"))
		return 0;

	pass &= numa_region("region NUMA_NODE 1", HUGERING_REGION_NUMA_NODE, 1, 1);
	pass &= numa_ring("ring NUMA_NODE 1 (own region)", &io, 0, 0, 1);
	if (hugering_arena_create(&ao, &a)) {
		pass &= numa_line(0, "arena NUMA_NODE 1", hugering_last_error());
	} else {
		struct hugering_init_opts po = { .arena = a };

		pass &= numa_ring("ring in arena NUMA_NODE 1", &po, 0, 0, 1);
		hugering_arena_destroy(a);
	}

	io = (struct hugering_init_opts){ .flags = HUGERING_INIT_NODE_LOCAL };
	ao = (struct hugering_arena_opts){ .flags = HUGERING_ARENA_NODE_LOCAL };
	if (!numa_line(on_cpu(1), "on cpu 1", "sched_setaffinity"))
		return 0;
	pass &= numa_region("region NODE_LOCAL on cpu 1", HUGERING_REGION_NODE_LOCAL, 0, 1);
	pass &= numa_ring("ring NODE_LOCAL on cpu 1", &io, 0, 0, 1);
	if (hugering_arena_create(&ao, &a)) {
		pass &= numa_line(0, "arena NODE_LOCAL on cpu 1", hugering_last_error());
	} else {
		struct hugering_init_opts po = { .arena = a };

		pass &= numa_ring("ring in arena NODE_LOCAL made on cpu 1", &po, 0, 0, 1);
		hugering_arena_destroy(a);
	}
	if (!numa_line(on_cpu(0), "on cpu 0", "sched_setaffinity"))
		return 0;
	pass &= numa_region("region NODE_LOCAL on cpu 0", HUGERING_REGION_NODE_LOCAL, 0, 0);
	pass &= numa_ring("ring NODE_LOCAL SQPOLL sq_thread_cpu 1, caller on cpu 0", &io,
			  IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF, 1, 1);
	pass &= numa_diag();
	return pass;
}

int main(void)
{
	struct hugering_region_opts ro = { .size = 2 << 20, .numa_node = -1,
					   .flags = HUGERING_REGION_CONTIG };
	struct hugering_kernel_caps caps;
	struct hugering_region *r;
	char want_class[64], want_mode[64], want_iopoll[64], poll_queues[64], numa[64];
	int pass = 1, ret;

	console();
	mkdir("/proc", 0555);
	mkdir("/sys", 0555);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	cmdline_value("hugering.expect=", want_class, sizeof(want_class));
	cmdline_value("hugering.mode=", want_mode, sizeof(want_mode));
	cmdline_value("hugering.iopoll=", want_iopoll, sizeof(want_iopoll));
	cmdline_value("hugering.poll_queues=", poll_queues, sizeof(poll_queues));
	cmdline_value("hugering.numa=", numa, sizeof(numa));
	if (!strcmp(numa, "1")) {
		/* The other boots cover the rest: keep this one short. */
		pass = numa_checks();
		printf("VERDICT %s\n", pass ? "PASS" : "FAIL");
		power_off(pass);
	}

	hugering_probe_kernel(&caps);
	printf("kernel %s: probe nommap=%s resize=%d (expected %s)\n", caps.release,
	       hugering_nommap_name(caps.nommap), caps.resize, want_class);
	pass &= !strcmp(hugering_nommap_name(caps.nommap), want_class);

	ret = hugering_region_alloc(&ro, &r);
	if (ret) {
		printf("region: FAIL %s\n", strerror(-ret));
		pass = 0;
	} else {
		struct hugering_verify v;

		hugering_mem_verify(hugering_region_addr(r), hugering_region_size(r), &v);
		printf("region: ok %zu bytes on %zu kB pages, contiguous %s (%s)\n",
		       hugering_region_size(r), hugering_region_page_size(r) >> 10,
		       hugering_contig_name(v.contiguous), hugering_proof_name(v.proof));
		pass &= v.contiguous == HUGERING_CONTIG_YES;
		hugering_region_free(r);
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		pass &= run_case((int)i, want_mode);
	pass &= buffer_checks();
	pass &= pool_checks(!strcmp(want_mode, "nommap_huge"));
	if (!strcmp(want_iopoll, "1"))
		pass &= check_iopoll(poll_queues);
	else
		printf("iopoll: not checked (no null_blk module packed)\n");
	printf("VERDICT %s\n", pass ? "PASS" : "FAIL");
	power_off(pass);
	return 0;
}
