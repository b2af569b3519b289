# The document's service registry and load balancer, copied unchanged
# from section 4.1 of /work/shared/seed/microservices-seed.en.md (the
# English rendering of the seed document); only its demo at the end is
# left out. The benchmark (doc_bench.py) replaces this module's `time`
# with a virtual clock and its `print` with a no-op, from outside: the
# classes themselves are untouched.
import time
import threading

class ServiceRegistry:
    def __init__(self):
        self.services = {}  # service_name -> [(host, port, last_heartbeat), ...]
        self.lock = threading.Lock()
        self.heartbeat_timeout = 30  # 30-second timeout
    
    def register(self, service_name, host, port):
        """Register a service"""
        with self.lock:
            if service_name not in self.services:
                self.services[service_name] = []
            
            # Update or add the service instance
            instance = (host, port, time.time())
            
            # Check whether it already exists
            for i, (h, p, _) in enumerate(self.services[service_name]):
                if h == host and p == port:
                    self.services[service_name][i] = instance
                    return
            
            self.services[service_name].append(instance)
            print(f"✅ Registered service: {service_name} at {host}:{port}")
    
    def deregister(self, service_name, host, port):
        """Deregister a service"""
        with self.lock:
            if service_name in self.services:
                self.services[service_name] = [
                    (h, p, t) for h, p, t in self.services[service_name]
                    if not (h == host and p == port)
                ]
                print(f"❌ Deregistered service: {service_name} at {host}:{port}")
    
    def discover(self, service_name):
        """Discover a service"""
        with self.lock:
            if service_name not in self.services:
                return []
            
            # Filter out timed-out services
            current_time = time.time()
            active_services = [
                (host, port) for host, port, last_heartbeat 
                in self.services[service_name]
                if current_time - last_heartbeat < self.heartbeat_timeout
            ]
            
            return active_services
    
    def heartbeat(self, service_name, host, port):
        """Heartbeat"""
        self.register(service_name, host, port)  # refresh the timestamp

class LoadBalancer:
    def __init__(self, registry):
        self.registry = registry
        self.round_robin_index = {}
    
    def get_instance(self, service_name, strategy='round_robin'):
        """Get a service instance"""
        instances = self.registry.discover(service_name)
        
        if not instances:
            return None
        
        if strategy == 'round_robin':
            if service_name not in self.round_robin_index:
                self.round_robin_index[service_name] = 0
            
            index = self.round_robin_index[service_name]
            instance = instances[index % len(instances)]
            self.round_robin_index[service_name] += 1
            
            return instance
        
        elif strategy == 'random':
            import random
            return random.choice(instances)
