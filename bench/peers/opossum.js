// bench/peers/opossum.js -- row 1 for opossum (npm), in its own process.
// opossum opens on an error percentage over a rolling window, not on
// consecutive failures: the nearest to the document's failure_threshold=3
// is volumeThreshold 3 with errorThresholdPercentage 50. resetTimeout is
// the document's 5 s; the per-call timeout is off (the document has none).
'use strict';
const common = require('./js_common');
const CircuitBreaker = require('opossum');

const CALLS = 1000000;
const FAILING_CALLS = 200000;

function make(fn) {
  const breaker = new CircuitBreaker(fn, {
    timeout: false,
    resetTimeout: 5000,
    errorThresholdPercentage: 50,
    volumeThreshold: 3,
  });
  return () => breaker.fire();
}

common.guardedCall('opossum ' + require('opossum/package.json').version, make, CALLS, FAILING_CALLS)
  .catch((e) => { console.error(e); process.exit(1); });
