#!/bin/sh
# The report page in a real browser: headless Chromium opens reports of
# two runs (a breaker through an outage, an instance crash), takes a
# screenshot and dumps the DOM after its script ran; the DOM must hold
# the header, one series per service or breaker, one band per breaker
# state interval and one row per instance, with the counts the events
# file implies. TAP. Runs once: the sanitizer pass skips it (the page
# does not change with the build, and the browser is slow).
cd "$(dirname "$0")/.." || exit 1
B="${FB_BUILD:-build}"
N=12

skip_all() {
  i=1
  while [ $i -le $N ]; do
    echo "ok $i # SKIP $1"
    i=$((i + 1))
  done
  exit 0
}

echo "1..$N"
if [ -n "$FB_PRELOAD" ]; then
  echo "# the browser checks run in the plain pass only (make test-plain)"
  skip_all "browser checks run in the plain pass only"
fi
if ! command -v chromium >/dev/null 2>&1; then
  why="not installed"
  [ -f "$B/browser-unavailable.txt" ] && why=$(cat "$B/browser-unavailable.txt")
  echo "# chromium is missing: make test installs it (DEB_BROWSER) when apt can"
  skip_all "chromium unavailable: $why"
fi

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# Loads file:// $1 in a fresh profile; $2: --dump-dom or --screenshot=...
browse() {
  profile=$(mktemp -d "$T/profile.XXXXXX")
  timeout -k 5 60 chromium --headless --no-sandbox --disable-gpu \
    --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" \
    --window-size=1400,2000 "$2" "file://$1" 2>"$T/chromium.err"
}

n=0
check() { # check "name" cmd...: ok when cmd succeeds
  name=$1
  shift
  n=$((n + 1))
  if "$@"; then
    echo "ok $n - $name"
  else
    echo "not ok $n - $name"
    sed 's/^/# /' "$T/why" 2>/dev/null | head -20
  fi
  rm -f "$T/why"
}

equal() { # equal what got want
  [ "$2" = "$3" ] && return 0
  echo "$1: got '$2', want '$3'" >"$T/why"
  return 1
}

# count FILE REGEX: matches in the file (a match per occurrence)
count() { perl -0ne '$n = () = /'"$2"'/g; print $n + 0' "$1"; }

# section FILE ID: the text of <section id="ID"> ... </section>
section() { perl -0ne 'print $1 if m{(<section id="'"$2"'".*?</section>)}s' "$1"; }

# --- a breaker through an outage
"$B/fusebox" run --virtual-time --seed 1 --events "$T/outage.jsonl" \
  --report "$T/outage.html" examples/outage_recovery.lua >/dev/null 2>&1
browse "$T/outage.html" --dump-dom >"$T/outage.dom"
check "chromium renders the outage report" \
  sh -c "grep -q '</html>' '$T/outage.dom' || { cp '$T/chromium.err' '$T/why'; false; }"
browse "$T/outage.html" --screenshot="$T/outage.png" >/dev/null
check "the screenshot is a PNG" \
  sh -c "head -c 8 '$T/outage.png' | grep -q PNG && [ \$(wc -c <'$T/outage.png') -gt 20000 ]"
if [ -n "$FB_KEEP_SCREENSHOTS" ]; then cp "$T/outage.png" "$FB_KEEP_SCREENSHOTS/"; fi

check "the header names the seed" \
  equal "#seed" "$(perl -ne 'print $1 if /<td id="seed">([^<]*)</' "$T/outage.dom")" 1
check "the header shows the replay command" \
  equal "#replay" "$(perl -ne 'print $1 if /<code id="replay">([^<]*)</' "$T/outage.dom")" \
  "fusebox run --virtual-time --seed 1 examples/outage_recovery.lua"
calls=$(grep -c '"kind":"call_end"' "$T/outage.jsonl")
check "the header counts the calls" \
  equal "#total-calls" "$(perl -ne 'print $1 if /<td id="total-calls">(\d+)</' "$T/outage.dom")" "$calls"

changes=$(grep -c '"kind":"state_change"' "$T/outage.jsonl")
section "$T/outage.dom" breakers >"$T/breakers"
check "one breaker band per state interval ($((changes + 1)))" \
  equal "bands" "$(count "$T/breakers" '<rect class="band s-')" "$((changes + 1))"
check "one transition mark per state change ($changes)" \
  equal "transitions" "$(count "$T/breakers" 'class="transition"')" "$changes"
opens=$(grep -c '"to":"OPEN"' "$T/outage.jsonl")
check "an OPEN band per opening ($opens)" \
  equal "OPEN bands" "$(count "$T/breakers" 'data-state="OPEN"')" "$opens"

# the service's calls and the breaker's view: two series
section "$T/outage.dom" requests >"$T/requests"
check "one series per service and breaker" \
  equal "series" "$(count "$T/requests" '<g class="series" data-series="(payments|breaker 1)"')" 2

# --- an instance crash: membership and picks per instance
"$B/fusebox" run --virtual-time --seed 1 --report "$T/crash.html" \
  examples/instance_crash.lua >/dev/null 2>&1
browse "$T/crash.html" --dump-dom >"$T/crash.dom"
section "$T/crash.dom" members >"$T/members"
check "one membership row per instance" \
  equal "members" "$(count "$T/members" '<g class="member" data-instance="user-service 192\.168\.1\.1[012]:8080"')" 3
check "the crashed instance goes silent, then expires" \
  sh -c "grep -q 'data-instance=\"user-service 192.168.1.11:8080\" data-intervals=\"3\"' '$T/members'"
section "$T/crash.dom" picks >"$T/picks"
check "one picks series per instance" \
  equal "pick series" "$(count "$T/picks" '<g class="pick-series"')" 3
