"""The document's own Python code, measured the way bench/*.c measure
fusebox (same scenarios, smaller counts: CPython is slower).

    python3 doc_bench.py guarded_call | balanced_pick | registry_scale | simulation

The classes in doc_breaker.py and doc_discovery.py are the document's,
unchanged. From outside, each module's `time` is replaced by a virtual
clock (an object with a time() method the benchmark moves forward) and
its `print` by a no-op, so the prints cost nothing and the logic is the
document's. Results: one JSON line per row on stdout (bench/table.py).
"""
import json
import random
import sys
import time as real_time

import doc_breaker
import doc_discovery

IMPL = "document's Python"
RUNS = 3


class VirtualClock:
    def __init__(self):
        self.now = 0.0

    def time(self):
        # A new float per call, as time.time() makes: the registry keeps
        # one per instance, and its memory is part of what is measured.
        return self.now + 0.0


def _no_print(*args, **kwargs):
    pass


CLOCK = VirtualClock()
for module in (doc_breaker, doc_discovery):
    module.time = CLOCK
    module.print = _no_print


def emit(bench, case, n, runs, unit="ns/op", note=None):
    row = {"bench": bench, "case": case, "impl": IMPL, "n": n,
           "runs": runs, "unit": unit}
    if note:
        row["note"] = note
    print(json.dumps(row), flush=True)


def skip(bench, case, why):
    print(json.dumps({"bench": bench, "case": case, "impl": IMPL,
                      "skip": why}), flush=True)


def per_op(fn, n):
    t0 = real_time.perf_counter_ns()
    fn()
    return (real_time.perf_counter_ns() - t0) / n


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------- row 1

CALLS, CALLS_PER_TICK, TICK = 1_000_000, 100, 0.5


def guarded_success():
    cb = doc_breaker.CircuitBreaker(failure_threshold=3, timeout=5)

    def trivial(x):
        return x

    def loop():
        for i in range(CALLS):
            cb.call(trivial, i)
    return per_op(loop, CALLS)


def guarded_failing(seed):
    cb = doc_breaker.CircuitBreaker(failure_threshold=3, timeout=5)
    random.seed(seed)
    CLOCK.now = 0.0
    service = doc_breaker.unreliable_service

    def loop():
        for _ in range(CALLS // CALLS_PER_TICK):
            for _ in range(CALLS_PER_TICK):
                try:
                    cb.call(service)
                except Exception:
                    pass
            CLOCK.now += TICK
    return per_op(loop, CALLS)


def guarded_call():
    emit("guarded call", "success", CALLS,
         [guarded_success() for _ in range(RUNS)])
    emit("guarded call", "70% failure", CALLS,
         [guarded_failing(seed) for seed in range(1, RUNS + 1)])


# ------------------------------------------------------------- row 2

def host(i):
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def balanced_pick():
    for n in (10, 1000, 100_000):
        # get_instance() runs discover(), O(n) per pick: fewer picks as n
        # grows. The list is filled directly: register() scans the list,
        # so filling one service through it is O(n^2).
        picks = max(20, min(200_000, 2_000_000 // n))
        registry = doc_discovery.ServiceRegistry()
        registry.services["svc"] = [(host(i), 8080, 0.0) for i in range(n)]
        CLOCK.now = 1.0

        def run():
            lb = doc_discovery.LoadBalancer(registry)

            def loop():
                for _ in range(picks):
                    lb.get_instance("svc")
            return per_op(loop, picks)
        emit("balanced pick", f"round robin, {n} instances", picks,
             [run() for _ in range(RUNS)])
        skip("balanced pick", f"least request, {n} instances",
             "the document has no least-request strategy")


# ------------------------------------------------------------- row 3

INSTANCES, SERVICES = 100_000, 1_000
SCALE = "100,000 instances / 1,000 services (1/10 scale)"


def registry_run(hosts, names):
    """One life cycle; returns per-op times and the RSS growth."""
    CLOCK.now = 0.0
    rss0 = rss_bytes()
    reg = doc_discovery.ServiceRegistry()
    out = {}

    def each(op):
        for i in range(INSTANCES):
            op(names[i % SERVICES], hosts[i], 8080)
    out["register"] = per_op(lambda: each(reg.register), INSTANCES)
    CLOCK.now = 10.0
    out["heartbeat"] = per_op(lambda: each(reg.heartbeat), INSTANCES)
    CLOCK.now = 20.0  # 90% beat again; the other 10% will expire
    for i in range(INSTANCES):
        if i % 10:
            reg.heartbeat(names[i % SERVICES], hosts[i], 8080)
    CLOCK.now = 41.0
    live = []

    def discover_all():
        for name in names:
            live.append(len(reg.discover(name)))
    out["discover"] = per_op(discover_all, SERVICES)
    out["rss"] = (rss_bytes() - rss0) / INSTANCES
    assert sum(live) == INSTANCES - INSTANCES // 10, sum(live)
    return out


def registry_scale():
    hosts = [host(i) for i in range(INSTANCES)]
    names = [f"service-{s:05d}" for s in range(SERVICES)]
    runs = [registry_run(hosts, names) for _ in range(RUNS)]
    b = "registry at scale"
    emit(b, "register, per instance", INSTANCES,
         [r["register"] for r in runs], note=SCALE)
    emit(b, "heartbeat, per instance", INSTANCES,
         [r["heartbeat"] for r in runs], note=SCALE)
    skip(b, "expire 10%, per expired instance",
         "no expiry step: discover() filters every instance on every call")
    emit(b, "discover, per service", SERVICES,
         [r["discover"] for r in runs],
         note=SCALE + "; includes filtering out the expired")
    emit(b, "memory, per instance", INSTANCES, [runs[0]["rss"]],
         unit="bytes", note="VmRSS growth, first run; host strings made before")


# ------------------------------------------------------------- row 4

SIM_CLIENTS, SIM_REQUESTS, SIM_INSTANCES, SIM_PACE = 1000, 100, 100, 0.5


def simulate(seed):
    """bench/lua/simulation.lua's workload with the document's classes:
    clients send SIM_REQUESTS requests SIM_PACE s apart, each picked
    round robin (get_instance) from SIM_INSTANCES heartbeating instances,
    each instance behind its own CircuitBreaker(3, 5), the document's
    unreliable_service behind it. The document has no scheduler: this
    one is a heap of (virtual time, order, client), the least code that
    runs the clients in time order, as fusebox's does."""
    import heapq
    random.seed(seed)
    CLOCK.now = 0.0
    registry = doc_discovery.ServiceRegistry()
    lb = doc_discovery.LoadBalancer(registry)
    for i in range(1, SIM_INSTANCES + 1):
        registry.register("user-service", f"10.0.0.{i}", 8080)
    breakers = {}
    ok = 0
    queue = [(0.0, c, c) for c in range(SIM_CLIENTS)]
    sent = [0] * SIM_CLIENTS
    order = SIM_CLIENTS
    next_beat = 10.0
    t0 = real_time.perf_counter_ns()
    while queue:
        at, _, client = heapq.heappop(queue)
        while next_beat <= at:  # the heartbeat "coroutine": every 10 s
            CLOCK.now = next_beat
            for i in range(1, SIM_INSTANCES + 1):
                registry.heartbeat("user-service", f"10.0.0.{i}", 8080)
            next_beat += 10.0
        CLOCK.now = at
        inst = lb.get_instance("user-service")
        cb = breakers.get(inst)
        if cb is None:
            cb = breakers[inst] = doc_breaker.CircuitBreaker(failure_threshold=3, timeout=5)
        try:
            cb.call(doc_breaker.unreliable_service)
            ok += 1
        except Exception:
            pass
        sent[client] += 1
        if sent[client] < SIM_REQUESTS:
            order += 1
            heapq.heappush(queue, (at + SIM_PACE, order, client))
    n = SIM_CLIENTS * SIM_REQUESTS
    return (real_time.perf_counter_ns() - t0) / n, ok / n


def simulation():
    results = [simulate(seed) for seed in range(1, RUNS + 1)]
    emit("simulation", "document breaker scenario x1,000,000 requests",
         SIM_CLIENTS * SIM_REQUESTS, [r[0] for r in results],
         note=f"1/10 scale: all {SIM_CLIENTS} clients, {SIM_REQUESTS} requests each; "
         f"{results[0][1] * 100:.1f}% of requests succeeded")


BENCHES = {"guarded_call": guarded_call, "balanced_pick": balanced_pick,
           "registry_scale": registry_scale, "simulation": simulation}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in BENCHES:
        sys.exit("usage: python3 doc_bench.py " + "|".join(BENCHES))
    BENCHES[sys.argv[1]]()
