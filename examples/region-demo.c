/* SPDX-License-Identifier: MIT */
/*
 * Allocate a physically contiguous hugepage region and print what proves it.
 *
 *   region-demo [SIZE [PAGE_SIZE]]     sizes accept K, M, G suffixes
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hugering.h>

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);

	switch (*end) {
	case 'k': case 'K': v <<= 10; break;
	case 'm': case 'M': v <<= 20; break;
	case 'g': case 'G': v <<= 30; break;
	case '\0': break;
	default: return 0;
	}
	return (size_t)v;
}

static void print_pools(void)
{
	size_t sizes[HUGERING_MAX_PAGE_SIZES];
	int n = hugering_page_sizes(sizes, HUGERING_MAX_PAGE_SIZES);

	for (int i = 0; i < n; i++) {
		struct hugering_pool p;

		if (hugering_pool_get(sizes[i], -1, &p) == 0)
			printf("pool %7zu kB%s: total %ld free %ld reserved %ld usable %ld\n",
			       p.page_size >> 10, p.is_default ? " (default)" : "",
			       p.total, p.free, p.reserved, p.usable);
	}
}

/*
 * What to do about a failed allocation.  A pool with enough free pages that
 * still failed has them scattered: reserving more would not help.
 */
static const char *fix_for(const struct hugering_region_opts *o, int err)
{
	size_t ps = o->page_size ? o->page_size : hugering_default_page_size();
	struct hugering_pool p;

	if (err == -EPERM)
		return "run as root (pagemap PFNs prove contiguity across hugepages) or use "
		       "a page size that holds the region";
	if (err != -ENOMEM)
		return "check the size and page size";
	if (ps && !hugering_pool_get(ps, -1, &p) &&
	    (size_t)p.usable * ps >= o->size)
		return "the free hugepages are not physically adjacent: free the pool, "
		       "compact memory and reserve again (sudo hugering-diag explains; e.g. "
		       "echo 1 | sudo tee /proc/sys/vm/compact_memory before raising "
		       "nr_hugepages)";
	return "reserve hugepages: echo 64 | sudo tee "
	       "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
}

int main(int argc, char **argv)
{
	struct hugering_region_opts o = {
		.size = 6 << 20,
		.flags = HUGERING_REGION_CONTIG,
	};
	struct hugering_region *r;
	struct hugering_region_info ri;
	struct hugering_verify v;
	int ret;

	if (argc > 1)
		o.size = parse_size(argv[1]);
	if (argc > 2)
		o.page_size = parse_size(argv[2]);
	if ((argc > 1 && !o.size) || (argc > 2 && !o.page_size) || argc > 3) {
		fprintf(stderr, "usage: %s [SIZE [PAGE_SIZE]]  (e.g. 6M 2M)\n", argv[0]);
		return 2;
	}
	print_pools();
	printf("pfn visible: %s\n", hugering_pfn_visible() > 0 ? "yes" : "no (run as root for pagemap proof)");

	ret = hugering_region_alloc(&o, &r);
	if (ret) {
		fprintf(stderr, "region-demo: allocating a contiguous %zu-byte region failed: "
			"%s (%s); %s\n", o.size, hugering_last_error(), strerror(-ret),
			fix_for(&o, ret));
		return 1;
	}
	hugering_region_info(r, &ri);
	ret = hugering_mem_verify(hugering_region_addr(r), hugering_region_size(r), &v);
	if (ret) {
		fprintf(stderr, "region-demo: verifying the region failed: %s\n", strerror(-ret));
		hugering_region_free(r);
		return 1;
	}
	printf("region: %zu bytes at %p on %zu kB %s pages (%u hugepages), node %d\n",
	       ri.size, ri.addr, ri.page_size >> 10, hugering_backing_name(ri.backing),
	       ri.hugepages, ri.numa_node);
	printf("verify: contiguous %s, proof %s, runs %u, phys 0x%llx\n",
	       hugering_contig_name(v.contiguous), hugering_proof_name(v.proof), v.runs,
	       (unsigned long long)v.phys_addr);
	hugering_region_free(r);
	return 0;
}
