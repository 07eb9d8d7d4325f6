"""How many held messages the heartbeat keeps hidden when SQS is a WAN round trip away.

    .venv/bin/python bench/heartbeat_capacity.py [--held 10000] [--rtt-ms 50] [--visibility 20]
                                                 [--write]

A worker holding many messages (a deep buffer in front of a stalled or slow model) must extend
each one's visibility before it expires, or SQS hands it to another replica and it runs twice.
Here the real heartbeater and ledger hold `--held` messages received from fauxqs, every
ChangeMessageVisibilityBatch delayed by `--rtt-ms` first (a cross-region endpoint or a congested
NAT: loopback answers in a millisecond). A second consumer polls the same queue the whole time:
every message it receives is one that became visible while the worker held it. Side by side:

  serial       one call on the wire at a time (calls_in_flight=1: the heartbeater before this)
  concurrent   the shipped default (worker.pipeline.heartbeater.CALLS_IN_FLIGHT)

and the bound: none stolen. Figures: messages stolen, the extension rate (entries a second on the
wire while rounds ran) and how many extensions succeeded. The last line is one JSON object;
--write also stores it in docs/results/heartbeat-capacity.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3

import bench.local_env  # noqa: F401  (placeholder credentials: boto3 reads them per client)
from bench import results
from worker import devsqs
from worker.config import WorkerSettings
from worker.pipeline.heartbeater import CALLS_IN_FLIGHT, Heartbeater
from worker.pipeline.ledger import Ledger
from worker.pipeline.observer import StatsObserver
from worker.seams import BatchOutcome, QueueSeam
from worker.sqs import SqsAdapter

REGION = "us-east-1"
DEFAULT_VISIBILITY_S = WorkerSettings.model_fields["visibility_timeout_s"].default


class FarAway:
    """The real adapter, each visibility change `rtt_s` late (the WAN round trip); records
    when each call returned, how many it asked for and how many it extended."""

    def __init__(self, adapter: SqsAdapter, rtt_s: float) -> None:
        self.adapter, self.rtt_s = adapter, rtt_s
        self.returned: list[tuple[float, int, int]] = []
        self._lock = threading.Lock()

    def change_visibility_batch(
        self, queue_url: str, changes: Sequence[tuple[str, int]]
    ) -> BatchOutcome:
        time.sleep(self.rtt_s)  # the round trip: a wait on the network, the GIL released
        outcome = self.adapter.change_visibility_batch(queue_url, changes)
        with self._lock:
            self.returned.append((time.monotonic(), len(changes), len(outcome.succeeded)))
        return outcome


def fill(sqs: Any, queue_url: str, count: int) -> None:
    for start in range(0, count, 10):
        entries = [{"Id": str(i), "MessageBody": f'{{"text": "m{start + i}"}}'}
                   for i in range(min(10, count - start))]
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)


def hold_all(adapter: SqsAdapter, ledger: Ledger, queue_url: str, count: int,
             visibility_s: int) -> None:
    held = 0
    while held < count:
        got = adapter.receive(queue_url, wait_s=1, visibility_timeout_s=visibility_s)
        ledger.admit(got, reserved=0, visibility_s=visibility_s)
        held += len(got)


def steal(sqs: Any, queue_url: str, stop: threading.Event, stolen: set[str]) -> None:
    """The other replica: whatever it receives, the worker was holding."""
    while not stop.is_set():
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=3600
        ).get("Messages", [])
        stolen.update(m["MessageId"] for m in got)


def arm(endpoint: str, calls_in_flight: int, held: int, rtt_s: float,
        visibility_s: int) -> dict[str, Any]:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    queue_url = sqs.create_queue(QueueName=f"hb-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    fill(sqs, queue_url, held)
    adapter = SqsAdapter.from_environment(endpoint_url=endpoint, region_name=REGION)
    ledger = Ledger()
    began = time.monotonic()
    hold_all(adapter, ledger, queue_url, held, visibility_s)
    received_s = time.monotonic() - began
    far = FarAway(adapter, rtt_s)
    # only the visibility calls are used: the rest of the seam is never asked
    beater = Heartbeater(cast(QueueSeam, far), ledger, StatsObserver(),
                         visibility_s=visibility_s, enabled=True, calls_in_flight=calls_in_flight)
    stop, stolen = threading.Event(), set[str]()
    thief = threading.Thread(target=steal, args=(sqs, queue_url, stop, stolen))
    thief.start()
    spawn: Callable[[str, Callable[[], None]], threading.Thread] = _spawn
    beater.start(spawn)
    time.sleep(2 * visibility_s)  # the length of the run: two timeouts held
    beater.stop()
    assert beater.thread is not None
    beater.thread.join()  # the round in progress finishes
    stop.set()
    thief.join()
    sqs.delete_queue(QueueUrl=queue_url)
    times = [t for t, _, _ in far.returned]
    span = (times[-1] - times[0]) if len(times) > 1 else 0.0
    asked = sum(n for _, n, _ in far.returned)
    return {
        "calls_in_flight": calls_in_flight,
        "held": held,
        "stolen": len(stolen),
        "stolen_fraction": round(len(stolen) / held, 4),
        "extended": sum(n for _, _, n in far.returned),
        # what the heartbeat can put on the wire: entries a second while rounds ran
        "extensions_asked_per_s": round(asked / span, 1) if span else None,
        "receive_all_s": round(received_s, 2),
    }


def _spawn(name: str, target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, name=f"gpuqueue-{name}", daemon=True)
    thread.start()
    return thread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--held", type=int, default=10_000)
    ap.add_argument("--rtt-ms", type=float, default=50.0)
    ap.add_argument("--visibility", type=int, default=20)
    ap.add_argument("--write", action="store_true",
                    help="store docs/results/heartbeat-capacity.json")
    args = ap.parse_args()
    with devsqs.running("fauxqs") as server:
        arms = {
            name: arm(server.endpoint_url, n, args.held, args.rtt_ms / 1000, args.visibility)
            for name, n in (("serial", 1), ("concurrent", CALLS_IN_FLIGHT))
        }
    for name, figures in arms.items():
        print(f"{name:>10}: {figures}", file=sys.stderr)
    serial, concurrent = arms["serial"], arms["concurrent"]
    rate = concurrent["extensions_asked_per_s"] or 0.0
    report = {
        "load": {"held": args.held, "rtt_ms": args.rtt_ms, "visibility_s": args.visibility,
                 "run_s": 2 * args.visibility},
        "arms": arms,
        "oracle_stolen": 0,
        # a message becomes due with half its timeout left: what the measured rate keeps
        # hidden, at this run's timeout and at the worker's default
        "holdable_at_run_visibility": int(rate * args.visibility / 2),
        "holdable_at_default_visibility": int(rate * DEFAULT_VISIBILITY_S / 2),
        "rate_vs_serial": round(
            concurrent["extensions_asked_per_s"] / serial["extensions_asked_per_s"], 2
        ),
    }
    print(json.dumps(report))
    if args.write:
        results.write("heartbeat-capacity", report)


if __name__ == "__main__":
    main()
