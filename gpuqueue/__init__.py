"""gpuqueue's producer client: submit requests to a gpuqueue worker's SQS queue and read their
results (boto3 and pydantic only; no torch).

    from gpuqueue import Client

    with Client("https://sqs.eu-west-1.amazonaws.com/123456789012/embed-requests") as client:
        vectors = client.embed(["The cat sat on the mat."])
"""

from gpuqueue.client import Client
from gpuqueue.errors import (
    GpuqueueError,
    InvalidRequest,
    RequestFailed,
    ResultTimeout,
    SubmitFailed,
    SubmitInterrupted,
)
from gpuqueue.results import Result

__all__ = [
    "Client",
    "GpuqueueError",
    "InvalidRequest",
    "RequestFailed",
    "Result",
    "ResultTimeout",
    "SubmitFailed",
    "SubmitInterrupted",
]
