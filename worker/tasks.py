"""The tasks a worker serves: the one list the contract, the settings and the model read."""

from __future__ import annotations

from typing import Literal, get_args

Task = Literal["embed", "classify", "generate"]
TASKS: tuple[Task, ...] = get_args(Task)
