"""The seams the pipeline depends on, typed: the model, the queue service and the claim-check
store, with the plain data that crosses them. Torch-free and boto3-free, so the pipeline imports
neither: `worker.model` and `worker.sqs` / `worker.s3` implement these, tests swap in plain
objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from worker.sqs_limits import message_size

# ---------------------------------------------------------------------------------------- model


class Encoding(Protocol):
    """One request's inputs, encoded (tokenised, decoded, preprocessed): what a batch needs to
    know of it. A batch's cost is rows x its longest row (padding)."""

    @property
    def rows(self) -> int: ...

    @property
    def length(self) -> int: ...


@dataclass(frozen=True)
class Encoded:
    """One text request tokenised, without padding: one id list per input."""

    token_ids: list[list[int]]

    @property
    def rows(self) -> int:
        return len(self.token_ids)

    @property
    def length(self) -> int:
        return max((len(ids) for ids in self.token_ids), default=0)

    @property
    def n_tokens(self) -> int:
        return sum(len(ids) for ids in self.token_ids)


@dataclass(frozen=True)
class ModelFailure:
    """A per-request failure that `run` reports in place of an output instead of raising.

    `type`: "OutOfMemory" (it does not fit even alone: final), "ModelError" (the forward failed
    for this request; redelivered), "DeviceError" (the accelerator failed: not the request's
    fault; the circuit breaker counts it)."""

    type: str
    message: str

    @property
    def final(self) -> bool:
        return self.type == "OutOfMemory"

    @property
    def device_fault(self) -> bool:
        return self.type == "DeviceError"


#: one JSON-able value per input of a request
Outputs = list[Any]


class PreparedBatch(Protocol):
    """A batch collated for the device. The token counts feed the padding metrics."""

    @property
    def real_tokens(self) -> int: ...

    @property
    def padded_tokens(self) -> int: ...


E = TypeVar("E", bound=Encoding)
P = TypeVar("P", bound=PreparedBatch)
E_co = TypeVar("E_co", bound=Encoding, covariant=True)


class ModelSeam(Protocol[E, P]):
    """What the pipeline needs from a model (worker.model.ModelRunner, or a plain test object).

    `encode` and `prepare` run on CPU threads and must be thread-safe; `run` is only ever called
    from the one model thread. `encode` raises `worker.errors.RequestRejected` for bad input (an
    error result) or `RequestDeferred` (try later)."""

    name: str

    def encode(self, inputs: list[Any], parameters: Mapping[str, Any]) -> E: ...

    def prepare(self, items: Sequence[tuple[E, Mapping[str, Any]]]) -> P: ...

    def run(self, prepared: P) -> list[Outputs | ModelFailure]: ...


class BatchEncoder(Protocol[E_co]):
    """Optional on a model: `encode` for one receive's requests in one call (the tokenizer's
    per-call cost paid once); a request's refusal (an exception) is returned in its place."""

    def encode_many(
        self, requests: Sequence[tuple[list[Any], Mapping[str, Any]]]
    ) -> Sequence[E_co | Exception]: ...


class ModelSession(Protocol):
    """Optional on a model, from `open_session()` (None: it batches statically): continuous
    batching. Prepared batches join between steps (`add`, one tag per request); `step` runs one
    decoding step; both return the (tag, outputs or ModelFailure) of the requests that are done,
    in any order. `abandon` empties the session and returns the tags of what was in it."""

    @property
    def active(self) -> int: ...

    @property
    def rows(self) -> int: ...

    def add(self, prepared: Any, tags: Sequence[Any]) -> Sequence[tuple[Any, Any]]: ...

    def step(self) -> Sequence[tuple[Any, Any]]: ...

    def abandon(self) -> list[Any]: ...


class DeviceProbe(Protocol):
    """Optional on a model: a tiny forward that tells whether the device still works."""

    def probe(self) -> bool: ...


# ---------------------------------------------------------------------------------------- queue


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for SendMessage(Batch): body plus message attributes in boto3's shape."""

    body: str
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return message_size(self.body, self.attributes)


@dataclass(frozen=True)
class ReceivedMessage:
    queue_url: str
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int  # ApproximateReceiveCount, 1 on first delivery
    sent_timestamp_ms: int | None  # SentTimestamp: when the producer's send reached SQS
    attributes: dict[str, Any] = field(default_factory=dict)  # message attributes


@dataclass
class BatchOutcome:
    """Which entries (by the caller's index) succeeded and which failed for good, and why."""

    succeeded: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


class QueueSeam(Protocol):
    """What the pipeline says to SQS (worker.sqs.SqsAdapter). Batch calls take at most 10
    entries and report `Failed` entries instead of raising; a whole call that fails for good
    raises (`worker.errors.DestinationUnreachable` when the queue is gone or refuses us)."""

    @property
    def calls(self) -> int: ...

    def receive(
        self, queue_url: str, *, max_messages: int, wait_s: int, visibility_timeout_s: int
    ) -> list[ReceivedMessage]: ...

    def send_batch(self, queue_url: str, messages: Sequence[OutgoingMessage]) -> BatchOutcome: ...

    def delete_batch(self, queue_url: str, receipt_handles: Sequence[str]) -> BatchOutcome: ...

    def change_visibility_batch(
        self, queue_url: str, changes: Sequence[tuple[str, int]]
    ) -> BatchOutcome: ...

    def max_message_size(self, queue_url: str) -> int: ...

    def queue_attributes(self, queue_url: str, names: Sequence[str]) -> dict[str, str]: ...


class TopicSeam(Protocol):
    """What the result writers say to SNS (worker.sns.SnsAdapter): PublishBatch of at most 10
    messages within SNS's size limit, `Failed` entries reported instead of raised; a topic that
    is gone or refuses us raises `worker.errors.DestinationUnreachable`."""

    def publish_batch(
        self, topic_arn: str, messages: Sequence[OutgoingMessage]
    ) -> BatchOutcome: ...


class ClaimCheck(Protocol):
    """Where results too large for a message go (worker.s3.ClaimCheckStore)."""

    def put(self, body: str) -> tuple[str, str]: ...
