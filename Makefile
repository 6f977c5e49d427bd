# Tollgate build. Plain make + pkg-config; see README.md for the two commands.
#
#   make            build ./tollgate
#   make run        install missing packages, build, start Redis if needed, serve on :8080
#   make test       include floors, unit tests (cmocka), end-to-end tests (node:test + SDKs)
#   make asan       the same suite on an ASan + UBSan build
#   make bench      load figures against the simulator and nginx (bench/)
#   make fuzz       every libFuzzer target for FUZZ_SECONDS (default 30) each
#   make clean

PKGS      := libevent libevent_pthreads libevent_openssl libcurl jansson openssl hiredis yaml-0.1 libnghttp2
CC        ?= cc
BUILD     ?= build
OPT       ?= -O2
CFLAGS    += -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror \
             -Wno-unused-parameter -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS    += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhiredis -lhttp_parser -lpthread -lm

SRC       := $(wildcard core/*.c providers/*.c policy/*.c gateway/*.c sim/*.c)
OBJ       := $(SRC:%.c=$(BUILD)/%.o)
LIBOBJ    := $(filter-out $(BUILD)/gateway/main.o,$(OBJ))
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all run test unit e2e asan bench fuzz clean deps check-deps fmt check-includes
all: check-deps tollgate

tollgate: $(BUILD)/tollgate
	@cp $< $@.new && mv -f $@.new $@

$(BUILD)/tollgate: $(OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# A unit test names the sources it needs on a line of its own:
#   /* deps: core/sse.c core/pool.c */
# so tests link only what they exercise and one module's work in progress
# does not break another module's tests.
test_deps = $(patsubst %.c,$(BUILD)/%.o,$(shell sed -n 's|^/\* deps: \(.*\) \*/$$|\1|p' $(1)))
.SECONDEXPANSION:
$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $$(call test_deps,tests/unit/test_$$*.c)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# Missing Debian packages are installed (as root) or named, by purpose.
check-deps:
	@./tools/deps.sh --check build || ./tools/deps.sh build

deps:
	@./tools/deps.sh test bench

unit: check-deps $(UNIT_BIN)
	@./tools/deps.sh --check test || ./tools/deps.sh test
	@./tools/run-unit.sh $(UNIT_BIN)

e2e: check-deps $(BUILD)/tollgate
	@./tools/deps.sh --check test || ./tools/deps.sh test
	@TOLLGATE_BIN=$(abspath $(BUILD)/tollgate) ./tools/run-e2e.sh

# Includes point down the floors (core < providers, policy < gateway, sim):
# a cheap text check, run first.
check-includes:
	@./tools/check-includes.sh

test: check-includes unit e2e

asan:
	TOLLGATE_SANITIZED=1 $(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" test

run: all
	@./tools/deps.sh --check run || ./tools/deps.sh run
	@./tools/run.sh

bench: all
	@./tools/deps.sh --check bench || ./tools/deps.sh bench
	@./bench/run.sh

fuzz:
	@./tools/deps.sh --check test || ./tools/deps.sh test
	@./tools/fuzz.sh $(FUZZ_SECONDS)

# The same files .ci/run checks with clang-format --dry-run -Werror.
fmt:
	clang-format -i $(wildcard $(foreach d,core providers policy gateway sim tests/unit tests/fuzz,$(d)/*.c $(d)/*.h))

clean:
	rm -rf build build-asan tollgate

-include $(OBJ:.o=.d) $(UNIT_BIN:%=%.d)
