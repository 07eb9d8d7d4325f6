"""mkdocs hooks: the docs' references are generated from the code and their figures are read
from the result files the commands write, at build time, so no page can go stale or quote a
figure by hand.

In a page:

    <!-- reference: settings worker -->       the WORKER_* table, from WorkerSettings' fields
    <!-- reference: settings scaler -->       the SCALER_* table
    <!-- reference: errors -->                the error-type table (worker.contract.error_types)
    <!-- reference: schema request -->        the JSON Schema of RequestV1 (or: result)
    <!-- reference: cli MODULE -->            a CLI's --help, from its argparse definition
                                              (MODULE.build_parser())
    <!-- reference: chaos chaos-quick -->     a chaos run's table (docs/results/chaos-quick.json)
    <!-- reference: sim-report SECTION -->     a table of the scaler's comparison
                                              (scaler/reportmd.py, docs/results/sim-report.json)
    {{ bench.figures.pipeline_cpu_ms_per_msg }}   a figure from docs/results/bench.json
    {{ bench.figures.x :.2f }}                 ... formatted
    {{ bench.provenance }}                     when, at which commit, on what it was measured
    <!-- if-results gpu-check --> ... <!-- end-if -->   shown only where that file exists
    <!-- unless-results gpu-check --> ... <!-- end-unless -->

A figure that its file does not hold, or a reference that does not exist, fails the build.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
sys.path.insert(0, str(ROOT))

#: a figure's name (its result file) and dotted path inside it, as pages and the README write them
FIGURE_REF = r"([A-Za-z0-9_-]+)((?:\.[A-Za-z0-9_\[\]-]+)+)"
FIGURE = re.compile(r"\{\{\s*" + FIGURE_REF + r"\s*(?::([^}\s]+))?\s*\}\}")
# what looks like a figure but is not one the hook understands (a typo must not pass as text)
LEFTOVER = re.compile(r"\{\{\s+[A-Za-z0-9_-]+\.")
REFERENCE = re.compile(r"^([ \t]*)<!--\s*reference:\s*([\w-]+)\s*([\w.-]*)\s*-->", re.M)
IF_RESULTS = re.compile(
    r"<!--\s*(if|unless)-results\s+([A-Za-z0-9_-]+)\s*-->(.*?)<!--\s*end-(?:if|unless)\s*-->",
    re.S,
)


#: `{{ NAME.PATH :goal>=1.15 }}` renders "met" or "missed" from the figure itself, so a page can
#: never keep saying a goal is met after a rerun missed it
GOAL = re.compile(r"goal(>=|<=)(-?[0-9.]+)")


def _goal_verdict(value: Any, op: str, bound: float, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DocsError(f"{where} is {value!r}, not a number to hold against a goal")
    return "met" if (value >= bound if op == ">=" else value <= bound) else "**missed**"


class DocsError(Exception):
    """A page asks for something the code or the result files do not have."""


# ------------------------------------------------------------------------------ results


def load_results(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise DocsError(f"docs/results/{name}.json does not exist (run the command that writes it)")
    return dict(json.loads(path.read_text()))


def provenance_text(data: dict[str, Any]) -> str:
    p = data.get("provenance") or {}
    machine = p.get("machine") or {}
    return (
        f"measured {p.get('date', '?')} at commit `{p.get('commit', '?')}` on "
        f"{machine.get('cpus', '?')} CPUs ({machine.get('processor', '?')}), "
        f"Python {machine.get('python', '?')}"
    )


def figure(name: str, path: str, spec: str | None) -> str:
    data = load_results(name)
    if path == ".provenance":
        return provenance_text(data)
    value: Any = data
    for part in path.strip(".").split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise DocsError(f"docs/results/{name}.json holds no {path.strip('.')!r}")
    if spec and (goal := GOAL.fullmatch(spec)):
        return _goal_verdict(value, goal[1], float(goal[2]), f"{name}{path}")
    if spec:
        return format(value, spec)
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "n/a"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# ------------------------------------------------------------------------------ references


def settings_table(kind: str) -> str:
    if kind == "worker":
        from worker.config import ENV_PREFIX as prefix
        from worker.config import WorkerSettings as settings
    elif kind == "scaler":
        from scaler.config import ENV_PREFIX as prefix  # type: ignore[attr-defined,no-redef]
        from scaler.config import Settings as settings  # type: ignore[assignment]
    else:
        raise DocsError(f"no settings named {kind!r}")
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in settings.model_fields.items():
        if not field.description:
            raise DocsError(f"{prefix}{name.upper()} has no description (Field(description=...))")
        default = "(required)" if field.is_required() else _default_text(field)
        meaning = _cell(field.description) + _bounds(field)
        rows.append(f"| `{prefix}{name.upper()}` | {default} | {meaning} |")
    return "\n".join(rows)


def _default_text(field: Any) -> str:
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _bounds(field: Any) -> str:
    bounds = []
    for meta in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append(f"{sign} {value}")
    choices = getattr(field.annotation, "__args__", None)
    if choices and all(isinstance(c, str) for c in choices):
        bounds.append("one of " + ", ".join(f"`{c}`" for c in choices))
    return f" ({'; '.join(bounds)})" if bounds else ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def errors_table() -> str:
    from worker.contract.error_types import ERROR_TYPES

    rows = ["| `error.type` | meaning | the request |", "|---|---|---|"]
    for error in ERROR_TYPES.values():
        fate = error.fate or (
            "answered with this error, deleted" if error.final else "left for redelivery"
        )
        rows.append(f"| `{error.name}` | {_cell(error.meaning)} | {fate} |")
    return "\n".join(rows)


def schema_block(kind: str) -> str:
    from worker.contract.request import RequestV1
    from worker.contract.result import ResultV1

    models = {"request": RequestV1, "result": ResultV1}
    if kind not in models:
        raise DocsError(f"no schema named {kind!r}")
    return "```json\n" + json.dumps(models[kind].model_json_schema(), indent=2) + "\n```"


def cli_help(module: str) -> str:
    try:
        parser = importlib.import_module(module).build_parser()
    except (ImportError, AttributeError) as exc:
        raise DocsError(f"{module}.build_parser() cannot be had: {exc}") from exc
    blocks = [f"```text\n{parser.format_help()}```"]
    for action in parser._actions:  # subcommands, each with its own help
        choices = getattr(action, "choices", None)
        if not isinstance(choices, dict):
            continue
        for name, sub in choices.items():
            if hasattr(sub, "format_help"):
                blocks.append(f"#### `{parser.prog} {name}`\n\n```text\n{sub.format_help()}```")
    return "\n\n".join(blocks)


def sim_report(section: str) -> str:
    from scaler import reportmd

    sections = reportmd.sections(load_results("sim-report"))
    if section not in sections:
        raise DocsError(f"sim-report has no section {section!r} ({', '.join(sections)})")
    return sections[section]()


def chaos_table(name: str) -> str:
    """One row per chaos test of a run (docs/results/chaos-<scale>.json)."""
    data = load_results(name)
    rows = ["| test | load | faults injected | lost | duplicates | passed | figures |",
            "|---|---|---|---|---|---|---|"]
    for test in data["figures"]["tests"].values():
        faults = ", ".join(f"{k} {v}" for k, v in test.get("faults", {}).items())
        figures = ", ".join(f"{k}: {_short(v)}" for k, v in test.get("figures", {}).items())
        rows.append(
            f"| {test['name']} | {_cell(str(test.get('load', '')))} | {_cell(faults)} | "
            f"{test['lost']} | {test['duplicates']} | {'yes' if test['passed'] else '**no**'} | "
            f"{_cell(figures)} |"
        )
    return "\n".join(rows) + f"\n\n{provenance_text(data).capitalize()}."


def chaos_broken_table(name: str) -> str:
    data = load_results(name)
    rows = ["| test | broken build | scale | caught | what failed |", "|---|---|---|---|---|"]
    for run in data["figures"]["runs"]:
        caught = "yes" if run["caught"] else "**no**"
        rows.append(
            f"| {run['test']} | `{run['break']}` | {run['scale']} | {caught} | "
            f"{_cell(str(run['evidence']))} |"
        )
    return "\n".join(rows) + f"\n\n{provenance_text(data).capitalize()}."


def _short(value: Any) -> str:
    if isinstance(value, dict | list):
        text = json.dumps(value, separators=(", ", ": "))
    else:
        text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def reference(kind: str, arg: str) -> str:
    generators = {
        "chaos": lambda: chaos_table(arg),
        "chaos-broken": lambda: chaos_broken_table(arg),
        "sim-report": lambda: sim_report(arg),
        "settings": lambda: settings_table(arg),
        "errors": errors_table,
        "schema": lambda: schema_block(arg),
        "cli": lambda: cli_help(arg),
    }
    if kind not in generators:
        raise DocsError(f"no reference of kind {kind!r}")
    return generators[kind]()


# ------------------------------------------------------------------------------ the hook


def render(markdown: str) -> str:
    def conditional(match: re.Match[str]) -> str:
        exists = (RESULTS / f"{match[2]}.json").is_file()
        return match[3] if exists == (match[1] == "if") else ""

    markdown = IF_RESULTS.sub(conditional, markdown)
    markdown = REFERENCE.sub(lambda m: _indented(reference(m[2], m[3]), m[1]), markdown)
    markdown = FIGURE.sub(lambda m: figure(m[1], m[2], m[3]), markdown)
    if (left := LEFTOVER.search(markdown)) is not None:
        end = markdown.find("}}", left.start())
        raise DocsError(f"not a figure the docs can render: {markdown[left.start() : end + 2]!r}")
    return markdown


def _indented(text: str, indent: str) -> str:
    """Generated text at the directive's indentation (inside an admonition, a list item)."""
    return "\n".join(indent + line if line else line for line in text.splitlines())


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    try:
        return render(markdown)
    except DocsError as exc:
        raise DocsError(f"{page.file.src_path}: {exc}") from None
