# stormpool: a tiered template pool type for libvirt.
#
#   make          install Debian build dependencies, build the patched libvirt
#                 and the stormpool backend module into _build/prefix
#   make demo     the classroom scenario through virsh, against private daemons
#   make check    every test suite; ends with "N passed, N failed"
#   make debs     Debian packages of the patched libvirt and the module, built
#                 in clean roots of each release, into _build/debs/<release>
#   make check-host  those packages installed in booted throwaway roots of
#                 each release: the host test; ends with "N passed, N failed"
#
# Everything lives under _build/; the host's own libvirt is never touched.

BUILD   := _build
PREFIX  := $(CURDIR)/$(BUILD)/prefix
SPBUILD := $(BUILD)/stormpool
ASANBUILD := $(BUILD)/stormpool-asan

.PHONY: all deps libvirt stormpool virt-manager asan demo check unit-check debs check-host bench-create bench-bootstorm clean distclean

all: stormpool virt-manager

deps:
	@tools/install-deps

libvirt: deps
	@tools/build-libvirt

virt-manager: deps
	@tools/build-virt-manager

$(SPBUILD)/build.ninja:
	meson setup $(SPBUILD) --prefix=$(PREFIX) --libdir=lib -Dmodule=enabled >/dev/null

stormpool: libvirt $(SPBUILD)/build.ninja
	@ninja -C $(SPBUILD) install >$(BUILD)/stormpool-install.log 2>&1 || \
	    { cat $(BUILD)/stormpool-install.log; exit 1; }
	@echo "stormpool: module installed in $(PREFIX)/lib/libvirt/storage-backend"

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

check: all asan
	@tools/run-checks

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
	rm -rf $(SPBUILD) $(ASANBUILD)

distclean:
	-tools/virt-env stop
	rm -rf $(BUILD)
