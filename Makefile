# stormpool: a tiered template pool type for libvirt.
#
#   make          install Debian build dependencies, build the patched libvirt
#                 and the stormpool backend module into _build/prefix-<version>
#   make demo     the classroom scenario through virsh, against private daemons
#   make check    every test suite, for every supported libvirt version;
#                 ends with "N passed, N failed"
#
# LIBVIRT=<version> picks the libvirt (make LIBVIRT=11.3.0, make LIBVIRT=11.3.0
# check); without it, make picks the version of the host's Debian release
# (tools/libvirt-version) and 'make check' checks every supported version.
# Every version has its own trees: _build/libvirt-<version> (patched source,
# build with libvirt's tests), _build/prefix-<version>, _build/stormpool-<version>.
#   make debs     Debian packages of the patched libvirt and the module, built
#                 in clean roots of each release, into _build/debs/<release>
#   make check-host  those packages installed in booted throwaway roots of
#                 each release: the host test; ends with "N passed, N failed"
#   make check-cluster  three simulated hosts (namespaces with their own
#                 daemons) sharing a template store on GlusterFS: protection
#                 across hosts, races, host death, a server restart
#                 (tests/cluster, tools/cluster-env); LIBVIRT's version only;
#                 ends with "N passed, N failed"
#   make bench-cluster  the same cluster's store bytes for a new template and
#                 a 3-host boot storm, and a desktop's migration against
#                 --copy-storage-all (bench/bench_cluster.py)
#   make fuzz     the libFuzzer targets of fuzz/ (one per parser of untrusted
#                 input), FUZZ_SECONDS each (default 60), one after the other,
#                 from the seeds in fuzz/corpus; make fuzz-merge adds what
#                 they found that covers more to fuzz/corpus
#
# Everything lives under _build/; the host's own libvirt is never touched.

ifeq ($(origin LIBVIRT),undefined)
CHECK_VERSIONS := $(shell tools/libvirt-version --all)
LIBVIRT := $(shell tools/libvirt-version)
LIBVIRT_WHY := $(shell tools/libvirt-version --why)
else
CHECK_VERSIONS := $(LIBVIRT)
LIBVIRT_WHY := libvirt $(LIBVIRT) (LIBVIRT=$(LIBVIRT))
endif
export LIBVIRT

BUILD   := _build
PREFIX  := $(CURDIR)/$(BUILD)/prefix-$(LIBVIRT)
LVTREE  := $(CURDIR)/$(BUILD)/libvirt-$(LIBVIRT)
SPBUILD := $(BUILD)/stormpool-$(LIBVIRT)
ASANBUILD := $(BUILD)/stormpool-asan
FUZZBUILD := $(BUILD)/stormpool-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := image_header hot_set template_stamps pool_namespace host_record

.PHONY: all deps libvirt stormpool virt-manager asan fuzz-build fuzz fuzz-merge demo check unit-check debs check-host module check-cluster bench-create bench-clone bench-bootstorm bench-cluster clean distclean

all: stormpool virt-manager

deps:
	@tools/install-deps

libvirt: deps
	@echo "make: $(LIBVIRT_WHY)"
	@tools/build-libvirt $(LIBVIRT)

virt-manager: deps
	@tools/build-virt-manager

$(SPBUILD)/build.ninja:
	meson setup $(SPBUILD) --prefix=$(PREFIX) --libdir=lib -Dmodule=enabled \
	    -Dlibvirt_src=$(LVTREE)/src -Dlibvirt_build=$(LVTREE)/build \
	    -Dmodule_dir=$(PREFIX)/lib/libvirt/storage-backend >/dev/null

stormpool: libvirt $(SPBUILD)/build.ninja
	@ninja -C $(SPBUILD) install >$(BUILD)/stormpool-install.log 2>&1 || \
	    { cat $(BUILD)/stormpool-install.log; exit 1; }
	@echo "stormpool: module installed in $(BUILD)/prefix-$(LIBVIRT)/lib/libvirt/storage-backend"

# The unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer;
# the module is left out since it cannot be loaded into an uninstrumented daemon.
$(ASANBUILD)/build.ninja:
	meson setup $(ASANBUILD) -Dmodule=disabled -Db_sanitize=address,undefined \
	    -Db_lundef=false -Dbuildtype=debug >/dev/null

asan: deps $(ASANBUILD)/build.ninja
	@ninja -C $(ASANBUILD) >$(BUILD)/stormpool-asan.log 2>&1 || \
	    { cat $(BUILD)/stormpool-asan.log; exit 1; }

# The libFuzzer targets (fuzz/): the core built by clang with coverage,
# ASan and UBSan. make check runs each briefly (the meson suite 'fuzz').
$(FUZZBUILD)/build.ninja:
	CC=clang meson setup $(FUZZBUILD) -Dmodule=disabled -Dfuzzing=true >/dev/null

fuzz-build: deps $(FUZZBUILD)/build.ninja
	@ninja -C $(FUZZBUILD) >$(BUILD)/stormpool-fuzz.log 2>&1 || \
	    { cat $(BUILD)/stormpool-fuzz.log; exit 1; }

# New inputs go to $(FUZZBUILD)/fuzz/<target>-run/corpus, kept from run to
# run; fuzz/corpus is only read.
fuzz: fuzz-build
	@failed=0; for t in $(FUZZ_TARGETS); do \
	    fuzz/run-target $(FUZZBUILD)/fuzz/fuzz_$$t fuzz/corpus/$$t fuzz/$$t.dict \
	        $(FUZZBUILD)/fuzz/$$t-run $(FUZZ_SECONDS) || failed=1; \
	done; exit $$failed

fuzz-merge: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZBUILD)/fuzz/$$t-run/corpus; \
	    $(FUZZBUILD)/fuzz/fuzz_$$t -merge=1 fuzz/corpus/$$t \
	        $(FUZZBUILD)/fuzz/$$t-run/corpus >$(FUZZBUILD)/fuzz/$$t-merge.log 2>&1 || \
	        { tail -n 20 $(FUZZBUILD)/fuzz/$$t-merge.log; exit 1; }; \
	    echo "fuzz-merge: $$t: $$(grep -o 'MERGE-OUTER: [0-9]* new files' $(FUZZBUILD)/fuzz/$$t-merge.log)"; \
	done

demo: all
	@tools/demo

# Every version's libvirt, module and virt-manager first, then the suites.
check: deps
	@for v in $(CHECK_VERSIONS); do $(MAKE) --no-print-directory LIBVIRT=$$v all || exit 1; done
	@$(MAKE) --no-print-directory asan fuzz-build
	@tools/run-checks --versions "$(CHECK_VERSIONS)"

unit-check: all asan fuzz-build
	@tools/run-checks --unit-only

# The module built, not installed: the cluster's hosts load it from the
# build tree (tools/cluster-env), so the prefix that the machine's own
# private daemons share is left alone.
module: libvirt $(SPBUILD)/build.ninja
	@ninja -C $(SPBUILD) >$(BUILD)/stormpool-build.log 2>&1 || \
	    { cat $(BUILD)/stormpool-build.log; exit 1; }

check-cluster: module
	@tools/run-checks --cluster --versions "$(LIBVIRT)"

# Packages are cached in /var/cache/stormpool, keyed by the Debian version and
# the hash of the series (tools/build-debs); the host test boots roots of the
# releases with systemd-nspawn (tools/check-host, tests/host).
debs: deps
	@tools/build-debs

check-host: debs
	@tools/check-host

# Benchmarks print ratios measured side by side in one run (bench/README.md).
bench-create: stormpool
	@bench/bench-create

bench-clone: stormpool virt-manager
	@bench/bench-clone

bench-bootstorm: stormpool
	@bench/bootstorm/run

bench-cluster: module
	@bench/bench-cluster

clean:
	rm -rf $(BUILD)/stormpool-* $(ASANBUILD) $(FUZZBUILD)

distclean:
	-for v in $$(tools/libvirt-version --all); do LIBVIRT=$$v tools/virt-env stop; done
	rm -rf $(BUILD)
