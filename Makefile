# fusebox -- build, demos, tests and benchmarks.
#
#   make          build/fusebox (CLI), build/libfusebox.a, build/fusebox.so
#   make demo     install missing Debian packages, build, run the demos
#   make test     build and run every test, then again under ASan+UBSan
#                 and the C tests and demos under valgrind
#   make bench    benchmarks (ns/op, medians of several runs)
#
# Dependencies are found with pkg-config; when a Debian package is missing
# and we are root (or have sudo), it is installed with apt-get.

CC      ?= cc
BUILD   ?= build
PKGS    := luajit libuv libcjson

DEB_BUILD := pkg-config libluajit-5.1-dev luajit libuv1-dev libcjson-dev
DEB_TEST  := lua-busted libcmocka-dev valgrind
DEB_ALL   := $(DEB_BUILD) $(DEB_TEST)

# Lazily expanded: pkg-config runs after the deps target installed it.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) $(SANFLAGS) \
             -Isrc -I$(BUILD)/gen $(PKG_CFLAGS)
ALL_LDFLAGS = $(LDFLAGS) $(SANFLAGS)

ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
endif

CORE_SRC := src/rng.c src/registry.c src/balancer.c src/breaker.c \
            src/timerq.c src/util.c
LUA_SRC  := src/runtime.c src/lua_api.c src/lua_util.c src/lua_registry.c \
            src/lua_balancer.c src/lua_breaker.c src/lua_fusebox.c
LIB_SRC  := $(CORE_SRC) $(LUA_SRC)
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
LUA_LIB  := lua/fusebox.lua $(sort $(wildcard lua/fusebox/*.lua))

C_TESTS  := $(patsubst tests/c/%.c,$(BUILD)/tests/%.t,$(wildcard tests/c/test_*.c))
C_BENCH  := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(wildcard tests/bench/*.c))
CMP_BENCH := $(patsubst bench/%.c,$(BUILD)/cmp/%,$(wildcard bench/*.c))

.PHONY: all deps demo test test-plain test-san test-valgrind bench clean

all: deps
	@$(MAKE) --no-print-directory binaries

binaries: $(BUILD)/fusebox $(BUILD)/libfusebox.a $(BUILD)/fusebox.so

# ------------------------------------------------------------ dependencies

MISSING := $(shell for p in $(DEB_ALL); do \
             dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
             grep -q '^install ok installed' || echo $$p; done)

deps:
ifneq ($(strip $(MISSING)),)
	@echo "fusebox: installing missing Debian packages: $(MISSING)"
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(MISSING); \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(MISSING); \
	else \
	  echo "fusebox: cannot install packages (not root, no sudo). Please run:"; \
	  echo "  apt-get install $(MISSING)"; exit 1; \
	fi
endif

# ------------------------------------------------------------------ build

# Every file in lua/ is compiled to bytecode and embedded, so the CLI and
# fusebox.so need nothing on package.path: lua/fusebox/x.lua becomes the
# module "fusebox.x", listed in the generated fb_embedded[] table.
$(BUILD)/gen/fusebox_lib.h: $(LUA_LIB) Makefile
	@mkdir -p $(@D)/bc
	@set -e; for f in $(LUA_LIB); do \
	  m=$$(echo "$${f#lua/}" | sed 's/\.lua$$//; s|/|.|g'); \
	  luajit -b -g -t h -n "$$m" "$$f" "$(@D)/bc/$$m.h"; \
	done
	@{ for f in $(LUA_LIB); do \
	    m=$$(echo "$${f#lua/}" | sed 's/\.lua$$//; s|/|.|g'); \
	    echo "#include \"bc/$$m.h\""; done; \
	  echo "static const fb_embedded fb_embedded_modules[] = {"; \
	  for f in $(LUA_LIB); do \
	    m=$$(echo "$${f#lua/}" | sed 's/\.lua$$//; s|/|.|g'); \
	    c=$$(echo "$$m" | tr . _); \
	    echo "  {\"$$m\", luaJIT_BC_$$c, luaJIT_BC_$${c}_SIZE},"; done; \
	  echo "  {0, 0, 0}};"; } > $@

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) $(BUILD)/gen/fusebox_lib.h
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libfusebox.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

# The Lua module leaves lua_* symbols to the luajit process loading it.
$(BUILD)/fusebox.so: $(LIB_OBJ)
	$(CC) -shared $(ALL_LDFLAGS) -o $@ $^ $(shell pkg-config --libs libuv libcjson) -lm

$(BUILD)/fusebox: $(BUILD)/obj/main.o $(BUILD)/libfusebox.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(BUILD)/tests/%.t: tests/c/%.c $(BUILD)/libfusebox.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Itests/c $< -o $@ $(BUILD)/libfusebox.a $(PKG_LIBS) -lcmocka -lm

$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libfusebox.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< -o $@ $(BUILD)/libfusebox.a $(PKG_LIBS) -lm

# The comparison benchmarks' C contenders (bench/, see BENCHMARKS.md).
$(BUILD)/cmp/%: bench/%.c bench/bench_util.h $(BUILD)/libfusebox.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< -o $@ $(BUILD)/libfusebox.a $(PKG_LIBS) -lm

# ------------------------------------------------------------------- demo

demo: all
	@echo "== examples/service_discovery.lua"
	@$(BUILD)/fusebox run examples/service_discovery.lua
	@echo
	@echo "== examples/circuit_breaker.lua (real time, about 5 s)"
	@$(BUILD)/fusebox run examples/circuit_breaker.lua

# ------------------------------------------------------------------- test

SAN_RT := $(shell $(CC) -print-file-name=libasan.so 2>/dev/null) \
          $(shell $(CC) -print-file-name=libubsan.so 2>/dev/null)

test: all
	@$(MAKE) --no-print-directory test-plain
	@$(MAKE) --no-print-directory test-san
	@$(MAKE) --no-print-directory test-valgrind

# Every test file prints TAP; prove runs them all and closes with a summary.
test-plain: binaries $(C_TESTS)
	@echo "== tests ($(BUILD))"
	FB_BUILD=$(BUILD) CMOCKA_MESSAGE_OUTPUT=TAP prove --exec '' $(C_TESTS) tests/*.t

SAN_BUILD := $(BUILD)/san
SAN_TESTS := $(patsubst $(BUILD)/%,$(SAN_BUILD)/%,$(C_TESTS))

test-san:
	@echo "== tests under AddressSanitizer + UBSan"
	@$(MAKE) --no-print-directory SAN=1 BUILD=$(SAN_BUILD) binaries $(SAN_TESTS)
	FB_BUILD=$(SAN_BUILD) FB_PRELOAD="$(strip $(SAN_RT))" \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  CMOCKA_MESSAGE_OUTPUT=TAP \
	  prove --exec '' $(SAN_TESTS) tests/*.t

test-valgrind: binaries $(C_TESTS)
	@echo "== C tests and demos under valgrind"
	FB_BUILD=$(BUILD) prove --exec '' tests/valgrind/*.t

# ------------------------------------------------------------------ bench

# The microbenchmarks report on stderr, so stdout is the one comparison
# table of bench/run.sh (BENCHMARKS.md).
bench: all $(C_BENCH) $(CMP_BENCH)
	@FB_BUILD=$(BUILD) sh tests/bench/run.sh >&2
	@FB_BUILD=$(BUILD) sh bench/run.sh

clean:
	rm -rf $(BUILD)
