"""Where a request may have its result sent: `reply_to` parsed and checked against the allow-list.

A `reply_to` is a queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`, or the same path on
an SQS endpoint this worker already uses: a local emulator, a VPC endpoint), an SQS ARN
(`arn:aws:sqs:REGION:ACCOUNT:NAME`) or an SNS topic ARN (`arn:aws:sns:REGION:ACCOUNT:TOPIC`: the
result is published there, SageMaker Async's notification pattern; standard topics only). It is
parsed into (endpoint, region, account, name) and those parts are compared, never the raw
string: a prefix check on the text lets dot segments (`team-a-x/../../999/q`), queries,
fragments, `user@host` tricks and foreign hosts through.

The allow-list (WORKER_REPLY_TO_ALLOW) holds queue-URL prefixes (`https://sqs.R.amazonaws.com/
ACCOUNT/team-a-` allows every queue of that account whose name starts `team-a-`) and ARN patterns
with `*` inside a part (`arn:aws:sqs:eu-west-1:123456789012:res-*`); SNS topic ARN patterns
(`arn:aws:sns:eu-west-1:123456789012:done-*`) allow topics, and only they do. The result queue is
always allowed. The worker's own input queues and their dead-letter queues are always refused,
even where a pattern covers them: results written there would be read back as requests, or
buried. (A topic that fans out to an input queue cannot be seen from here: the allow-list must
not name one.) Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

AWS = "aws"  # the endpoint of AWS's public SQS hosts, whatever the region

# sqs.REGION.amazonaws.com(.cn), the legacy REGION.queue.amazonaws.com, the dual-stack
# sqs.REGION.api.aws
# an AWS region's shape (us-east-1, us-gov-west-1, cn-north-1, eu-isoe-west-1): any string
# of [a-z0-9-] let a request name endless "regions" behind a region glob in the allow-list,
# each one a new set of clients kept for good (memory without bound), and a name botocore
# refuses broke the writer
_REGION = r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}"
_AWS_SQS_HOST = re.compile(
    rf"^(?:sqs\.(?P<a>{_REGION})\.amazonaws\.com(?:\.cn)?|(?P<b>{_REGION})\.queue\.amazonaws\.com"
    rf"|sqs\.(?P<c>{_REGION})\.api\.aws)$"
)
_ACCOUNT = r"[0-9]{12}"
# SQS queue names: 1-80 letters, digits, hyphens and underscores; FIFO queues end in ".fifo"
_NAME = r"[A-Za-z0-9_-]{1,80}(?:\.fifo)?"
_ARN = re.compile(
    rf"^arn:(?P<partition>aws|aws-cn|aws-us-gov):sqs:(?P<region>{_REGION}):"
    rf"(?P<account>{_ACCOUNT}):(?P<name>{_NAME})$"
)
_PATH = re.compile(rf"^/(?P<account>{_ACCOUNT})/(?P<name>{_NAME})$")
_ARN_PATTERN = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):sqs:(?P<region>[a-z0-9*-]+):"
    r"(?P<account>[0-9*]+):(?P<name>[A-Za-z0-9_.*-]+)$"
)
_PREFIX_PATH = re.compile(r"^/(?P<account>[0-9]{12})/(?P<prefix>[A-Za-z0-9_.-]*)$")
_SNS = re.compile(r"^arn:(?:aws|aws-cn|aws-us-gov):sns:")
# SNS topic names: 1-256 letters, digits, hyphens and underscores (FIFO topics, ".fifo", need a
# MessageGroupId per message: not supported as destinations)
_TOPIC_ARN = re.compile(
    rf"^arn:(?P<partition>aws|aws-cn|aws-us-gov):sns:(?P<region>{_REGION}):"
    rf"(?P<account>{_ACCOUNT}):(?P<name>[A-Za-z0-9_-]{{1,256}})$"
)
_TOPIC_PATTERN = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):sns:(?P<region>[a-z0-9*-]+):"
    r"(?P<account>[0-9*]+):(?P<name>[A-Za-z0-9_*-]+)$"
)


class AddressError(ValueError):
    """Not a queue address this worker can write to; str() says why."""


def partition_of(region: str) -> str:
    """The AWS partition a region is in (China and GovCloud have their own)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@dataclass(frozen=True)
class QueueAddress:
    endpoint: str  # AWS, or scheme://host[:port] of another SQS endpoint
    region: str
    account: str
    name: str

    @property
    def arn(self) -> str:
        return f"arn:{partition_of(self.region)}:sqs:{self.region}:{self.account}:{self.name}"

    @property
    def url(self) -> str:
        if self.endpoint == AWS:
            domain = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
            return f"https://sqs.{self.region}.{domain}/{self.account}/{self.name}"
        return f"{self.endpoint}/{self.account}/{self.name}"

    def same_queue(self, other: QueueAddress) -> bool:
        """The same queue, however its endpoint was spelled (a VPC endpoint names AWS's queue)."""
        return (self.region, self.account, self.name) == (other.region, other.account, other.name)


@dataclass(frozen=True)
class TopicAddress:
    partition: str
    region: str
    account: str
    name: str

    @property
    def arn(self) -> str:
        return f"arn:{self.partition}:sns:{self.region}:{self.account}:{self.name}"


def is_topic(destination: str) -> bool:
    """Whether a resolved destination is an SNS topic (an ARN) rather than a queue URL."""
    return _SNS.match(destination) is not None


def parse_topic_arn(text: str) -> TopicAddress:
    """An SNS topic ARN, or AddressError."""
    arn = _TOPIC_ARN.match(text)
    if arn is None:
        raise AddressError(
            "is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC; FIFO topics are not "
            "supported)"
        )
    _check_partition(arn["partition"], arn["region"])
    return TopicAddress(arn["partition"], arn["region"], arn["account"], arn["name"])


def _check_partition(partition: str, region: str) -> None:
    """An ARN's partition must be its region's: arn:aws:sqs:cn-north-1:… names no queue."""
    if partition != partition_of(region):
        raise AddressError(
            f"names partition {partition} with region {region} (in {partition_of(region)})"
        )


def endpoint_of(url: str) -> str:
    """The endpoint part of a queue URL: AWS for AWS's public hosts, else scheme://host[:port]."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if _AWS_SQS_HOST.match(host):
        return AWS
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    port = parts.port
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}"


def parse_queue_address(
    text: str, *, region: str, home_endpoint: str, known_endpoints: Iterable[str]
) -> QueueAddress:
    """Parse a queue URL or ARN. An ARN is addressed through `home_endpoint` (the one the
    worker's input queue is on); a URL must be on AWS or on one of `known_endpoints`."""
    if not (text.isascii() and text.isprintable()) or any(c.isspace() for c in text):
        raise AddressError("must be a plain ASCII queue URL or ARN")
    if text.startswith("arn:"):
        arn = _ARN.match(text)
        if arn is None:
            raise AddressError("is not an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)")
        _check_partition(arn["partition"], arn["region"])
        if home_endpoint != AWS and arn["region"] != region:
            # sent through the home endpoint, which serves one region: the ARN would name
            # that region's queue of the same account and name, not the one it says
            raise AddressError(
                f"names region {arn['region']}, but this worker's SQS endpoint serves {region}"
            )
        return QueueAddress(home_endpoint, arn["region"], arn["account"], arn["name"])
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AddressError("is not an http(s) queue URL or an SQS ARN")
    if "@" in parts.netloc:
        raise AddressError("must not carry credentials (user@host)")
    if "?" in text or "#" in text or ";" in parts.path:
        raise AddressError("must not carry a query, parameters or a fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise AddressError("has an invalid port") from None
    path = _PATH.match(parts.path)
    if path is None:
        raise AddressError("path must be /ACCOUNT/QUEUE-NAME (12-digit account, SQS queue name)")
    host = (parts.hostname or "").lower()
    aws = _AWS_SQS_HOST.match(host)
    if aws is not None:
        if parts.scheme != "https" or parts.port not in (None, 443):
            raise AddressError("AWS queue URLs are https on the default port")
        return QueueAddress(AWS, aws["a"] or aws["b"] or aws["c"], path["account"], path["name"])
    endpoint = endpoint_of(text)
    if endpoint not in set(known_endpoints):
        raise AddressError(f"host {host!r} is not an SQS endpoint this worker uses")
    return QueueAddress(endpoint, region, path["account"], path["name"])


def _glob(pattern: str) -> re.Pattern[str]:
    """`*` matches any run of characters within one part; nothing else is special."""
    return re.compile("^" + ".*".join(re.escape(piece) for piece in pattern.split("*")) + "$")


@dataclass(frozen=True)
class AddressPattern:
    """One allow-list entry. endpoint None: any endpoint the worker addresses (ARN patterns)."""

    endpoint: str | None
    region: re.Pattern[str]
    account: re.Pattern[str]
    name: re.Pattern[str]
    service: str = "sqs"  # "sns": a topic ARN pattern
    #: an ARN pattern's partition (None: a URL prefix, whose host names its region). Ignored,
    #: arn:aws-us-gov:sqs:*:… allowed a commercial-region queue of the same account and name.
    partition: str | None = None

    def _in_partition(self, region: str) -> bool:
        return self.partition is None or self.partition == partition_of(region)

    def matches_topic(self, topic: TopicAddress) -> bool:
        return (
            self.service == "sns"
            and self._in_partition(topic.region)
            and self.region.match(topic.region) is not None
            and self.account.match(topic.account) is not None
            and self.name.match(topic.name) is not None
        )

    def matches(self, address: QueueAddress) -> bool:
        return (
            self.service == "sqs"
            and self._in_partition(address.region)
            and (self.endpoint is None or self.endpoint == address.endpoint)
            and self.region.match(address.region) is not None
            and self.account.match(address.account) is not None
            and self.name.match(address.name) is not None
        )


def parse_pattern(text: str, *, region: str) -> AddressPattern:
    """An allow-list entry: an SQS or SNS ARN pattern, or a queue-URL prefix ending inside the
    name."""
    if _SNS.match(text):
        topic = _TOPIC_PATTERN.match(text)
        if topic is None:
            raise AddressError(
                f"{text!r} is not an SNS topic ARN pattern (arn:aws:sns:REGION:ACCOUNT:TOPIC, `*` "
                "allowed)"
            )
        return AddressPattern(
            None, _glob(topic["region"]), _glob(topic["account"]), _glob(topic["name"]), "sns",
            topic["partition"],
        )
    if text.startswith("arn:"):
        arn = _ARN_PATTERN.match(text)
        if arn is None:
            raise AddressError(
                f"{text!r} is not an SQS ARN pattern (arn:aws:sqs:REGION:ACCOUNT:NAME, `*` allowed)"
            )
        return AddressPattern(
            None, _glob(arn["region"]), _glob(arn["account"]), _glob(arn["name"]),
            partition=arn["partition"],
        )
    parts = urlsplit(text)
    path = _PREFIX_PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or not parts.hostname or path is None:
        raise AddressError(
            f"{text!r} is not a queue-URL prefix (https://HOST/ACCOUNT/NAME-PREFIX) or an ARN"
        )
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise AddressError(f"{text!r} must not carry credentials, a query or a fragment")
    aws = _AWS_SQS_HOST.match(parts.hostname.lower())
    endpoint = AWS if aws else endpoint_of(text)
    pattern_region = (aws["a"] or aws["b"] or aws["c"]) if aws else region
    return AddressPattern(
        endpoint,
        _glob(pattern_region),
        _glob(path["account"]),
        re.compile("^" + re.escape(path["prefix"]) + ".*$"),
    )


class ReplyToRefused(ValueError):
    """A reply_to this worker must not write to; str() says why (it goes into the error)."""


class ReplyToPolicy:
    """Resolves a request's `reply_to` to the queue URL its result goes to, or refuses it."""

    def __init__(
        self,
        patterns: Sequence[AddressPattern],
        *,
        region: str,
        home_endpoint: str,
        known_endpoints: Iterable[str] = (),
        always_allowed: Iterable[QueueAddress] = (),
        forbidden: Iterable[QueueAddress] = (),
    ) -> None:
        self.patterns = tuple(patterns)
        self.region = region
        self.home_endpoint = home_endpoint
        self.known_endpoints = frozenset({home_endpoint, *known_endpoints})
        self.always_allowed = tuple(always_allowed)
        self.forbidden = tuple(forbidden)

    @classmethod
    def build(
        cls,
        allow: Sequence[str],
        *,
        region: str,
        input_queue_url: str | Sequence[str],
        result_queue_url: str | None = None,
        dead_letter_arn: str | Sequence[str] | None = None,
    ) -> ReplyToPolicy:
        """The policy of a worker reading `input_queue_url` (one URL, or several: the first is
        home), with those queues' DLQs refused; AddressError names a bad entry."""
        inputs = [input_queue_url] if isinstance(input_queue_url, str) else list(input_queue_url)
        dlqs = [dead_letter_arn] if isinstance(dead_letter_arn, str) else [*(dead_letter_arn or ())]
        home = endpoint_of(inputs[0])
        known = {endpoint_of(url) for url in inputs}
        known |= {endpoint_of(result_queue_url)} if result_queue_url else set()

        def address(text: str) -> QueueAddress:
            return parse_queue_address(
                text, region=region, home_endpoint=home, known_endpoints=known
            )

        forbidden = [address(url) for url in inputs] + [address(arn) for arn in dlqs if arn]
        allowed = [address(result_queue_url)] if result_queue_url else []
        patterns = [parse_pattern(entry, region=region) for entry in allow]
        return cls(
            patterns,
            region=region,
            home_endpoint=home,
            known_endpoints=known,
            always_allowed=allowed,
            forbidden=forbidden,
        )

    @property
    def allows_topics(self) -> bool:
        """Whether any entry allows SNS topics (the worker then needs an SNS client)."""
        return any(p.service == "sns" for p in self.patterns)

    def resolve(self, reply_to: str) -> str:
        """The URL (or topic ARN) to send to for `reply_to`; ReplyToRefused says why not."""
        if _SNS.match(reply_to):
            return self._resolve_topic(reply_to)
        try:
            address = parse_queue_address(
                reply_to,
                region=self.region,
                home_endpoint=self.home_endpoint,
                known_endpoints=self.known_endpoints,
            )
        except AddressError as exc:
            raise ReplyToRefused(f"reply_to {exc}") from None
        if any(address.same_queue(f) for f in self.forbidden):
            raise ReplyToRefused(
                "reply_to names this worker's own input queue or its dead-letter queue"
            )
        allowed = any(address.same_queue(a) for a in self.always_allowed)
        if not allowed and not any(p.matches(address) for p in self.patterns):
            raise ReplyToRefused(
                f"reply_to {reply_to[:300]!r} is not on this worker's allow-list "
                "(WORKER_REPLY_TO_ALLOW)"
            )
        return _as_given(reply_to, address)

    def _resolve_topic(self, reply_to: str) -> str:
        try:
            topic = parse_topic_arn(reply_to)
        except AddressError as exc:
            raise ReplyToRefused(f"reply_to {exc}") from None
        if not any(p.matches_topic(topic) for p in self.patterns):
            raise ReplyToRefused(
                f"reply_to {reply_to[:300]!r} is not on this worker's allow-list "
                "(WORKER_REPLY_TO_ALLOW)"
            )
        return topic.arn


def _as_given(reply_to: str, address: QueueAddress) -> str:
    """Where to send: a queue on AWS by its canonical URL (an ARN, or a URL however spelt:
    the legacy `eu-west-1.queue.amazonaws.com`, an explicit `:443`, capitals: only the
    canonical form is routed to the queue's region, the others went through the worker's own
    and SQS refused them as InvalidAddress, the result lost as ReplyToUnreachable); a queue on
    another endpoint (an emulator, a VPC endpoint) as the producer wrote it (it parsed clean)."""
    if reply_to.startswith("arn:") or address.endpoint == AWS:
        return address.url
    return reply_to
