"""Run the real worker (`worker.cli:main`) with chaos instrumentation, optionally a broken build.

    python tests/chaos/support/launch_worker.py   # same arguments and env as `python -m worker`

Nothing in worker/ knows about this file. Everything is monkeypatched here, before the worker's
main runs, from environment variables:

CHAOS_FORWARD_LOG=PATH   append one JSON line per model forward pass:
                         {"t": unix time, "rows": sequences, "markers": {word: rows holding it}}
CHAOS_MARKERS=w1,w2      words (single tokens in the model's vocabulary) counted per forward row
CHAOS_SLOW_WORD=word     a forward pass whose input holds this token sleeps CHAOS_SLOW_S first
CHAOS_SLOW_S=seconds     (a slow model: inference longer than the visibility timeout)
CHAOS_FORWARD_DELAY_S=s  every forward pass takes this much longer (simulated accelerator time, so
                         a tiny model keeps messages in flight without burning the CPU cores)

CHAOS_BREAK=a,b          deliberately broken builds, to show each chaos test can fail:
  delete_before_write  every received request is deleted at once, before any result is written
  no_heartbeat         visibility extensions (ChangeMessageVisibility* with a timeout > 0) dropped
  no_release           releases on shutdown (ChangeMessageVisibility* with timeout 0) dropped
  ignore_failed        `Failed` entries of batch responses turned into successes (all "landed")
  double_write         every result message sent twice
  retry_poison         requests answered with an error result are never deleted (poison retried)
  leak                 1 MiB of memory and one file descriptor leaked per ReceiveMessage call
  hot_retry            a failed SQS call is retried at once, up to 50 times, with no backoff

The breaks sit at the SQS call boundary (worker.sqs_transport.SignedJsonTransport.call: one call
per API operation, with boto3's parameter names), so they need no knowledge of the worker's
internals and act exactly where a real bug would show.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

BREAKS = frozenset(filter(None, os.environ.get("CHAOS_BREAK", "").split(",")))
KNOWN_BREAKS = frozenset(
    {"delete_before_write", "no_heartbeat", "no_release", "ignore_failed", "double_write",
     "retry_poison", "leak", "hot_retry"}
)
_leaked: list[Any] = []


def _patch_sqs() -> None:
    from worker.sqs_transport import SignedJsonTransport

    original = SignedJsonTransport.call
    error_message_ids: set[str] = set()
    lock = threading.Lock()

    def fake_batch_ok(params: dict[str, Any]) -> dict[str, Any]:
        return {"Successful": [{"Id": e["Id"]} for e in params.get("Entries", [])], "Failed": []}

    def patched(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        op = operation_name
        if "no_heartbeat" in BREAKS or "no_release" in BREAKS:
            if op == "ChangeMessageVisibility":
                release = int(api_params.get("VisibilityTimeout", 1)) == 0
                if ("no_release" in BREAKS and release) or (
                    "no_heartbeat" in BREAKS and not release
                ):
                    return {}
            if op == "ChangeMessageVisibilityBatch":
                keep, dropped = [], []
                for entry in api_params.get("Entries", []):
                    release = int(entry.get("VisibilityTimeout", 1)) == 0
                    broken = ("no_release" in BREAKS and release) or (
                        "no_heartbeat" in BREAKS and not release
                    )
                    (dropped if broken else keep).append(entry)
                if dropped:
                    result = (
                        original(self, op, {**api_params, "Entries": keep})
                        if keep
                        else {"Successful": [], "Failed": []}
                    )
                    result.setdefault("Successful", []).extend({"Id": e["Id"]} for e in dropped)
                    return result
        if "retry_poison" in BREAKS:
            if op in ("SendMessage", "SendMessageBatch"):
                entries = api_params.get("Entries") or [api_params]
                for entry in entries:
                    try:
                        body = json.loads(entry.get("MessageBody", ""))
                    except ValueError:
                        continue
                    if isinstance(body, dict) and body.get("status") == "error":
                        with lock:
                            error_message_ids.add(str(body.get("message_id")))
            if op == "DeleteMessageBatch":
                # Entry ids are the worker's; map them back through the receipt handles it saw.
                keep = [
                    e for e in api_params.get("Entries", [])
                    if _receipt_to_message.get(e["ReceiptHandle"]) not in error_message_ids
                ]
                dropped = [e for e in api_params.get("Entries", []) if e not in keep]
                if dropped:
                    result = (
                        original(self, op, {**api_params, "Entries": keep})
                        if keep
                        else {"Successful": [], "Failed": []}
                    )
                    result.setdefault("Successful", []).extend({"Id": e["Id"]} for e in dropped)
                    return result
            if op == "DeleteMessage" and (
                _receipt_to_message.get(api_params.get("ReceiptHandle", "")) in error_message_ids
            ):
                return {}
        if "double_write" in BREAKS and op in ("SendMessage", "SendMessageBatch"):
            original(self, op, api_params)
        if "leak" in BREAKS and op == "ReceiveMessage":
            _leaked.append(bytearray(1 << 20))
            _leaked.append(open(os.devnull, "rb"))  # noqa: SIM115 - the leak is the point
        result = original(self, op, api_params)
        if op == "ReceiveMessage":
            messages = result.get("Messages", [])
            if "retry_poison" in BREAKS:
                # Only that break needs the map; kept always, it grew the soak's RSS ~300 B/msg.
                for m in messages:
                    _receipt_to_message[m["ReceiptHandle"]] = m["MessageId"]
            if "delete_before_write" in BREAKS and messages:
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ]
                original(
                    self,
                    "DeleteMessageBatch",
                    {"QueueUrl": api_params["QueueUrl"], "Entries": entries},
                )
        if "ignore_failed" in BREAKS and isinstance(result, dict) and result.get("Failed"):
            # Report every failed entry as a success, as a worker that never looked would assume.
            fake = [{"Id": f["Id"], "MessageId": f"chaos-fake-{f['Id']}", "MD5OfMessageBody": ""}
                    for f in result["Failed"]]
            result = {**result, "Successful": [*result.get("Successful", []), *fake], "Failed": []}
        return result

    if "hot_retry" in BREAKS:
        from worker import sqs_transport

        # the transport's own backoff goes too: its retries happen at once
        sqs_transport.MAX_BACKOFF_S = 0.0
        backed_off = patched

        def hot(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            for _ in range(50):
                try:
                    return backed_off(self, operation_name, api_params)
                except sqs_transport.SqsApiError:
                    continue
            return backed_off(self, operation_name, api_params)

        SignedJsonTransport.call = hot  # type: ignore[method-assign]
        return
    SignedJsonTransport.call = patched  # type: ignore[method-assign]


_receipt_to_message: dict[str, str] = {}


def _patch_model() -> None:
    log_path = os.environ.get("CHAOS_FORWARD_LOG")
    slow_word = os.environ.get("CHAOS_SLOW_WORD", "")
    slow_s = float(os.environ.get("CHAOS_SLOW_S", "0") or 0)
    markers = [w for w in os.environ.get("CHAOS_MARKERS", "").split(",") if w]
    forward_delay_s = float(os.environ.get("CHAOS_FORWARD_DELAY_S", "0") or 0)
    if not (log_path or slow_word or forward_delay_s):
        return
    from worker import model as worker_model

    original_load = worker_model.ModelRunner.load.__func__  # type: ignore[attr-defined]
    log_lock = threading.Lock()

    def load(cls: Any, *args: Any, **kwargs: Any) -> Any:
        runner = original_load(cls, *args, **kwargs)
        tokenizer = runner.tokenizer
        ids: dict[str, int] = {}
        for word in [*markers, *([slow_word] if slow_word else [])]:
            token_id = tokenizer.convert_tokens_to_ids(word)
            if token_id == tokenizer.unk_token_id:
                raise SystemExit(f"chaos launcher: marker {word!r} is not one token of the vocab")
            ids[word] = int(token_id)

        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            input_ids = kwargs.get("input_ids")
            if input_ids is None and args:
                input_ids = args[0]
            if input_ids is None:
                return
            rows = input_ids.tolist()
            counts = {w: sum(1 for row in rows if i in row) for w, i in ids.items()}
            if slow_word and counts.get(slow_word):
                time.sleep(slow_s)
            elif forward_delay_s:
                time.sleep(forward_delay_s)
            if log_path:
                line = json.dumps({"t": time.time(), "rows": len(rows), "markers": counts})
                with log_lock, open(log_path, "a") as fh:
                    fh.write(line + "\n")

        runner.model.register_forward_pre_hook(hook, with_kwargs=True)
        return runner

    worker_model.ModelRunner.load = classmethod(load)  # type: ignore[method-assign,assignment]


def main() -> int:
    unknown = BREAKS - KNOWN_BREAKS
    if unknown:
        print(f"CHAOS_BREAK: unknown break(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    _patch_sqs()
    _patch_model()
    if BREAKS:
        print(f"chaos launcher: BROKEN BUILD {sorted(BREAKS)}", file=sys.stderr, flush=True)
    from worker.cli import console

    console()  # as `python -m worker` exits: at once after the drain


if __name__ == "__main__":
    sys.exit(main())
