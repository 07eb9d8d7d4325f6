"""Message contract v1: what producers send and what they get back.

    request.py     a request body parsed and validated (RequestV1, parse_request)
    reply_to.py    where a result may go: reply_to parsed and checked against the allow-list
    result.py      result documents built and encoded (ResultV1, build_result, result_message)
    wire.py        message sizes, SendMessageBatch packing, the S3 claim-check pointer, dedup keys
    error_types.py every error type a result can carry

Pure: no I/O, no clock, no model. Importable with boto3 and pydantic alone (orjson optional), so
producers can share the worker's own models.
"""
