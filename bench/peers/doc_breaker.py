# The document's circuit breaker, copied unchanged from section 4.2 of
# /work/shared/seed/microservices-seed.en.md (the English rendering of the
# seed document); only its demo at the end is left out. The benchmark
# (doc_bench.py) replaces this module's `time` with a virtual clock and
# its `print` with a no-op, from outside: the class itself is untouched.
import time
import random
from enum import Enum

class CircuitState(Enum):
    CLOSED = "CLOSED"      # normal state
    OPEN = "OPEN"          # tripped (open) state
    HALF_OPEN = "HALF_OPEN"  # half-open state

class CircuitBreaker:
    def __init__(self, failure_threshold=5, timeout=60, success_threshold=3):
        self.failure_threshold = failure_threshold  # failure threshold
        self.timeout = timeout  # how long the breaker stays open
        self.success_threshold = success_threshold  # successes needed in half-open
        
        self.state = CircuitState.CLOSED
        self.failure_count = 0
        self.success_count = 0
        self.last_failure_time = None
    
    def call(self, func, *args, **kwargs):
        """Call the protected function"""
        if self.state == CircuitState.OPEN:
            if time.time() - self.last_failure_time > self.timeout:
                self.state = CircuitState.HALF_OPEN
                self.success_count = 0
                print("🔄 Breaker enters half-open state")
            else:
                raise Exception("Breaker open, call rejected")
        
        try:
            result = func(*args, **kwargs)
            self._on_success()
            return result
        
        except Exception as e:
            self._on_failure()
            raise e
    
    def _on_success(self):
        """Success callback"""
        if self.state == CircuitState.HALF_OPEN:
            self.success_count += 1
            if self.success_count >= self.success_threshold:
                self.state = CircuitState.CLOSED
                self.failure_count = 0
                print("✅ Breaker closed, back to normal")
        else:
            self.failure_count = 0
    
    def _on_failure(self):
        """Failure callback"""
        self.failure_count += 1
        self.last_failure_time = time.time()
        
        if self.state == CircuitState.HALF_OPEN:
            self.state = CircuitState.OPEN
            print("💥 Failure in half-open state, tripping again")
        elif self.failure_count >= self.failure_threshold:
            self.state = CircuitState.OPEN
            print(f"💥 Failure count reached threshold ({self.failure_threshold}), breaker opened")

# Simulate an unreliable service
def unreliable_service():
    """Unreliable service (70% failure rate)"""
    if random.random() < 0.7:
        raise Exception("Service call failed")
    return "Service call succeeded"
