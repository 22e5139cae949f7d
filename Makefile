# hugering — see README.md.
#
#   make            library (static + shared), tools, examples, tests
#   make check      deps if needed (root), then the Criterion suite: plain,
#                   under ASan+UBSan, and (as root) again unprivileged
#   make demo       deps if needed, build, run the region example
#   make install    PREFIX=/usr/local DESTDIR=
#   make deps       scripts/install-deps.sh (root)

# The version lives in include/hugering.h only.
hdr_version = $(shell sed -n 's/^\#define HUGERING_VERSION_$(1) \([0-9]*\)$$/\1/p' include/hugering.h)
VERSION    := $(call hdr_version,MAJOR).$(call hdr_version,MINOR).$(call hdr_version,PATCH)
SOVERSION  := $(call hdr_version,MAJOR)

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR     ?= $(PREFIX)/share/man
DESTDIR    ?=

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
SANITIZE   ?=

CC         ?= cc
CFLAGS     ?= -O2 -g
WARN       := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
              -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
ALL_CFLAGS := -std=gnu11 -D_GNU_SOURCE $(WARN) -fPIC -Iinclude $(CFLAGS)
LIBS       := -luring -lpthread
ifeq ($(SANITIZE),fuzz)
# libFuzzer builds (make fuzz): coverage for the fuzzer, ASan+UBSan.
ALL_CFLAGS += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=all
LDFLAGS    += -fsanitize=address,undefined
else ifeq ($(SANITIZE),thread)
ALL_CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS    += -fsanitize=thread
else ifneq ($(SANITIZE),)
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=all
LDFLAGS    += -fsanitize=address,undefined
endif

LIB_SRC    := $(wildcard lib/*.c)
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o)
EX_SRC     := $(wildcard examples/*.c)
EX_BIN     := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)
TEST_SRC   := $(filter-out tests/test_fault.c,$(wildcard tests/*.c))
TEST_OBJ   := $(TEST_SRC:%.c=$(BUILD)/%.o)
TEST_BIN   := $(BUILD)/tests/hugering-tests
BENCH_BIN  := $(BUILD)/bench/hugering-bench $(BUILD)/bench/recycle
TOOL_SRC   := $(wildcard tools/*.c)
TOOLS      := $(TOOL_SRC:tools/%.c=$(BUILD)/tools/%)

# LD_PRELOAD drop-in (tools/preload/, so the tools rule does not take it)
# and the plain liburing program its test runs (tests/progs/).
PRELOAD    := $(BUILD)/libhugering-preload.so
PLAIN_RING := $(BUILD)/tests/progs/plain-ring

STATIC     := $(BUILD)/libhugering.a
SHARED     := $(BUILD)/libhugering.so.$(VERSION)
SONAME     := libhugering.so.$(SOVERSION)

# Keep objects of single-file programs (examples) between runs.
.SECONDARY:

# Ring memory benchmarks
.PHONY: bench bench-recycle
.PHONY: preload check-peer
.PHONY: all lib tools examples tests check check-asan-build check-tsan check-long check-kernels deps deps-ok demo \
        check-fragmented \
        install uninstall clean

all: lib tools examples tests bench preload

lib: $(STATIC) $(SHARED)
examples: $(EX_BIN)
tools: $(TOOLS)
bench: $(BENCH_BIN)
tests: $(TEST_BIN) $(PRELOAD) $(PLAIN_RING)
preload: $(PRELOAD)

$(BUILD)/%.o: %.c $(wildcard include/*.h lib/*.h tests/*.h bench/*.h tools/diag/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The library's own objects hide everything the header does not declare.
$(LIB_OBJ): ALL_CFLAGS += -fvisibility=hidden

# One relocatable object with the hidden (internal) names made local, so a
# static link can no more reach hr_* than a dynamic one.
$(BUILD)/hugering-lib.o: $(LIB_OBJ)
	$(LD) -r -o $@ $^
	objcopy --localize-hidden $@

$(STATIC): $(BUILD)/hugering-lib.o
	@rm -f $@
	$(AR) rcs $@ $^

$(SHARED): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/hugering.map \
	      $(LDFLAGS) -o $@ $^ $(LIBS)
	ln -sf libhugering.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libhugering.so

$(BUILD)/examples/%: $(BUILD)/examples/%.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tools/%: $(BUILD)/tools/%.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# hugering-diag's model and checks (tools/diag/collect.c) and its actions
# that change the machine (--reserve, --fix, --persist) live in tools/diag/,
# not in the library, so a new check or field is no ABI change.  The
# collection reads through the library's internal readers (hr_*: sysroot
# files, pool counters, the hugetlb cgroup walker, the helper thread),
# which libhugering.a keeps local; so it is linked with the library's own
# objects into one relocatable object whose internal names are then made
# local again, as in hugering-lib.o.  The tool and the test suite link it.
DIAG_MODEL := $(BUILD)/tools/diag/model-lib.o
$(BUILD)/tools/diag/collect.o: ALL_CFLAGS += -Ilib
$(DIAG_MODEL): $(BUILD)/tools/diag/collect.o $(LIB_OBJ)
	$(LD) -r -o $@ $^
	objcopy --localize-hidden $@

$(BUILD)/tools/hugering-diag: $(BUILD)/tools/hugering-diag.o $(BUILD)/tools/diag/setup.o $(DIAG_MODEL)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bench/hugering-bench: $(BUILD)/bench/hugering-bench.o $(BUILD)/bench/report.o \
                          $(BUILD)/bench/bigmap.o $(BUILD)/bench/buffers.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Recycling cost per create+destroy cycle, ratios against the kernel peer.
bench-recycle: deps-ok bench
	scripts/with-pool.sh $(BUILD)/bench/recycle 5000 256 512
	scripts/with-pool.sh $(BUILD)/bench/recycle 2000 4096 65536

# The library as libhugering.a has it, plus hugering-diag's model, which
# test_diag and test_hostile call in-process.
$(TEST_BIN): $(TEST_OBJ) $(DIAG_MODEL)
	$(CC) $(LDFLAGS) -o $@ $^ -lcriterion $(LIBS)

# Fault injection below the arena (tests/test_fault.c): the library's own
# objects with tests/fault/sys-fault.o in place of sys.o, so every hr_sys_*
# call can be made to fail.  Never part of the shipped library.
FAULT_BIN  := $(BUILD)/tests/hugering-fault
FAULT_OBJ  := $(BUILD)/tests/test_fault.o $(BUILD)/tests/helpers.o \
              $(BUILD)/tests/fault/sys-fault.o $(filter-out $(BUILD)/lib/sys.o,$(LIB_OBJ)) \
              $(BUILD)/tools/diag/collect.o
$(FAULT_BIN): $(FAULT_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ -lcriterion $(LIBS)

.PHONY: check-fault
check-fault: deps-ok
	$(MAKE) $(FAULT_BIN)
	$(MAKE) BUILD=$(ASAN_BUILD) SANITIZE=1 $(ASAN_BUILD)/tests/hugering-fault
	rm -f $(BUILD)/fault-sites.txt
	HUGERING_FAULT_LOG=$(CURDIR)/$(BUILD)/fault-sites.txt \
	    scripts/run-tests.sh $(FAULT_BIN) $(ASAN_BUILD)/tests/hugering-fault
	@echo "check-fault: each syscall site in lib/ and the diag model (syscall, caller, calls, failed: outcomes):"
	scripts/check-fault-sites.sh $(BUILD)/fault-sites.txt

# The preload: its own object plus the library's, exporting only liburing's
# three names (hugering's copy stays local).
$(PRELOAD): $(BUILD)/tools/preload/hugering-preload.o $(LIB_OBJ) tools/preload/hugering-preload.map
	$(CC) -shared -Wl,--version-script=tools/preload/hugering-preload.map \
	      $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIBS) -ldl

# Knows nothing of hugering: liburing only, linked dynamically.
$(PLAIN_RING): tests/progs/plain-ring.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< -luring

# liburing 2.9's own test suite, stock and with every ring through the
# preload (scripts/check-peer.sh).  LIBURING_SRC=<tree or tarball> where
# ../shared/peers is absent.
check-peer: deps-ok
	$(MAKE) lib preload
	LIBURING_SRC='$(LIBURING_SRC)' scripts/check-peer.sh $(BUILD)

# libFuzzer targets (tests/fuzz/, README "Fuzzing"): the library rebuilt
# with clang, coverage, ASan and UBSan in $(FUZZ_BUILD); each target runs
# FUZZ_SECONDS from its committed corpus (tests/fuzz/corpus/<target>/, new
# inputs go to $(FUZZ_BUILD)/corpus, not into the repo).  A crash, UB, leak or
# an input slower than 5 s fails the run and leaves crash-* in $(FUZZ_BUILD).
.PHONY: fuzz fuzz-build
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

fuzz-build:
	scripts/deps-ok.sh fuzz
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) SANITIZE=fuzz \
	    $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz/%)

# tools/hugering-diag.c is compiled into fuzz_sysfs (its JSON writer), with
# the tool's model (tools/diag/collect.c).
FUZZ_TOOL_OBJ := $(BUILD)/tools/diag/setup.o $(BUILD)/tools/diag/collect.o
$(BUILD)/fuzz/%: tests/fuzz/%.c tools/hugering-diag.c $(LIB_OBJ) $(FUZZ_TOOL_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $< $(LIB_OBJ) \
	    $(FUZZ_TOOL_OBJ) $(LDFLAGS) $(LIBS)

fuzz: fuzz-build
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Dependencies: present, or installed when we are root, or a clear error.
deps-ok:
	@scripts/deps-ok.sh

deps:
	scripts/install-deps.sh

check-asan-build:
	$(MAKE) BUILD=$(ASAN_BUILD) SANITIZE=1 tests tools bench

# ThreadSanitizer over the threaded paths: a plain program, since
# Criterion's process arena does not start under TSan.
STRESS_BIN := $(BUILD)/tests/stress-threads
$(STRESS_BIN): tests/stress/threads.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(STATIC) $(LIBS)

check-tsan: deps-ok
	$(MAKE) BUILD=$(TSAN_BUILD) SANITIZE=thread $(TSAN_BUILD)/tests/stress-threads
	TSAN_OPTIONS="halt_on_error=1 exitcode=66" scripts/with-pool.sh \
	    $(TSAN_BUILD)/tests/stress-threads

# The contiguity tests on a fragmented pool (free pages scattered).
check-fragmented: deps-ok tests examples
	scripts/check-fragmented.sh $(TEST_BIN)

# hugering built (-Werror) and tested against liburing 2.5, Ubuntu 24.04's,
# from ../shared/peers/liburing-2.5.tar.gz or $$HUGERING_LIBURING25, into
# build/peers/ and build-liburing25/ (scripts/check-liburing.sh).
.PHONY: check-liburing25
check-liburing25: deps-ok
	scripts/check-liburing.sh

# Real 6.1 and 6.12 kernels under QEMU (scripts/check-kernels.sh).
check-kernels: deps-ok lib $(DIAG_MODEL)
	scripts/check-kernels.sh $(BUILD)

# The README's two commands in fresh minimal Debian 12 and 13 chroots
# (scripts/check-distros.sh; root, debootstrap; ~13 min on 2 cores).
.PHONY: check-distros
check-distros:
	scripts/check-distros.sh

# The Debian packages (debian/) built, linted, installed and used in fresh
# Debian 12 and 13 chroots (scripts/check-packages.sh; root).
.PHONY: check-packages
check-packages:
	scripts/check-packages.sh

# The churn tests at a million cycles.
check-long: deps-ok all
	HUGERING_LONG_CYCLES=1000000 scripts/run-tests.sh --filter 'arena/churn*' $(TEST_BIN)
	HUGERING_BUF_CHURN_CYCLES=1000000 scripts/run-tests.sh --filter 'bufring/churn*' $(TEST_BIN)
	HUGERING_PREPARE_CHURN_CYCLES=1000000 scripts/run-tests.sh --filter 'prepare/churn*' $(TEST_BIN)

# Exported symbols and public struct layouts against abi/ (the release
# record); internal names unreachable from the .a and the .so.
# The version, as include/hugering.h gives it (debian/changelog must agree).
.PHONY: print-version
print-version:
	@echo $(VERSION)

.PHONY: check-abi check-layers
check-abi: lib
	scripts/check-abi.sh $(BUILD)

# lib/ is a one-way stack of files (scripts/check-layers.sh lists it).
check-layers: lib
	scripts/check-layers.sh $(BUILD)

check: deps-ok
	$(MAKE) all
	$(MAKE) check-abi check-layers
	scripts/check-man.sh
	$(MAKE) check-asan-build
	scripts/check-install.sh
	$(MAKE) check-tsan
	scripts/run-tests.sh $(TEST_BIN) $(ASAN_BUILD)/tests/hugering-tests
	$(MAKE) check-fault

# Man pages: one per public function, rendering without warnings
# (scripts/check-man.sh).
.PHONY: check-man
check-man:
	scripts/check-man.sh

demo: deps-ok
	$(MAKE) lib tools examples bench
	scripts/demo.sh $(BUILD)

$(BUILD)/hugering.pc: hugering.pc.in
	@mkdir -p $(BUILD)
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|; s|@VERSION@|$(VERSION)|' $< > $@

install: lib tools $(BUILD)/bench/hugering-bench $(BUILD)/hugering.pc $(PRELOAD)
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(BINDIR)
	install -m 644 include/hugering.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(PRELOAD) $(DESTDIR)$(LIBDIR)/
	ln -sf libhugering.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libhugering.so
	install -m 644 $(BUILD)/hugering.pc $(DESTDIR)$(PKGCONFIGDIR)/
	install -m 755 $(TOOLS) $(BUILD)/bench/hugering-bench $(DESTDIR)$(BINDIR)/
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m 644 man/man1/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -d $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man7
	install -m 644 man/man3/*.3 $(DESTDIR)$(MANDIR)/man3/
	install -m 644 man/man7/*.7 $(DESTDIR)$(MANDIR)/man7/

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/hugering.h $(DESTDIR)$(LIBDIR)/libhugering.* \
	      $(DESTDIR)$(LIBDIR)/libhugering-preload.so \
	      $(DESTDIR)$(PKGCONFIGDIR)/hugering.pc $(DESTDIR)$(BINDIR)/hugering-diag \
	      $(DESTDIR)$(BINDIR)/hugering-bench \
	      $(DESTDIR)$(MANDIR)/man1/hugering-diag.1 $(DESTDIR)$(MANDIR)/man1/hugering-bench.1
	rm -f $(patsubst man/%,$(DESTDIR)$(MANDIR)/%,$(wildcard man/man3/*.3 man/man7/*.7))

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) build-liburing25 $(FUZZ_BUILD)
