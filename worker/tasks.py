"""The tasks a worker serves: the one list the contract, the settings and the model read."""

from __future__ import annotations

from typing import Literal, get_args

Task = Literal["embed", "classify", "generate", "image-embed", "image-classify"]
TASKS: tuple[Task, ...] = get_args(Task)

#: tasks whose inputs are images (`{"s3": ...}`, `{"url": ...}`, `{"base64": ...}`), not text
IMAGE_TASKS: frozenset[str] = frozenset({"image-embed", "image-classify"})


def is_image_task(task: str) -> bool:
    return task in IMAGE_TASKS
