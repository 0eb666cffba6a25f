# Fuzzing (clang libFuzzer) and benchmarks. Included from the Makefile.
#
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="config qmp udev crosvm"] [FUZZ_JOBS=2]
#       builds every fuzz/fuzz-*.c with -fsanitize=fuzzer,address,undefined into $(FUZZ_BUILD) and
#       runs each target for FUZZ_SECONDS seconds, FUZZ_JOBS of them at a time, starting from the
#       seed corpus in fuzz/corpus/<target>/ (new inputs go to $(FUZZ_BUILD)/corpus/<target>/,
#       crashes to $(FUZZ_BUILD)/crashes/). Fails when any target finds a crash.
#   make fuzz-regress
#       runs every target once over its seed corpus (crash regressions live there).
#   make bench
#       runs bench/run.sh (needs hyperfine and /usr/bin/time; see bench/run.sh).
#   make bench-handoff
#       runs bench/handoff.sh: the udev-to-helper path under a real systemd (root; see the script).

FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 2
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=gnu11 -D_GNU_SOURCE -DVHP_VERSION=\"$(VERSION)\" -Ilib -Idb $(PKG_CFLAGS) \
                -Wall -Werror -g -O1 $(FUZZ_SAN)
FUZZ_ALL     := $(patsubst fuzz/fuzz-%.c,%,$(sort $(wildcard fuzz/fuzz-*.c)))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_BIN     := $(FUZZ_ALL:%=$(FUZZ_BUILD)/fuzz-%)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/libvhotplug.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz-%: $(FUZZ_BUILD)/obj/fuzz/fuzz-%.o $(FUZZ_BUILD)/libvhotplug.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS)

fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	@mkdir -p $(FUZZ_BUILD)/crashes
	@printf '%s\n' $(FUZZ_TARGETS) | xargs -P $(FUZZ_JOBS) -I{} sh -c '\
		mkdir -p $(FUZZ_BUILD)/corpus/{} && \
		echo "fuzz-{}: $(FUZZ_SECONDS) s, log $(FUZZ_BUILD)/fuzz-{}.log" && \
		$(FUZZ_BUILD)/fuzz-{} -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
			-artifact_prefix=$(FUZZ_BUILD)/crashes/{}- $(FUZZ_BUILD)/corpus/{} fuzz/corpus/{} \
			>$(FUZZ_BUILD)/fuzz-{}.log 2>&1 || { echo "fuzz-{}: FAILED, see $(FUZZ_BUILD)/fuzz-{}.log"; \
			tail -n 30 $(FUZZ_BUILD)/fuzz-{}.log; exit 1; }; \
		grep -E "^Done|stat::number_of_executed_units" $(FUZZ_BUILD)/fuzz-{}.log | sed "s/^/fuzz-{}: /"'

fuzz-regress: fuzz-build
	@for t in $(FUZZ_ALL); do $(FUZZ_BUILD)/fuzz-$$t -runs=0 fuzz/corpus/$$t >$(FUZZ_BUILD)/regress-$$t.log 2>&1 \
		&& echo "ok - fuzz-$$t corpus ($$(ls fuzz/corpus/$$t | wc -l) inputs)" \
		|| { echo "not ok - fuzz-$$t corpus"; tail -n 30 $(FUZZ_BUILD)/regress-$$t.log; exit 1; }; done

bench: all tests
	@BUILD=$(BUILD) bench/run.sh

# The production event path under a real systemd (container), new vs old hand-off (root).
bench-handoff: all tests
	@BUILD=$(BUILD) bench/handoff.sh

.PHONY: fuzz fuzz-build fuzz-regress bench bench-handoff
