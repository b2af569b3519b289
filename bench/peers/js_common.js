// bench/peers/js_common.js -- what the JavaScript peers share: a virtual
// clock (Date.now, setTimeout and setInterval replaced before the
// libraries run, so a breaker's reset timer and opossum's rolling-window
// rotation fire when the benchmark moves time forward), a
// seeded generator, the same schedule as bench/guarded_call.c, and the
// result lines bench/table.py reads.
'use strict';

const clock = { now: 0, timers: new Map(), nextId: 1 };

Date.now = () => clock.now;
function addTimer(fn, ms, period, args) {
  const id = clock.nextId++;
  clock.timers.set(id, { due: clock.now + (ms || 0), fn, period, args });
  return { id, unref() { return this; }, ref() { return this; } };
}
const removeTimer = (t) => { if (t) clock.timers.delete(t.id); };
globalThis.setTimeout = (fn, ms, ...args) => addTimer(fn, ms, 0, args);
globalThis.setInterval = (fn, ms, ...args) => addTimer(fn, ms, Math.max(ms || 0, 1), args);
globalThis.clearTimeout = removeTimer;
globalThis.clearInterval = removeTimer;

// Moves the virtual clock forward and fires the timers that fell due.
function advance(ms) {
  clock.now += ms;
  for (const [id, t] of clock.timers) {
    while (clock.timers.has(id) && t.due <= clock.now) {
      if (t.period) t.due += t.period;
      else clock.timers.delete(id);
      t.fn(...t.args);
    }
  }
}

// mulberry32: small, seeded, good enough to draw failures.
function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const nowNs = () => Number(process.hrtime.bigint());

function emit(row) {
  process.stdout.write(JSON.stringify({ unit: 'ns/op', ...row }) + '\n');
}

const SCHEDULE = { CALLS_PER_TICK: 100, TICK_MS: 500, FAILURE_RATE: 0.7, RUNS: 3 };

// Runs the two guarded-call cases for one library.
// make(fn) -> call(): a promise for fn's result through a fresh breaker.
// Rejections and failures are slow here (an Error per call), so the
// failing case runs failingCalls, fewer than calls.
async function guardedCall(impl, make, calls, failingCalls) {
  const trivial = () => 1;
  const runs = [];
  for (let r = 0; r <= SCHEDULE.RUNS; r++) {
    const call = make(trivial);
    const t0 = nowNs();
    for (let i = 0; i < calls; i++) await call();
    if (r > 0) runs.push((nowNs() - t0) / calls); // run 0 warms up
  }
  emit({ bench: 'guarded call', case: 'success', impl, n: calls, runs });

  const failing = [];
  let invoked = 0;
  for (let r = 0; r <= SCHEDULE.RUNS; r++) {
    const rng = seededRandom(r + 1);
    clock.now = 0;
    clock.timers.clear();
    invoked = 0;
    const call = make(() => {
      invoked++;
      if (rng() < SCHEDULE.FAILURE_RATE) throw new Error('Service call failed');
      return 'Service call succeeded';
    });
    const t0 = nowNs();
    for (let tick = 0; tick < failingCalls / SCHEDULE.CALLS_PER_TICK; tick++) {
      for (let j = 0; j < SCHEDULE.CALLS_PER_TICK; j++) {
        try { await call(); } catch (e) { /* failed or rejected */ }
      }
      advance(SCHEDULE.TICK_MS);
    }
    if (r > 0) failing.push((nowNs() - t0) / failingCalls);
  }
  const rejected = (100 * (1 - invoked / failingCalls)).toFixed(1);
  emit({ bench: 'guarded call', case: '70% failure', impl, n: failingCalls, runs: failing,
    note: `${rejected}% rejected while open` });
}

module.exports = { clock, advance, seededRandom, nowNs, emit, guardedCall };
