#!/bin/sh
# libfusebox as a C host sees it: install into a temporary prefix, check
# the exported symbols, then build with pkg-config and run the README's
# minimal host and examples/embed_host.c against the installed library.
cd "$(dirname "$0")/.." || exit 1
B="${FB_BUILD:-build}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "1..6"
n=0
check() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }

make -s --no-print-directory install BUILD="$B" PREFIX="$tmp" >"$tmp/install.log" 2>&1
check $? "make install PREFIX=$tmp"

others=$(nm -D --defined-only "$tmp/lib/libfusebox.so" | awk '{print $3}' | grep -v '^fb_')
[ -z "$others" ] && [ "$(readelf -d "$tmp/lib/libfusebox.so" | grep -c 'SONAME.*libfusebox.so.0')" = 1 ]
check $? "libfusebox.so has a versioned SONAME and exports only fb_ symbols"

export PKG_CONFIG_PATH="$tmp/lib/pkgconfig"
flags="$(pkg-config --cflags --libs fusebox libuv)"
sed -n '/<!-- embed-example -->/,/<!-- \/embed-example -->/p' README.md | sed '1,2d;$d' | sed '$d' >"$tmp/host.c"
cc -Wall -Wextra -Werror "$tmp/host.c" $flags -o "$tmp/host" 2>"$tmp/cc.log"
check $? "the README's minimal host compiles with pkg-config"

[ -n "$FB_PRELOAD" ] && export LD_PRELOAD="$FB_PRELOAD" ASAN_OPTIONS=detect_leaks=0
out=$(LD_LIBRARY_PATH="$tmp/lib" "$tmp/host")
echo "$out" | grep -q "call 2: failed, breaker OPEN" &&
  echo "$out" | grep -q "call 3: rejected, retry in 30 s"
check $? "the README's minimal host runs: $(echo "$out" | tr '\n' ';')"

cc -Wall -Wextra -Werror examples/embed_host.c $flags -o "$tmp/embed_host" 2>>"$tmp/cc.log"
check $? "examples/embed_host.c builds against the installed library"

out=$(LD_LIBRARY_PATH="$tmp/lib" "$tmp/embed_host" examples/embed_policy.lua)
echo "$out" | grep -q "^backend 2 (broken): sent [1-9][0-9]*, ok 0, .*breaker OPEN" &&
  echo "$out" | grep -q "^backend 1: sent [1-9][0-9]*, ok [1-9][0-9]*, failed 0" &&
  echo "$out" | grep -q "^backend 3: sent [1-9][0-9]*, ok [1-9][0-9]*, failed 0"
check $? "embed_host routes around the broken backend: $(echo "$out" | tr '\n' ';')"
