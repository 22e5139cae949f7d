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
	FILE *f;
	long v = -1;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/io_poll", major(dev), minor(dev));
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
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

/* A fake sysfs tree (HUGERING_SYSROOT) decides when it says io_poll = 1 or 0. */
static void fake_tree(const char *root, dev_t dev, bool partition, int io_poll)
{
	char path[512], cmd[1700];
	FILE *f;

	snprintf(path, sizeof(path), "%s/sys/dev/block/%u:%u", root, major(dev), minor(dev));
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s' '%s/../queue' '%s/queue'", path, path, path);
	cr_assert_eq(system(cmd), 0);
	strcat(path, "/uevent");
	f = fopen(path, "w");
	fprintf(f, "MAJOR=%u\nDEVNAME=fakedisk\n", major(dev));
	fclose(f);
	path[strlen(path) - 7] = '\0';
	if (partition) {
		strcat(path, "/partition");
		f = fopen(path, "w");
		fprintf(f, "1\n");
		fclose(f);
		path[strlen(path) - 10] = '\0';
		strcat(path, "/../queue/io_poll");
	} else {
		strcat(path, "/queue/io_poll");
	}
	f = fopen(path, "w");
	fprintf(f, "%d\n", io_poll);
	fclose(f);
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
Test(iopoll, fake_sysfs_partition)  { fake(true); }
