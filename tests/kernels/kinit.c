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
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hugering.h>

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

int main(void)
{
	struct hugering_region_opts ro = { .size = 2 << 20, .numa_node = -1,
					   .flags = HUGERING_REGION_CONTIG };
	struct hugering_kernel_caps caps;
	struct hugering_region *r;
	char want_class[64], want_mode[64];
	int pass = 1, ret;

	console();
	mkdir("/proc", 0555);
	mkdir("/sys", 0555);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	cmdline_value("hugering.expect=", want_class, sizeof(want_class));
	cmdline_value("hugering.mode=", want_mode, sizeof(want_mode));

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
	printf("VERDICT %s\n", pass ? "PASS" : "FAIL");
	power_off(pass);
	return 0;
}
