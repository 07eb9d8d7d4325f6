"""The worker's pipeline, from "message received" to "message deleted", one stage a module:

    ledger.py      the only owner of held messages and their states (compare-and-set)
    capacity.py    how many messages the worker may hold (the buffer bound)
    receiver.py    long polls into the ledger
    encoder.py     parse, validate, tokenise
    feeder.py      batches formed and padded, one ahead of the device
    executor.py    the device: runs batches, emits outcomes; the circuit breaker's counts
    outcomes.py    what becomes of each message (pure)
    writer.py      send then delete, or release; grouped with a short linger
    heartbeater.py visibility extensions
    observer.py    metrics, stats and logs fed in one place
    worker.py      the composition root and the shutdown order
"""

from worker.pipeline.worker import Worker

__all__ = ["Worker"]
