/* SPDX-License-Identifier: MIT */
/*
 * hugering-bench --buffers (issue 13): buffer memory in 4 KiB pages against
 * hugepages, side by side in one run.  Plain data: results cross a pipe
 * from the child processes that measure them.
 */
#ifndef HUGERING_BENCH_BUFFERS_H
#define HUGERING_BENCH_BUFFERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define BUF_MAX_SIZES 4
#define BUF_NIO 3		/* READ_FIXED I/O sizes: 4 KiB, 64 KiB, 1 MiB */
#define BUF_MAX_ROUNDS 32

enum buf_pages { BP_4K, BP_2M, BP_1G, BP_N };	/* registration: memory of the buffers */
enum buf_side { BS_4K, BS_HUGERING, BS_N };	/* data path and receive */

/* Registering @bytes in 1 MiB buffers on pages of one kind, and cloning them. */
struct buf_reg {
	size_t bytes;
	unsigned entries;
	double reg_ms, unreg_ms;	/* medians over rounds; < 0: not measured */
	double x_4k;			/* median over rounds of 4 KiB's time / this one's */
	long long pin_growth;		/* VmPin growth of a registration, bytes; -1 unknown */
	long long predicted;		/* hugering_register_charge's charge_bytes; -1 unknown */
	bool charge_ok;			/* every round's growth == predicted */
	double clone_ms, again_ms;	/* into a second ring: clone / register again */
	long long clone_pin, again_pin;	/* their VmPin growth */
	int cloned;			/* hugering_reg_charge.cloned of the clone */
	char skip[320];			/* non-empty: not run here, and why */
	char error[320];		/* non-empty: failed */
};

/* READ_FIXED with O_DIRECT from tmpfs, one I/O size, one buffer memory. */
struct buf_io {
	unsigned io_bytes;
	double gbps, iops;		/* medians over slices */
	double gbps_min, gbps_max;	/* the slices' spread */
	double x;			/* hugering: median over rounds of hugering / 4k; else -1 */
	long long ops;			/* reads completed and verified, all slices */
	size_t page_size;		/* of the buffers */
	char skip[320];
	char error[320];
};

/* Multishot receive over loopback TCP into a provided buffer ring. */
struct buf_recv {
	double gbps;			/* median over slices */
	double gbps_min, gbps_max;	/* the slices' spread */
	double x;			/* hugering: median over rounds of hugering / liburing */
	long long bytes;		/* received and verified, all slices */
	long long cqes;
	int ring_mode;			/* hugering: enum hugering_mode; 0: liburing's */
	int br_mode;			/* hugering: enum hugering_buf_ring_mode; 0: liburing's */
	size_t page_size;		/* of the buffers */
	char skip[320];
	char error[320];
};

struct buf_opts {
	bool quick;
	size_t sizes[BUF_MAX_SIZES];	/* registration sizes */
	int nsizes;
	size_t recv_bytes;		/* per receive slice */
};

struct buf_results {
	bool ran;
	int reg_rounds, io_rounds, recv_rounds;
	unsigned qd;
	double io_slice_s;
	size_t file_bytes, recv_bytes, recv_buf_bytes;
	unsigned recv_bufs;
	int nsizes;
	struct buf_reg reg[BUF_MAX_SIZES][BP_N];
	struct buf_io io[BUF_NIO][BS_N];
	struct buf_recv recv[BS_N];
};

/* 0, or -1 after one line on stderr: "64M,256M,1G" into @o. */
int buf_parse_sizes(const char *list, struct buf_opts *o);
void bench_buffers(const struct buf_opts *o, struct buf_results *r);
void buffers_table(FILE *f, const struct buf_results *r);
void buffers_json(FILE *f, const struct buf_results *r);
void buffers_csv(FILE *f, const struct buf_results *r);

#endif
