#!/usr/bin/env python3
"""Write the seed corpora of tests/fuzz/corpus/ (committed; rerun after
changing a target's input format).  fuzz_sysfs seeds are the twonode tree
and the hostile trees of tests/test_hostile.c (issue 16), in the target's
NUL-separated layout (see files[] in fuzz_sysfs.c)."""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))
tree = os.path.join(here, '..', 'data', 'sysroot', 'twonode')


def twonode(rel):
    with open(os.path.join(tree, rel.lstrip('/')), 'rb') as f:
        return f.read()


HP2M = '/sys/kernel/mm/hugepages/hugepages-2048kB'
N0 = '/sys/devices/system/node/node0/hugepages/hugepages-2048kB'
N1 = '/sys/devices/system/node/node1/hugepages/hugepages-2048kB'
BASE = [
    twonode('/sys/devices/system/node/online'),
    twonode(HP2M + '/nr_hugepages'),
    twonode(HP2M + '/free_hugepages'),
    twonode(HP2M + '/resv_hugepages'),
    twonode(HP2M + '/surplus_hugepages'),
    twonode(HP2M + '/nr_overcommit_hugepages'),
    twonode('/proc/meminfo'),
    twonode('/proc/self/mounts') + b'cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n',
    twonode('/proc/self/limits'),
    twonode('/proc/buddyinfo'),
    b'0::/app\n',
    b'max\n',
    b'4194304\n',
    twonode('/proc/sys/kernel/osrelease'),
    twonode('/sys/kernel/mm/transparent_hugepage/enabled'),
    twonode(N0 + '/free_hugepages'),
    twonode(N1 + '/free_hugepages'),
    twonode('/proc/sys/kernel/version'),
    twonode('/proc/self/status'),
    b'67584\n',
    twonode('/proc/sys/net/core/busy_poll'),
    b'hugepages-1048576kB',
    b'nvme0n1',
    twonode('/sys/module/nvme/parameters/poll_queues'),
    twonode(N0 + '/nr_hugepages'),
    twonode(N0 + '/surplus_hugepages'),
    twonode(N1 + '/nr_hugepages'),
    twonode(N1 + '/surplus_hugepages'),
]
for i, p in enumerate(BASE):
    assert b'\0' not in p, i


def sysfs(**over):
    pieces = list(BASE)
    for k, v in over.items():
        pieces[int(k[1:])] = v
    return b'\0'.join(pieces)


BUDDY = b'Node 0, zone   Normal    100     50     20     10      5      3      2      1      4'
SYSFS = {
    'twonode': sysfs(),
    'node-range-huge': sysfs(f0=b'0-9223372036854775807\n'),
    'node-range-long': sysfs(f0=b'0-2000000000\n'),
    'node-list-garbage': sysfs(f0=b'0,,a\n'),
    'node-list-int-max': sysfs(f0=b'2147483647\n'),
    'node-list-unsorted': sysfs(f0=b'0-1,4,6-7,3\n'),
    'blank-osrelease': sysfs(f13=b'\n'),
    'empty-osrelease': sysfs(f13=b''),
    'buddy-negative': sysfs(f9=BUDDY + b'      2     -5\n'),
    'buddy-huge': sysfs(f9=BUDDY + b'      2 9223372036854775807\n'),
    'buddy-sum': sysfs(f9=BUDDY + b' 4611686018427387904 2305843009213693952\n'),
    'one-kb': sysfs(f21=b'hugepages-1kB'),
    'zero-kb': sysfs(f21=b'hugepages-0kB'),
    'huge-kb': sysfs(f21=b'hugepages-99999999999999999999kB'),
    'counter-long-line': sysfs(f2=b'9223372036854775807\n', f3=b'9' * 5000),
    'counter-zeros-line': sysfs(f2=b'5\n', f3=b'0' * 5000 + b'12'),
    'counter-negative': sysfs(f3=b'-1\n', f4=b'-9223372036854775808\n'),
    'non-utf8': sysfs(
        f7=b'proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n'
           b'hugetlbfs /dev/huge\xff\xfe hugetlbfs rw,relatime,pagesize=2M 0 0\n'
           b'hugetlbfs /mnt/h\xc3\xa9 hugetlbfs rw,relatime,pagesize=2M 0 0\n'
           b'hugetlbfs /mnt/x\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80 hugetlbfs rw,pagesize=1G 0 0\n',
        f13=b'6.12.48\xff-amd64\n', f14=b'always [m\xe9vise] never\n',
        f22=b'nvme-a-very-long-block-name-xx\xc3\xa9'),
    'limits-garbage': sysfs(f8=b'Max locked memory\n'),
    'limits-unlimited': sysfs(f8=b'Max locked memory unlimited unlimited bytes\n'),
    'cgroup-v1': sysfs(f7=BASE[7] + b'cgroup /sys/fs/cgroup/hugetlb cgroup rw,hugetlb 0 0\n',
                       f10=b'5:hugetlb:/app\n0::/\n'),
    'mount-pagesize-huge': sysfs(f7=b'h /h hugetlbfs pagesize=99999999999999999999G 0 0\n'),
    'thp-unbracketed': sysfs(f14=b'always [madvise never\n'),
    'meminfo-no-size': sysfs(f6=b'MemTotal: 1 kB\nHugepagesize: 0 kB\n'),
    'truncated': b'0-1\n\x001\n',
    'empty': b'',
}


def w32(*vals):
    return b''.join(struct.pack('<I', v & 0xffffffff) for v in vals)


# fuzz_layout: entries, flags, cq_entries (little endian).
CQSIZE, CLAMP, CQE32, SQE128, NO_SQARRAY = 1 << 3, 1 << 4, 1 << 11, 1 << 10, 1 << 16
LAYOUT = {
    'small': w32(8, 0, 0),
    'cqsize': w32(256, CQSIZE, 512),
    'big-nosqarray': w32(32768, NO_SQARRAY, 0),
    'cqe32-sqe128': w32(32768, CQE32 | SQE128, 0),
    'clamp-pitfall': w32(32769, CQSIZE | CLAMP, 16),
    'clamp-max': w32(0xffffffff, CQSIZE | CLAMP, 0xffffffff),
    'zero': w32(0, 0, 0),
    'unknown-flag': w32(8, 1 << 19, 0),
    'cq-zero': w32(8, CQSIZE, 0),
    'misuse-null': w32(7, 0, 0),
    'cqe-mixed-cqe32': w32(8, 1 << 18 | CQE32, 0),
    'cqe-mixed-one-cq': w32(1, 1 << 18 | CQSIZE, 1),
}


def b(*vals):
    return bytes(v & 0xff for v in vals)


# fuzz_opts: a byte stream (see the target); a few shapes.
OPTS = {
    'zeros': bytes(64),
    'region-4k': w32(4096) + b(0, 0, 0, 0) + bytes(40),
    'contig-fallback-base': w32(16384) + b(0, 0, 3, 0) + bytes(40),
    'arena-default-queue': w32(0) + b(1, 0, 0, 0, 0, 0) + b(0, 0, 0, 2, 0) + bytes(8)
                           + b(8, 0, 1) + bytes(30),
    'sqpoll-defer': bytes(16) + w32(64) + bytes(12) + b(200, 1) + w32(2 | 1 << 13) + bytes(20),
    'default-arena-destroy': b(0x42) + bytes(63),
}

for name, seeds in (('fuzz_sysfs', SYSFS), ('fuzz_layout', LAYOUT), ('fuzz_opts', OPTS)):
    d = os.path.join(here, 'corpus', name)
    os.makedirs(d, exist_ok=True)
    for k, v in seeds.items():
        with open(os.path.join(d, k), 'wb') as f:
            f.write(v)
