# Orchestrator: the two commands (make demo, make test) and the build steps behind them.
# Everything installs what it needs on a fresh Debian 12 machine (run as root).

SHELL := /bin/bash
.DEFAULT_GOAL := help

OUT ?= artifacts/bin
CONFIGURATION ?= Release
ARCH := $(shell uname -m)
RID ?= $(if $(filter aarch64 arm64,$(ARCH)),linux-arm64,linux-x64)
REVISION := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
DOTNET ?= dotnet
RESULTS := artifacts/test-results

# Debian packages: the build (gcc links the AOT binary), the tests' real servers and tools,
# and the competitors the benchmarks run side by side.
APT_BUILD := gcc libc6-dev zlib1g-dev git ca-certificates curl libicu72
APT_TEST := nats-server busybox-static skopeo umoci util-linux iproute2 systemd procps tar containerd attr bsdutils docker-registry apache2-utils zstd nftables man-db docker.io podman runc tini debootstrap systemd-container
APT_BENCH := containerd runc crun hyperfine time
# What make demo runs besides orchd: the NATS server, the image's busybox, and the tools the
# nodes' bridge networking calls (a subset of the test packages: a fresh machine installs less).
APT_DEMO := nats-server busybox-static iproute2 nftables util-linux procps tar tini
# The linux-arm64 cross build from x64: Debian's GNU cross toolchain with its own sysroot
# (/usr/aarch64-linux-gnu: no multiarch, no clang), and qemu-user to run what it built.
APT_CROSS_ARM64 := gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static

.PHONY: test-arm64 arm64-vm-bg fuzz help deps deps-build deps-demo deps-bench deps-cross-arm64 dotnet restore build publish publish-arm64 packages install test systemd-rootfs-bg demo demo-build bench clean

help:
	@echo "make demo                run a local fleet: nats-server + three orchd in the foreground (Ctrl-C stops it all)"
	@echo "make demo AOT=1          the same on the release (AOT) binaries make publish builds (slower to build)"
	@echo "make test                run every test (unit, integration, privileged) against the AOT binaries"
	@echo "make publish OUT=<dir>   build the release binaries into <dir> (default $(OUT))"
	@echo "make publish-arm64       cross-build the linux-arm64 binaries into $(ARM64_OUT)"
	@echo "make packages            .deb packages for amd64 and arm64 into $(PKG_OUT) (docs/packaging.md)"
	@echo "make test-arm64          the arm64 .deb end to end in a Debian 12 arm64 VM (qemu, emulated: about 37 min here with the VM image cached, the VM part 6; not part of make test)"
	@echo "make bench               side-by-side benchmarks (see docs/benchmarks.md)"
	@echo "make fuzz [FUZZ_MINUTES=10] [FUZZ_ITERATIONS=200000]  the parsers on seeded mutants, then the fleet simulator on fresh seeds"
	@echo "make install [DESTDIR=]  install built binaries, the systemd unit and the default config (no apt, no SDK)"

# apt-get only when something is missing: a second run costs nothing and needs no network.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "error: installing$$missing needs root; run as root or install them first" >&2; exit 1; fi; \
		apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

# The build's Debian packages come first: the SDK installer needs curl and certificates, and
# the SDK itself needs ICU.
deps-build:
	$(call apt_install,$(APT_BUILD))
	@$(MAKE) --no-print-directory dotnet

deps: deps-build
	$(call apt_install,$(APT_TEST))

deps-demo: deps-build
	$(call apt_install,$(APT_DEMO))

deps-bench: deps
	$(call apt_install,$(APT_BENCH))

deps-cross-arm64:
	$(call apt_install,$(APT_CROSS_ARM64))

# The .NET SDK is not a Debian package: install it from Microsoft's script when it is missing.
dotnet:
	@command -v $(DOTNET) >/dev/null 2>&1 || { \
		echo "installing the .NET 10 SDK into /usr/share/dotnet"; \
		curl -fsSL https://dot.net/v1/dotnet-install.sh -o /tmp/dotnet-install.sh && \
		bash /tmp/dotnet-install.sh --channel 10.0 --install-dir /usr/share/dotnet >/dev/null && \
		ln -sf /usr/share/dotnet/dotnet /usr/local/bin/dotnet; } || \
		{ echo "error: no .NET SDK and it could not be installed; install dotnet-sdk-10.0 (https://learn.microsoft.com/dotnet/core/install/linux-debian)" >&2; exit 1; }

restore: deps-build
	$(DOTNET) restore Orchestrator.sln

build: restore
	$(DOTNET) build Orchestrator.sln -c $(CONFIGURATION) --no-restore

# The release binaries: orchd, orchctl and orch-runc (each AOT; orch-runc is the runtime's runc
# command line, a small binary of its own because it starts for every container operation).
# Debug symbols go to $(DEBUG_OUT), out of the way of packaging.
DEBUG_OUT ?= artifacts/debug
# linux-arm64 on an x64 machine links with Debian's aarch64-linux-gnu-gcc (packaging/cross/gcc-cross.targets).
CROSS_ARM64 := $(and $(filter linux-arm64,$(RID)),$(filter x86_64,$(ARCH)))
CROSS_PROPS := $(if $(CROSS_ARM64),-p:CppCompilerAndLinker=aarch64-linux-gnu-gcc -p:ObjCopyName=aarch64-linux-gnu-objcopy \
	-p:CustomAfterMicrosoftCommonTargets=$(abspath packaging/cross/gcc-cross.targets))
publish: restore $(if $(CROSS_ARM64),deps-cross-arm64)
	@mkdir -p $(OUT) $(DEBUG_OUT)
	$(DOTNET) publish src/orchd/orchd.csproj -c Release -r $(RID) -o $(OUT) -p:SourceRevisionId=$(REVISION) $(CROSS_PROPS) --nologo -v:q
	$(DOTNET) publish src/orchctl/orchctl.csproj -c Release -r $(RID) -o $(OUT) -p:SourceRevisionId=$(REVISION) $(CROSS_PROPS) --nologo -v:q
	@rm -f $(OUT)/orch-runc # a link to orchd in older trees: never publish through it
	$(DOTNET) publish src/orch-runc/orch-runc.csproj -c Release -r $(RID) -o $(OUT) -p:SourceRevisionId=$(REVISION) $(CROSS_PROPS) --nologo -v:q
	@rm -f $(OUT)/*.pdb; mv -f $(OUT)/*.dbg $(DEBUG_OUT)/ 2>/dev/null || true
	@ls -l $(OUT)/orchd $(OUT)/orchctl $(OUT)/orch-runc

# The edge CPU: the same binaries for linux-arm64 (cross-built on x64, native on an arm64 board).
ARM64_OUT ?= artifacts/bin-arm64
publish-arm64:
	@$(MAKE) --no-print-directory publish RID=linux-arm64 OUT=$(ARM64_OUT) DEBUG_OUT=$(DEBUG_OUT)-arm64

# One .deb per architecture from what publish built (packaging/deb/build-deb.sh, docs/packaging.md).
PKG_OUT ?= artifacts/packages
packages: publish publish-arm64
	@rm -f $(PKG_OUT)/orchestrator_*.deb
	bash packaging/deb/build-deb.sh --bin-dir $(OUT) --arch $(if $(filter linux-arm64,$(RID)),arm64,amd64) --out $(PKG_OUT)
	bash packaging/deb/build-deb.sh --bin-dir $(ARM64_OUT) --arch arm64 --out $(PKG_OUT)

# Installs what `make publish` built; needs nothing else (a production node gets no SDK and
# no test servers from this).
PREFIX ?= /usr
install:
	@for f in orchd orchctl orch-runc; do test -x $(OUT)/$$f -a ! -L $(OUT)/$$f || { echo "error: $(OUT)/$$f is not built; run make publish first (on a build machine)" >&2; exit 1; }; done
	install -D -m 755 $(OUT)/orchd $(DESTDIR)$(PREFIX)/bin/orchd
	install -D -m 755 $(OUT)/orchctl $(DESTDIR)$(PREFIX)/bin/orchctl
	rm -f $(DESTDIR)$(PREFIX)/bin/orch-runc # an older install's link to orchd
	install -D -m 755 $(OUT)/orch-runc $(DESTDIR)$(PREFIX)/bin/orch-runc
	install -D -m 755 packaging/update/orchd-update-guard $(DESTDIR)$(PREFIX)/lib/orchestrator/orchd-update-guard
	install -D -m 644 systemd/orchd.service $(DESTDIR)/lib/systemd/system/orchd.service
	install -D -m 644 systemd/orchd-identity.service $(DESTDIR)/lib/systemd/system/orchd-identity.service
	@if [ "$(PREFIX)" != /usr ]; then sed -i 's|/usr/bin/orchd|$(PREFIX)/bin/orchd|; s|/usr/lib/orchestrator/|$(PREFIX)/lib/orchestrator/|' $(DESTDIR)/lib/systemd/system/orchd.service $(DESTDIR)/lib/systemd/system/orchd-identity.service; fi
	@test -e $(DESTDIR)/etc/orchestrator/orchd.yaml || install -D -m 644 packaging/config/orchd.yaml $(DESTDIR)/etc/orchestrator/orchd.yaml

# Every test project, against the binaries just published, one after the other (the
# integration tests start real servers and processes: running projects side by side on two
# cores only adds noise). A hung test is killed after 5 minutes with a dump. The last line
# is the summary CI reads. First, orchctl is built for osx-arm64 and win-x64 (not AOT): the
# operator's tool must not link the node (docs/architecture.md, "Layers").
TEST_PROJECTS := $(sort $(wildcard tests/*.Tests/*.Tests.csproj))
# The Debian 12 rootfs the systemd-nspawn test boots (tests/systemd/make-rootfs.sh): built once
# per machine, in the background while the binaries compile; the test waits for it.
SYSTEMD_ROOTFS ?= /var/cache/orchestrator-tests/bookworm
systemd-rootfs-bg:
	@if [ ! -e $(SYSTEMD_ROOTFS)/.complete ] && [ "$$(id -u)" = 0 ]; then \
		mkdir -p $(dir $(SYSTEMD_ROOTFS)); echo "building $(SYSTEMD_ROOTFS) in the background (log: $(SYSTEMD_ROOTFS).log)"; \
		nohup setsid bash tests/systemd/make-rootfs.sh $(SYSTEMD_ROOTFS) > $(SYSTEMD_ROOTFS).log 2>&1 < /dev/null & \
	fi

test: deps systemd-rootfs-bg packages
	@rm -rf $(RESULTS); mkdir -p $(RESULTS)
	$(DOTNET) build Orchestrator.sln -c $(CONFIGURATION) --nologo -v:q
	@# --blame-hang-timeout is per test: above the longest test's own Timeout (the nspawn boot, 15 min),
	@# so that a slow test on a loaded machine fails with its own message, not a dump and a killed host
	@# (a rolling-update test whose waits add up to 335 s was killed at 5 min, and the 22 after it never ran).
	@status=0; DOTNET=$(DOTNET) bash tests/cross-build-orchctl.sh || { echo "error: orchctl no longer builds for macOS or Windows (tests/cross-build-orchctl.sh)" >&2; status=1; }; \
	for p in $(TEST_PROJECTS); do \
		name=$$(basename $$p .csproj); \
		ORCH_BIN_DIR=$(abspath $(OUT)) ORCH_ARM64_BIN_DIR=$(abspath $(ARM64_OUT)) ORCH_PKG_DIR=$(abspath $(PKG_OUT)) ORCH_SYSTEMD_ROOTFS=$(SYSTEMD_ROOTFS) $(DOTNET) test $$p -c $(CONFIGURATION) --no-build --nologo \
			--logger "trx;LogFileName=$$name.trx" --logger "console;verbosity=normal" \
			--results-directory $(RESULTS) --blame-hang-timeout 16m || status=1; \
	done; bash .ci/test-summary $(RESULTS) $$status

# The arm64 build end to end in a Debian 12 arm64 VM under qemu-system-aarch64 (TCG: slow, so not
# part of make test; docs/building.md, "make test-arm64"): tests/arm64/vm-e2e.sh. The VM image
# (debootstrap, Debian's arm64 kernel) is built once per machine into ARM64_VM, in the background
# while the binaries compile. x64 binaries play the rest of the fleet on the host.
APT_TEST_ARM64 := qemu-system-arm qemu-utils debootstrap cpio e2fsprogs jq nats-server gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
ARM64_VM ?= /var/cache/orchestrator-tests/arm64
ARM64_TEST_DIR ?= artifacts/test-arm64
arm64-vm-bg:
	$(call apt_install,$(APT_TEST_ARM64))
	@if [ ! -e $(ARM64_VM)/.complete ]; then \
		mkdir -p $(dir $(ARM64_VM)); echo "building $(ARM64_VM) in the background (log: $(ARM64_VM).log)"; \
		nohup setsid bash tests/arm64/make-vm-image.sh $(ARM64_VM) > $(ARM64_VM).log 2>&1 < /dev/null & \
	fi

test-arm64: deps-build arm64-vm-bg publish publish-arm64
	@rm -f $(PKG_OUT)/orchestrator_*_arm64.deb
	bash packaging/deb/build-deb.sh --bin-dir $(ARM64_OUT) --arch arm64 --out $(PKG_OUT)
	@bash tests/arm64/make-vm-image.sh $(ARM64_VM) || { tail -30 $(ARM64_VM).log; exit 1; }
	bash tests/arm64/vm-e2e.sh $(PKG_OUT)/orchestrator_*_arm64.deb $(abspath $(OUT)) $(ARM64_VM) $(abspath $(ARM64_TEST_DIR))

# make demo runs orchd and orch-runc as JIT builds: one `dotnet build` of the projects (no
# solution-wide restore, no AOT compile and link, no analyzers: make test and CI run those), a
# minute and more faster on a fresh clone (docs/benchmarks.md). The same code and the same
# behaviour; the native spawn shim comes as liborchspawn.so next to orchd.dll instead of linked
# in. orchctl, the binary a demo's user runs again and again, is built AOT (about 30 s more): it
# answers in 10-50 ms where a JIT orchctl took 0.2-0.8 s a command (ReadyToRun: 0.18 s).
# make demo AOT=1 builds and runs the release binaries.
DEMO_OUT ?= artifacts/demo-bin
DEMO_BUILD_DIR = bin/$(CONFIGURATION)/net10.0/$(RID)
demo-build: deps-build
	$(DOTNET) build packaging/demo/demo.slnf -c $(CONFIGURATION) -p:SourceRevisionId=$(REVISION) -p:RunAnalyzers=false --nologo -v:q
	$(DOTNET) publish src/orchctl/orchctl.csproj -c $(CONFIGURATION) -r $(RID) -o $(DEMO_OUT)/aot -p:SourceRevisionId=$(REVISION) -p:RunAnalyzers=false --nologo -v:q
	@rm -f $(DEMO_OUT)/aot/*.dbg $(DEMO_OUT)/aot/*.pdb
	@ln -sfn $(abspath src/orchd/$(DEMO_BUILD_DIR)/orchd) $(DEMO_OUT)/orchd
	@ln -sfn $(abspath $(DEMO_OUT)/aot/orchctl) $(DEMO_OUT)/orchctl
	@ln -sfn $(abspath src/orch-runc/$(DEMO_BUILD_DIR)/orch-runc) $(DEMO_OUT)/orch-runc

DEMO_AOT := $(filter 1 yes true,$(AOT))
demo: deps-demo $(if $(DEMO_AOT),publish,demo-build)
	@$(if $(DEMO_AOT),,DOTNET_ROOT=$${DOTNET_ROOT:-$$(dirname "$$(readlink -f "$$(command -v $(DOTNET))")")}) bash packaging/demo/demo.sh $(abspath $(if $(DEMO_AOT),$(OUT),$(DEMO_OUT)))

# Long runs that do not fit in make test: the fleet simulator on fresh seeds for FUZZ_MINUTES
# (docs/protocol.md, "The fleet simulator"); a failing seed is printed with how to replay it.
FUZZ_MINUTES ?= 10
# The parsers that take outside input (manifest YAML, compose, node API JSON, layer tars): make
# test runs a few thousand seeded mutants of each; make fuzz runs FUZZ_ITERATIONS of each, from
# FUZZ_FIRST_SEED (a failure names the seed that replays it).
FUZZ_ITERATIONS ?= 200000
FUZZ_FIRST_SEED ?= 1000000
fuzz: restore
	$(DOTNET) build tests/Orchestrator.Fleet.Tests -c $(CONFIGURATION) --nologo -v:q
	$(DOTNET) build tests/Orchestrator.Node.Tests -c $(CONFIGURATION) --nologo -v:q
	$(DOTNET) build tests/Orchestrator.Images.Tests -c $(CONFIGURATION) --nologo -v:q
	ORCH_FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) ORCH_FUZZ_FIRST_SEED=$(FUZZ_FIRST_SEED) $(DOTNET) test tests/Orchestrator.Node.Tests -c $(CONFIGURATION) --no-build --nologo \
		--filter "FullyQualifiedName~ParserFuzzTests" --logger "console;verbosity=normal"
	ORCH_FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) ORCH_FUZZ_FIRST_SEED=$(FUZZ_FIRST_SEED) $(DOTNET) test tests/Orchestrator.Images.Tests -c $(CONFIGURATION) --no-build --nologo \
		--filter "FullyQualifiedName~TarFuzzTests" --logger "console;verbosity=normal"
	ORCH_FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) ORCH_FUZZ_FIRST_SEED=$(FUZZ_FIRST_SEED) $(DOTNET) test tests/Orchestrator.Fleet.Tests -c $(CONFIGURATION) --no-build --nologo \
		--filter "FullyQualifiedName~RequestFuzzTests" --logger "console;verbosity=normal"
	ORCH_SIM_MINUTES=$(FUZZ_MINUTES) $(DOTNET) test tests/Orchestrator.Fleet.Tests -c $(CONFIGURATION) --no-build --nologo \
		--filter "FullyQualifiedName~FleetSimulationTests.Long_run" --logger "console;verbosity=detailed"

bench: deps-bench publish
	$(DOTNET) run --project bench/Orchestrator.Bench -c Release -- --bin $(abspath $(OUT))

clean:
	rm -rf artifacts
	find src tests bench -type d \( -name bin -o -name obj \) -prune -exec rm -rf {} +
