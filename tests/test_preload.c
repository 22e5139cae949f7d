/* SPDX-License-Identifier: MIT */
/*
 * libhugering-preload.so in an unmodified liburing program
 * (tests/progs/plain-ring, linked with -luring only): with the preload every
 * ring is a hugering ring (the program itself sees IORING_SETUP_NO_MMAP in
 * ring.flags, and the report line says nommap_huge with no fallback), a ring
 * in the program's own memory passes through, errors are unchanged;
 * HUGERING_MODE=kernel makes kernel rings and the report says so; without
 * the preload nothing is reported.
 *
 * Sanitizer builds: run-tests.sh gives the preload of the same build, so
 * its code runs under ASan+UBSan too.  A sanitized shared object can only be
 * preloaded behind the ASan runtime, so the runtime this test binary uses is
 * put first in LD_PRELOAD.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(preload, .init = th_init, .fini = th_fini, .timeout = 120);

#define OUT_LEN 8192
#define RINGS 4		/* the rings plain-ring makes through io_uring_queue_init* */

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

static const char *preload_lib(void)
{
	return th_env_or("HUGERING_PRELOAD_LIB", "build/libhugering-preload.so");
}

static const char *plain_ring(void)
{
	return th_env_or("HUGERING_PLAIN_RING", "build/tests/progs/plain-ring");
}

/* LD_PRELOAD's value: the preload, behind the ASan runtime in sanitizer builds. */
static void preload_value(char *buf, size_t len)
{
	const char *rt = "";
#ifdef SANITIZED
	Dl_info info;
	void *sym = dlsym(RTLD_DEFAULT, "__asan_init");

	cr_assert(sym && dladdr(sym, &info) && info.dli_fname, "ASan runtime not found");
	rt = info.dli_fname;
#endif
	snprintf(buf, len, "%s%s%s", rt, *rt ? ":" : "", preload_lib());
}

/*
 * Run plain-ring with @env (extra assignments, may be ""), its stderr
 * merged into @out; with the preload when @preload.  Returns the exit code.
 */
static int run_plain(bool preload, const char *env, char *out)
{
	char cmd[4096], pre[2048] = "";

	if (preload)
		preload_value(pre, sizeof(pre));
	snprintf(cmd, sizeof(cmd), "%s%s%s %s '%s' 2>&1", preload ? "LD_PRELOAD='" : "",
		 pre, preload ? "'" : "", env, plain_ring());
	return th_run(cmd, out, OUT_LEN);
}

/* Lines of @out containing @needle. */
static int count_lines(const char *out, const char *needle)
{
	const char *l = out;
	int n = 0;

	while (*l) {
		const char *end = strchr(l, '\n');
		const char *hit = strstr(l, needle);

		if (hit && (!end || hit < end))
			n++;
		if (!end)
			break;
		l = end + 1;
	}
	return n;
}

/* A fresh report file path nobody else uses. */
static void report_path(char *buf, size_t len)
{
	snprintf(buf, len, "/tmp/hugering-preload-report.%d", (int)getpid());
	unlink(buf);
}

/* What plain-ring prints whatever makes its rings. */
static void assert_program_ok(int rc, const char *out)
{
	cr_assert_eq(rc, 0, "plain-ring failed: %s", out);
	cr_assert(strstr(out, "plain-ring: all NOPs completed"), "%s", out);
	cr_assert_eq(count_lines(out, " ok"), RINGS + 1, "%s", out);
	cr_assert(strstr(out, "ring mem: nommap=1 own=1 nops=16 ok"), "own memory ring: %s", out);
	/* liburing's own errors, unchanged */
	cr_assert(strstr(out, "init(0) = -22\n"), "%s", out);
	cr_assert(strstr(out, "init_params(65536) = -22\n"), "%s", out);
}

/* Every ring in hugepages, one report line saying so, no fallback. */
Test(preload, every_ring_nommap_huge)
{
	char out[OUT_LEN], rep[OUT_LEN], path[128], env[256];
	int rc;

	th_need_pool(SZ_2M, 4);
	report_path(path, sizeof(path));
	snprintf(env, sizeof(env), "HUGERING_MODE=auto HUGERING_PRELOAD_REPORT='%s'", path);
	rc = run_plain(true, env, out);
	th_slurp(path, rep, sizeof(rep));
	unlink(path);
	assert_program_ok(rc, out);
	cr_assert_eq(count_lines(out, "nommap=1"), RINGS + 1, "rings not in user memory: %s", out);
	cr_assert_eq(count_lines(rep, "hugering-preload: "), 1, "report: '%s'", rep);
	cr_assert_eq(strchr(rep, '\n'), rep + strlen(rep) - 1, "report not one line: '%s'", rep);
	snprintf(env, sizeof(env), " prog=%s ", strrchr(plain_ring(), '/') ?
		 strrchr(plain_ring(), '/') + 1 : plain_ring());
	cr_assert(strstr(rep, env), "not '%s': %s", env, rep);
	cr_assert(strstr(rep, " nommap_huge=4 nommap_base=0 kernel=0 fallbacks=0 errors=2 "
			 "passthrough_exits=1\n"), "%s", rep);
	cr_assert_null(strstr(rep, "reasons="), "%s", rep);
}

/* HUGERING_MODE=kernel: kernel-mapped rings, by policy (not fallbacks). */
Test(preload, kernel_mode_reported)
{
	char out[OUT_LEN];
	int rc = run_plain(true, "HUGERING_MODE=kernel HUGERING_PRELOAD_REPORT=1", out);

	assert_program_ok(rc, out);
	cr_assert_eq(count_lines(out, "nommap=0"), RINGS, "%s", out);
	cr_assert_eq(count_lines(out, "hugering-preload: "), 1, "%s", out);
	cr_assert(strstr(out, " nommap_huge=0 nommap_base=0 kernel=4 fallbacks=0 errors=2 "
			 "passthrough_exits=1\n"), "%s", out);
}

/* Without the preload: liburing's own rings, and no report anywhere. */
Test(preload, absent_reports_nothing)
{
	char out[OUT_LEN], path[128], env[256];
	int rc;

	report_path(path, sizeof(path));
	snprintf(env, sizeof(env), "HUGERING_PRELOAD_REPORT='%s'", path);
	rc = run_plain(false, env, out);
	assert_program_ok(rc, out);
	cr_assert_eq(count_lines(out, "nommap=0"), RINGS, "%s", out);
	cr_assert_neq(access(path, F_OK), 0, "a report file appeared without the preload");

	rc = run_plain(false, "HUGERING_PRELOAD_REPORT=1", out);
	assert_program_ok(rc, out);
	cr_assert_null(strstr(out, "hugering-preload"), "%s", out);
}
