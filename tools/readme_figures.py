"""The README's figures, kept equal to the result files they come from.

A figure in README.md is written `<!-- fig NAME.PATH -->VALUE<!-- /fig -->` (or with `:FORMAT`
after the path, as in the docs' `{{ NAME.PATH :FORMAT }}`): NAME is docs/results/NAME.json and
PATH the dotted path inside it. `python tools/readme_figures.py` rewrites every VALUE from the
files; `--check` only says which are stale (tests/docs/test_readme.py runs it), so a README can
never quote a figure its JSON does not hold.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_hooks import FIGURE_REF, ROOT, figure

README = ROOT / "README.md"
MARKED = re.compile(r"<!-- fig " + FIGURE_REF + r"(?::(\S+))? -->(.*?)<!-- /fig -->")


def refresh(text: str) -> str:
    def current(match: re.Match[str]) -> str:
        value = figure(match[1], match[2], match[3])
        spec = f":{match[3]}" if match[3] else ""
        return f"<!-- fig {match[1]}{match[2]}{spec} -->{value}<!-- /fig -->"

    return MARKED.sub(current, text)


def stale(text: str) -> list[str]:
    """The marked figures whose value differs from their file's."""
    out = []
    for match in MARKED.finditer(text):
        value = figure(match[1], match[2], match[3])
        if match[4] != value:
            out.append(f"{match[1]}{match[2]}: README says {match[4]!r}, the file holds {value!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    text = README.read_text()
    if args == ["--check"]:
        problems = stale(text)
        for problem in problems:
            print(f"README: {problem}", file=sys.stderr)
        return 1 if problems else 0
    README.write_text(refresh(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
