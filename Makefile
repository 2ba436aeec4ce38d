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

.PHONY: all deps libvirt stormpool virt-manager asan demo check unit-check debs check-host bench-create bench-bootstorm clean distclean

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

demo: all
	@tools/demo

# Every version's libvirt, module and virt-manager first, then the suites.
check: deps
	@for v in $(CHECK_VERSIONS); do $(MAKE) --no-print-directory LIBVIRT=$$v all || exit 1; done
	@$(MAKE) --no-print-directory asan
	@tools/run-checks --versions "$(CHECK_VERSIONS)"

unit-check: all asan
	@tools/run-checks --unit-only

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

bench-bootstorm: stormpool
	@bench/bootstorm/run

clean:
	rm -rf $(BUILD)/stormpool-* $(ASANBUILD)

distclean:
	-for v in $$(tools/libvirt-version --all); do LIBVIRT=$$v tools/virt-env stop; done
	rm -rf $(BUILD)
