"""`pip install gpuqueue` brings boto3 and pydantic only: the client imports, builds and
validates requests and reads results with torch and orjson unimportable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import sys

class Refuse:
    BLOCKED = ("torch", "orjson", "transformers", "tokenizers", "numpy", "rich")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, Refuse())

import gpuqueue
from gpuqueue import Client, Result
from gpuqueue.cli import build_parser
from gpuqueue.progress import progress
from worker.contract.result import build_result, result_json

request = gpuqueue.client.RequestV1.model_validate({"inputs": ["a"], "ttl_s": 5})
doc = build_result(message_id="m", request_id="r", model="x", outputs=[[0.5]])
assert Result.model_validate_json(result_json(doc)).ok
with progress(3, "x") as update:
    update(advance=1)
build_parser().parse_args(["submit", "--queue", "http://h/000000000000/q", "hello"])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in Refuse.BLOCKED)
assert not loaded, loaded
assert not any(m.startswith(("worker.pipeline", "worker.model")) for m in sys.modules)
print("ok")
"""


def test_the_client_imports_without_torch_orjson_or_rich() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
