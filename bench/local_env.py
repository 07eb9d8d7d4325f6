"""The environment every bench runs in, set on import, before torch or boto3 load: no model hub,
the worker's OpenMP wait policy for every side of a comparison, and placeholder credentials for
the local SQS and S3 servers (never a real account)."""

from __future__ import annotations

import os

LOCAL = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # the worker's default (worker/model/device.py), set before torch loads so every side runs
    # under it
    "OMP_WAIT_POLICY": "PASSIVE",
    "TOKENIZERS_PARALLELISM": "false",  # as the worker's CLI sets it
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
for _key, _value in LOCAL.items():
    os.environ.setdefault(_key, _value)
