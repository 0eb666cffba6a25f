# vhotplug build.  `make`, `make check`, `make install`, `make demo`, `make dist`.
# BUILD=dir puts every artifact somewhere else; SANITIZE=1 builds with ASan+UBSan.
# CPPFLAGS, CFLAGS and LDFLAGS are honoured (e.g. Debian's dpkg-buildflags); SYSCONFDIR (default
# /etc) decides where the programs look for vhotplug.conf by default and what the units check for.

# The version lives in VERSION alone: the programs' --version, the installed man pages, make dist,
# the Nix package (nix/package.nix reads it) and debian/changelog (tests/integration/test-version.sh
# checks that it agrees) take it from there.
VERSION   := $(shell cat VERSION 2>/dev/null)
ifeq ($(VERSION),)
$(error VERSION is missing or empty)
endif
PREFIX    ?= /usr/local
BUILD     ?= build
CC        ?= cc
PKG_CONFIG ?= pkg-config
SYSCONFDIR ?= /etc

PKGS      := libudev sqlite3 libcjson libusb-1.0 libpci libkmod libsystemd
DLOPEN_PKGS := libkmod libsystemd libusb-1.0 libpci
# The names dlopen() is given; a distribution may give full paths (e.g. Nix store paths).
LIBKMOD_SONAME    ?= libkmod.so.2
LIBSYSTEMD_SONAME ?= libsystemd.so.0
LIBUSB_SONAME     ?= libusb-1.0.so.0
LIBPCI_SONAME     ?= libpci.so.3
WARN      := -Wall -Wextra -Wshadow -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes \
             -Wvla -Wwrite-strings -Wno-unused-parameter
CFLAGS    ?= -O2 -g
ifeq ($(WERROR),1)
WARN      += -Werror
endif
ifeq ($(SANITIZE),1)
CFLAGS    += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS   += -fsanitize=address,undefined
endif
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
# libkmod, libsystemd, libusb and libpci are opened at first use (lib/dl.h): their headers, not
# their link.
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(filter-out $(DLOPEN_PKGS),$(PKGS)) 2>/dev/null) -ldl
ALL_CFLAGS := -std=gnu11 -D_GNU_SOURCE -DVHP_VERSION=\"$(VERSION)\" -DVHP_SYSCONFDIR=\"$(SYSCONFDIR)\" \
              -DVHP_LIBKMOD_SONAME=\"$(LIBKMOD_SONAME)\" -DVHP_LIBSYSTEMD_SONAME=\"$(LIBSYSTEMD_SONAME)\" \
              -DVHP_LIBUSB_SONAME=\"$(LIBUSB_SONAME)\" -DVHP_LIBPCI_SONAME=\"$(LIBPCI_SONAME)\" \
              -Ilib -Idb $(PKG_CFLAGS) $(CPPFLAGS) $(WARN) $(CFLAGS) -MMD -MP

LIB_SRC   := $(sort $(wildcard lib/*.c db/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIBVHP    := $(BUILD)/libvhotplug.a

PROGS     := $(BUILD)/vhotplug-helper $(BUILD)/vhotplug-reconcile $(BUILD)/vhotplug-event \
             $(BUILD)/vhotplug-api $(BUILD)/vhotplugctl $(BUILD)/vhotplug-generator
UNIT_SRC  := $(sort $(wildcard tests/unit/test-*.c))
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC  := $(sort $(wildcard tests/tools/*.c))
TOOL_BIN  := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/%)

all: $(PROGS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBVHP): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/vhotplug-helper: $(BUILD)/obj/helper/main.o $(LIBVHP)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/vhotplug-reconcile: $(BUILD)/obj/reconcile/main.o $(LIBVHP)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/vhotplug-api: $(BUILD)/obj/api/main.o $(LIBVHP)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread

$(BUILD)/vhotplugctl: $(BUILD)/obj/ctl/main.o $(LIBVHP)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/vhotplug-generator: $(BUILD)/obj/generator/main.o $(LIBVHP)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# The udev rule's RUN program: libc only, linked statically (it runs for every device event of the
# host: no dynamic loading saves a third of its start-up), except in sanitizer builds.
EVENT_STATIC := $(if $(filter 1,$(SANITIZE)),,-static)
$(BUILD)/vhotplug-event: $(BUILD)/obj/helper/event-client.o
	$(CC) $(CFLAGS) $(LDFLAGS) $(EVENT_STATIC) -o $@ $^

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBVHP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS) -lcmocka

# Unit tests named test-umockdev-* build a libumockdev testbed (they run under umockdev-wrapper).
UMOCKDEV_CFLAGS := $(shell $(PKG_CONFIG) --cflags umockdev-1.0 2>/dev/null)
UMOCKDEV_LIBS   := $(shell $(PKG_CONFIG) --libs umockdev-1.0 2>/dev/null)
$(BUILD)/obj/tests/unit/test-umockdev-%.o: ALL_CFLAGS += $(UMOCKDEV_CFLAGS)
$(BUILD)/tests/test-umockdev-%: TEST_LIBS = $(UMOCKDEV_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/tools/%.o $(LIBVHP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

tests: $(PROGS) $(UNIT_BIN) $(TOOL_BIN)

# Installs missing Debian packages when run as root in CI; otherwise only reports them.
deps:
	@scripts/setup-deps.sh --check-or-install

check: deps
	@$(MAKE) --no-print-directory tests
	@BUILD=$(BUILD) tests/run-all.sh

check-sanitize:
	@$(MAKE) --no-print-directory BUILD=build-san SANITIZE=1 check

# Installs into a real systemd (PID 1 of a private container) and checks the event path: socket
# activation, sandbox, bursts, start limits, stop mid-burst. Needs root. See tests/system/README.md.
check-system: deps
	@$(MAKE) --no-print-directory tests
	@BUILD=$(BUILD) bash tests/system/check-system.sh
	@BUILD=$(BUILD) bash tests/system/check-api.sh

# The demo script installs or names the missing packages first, then builds what it uses.
# KEEP=1 keeps its database and prints the sqlite3 command line to query it.
demo:
	@BUILD=$(BUILD) KEEP=$(KEEP) scripts/demo.sh

setup:
	@scripts/setup-deps.sh --install

clean:
	rm -rf $(BUILD) build-san

# A release tarball of the committed tree (HEAD), vhotplug-VERSION/ inside; what is not committed is
# not in it. DISTDIR (default .) is where it goes.
DISTDIR ?= .
dist:
	@git diff --quiet HEAD -- 2>/dev/null || echo "warning: uncommitted changes are not in the tarball" >&2
	git archive --format=tar.gz --prefix=vhotplug-$(VERSION)/ -o $(DISTDIR)/vhotplug-$(VERSION).tar.gz HEAD
	@echo $(DISTDIR)/vhotplug-$(VERSION).tar.gz

print-version:
	@echo $(VERSION)

include mk/install.mk
include mk/fuzz.mk

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

.PHONY: all tests deps check check-sanitize check-system demo setup clean dist print-version
.SECONDARY:

# The unit tests under valgrind (memcheck): no error and no definite or indirect leak.
VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --suppressions=$(CURDIR)/tests/valgrind.supp \
            --child-silent-after-fork=yes
check-valgrind: tests
	@BUILD=$(BUILD) VHP_UNIT_WRAPPER="$(VALGRIND)" TESTS=$(or $(TESTS),test-) tests/run-all.sh --unit-only
.PHONY: check-valgrind

# Code layout: .clang-format is the reference. `make format` rewrites the C sources in place;
# `make check-format` (CI) fails listing the files that differ.
FORMAT_SRC = $(sort $(wildcard lib/*.[ch] db/*.[ch] helper/*.c reconcile/*.c api/*.c ctl/*.c generator/*.c \
                               tests/unit/*.[ch] tests/tools/*.c fuzz/*.c))
CLANG_FORMAT ?= clang-format
format:
	@$(CLANG_FORMAT) -i $(FORMAT_SRC)
check-format:
	@bad=$$(for f in $(FORMAT_SRC); do $(CLANG_FORMAT) "$$f" | cmp -s - "$$f" || echo "$$f"; done); \
	if [ -n "$$bad" ]; then echo "not formatted (make format):"; echo "$$bad" | sed 's/^/  /'; exit 1; fi
.PHONY: format check-format
