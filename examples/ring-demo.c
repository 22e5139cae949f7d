/* SPDX-License-Identifier: MIT */
/*
 * An io_uring program moved to hugering: two calls change
 * (io_uring_queue_init_params -> hugering_queue_init_params,
 *  io_uring_queue_exit -> hugering_queue_exit); everything else is liburing.
 *
 *   ring-demo [ENTRIES [CQ_ENTRIES]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hugering.h>

static int run_nops(struct io_uring *ring, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

		if (!sqe)
			return -1;
		io_uring_prep_nop(sqe);
		sqe->user_data = i;
	}
	if (io_uring_submit_and_wait(ring, n) < 0)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_cqe *cqe;

		if (io_uring_wait_cqe(ring, &cqe) || cqe->user_data != i || cqe->res)
			return -1;
		io_uring_cqe_seen(ring, cqe);
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned entries = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 256;
	struct io_uring_params p;
	struct hugering_kernel_caps caps;
	struct hugering_ring_info info;
	struct io_uring ring;
	int ret;

	memset(&p, 0, sizeof(p));
	if (argc > 2) {
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = (unsigned)strtoul(argv[2], NULL, 0);
	}
	hugering_probe_kernel(&caps);
	printf("kernel %s: NO_MMAP %s, resize %s, PFNs %s\n", caps.release,
	       hugering_nommap_name(caps.nommap), caps.resize ? "yes" : "no",
	       caps.pfn_visible ? "visible" : "hidden");

	/* was: io_uring_queue_init_params(entries, &ring, &p) */
	ret = hugering_queue_init_params(entries, &ring, &p);
	if (ret < 0) {
		fprintf(stderr, "ring-demo: creating a %u-entry ring failed: %s: %s\n",
			entries, strerror(-ret), hugering_last_error());
		return 1;
	}
	hugering_ring_info(&ring, &info);
	printf("ring: %u/%u entries, mode %s, %zu bytes on %zu kB pages, contiguous %s (%s)\n",
	       info.sq_entries, info.cq_entries, hugering_mode_name(info.mode),
	       info.mem_bytes, info.page_size >> 10, hugering_contig_name(info.contiguous),
	       hugering_proof_name(info.proof));
	if (info.fallback_errno || info.fallback_reason[0])
		printf("fallback: %s (%s)\n", info.fallback_reason, strerror(info.fallback_errno));
	ret = run_nops(&ring, info.sq_entries);
	printf("%u NOPs: %s\n", info.sq_entries, ret ? "FAILED" : "ok");
	/* was: io_uring_queue_exit(&ring) */
	hugering_queue_exit(&ring);
	return ret ? 1 : 0;
}
