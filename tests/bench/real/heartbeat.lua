-- wrk script: heartbeat PUTs against `fusebox serve`.
wrk.method = "PUT"
wrk.path = "/v1/services/bench/instances/127.0.0.1:7001/heartbeat"
