/* SPDX-License-Identifier: MIT */
/* hugering_iopoll_probe on this machine's disk and on fake sysfs trees. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(iopoll, .init = th_init, .fini = th_fini, .timeout = 60);

static char file[] = "/var/tmp/hugering-iopoll-XXXXXX";

/* A real file with data on the root file system. */
static int data_file(int flags)
{
	static char block[8192];
	int fd = mkstemp(file);

	cr_assert_geq(fd, 0);
	memset(block, 0x5a, sizeof(block));
	cr_assert_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
	close(fd);
	fd = open(file, O_RDONLY | flags);
	unlink(file);
	cr_assert_geq(fd, 0, "open %s: %s", file, strerror(errno));
	return fd;
}

static long own_io_poll(dev_t dev)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/io_poll", major(dev), minor(dev));
	return th_read_long(path);
}

/* This machine: a virtio disk without poll queues. */
Test(iopoll, real_disk_without_poll_queues_says_no)
{
	struct hugering_iopoll_verdict v;
	struct stat st;
	int fd = data_file(O_DIRECT);

	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(hugering_iopoll_probe(fd, &v), 0);
	if (own_io_poll(st.st_dev) == 0) {
		cr_assert_eq(v.supported, 0);
		cr_assert(strstr(v.reason, "io_poll = 0"), "%s", v.reason);
	} else {
		cr_assert_neq(v.reason[0], '\0');
	}
	close(fd);
}

Test(iopoll, needs_o_direct_and_a_file)
{
	struct hugering_iopoll_verdict v;
	int fd = data_file(0), p[2];

	cr_assert_eq(hugering_iopoll_probe(fd, &v), 0);
	cr_assert_eq(v.supported, 0);
	cr_assert(strstr(v.reason, "O_DIRECT"), "%s", v.reason);
	close(fd);
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(hugering_iopoll_probe(p[0], &v), 0);
	cr_assert_eq(v.supported, 0);
	close(p[0]);
	close(p[1]);
	cr_assert_eq(hugering_iopoll_probe(-1, &v), -EBADF);
	cr_assert_eq(hugering_iopoll_probe(0, NULL), -EINVAL);
}

static void put(const char *root, const char *rel, const char *text)
{
	char path[512], cmd[1200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", path);
	cr_assert_eq(system(cmd), 0);
	f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	fclose(f);
}

/* A fake sysfs tree (HUGERING_SYSROOT) decides when it says io_poll = 1 or 0. */
static void fake_tree(const char *root, dev_t dev, bool partition, int io_poll)
{
	char dev_dir[64], rel[128], uevent[64];

	snprintf(dev_dir, sizeof(dev_dir), "sys/dev/block/%u:%u", major(dev), minor(dev));
	snprintf(rel, sizeof(rel), "%s/uevent", dev_dir);
	snprintf(uevent, sizeof(uevent), "MAJOR=%u\nDEVNAME=fakedisk\n", major(dev));
	put(root, rel, uevent);
	if (partition) {
		snprintf(rel, sizeof(rel), "%s/partition", dev_dir);
		put(root, rel, "1\n");
	}
	/* a partition's queue is its disk's: the directory above it */
	snprintf(rel, sizeof(rel), partition ? "%s/../queue/io_poll" : "%s/queue/io_poll", dev_dir);
	put(root, rel, io_poll ? "1\n" : "0\n");
}

static void fake(bool partition)
{
	char root[] = "/tmp/hugering-sysroot-XXXXXX", cmd[256];
	int rc;
	struct hugering_iopoll_verdict v;
	struct stat st;
	int fd = data_file(O_DIRECT);

	cr_assert_not_null(mkdtemp(root));
	cr_assert_eq(fstat(fd, &st), 0);
	setenv("HUGERING_SYSROOT", root, 1);
	fake_tree(root, st.st_dev, partition, 1);
	cr_assert_eq(hugering_iopoll_probe(fd, &v), 0);
	cr_assert_eq(v.supported, 1, "%s", v.reason);
	cr_assert(strstr(v.reason, "fakedisk"), "%s", v.reason);
	fake_tree(root, st.st_dev, partition, 0);
	cr_assert_eq(hugering_iopoll_probe(fd, &v), 0);
	cr_assert_eq(v.supported, 0, "%s", v.reason);
	unsetenv("HUGERING_SYSROOT");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	rc = system(cmd);
	cr_assert_eq(rc, 0);
	close(fd);
}

Test(iopoll, fake_sysfs_disk)       { fake(false); }

/*
 * A device-mapper name as long as the kernel allows (127 characters): the
 * verdict names it whole, and keeps it valid after later verdicts.
 */
Test(iopoll, long_dm_name_named_whole)
{
	char root[] = "/tmp/hugering-sysroot-XXXXXX", rel[128], name[128], cmd[256];
	struct hugering_iopoll_verdict v, w;
	struct stat st;
	int fd = data_file(O_DIRECT);

	cr_assert_not_null(mkdtemp(root));
	cr_assert_eq(fstat(fd, &st), 0);
	setenv("HUGERING_SYSROOT", root, 1);
	fake_tree(root, st.st_dev, false, 0);
	memset(name, 'v', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	name[sizeof(name) - 2] = 'Z';	/* the end is what a cut loses */
	snprintf(rel, sizeof(rel), "sys/dev/block/%u:%u/dm/name", major(st.st_dev),
		 minor(st.st_dev));
	put(root, rel, name);
	cr_assert_eq(hugering_iopoll_probe(fd, &v), 0);
	cr_assert_eq(v.supported, 0, "%s", v.reason);
	cr_assert(strstr(v.reason, name), "%s", v.reason);
	cr_assert_gt(strlen(v.reason), 128, "%s", v.reason);
	/* Another verdict does not take the first one's text away. */
	fake_tree(root, st.st_dev, false, 1);
	cr_assert_eq(hugering_iopoll_probe(fd, &w), 0);
	cr_assert_eq(w.supported, 1, "%s", w.reason);
	cr_assert(strstr(v.reason, name) && strstr(v.reason, "no poll queues"), "%s", v.reason);
	unsetenv("HUGERING_SYSROOT");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	cr_assert_eq(system(cmd), 0);
	close(fd);
}
Test(iopoll, fake_sysfs_partition)  { fake(true); }

/*
 * An LVM volume (dm-0, "vg-data") on a partition of a disk without poll
 * queues and a whole disk with them: the verdict names the member that
 * cannot poll.  Members are symlinks into the device tree, as in sysfs.
 */
Test(iopoll, fake_sysfs_stacked_dm_names_the_member)
{
	char root[] = "/tmp/hugering-sysroot-XXXXXX", dm[64], cmd[1600];
	struct hugering_iopoll_verdict v;
	struct stat st;
	int fd = data_file(O_DIRECT);

	cr_assert_not_null(mkdtemp(root));
	cr_assert_eq(fstat(fd, &st), 0);
	snprintf(dm, sizeof(dm), "sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
	put(root, "sys/devices/fakea/queue/io_poll", "0\n");
	put(root, "sys/devices/fakea/fakea2/partition", "2\n");
	put(root, "sys/devices/fakea/fakea2/uevent", "DEVNAME=fakea2\n");
	put(root, "sys/devices/fakeb/queue/io_poll", "1\n");
	snprintf(cmd, sizeof(cmd), "%s/uevent", dm);
	put(root, cmd, "DEVNAME=dm-0\n");
	snprintf(cmd, sizeof(cmd), "%s/dm/name", dm);
	put(root, cmd, "vg-data\n");
	snprintf(cmd, sizeof(cmd), "%s/queue/io_poll", dm);
	put(root, cmd, "0\n");
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/%s/slaves' && ln -s '%s/sys/devices/fakeb' "
		 "'%s/%s/slaves/fakeb' && ln -s '%s/sys/devices/fakea/fakea2' '%s/%s/slaves/fakea2'",
		 root, dm, root, root, dm, root, root, dm);
	cr_assert_eq(system(cmd), 0);
	setenv("HUGERING_SYSROOT", root, 1);
	cr_assert_eq(hugering_iopoll_probe(fd, &v), 0);
	cr_assert_eq(v.supported, 0, "%s", v.reason);
	cr_assert(strstr(v.reason, "dm-0 (vg-data)"), "%s", v.reason);
	cr_assert(strstr(v.reason, "member fakea2 has no poll queues"), "%s", v.reason);
	/* Now the volume also sits on dm-1 (LUKS, say) over a disk without poll queues. */
	put(root, "sys/devices/fakea/queue/io_poll", "1\n");
	put(root, "sys/devices/virtual/dm-1/queue/io_poll", "0\n");
	put(root, "sys/devices/fakec/queue/io_poll", "0\n");
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/sys/devices/virtual/dm-1/slaves' && ln -s "
		 "'%s/sys/devices/fakec' '%s/sys/devices/virtual/dm-1/slaves/fakec' && ln -s "
		 "'%s/sys/devices/virtual/dm-1' '%s/%s/slaves/dm-1'", root, root, root, root, root, dm);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(hugering_iopoll_probe(fd, &v), 0);
	cr_assert_eq(v.supported, 0, "%s", v.reason);
	cr_assert(strstr(v.reason, "member fakec has no poll queues"), "the disk under dm-1: %s",
		  v.reason);
	snprintf(cmd, sizeof(cmd), "rm '%s/%s/slaves/dm-1'", root, dm);
	cr_assert_eq(system(cmd), 0);
	/* Every member polls but the target cannot: the device's own answer. */
	cr_assert_eq(hugering_iopoll_probe(fd, &v), 0);
	cr_assert_eq(v.supported, 0, "%s", v.reason);
	cr_assert(strstr(v.reason, "dm-0 (vg-data) has no poll queues"), "%s", v.reason);
	snprintf(cmd, sizeof(cmd), "%s/queue/io_poll", dm);
	put(root, cmd, "1\n");
	cr_assert_eq(hugering_iopoll_probe(fd, &v), 0);
	cr_assert_eq(v.supported, 1, "%s", v.reason);
	unsetenv("HUGERING_SYSROOT");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	cr_assert_eq(system(cmd), 0);
	close(fd);
}

static int read_once(struct io_uring *ring, int fd, void *buf, int *res)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	int ret;

	io_uring_prep_read(sqe, fd, buf, 4096, 0);
	sqe->user_data = 7;
	ret = io_uring_submit_and_wait(ring, 1);
	if (ret != 1)
		return ret < 0 ? ret : -EIO;
	ret = io_uring_wait_cqe(ring, &cqe);
	if (ret)
		return ret;
	*res = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return 0;
}

/* IOPOLL for a file that cannot poll: a normal ring, and ring_info says why. */
Test(iopoll, factory_degrades_and_reports)
{
	struct io_uring_params p = { .flags = IORING_SETUP_IOPOLL };
	struct hugering_init_opts o = { .numa_node = -1 };
	struct hugering_ring_info info;
	struct io_uring ring;
	struct hugering_iopoll_verdict v;
	int fd = data_file(O_DIRECT), res = 0;
	void *buf = NULL;

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(hugering_iopoll_probe(fd, &v), 0);
	cr_assert_eq(v.supported, 0, "this machine's disk has no poll queues: %s", v.reason);
	o.iopoll_fds = &fd;
	o.n_iopoll_fds = 1;
	cr_assert_eq(hugering_queue_init_opts(8, &ring, &p, &o), 0, "%s", hugering_last_error());
	cr_assert_not(p.flags & IORING_SETUP_IOPOLL);
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	cr_assert_eq(info.iopoll_degraded, 1);
	cr_assert(strstr(info.iopoll_reason, v.reason), "%s", info.iopoll_reason);
	cr_assert_eq(posix_memalign(&buf, 4096, 4096), 0);
	cr_assert_eq(read_once(&ring, fd, buf, &res), 0);
	cr_assert_eq(res, 4096, "read on the degraded ring: %d", res);
	cr_assert_eq(((unsigned char *)buf)[0], 0x5a);
	hugering_queue_exit(&ring);

	o.flags = HUGERING_INIT_IOPOLL_STRICT;
	p = (struct io_uring_params){ .flags = IORING_SETUP_IOPOLL };
	cr_assert_eq(hugering_queue_init_opts(8, &ring, &p, &o), -EOPNOTSUPP);
	cr_assert(strstr(hugering_last_error(), "IOPOLL"), "%s", hugering_last_error());
	free(buf);
	close(fd);
}

/*
 * An IOPOLL ring used anyway: the read completes -EOPNOTSUPP (6.11+); the
 * helper names the file and why, and the request is redone on a plain ring.
 */
Test(iopoll, eopnotsupp_explained_request_not_lost)
{
	struct io_uring_params p = { .flags = IORING_SETUP_IOPOLL };
	struct io_uring poll_ring, plain;
	struct io_uring_cqe cqe = { 0 };
	int fd = data_file(O_DIRECT), res = 0;
	char why[256], small[8];
	void *buf = NULL;

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(posix_memalign(&buf, 4096, 4096), 0);
	cr_assert_eq(hugering_queue_init_params(8, &poll_ring, &p), 0);
	cr_assert_eq(read_once(&poll_ring, fd, buf, &res), 0);
	hugering_queue_exit(&poll_ring);
	cr_assert_eq(res, -EOPNOTSUPP, "polled read on a disk without poll queues: %d", res);
	cqe.res = res;
	cr_assert_eq(hugering_iopoll_explain(&cqe, fd, why, sizeof(why)), 1);
	cr_assert(strstr(why, "cannot do polled I/O"), "%s", why);
	/* Too small a buffer: no cut reason, the size it needs instead. */
	cr_assert_eq(hugering_iopoll_explain(&cqe, fd, small, sizeof(small)), -ERANGE);
	cr_assert_str_empty(small);
	cr_assert(strstr(hugering_last_error(), "bytes"), "%s", hugering_last_error());
	cr_assert_eq(hugering_queue_init(8, &plain, 0), 0);
	cr_assert_eq(read_once(&plain, fd, buf, &res), 0);
	cr_assert_eq(res, 4096);
	hugering_queue_exit(&plain);
	cqe.res = 0;
	cr_assert_eq(hugering_iopoll_explain(&cqe, fd, why, sizeof(why)), 0);
	cr_assert_eq(hugering_iopoll_explain(NULL, fd, why, sizeof(why)), -EINVAL);
	free(buf);
	close(fd);
}
