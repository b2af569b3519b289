# fusebox -- build, demos, tests and benchmarks.
#
#   make          build/fusebox (CLI), build/libfusebox.a, build/fusebox.so
#   make demo     install missing Debian packages, build, run the demos
#   make fuzz     coverage-guided fuzzing with libFuzzer (clang), FUZZ_SECONDS
#                 per target (default 60), FUZZ_TARGETS to pick some
#   make test     build and run every test, then again under ASan+UBSan
#                 and the C tests and demos under valgrind
#   make bench    benchmarks (ns/op, medians of several runs)
#   make soak     fusebox serve under wrk churn for SOAK_SECONDS (300)
#
# Dependencies are found with pkg-config; when a Debian package is missing
# and we are root (or have sudo), it is installed with apt-get.

CC      ?= cc
BUILD   ?= build
PKGS    := luajit libuv libcjson openssl

# What each target needs: building (and so the demos) only DEB_BUILD;
# `make test` adds the test tools, `make bench` the load generator.
DEB_BUILD := pkg-config gcc libc6-dev libluajit2-5.1-dev luajit2 libuv1-dev \
             libcjson-dev libhttp-parser-dev libssl-dev
DEB_TEST  := lua-busted libcmocka-dev valgrind prometheus curl openssl etcd-server etcd-client \
             nginx-light libnginx-mod-http-lua
DEB_BENCH := wrk openssl etcd-server etcd-client nginx-light libnginx-mod-http-lua
# The report's browser test; optional: where apt cannot install it, the
# test skips and says why (deps-browser leaves the reason in $(BUILD)).
DEB_BROWSER := chromium

# Lazily expanded: pkg-config runs after the deps target installed it.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lhttp_parser

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) $(SANFLAGS) \
             -Isrc -I$(BUILD)/gen $(PKG_CFLAGS)
ALL_LDFLAGS = $(LDFLAGS) $(SANFLAGS)

ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
endif
ifeq ($(SAN),thread)
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
endif
# The libFuzzer build (make fuzz, with CC=clang): every object carries
# coverage counters; only the fuzz targets link libFuzzer itself.
ifeq ($(SAN),fuzz)
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
endif

CORE_SRC := src/rng.c src/registry.c src/balancer.c src/balancer_hash.c src/outlier.c src/breaker.c \
            src/limiter.c src/base64.c src/timerq.c src/util.c
LUA_SRC  := src/runtime.c src/embed.c src/lua_api.c src/lua_util.c \
            src/lua_registry.c src/lua_balancer.c src/lua_breaker.c src/lua_limiter.c \
            src/lua_fusebox.c src/events.c src/lua_events.c src/lua_json.c \
            src/lua_tcp.c src/lua_http.c src/lua_catalog.c src/lua_backend.c \
            src/tls.c src/lua_tls.c \
            src/lua_zone.c \
            src/lua_signal.c src/lua_dns.c
REPORT_SRC := src/report.c src/report_html.c src/trace.c
# Shared memory between processes (nginx workers): files and mappings.
ZONE_SRC := src/zone.c
LIB_SRC  := $(CORE_SRC) $(LUA_SRC) $(REPORT_SRC) $(ZONE_SRC)
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
LUA_LIB  := lua/fusebox.lua $(sort $(wildcard lua/fusebox/*.lua))

C_TESTS  := $(patsubst tests/c/%.c,$(BUILD)/tests/%.t,$(wildcard tests/c/test_*.c))
C_BENCH  := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(wildcard tests/bench/*.c))
CMP_BENCH := $(patsubst bench/%.c,$(BUILD)/cmp/%,$(wildcard bench/*.c))
# The fuzz targets (tests/fuzz/, see "fuzz" below): Lua scripts and C files.
FUZZ_LUA := $(filter-out lib,$(basename $(notdir $(wildcard tests/fuzz/*.lua))))
FUZZ_C   := $(filter-out lua_target replay_main,$(basename $(notdir $(wildcard tests/fuzz/*.c))))
FUZZ_ALL := $(FUZZ_LUA) $(FUZZ_C)
FUZZ_REPLAY := $(FUZZ_ALL:%=$(BUILD)/fuzz/replay/%)

.PHONY: all binaries deps deps-test deps-bench deps-fuzz deps-browser demo test test-plain test-san test-tsan test-valgrind bench \
        install uninstall clean fuzz fuzz-merge

all: deps
	@$(MAKE) --no-print-directory binaries

SONAME  := libfusebox.so.$(shell sed -n 's/^#define FB_VERSION_MAJOR //p' src/fusebox.h)
VERSION := $(shell sed -n 's/^#define FB_VERSION_STRING "\(.*\)"/\1/p' src/fusebox.h)

binaries: $(BUILD)/fusebox $(BUILD)/libfusebox.a $(BUILD)/fusebox.so \
          $(BUILD)/libfusebox.so

# ------------------------------------------------------------ dependencies

# $(call missing,PACKAGES): those not installed; $(call install,PACKAGES):
# a recipe installing the missing ones with apt-get (as root or by sudo).
missing = $(shell for p in $(1); do \
            dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
            grep -q '^install ok installed' || echo $$p; done)
define install
@m="$(strip $(call missing,$(1)))"; [ -z "$$m" ] && exit 0; \
echo "fusebox: installing missing Debian packages: $$m"; \
if [ "$$(id -u)" = 0 ]; then \
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$m; \
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
  sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$m; \
else \
  echo "fusebox: cannot install packages (not root, no sudo). Please run:"; \
  echo "  apt-get install $$m"; exit 1; \
fi
endef

deps:
	$(call install,$(DEB_BUILD))

deps-test:
	$(call install,$(DEB_TEST))

deps-bench:
	$(call install,$(DEB_BENCH))

deps-fuzz:
	$(call install,$(DEB_FUZZ))

deps-browser:
	@mkdir -p $(BUILD)
	@rm -f $(BUILD)/browser-unavailable.txt
	@for p in $(DEB_BROWSER); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' && continue; \
	  echo "fusebox: installing $$p for the report's browser test"; \
	  if [ "$$(id -u)" = 0 ]; then \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$p; } \
	      > $(BUILD)/browser-install.log 2>&1 || \
	      { echo "apt-get install $$p failed: $$(tail -1 $(BUILD)/browser-install.log)" \
	          > $(BUILD)/browser-unavailable.txt; cat $(BUILD)/browser-unavailable.txt; }; \
	  else \
	    echo "not root: cannot apt-get install $$p" > $(BUILD)/browser-unavailable.txt; \
	  fi; \
	done

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
	@echo "  CC    $<"
	@$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libfusebox.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

# The Lua module leaves lua_* symbols to the luajit process loading it,
# and exports only its openers: luaopen_fusebox, luaopen_fusebox_ngx.
$(BUILD)/fusebox.so: $(LIB_OBJ) $(BUILD)/gen/module.map
	$(CC) -shared $(ALL_LDFLAGS) -Wl,--version-script=$(BUILD)/gen/module.map \
	  -o $@ $(LIB_OBJ) $(shell pkg-config --libs libuv libcjson openssl) -lhttp_parser -lm

# The C library exports the fb_ API and nothing else.
$(BUILD)/libfusebox.so: $(LIB_OBJ) $(BUILD)/gen/library.map
	$(CC) -shared $(ALL_LDFLAGS) -Wl,-soname,$(SONAME) \
	  -Wl,--version-script=$(BUILD)/gen/library.map -o $@ $(LIB_OBJ) $(PKG_LIBS) -lm

$(BUILD)/gen/module.map: Makefile
	@mkdir -p $(@D)
	@echo '{ global: luaopen_fusebox; luaopen_fusebox_ngx; local: *; };' > $@

$(BUILD)/gen/library.map:
	@mkdir -p $(@D)
	@echo '{ global: fb_*; local: *; };' > $@

$(BUILD)/fusebox: $(BUILD)/obj/main.o $(BUILD)/obj/explore.o $(BUILD)/obj/compare.o $(BUILD)/libfusebox.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(BUILD)/tests/%.t: tests/c/%.c $(BUILD)/libfusebox.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Itests/c $< -o $@ $(BUILD)/libfusebox.a $(PKG_LIBS) -lcmocka -lm

$(BUILD)/bench/%: tests/bench/%.c tests/bench/bench.h $(BUILD)/libfusebox.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< -o $@ $(BUILD)/libfusebox.a $(PKG_LIBS) -lm

# The comparison benchmarks' C contenders (bench/, see BENCHMARKS.md).
$(BUILD)/cmp/%: bench/%.c bench/bench_util.h $(BUILD)/libfusebox.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< -o $@ $(BUILD)/libfusebox.a $(PKG_LIBS) -lm

# The naive classic C-API binding the Lua hot-path rows are measured
# against, loaded into the same process (bench/lua/naive.c).
$(BUILD)/cmp/naive.so: bench/lua/naive.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -shared $< -o $@

# ------------------------------------------------------------------- demo

demo: all
	@echo "== examples/service_discovery.lua"
	@$(BUILD)/fusebox run examples/service_discovery.lua
	@echo
	@echo "== examples/circuit_breaker.lua (real time, about 5 s)"
	@$(BUILD)/fusebox run examples/circuit_breaker.lua
	@for f in instance_crash slow_degrade slow_instance outage_recovery adaptive_limit retry_storm hedged_requests outlier_ejection slow_start; do \
	  echo; echo "== examples/$$f.lua (virtual time, seed 1)"; \
	  $(BUILD)/fusebox run --virtual-time --seed 1 examples/$$f.lua || exit 1; \
	done
	@echo; echo "== reports: $(BUILD)/report_breaker.html, $(BUILD)/report_outage.html"
	@$(BUILD)/fusebox run --virtual-time --seed 1 --report $(BUILD)/report_breaker.html \
	  examples/circuit_breaker.lua >/dev/null
	@$(BUILD)/fusebox run --virtual-time --seed 1 --report $(BUILD)/report_outage.html \
	  examples/outage_recovery.lua >/dev/null

# ------------------------------------------------------------------- test

SAN_RT := $(shell $(CC) -print-file-name=libasan.so 2>/dev/null) \
          $(shell $(CC) -print-file-name=libubsan.so 2>/dev/null)

test: all deps-test deps-browser
	@$(MAKE) --no-print-directory test-plain
	@$(MAKE) --no-print-directory test-san
	@$(MAKE) --no-print-directory test-tsan
	@$(MAKE) --no-print-directory test-valgrind

# Every test file prints TAP; prove runs them all and closes with a summary.
test-plain: binaries $(C_TESTS) $(FUZZ_REPLAY)
	@echo "== tests ($(BUILD))"
	FB_BUILD=$(BUILD) CMOCKA_MESSAGE_OUTPUT=TAP prove --exec '' $(C_TESTS) tests/*.t

SAN_BUILD := $(BUILD)/san
SAN_TESTS := $(patsubst $(BUILD)/%,$(SAN_BUILD)/%,$(C_TESTS))

test-san:
	@echo "== tests under AddressSanitizer + UBSan"
	@$(MAKE) --no-print-directory SAN=1 BUILD=$(SAN_BUILD) binaries $(SAN_TESTS) \
	  $(patsubst $(BUILD)/%,$(SAN_BUILD)/%,$(FUZZ_REPLAY))
	FB_BUILD=$(SAN_BUILD) FB_PRELOAD="$(strip $(SAN_RT))" \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  CMOCKA_MESSAGE_OUTPUT=TAP \
	  prove --exec '' $(SAN_TESTS) tests/*.t

# The threading contract: the multi-threaded tests under ThreadSanitizer.
TSAN_BUILD := $(BUILD)/tsan
# test_shared_breaker's processes are out of ThreadSanitizer's sight (it
# follows one address space); test_threads has the robust mutex's threads.
TSAN_TESTS := $(TSAN_BUILD)/tests/test_threads.t \
              $(TSAN_BUILD)/tests/test_shared_breaker.t \
              $(TSAN_BUILD)/tests/test_limiter.t

test-tsan:
	@echo "== threaded tests under ThreadSanitizer"
	@$(MAKE) --no-print-directory SAN=thread BUILD=$(TSAN_BUILD) $(TSAN_TESTS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 CMOCKA_MESSAGE_OUTPUT=TAP \
	  prove --exec '' $(TSAN_TESTS)

test-valgrind: binaries $(C_TESTS)
	@echo "== C tests and demos under valgrind"
	FB_BUILD=$(BUILD) prove --exec '' tests/valgrind/*.t

# ------------------------------------------------------------------- fuzz

# The fuzz targets (tests/fuzz/): the ones written in Lua run on one
# LuaJIT state through tests/fuzz/lua_target.c; the others are C. Each is
# built twice: against libFuzzer with clang (make fuzz), and with a
# plain main that replays files (tests/fuzz/replay_main.c), for this
# build, so make test replays every corpus and crash input, plain and
# under ASan+UBSan (tests/fuzz.t), without clang.
FUZZ_GEN := $(BUILD)/fuzz/gen

$(FUZZ_GEN)/fuzz_lib.h: tests/fuzz/lib.lua
	@mkdir -p $(@D)
	luajit -b -g -t h -n fuzz_lib $< $@

$(FUZZ_GEN)/%/fuzz_script.h: tests/fuzz/%.lua
	@mkdir -p $(@D)
	luajit -b -g -t h -n fuzz_script $< $@

FUZZ_LUA_CC = $(CC) $(ALL_CFLAGS) -I$(FUZZ_GEN)/$* -I$(FUZZ_GEN) tests/fuzz/lua_target.c

$(FUZZ_LUA:%=$(BUILD)/fuzz/replay/%): $(BUILD)/fuzz/replay/%: \
    tests/fuzz/lua_target.c $(FUZZ_GEN)/%/fuzz_script.h $(FUZZ_GEN)/fuzz_lib.h \
    tests/fuzz/replay_main.c $(BUILD)/libfusebox.a
	@mkdir -p $(@D)
	$(FUZZ_LUA_CC) tests/fuzz/replay_main.c -o $@ $(BUILD)/libfusebox.a $(PKG_LIBS) -lm

$(FUZZ_C:%=$(BUILD)/fuzz/replay/%): $(BUILD)/fuzz/replay/%: \
    tests/fuzz/%.c tests/fuzz/replay_main.c $(BUILD)/libfusebox.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< tests/fuzz/replay_main.c -o $@ $(BUILD)/libfusebox.a $(PKG_LIBS) -lm

$(FUZZ_LUA:%=$(BUILD)/fuzz/bin/%): $(BUILD)/fuzz/bin/%: \
    tests/fuzz/lua_target.c $(FUZZ_GEN)/%/fuzz_script.h $(FUZZ_GEN)/fuzz_lib.h $(BUILD)/libfusebox.a
	@mkdir -p $(@D)
	$(FUZZ_LUA_CC) -DFUZZ_LUA_COVERAGE -fsanitize=fuzzer -o $@ $(BUILD)/libfusebox.a $(PKG_LIBS) -lm

$(FUZZ_C:%=$(BUILD)/fuzz/bin/%): $(BUILD)/fuzz/bin/%: tests/fuzz/%.c $(BUILD)/libfusebox.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< -fsanitize=fuzzer -o $@ $(BUILD)/libfusebox.a $(PKG_LIBS) -lm

DEB_FUZZ     := clang libclang-rt-14-dev
FUZZ_BUILD   := $(BUILD)/libfuzzer
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(FUZZ_ALL)

# make fuzz: each target for FUZZ_SECONDS, one after the other. New
# inputs go to $(FUZZ_BUILD)/corpus/<target>, crashes to
# $(FUZZ_BUILD)/crashes/<target>; the committed seeds stay as they are
# (make fuzz-merge adds what found new coverage). tests/fuzz/run.sh says
# how each target's libFuzzer is called.
fuzz: deps deps-fuzz
	@$(MAKE) --no-print-directory SAN=fuzz CC=clang BUILD=$(FUZZ_BUILD) \
	  $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz/bin/%)
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh $(FUZZ_TARGETS)

# make fuzz-merge: adds to tests/fuzz/corpus/<target> the inputs of the
# last make fuzz that reach coverage the committed corpus does not
# (libFuzzer -merge=1), and nothing else, so the corpus stays small.
fuzz-merge:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  test -d $(FUZZ_BUILD)/corpus/$$t || continue; \
	  echo "== $$t"; \
	  $(FUZZ_BUILD)/fuzz/bin/$$t -merge=1 tests/fuzz/corpus/$$t $(FUZZ_BUILD)/corpus/$$t 2>&1 | \
	    grep -E '^MERGE-OUTER: [0-9]+ new files' || true; \
	done

# ------------------------------------------------------------------ bench

# The microbenchmarks report on stderr, so stdout is the one comparison
# table of bench/run.sh (BENCHMARKS.md).
bench: all deps-bench $(C_BENCH) $(CMP_BENCH) $(BUILD)/cmp/naive.so
	@FB_BUILD=$(BUILD) sh tests/bench/run.sh >&2
	@FB_BUILD=$(BUILD) sh bench/run.sh

# ------------------------------------------------------------------- soak

# `fusebox serve` on loopback under wrk with registration churn and
# expiry; fails on any error, RSS growth after warm-up or a connection
# left open (tests/soak/serve.sh). Not part of make test: it takes minutes.
SOAK_SECONDS ?= 300
.PHONY: soak
soak: binaries
	@FB_BUILD=$(BUILD) SOAK_SECONDS=$(SOAK_SECONDS) sh tests/soak/serve.sh

# ---------------------------------------------------------------- install

PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  := $(PREFIX)/lib
# The Lua sources go beside, not on package.path: they are embedded in the
# binaries, and a fusebox.lua on the path would shadow the C module.
LUADIR  := $(PREFIX)/share/fusebox/lua
LUACDIR := $(PREFIX)/lib/lua/5.1
INSTALLED := bin/fusebox include/fusebox.h lib/libfusebox.a \
             lib/libfusebox.so lib/$(SONAME) lib/libfusebox.so.$(VERSION) \
             lib/pkgconfig/fusebox.pc lib/lua/5.1/fusebox.so

install: binaries
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LUADIR)/fusebox $(DESTDIR)$(LUACDIR)
	install -m 755 $(BUILD)/fusebox $(DESTDIR)$(PREFIX)/bin/fusebox
	install -m 644 src/fusebox.h $(DESTDIR)$(PREFIX)/include/fusebox.h
	install -m 644 $(BUILD)/libfusebox.a $(DESTDIR)$(LIBDIR)/libfusebox.a
	install -m 755 $(BUILD)/libfusebox.so $(DESTDIR)$(LIBDIR)/libfusebox.so.$(VERSION)
	ln -sf libfusebox.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libfusebox.so
	install -m 755 $(BUILD)/fusebox.so $(DESTDIR)$(LUACDIR)/fusebox.so
	install -m 644 lua/fusebox.lua $(DESTDIR)$(LUADIR)/fusebox.lua
	install -m 644 lua/fusebox/*.lua $(DESTDIR)$(LUADIR)/fusebox/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@VERSION@|$(VERSION)|' src/fusebox.pc.in \
	  > $(DESTDIR)$(LIBDIR)/pkgconfig/fusebox.pc

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/,$(INSTALLED))
	rm -rf $(DESTDIR)$(PREFIX)/share/fusebox

clean:
	rm -rf $(BUILD)
