// bench/peers/cockatiel.js -- row 1 for cockatiel (npm), in its own
// process: a ConsecutiveBreaker(3) with halfOpenAfter 5 s, the document's
// thresholds. cockatiel closes after one successful half-open probe (the
// document wants 3 successes).
'use strict';
const common = require('./js_common');
const { circuitBreaker, handleAll, ConsecutiveBreaker } = require('cockatiel');

const CALLS = 1000000;
const FAILING_CALLS = 200000;

function make(fn) {
  const policy = circuitBreaker(handleAll, {
    halfOpenAfter: 5000,
    breaker: new ConsecutiveBreaker(3),
  });
  return () => policy.execute(fn);
}

common.guardedCall('cockatiel ' + require('cockatiel/package.json').version, make, CALLS, FAILING_CALLS)
  .catch((e) => { console.error(e); process.exit(1); });
