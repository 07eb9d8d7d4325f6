"""The circuit breaker: a worker whose device keeps failing stops taking work.

After a sticky CUDA error every forward fails. Without a breaker the worker splits each batch
down to single requests, releases them, receives them again and moves them to the DLQ at receive
speed, while /healthz stays green. The breaker counts consecutive batches that had no success for
a reason that is not the request's (a device error; the runner itself failing; every request
failing while the device probe fails too). At `threshold` it trips: the worker stops receiving,
releases what it holds for healthy replicas, and turns /healthz red so the kubelet restarts the
pod. A batch with any success resets the count; a batch that failed only for its requests' own
reasons (one poison input) leaves it as it is. Pure: the executor feeds it.
"""

from __future__ import annotations


class CircuitBreaker:
    def __init__(self, threshold: int) -> None:
        self.threshold = threshold  # 0: never trips
        self.consecutive = 0
        self.tripped = False

    def record(self, *, succeeded: int, not_the_requests_fault: bool) -> bool:
        """One batch's result; True when this batch trips the breaker."""
        if succeeded > 0:
            self.consecutive = 0
            return False
        if not not_the_requests_fault or self.tripped:
            return False
        self.consecutive += 1
        if self.threshold > 0 and self.consecutive >= self.threshold:
            self.tripped = True
            return True
        return False
