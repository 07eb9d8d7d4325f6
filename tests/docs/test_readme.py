"""The README is the front door: short, its two commands, its figures equal to the result files
they come from, and every link it gives leads somewhere."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import readme_figures  # noqa: E402

README = (ROOT / "README.md").read_text()
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_it_is_short_and_gives_the_two_commands() -> None:
    assert len(README.splitlines()) <= 200
    assert "make demo" in README and "make test" in README


def test_every_figure_equals_its_result_file() -> None:
    assert readme_figures.stale(README) == []
    assert readme_figures.MARKED.search(README) is not None, "the README quotes no figure"


def test_a_stale_figure_is_found() -> None:
    marked = readme_figures.MARKED.search(README)
    assert marked is not None
    tampered = README.replace(marked[0], marked[0].replace(f"-->{marked[4]}<!--", "-->0.0001<!--"))
    assert readme_figures.stale(tampered), "a figure changed by hand was not noticed"


@pytest.mark.parametrize("target", sorted(set(LINK.findall(README)) - {""}))
def test_every_relative_link_exists(target: str) -> None:
    if target.startswith(("http://", "https://", "mailto:")):
        return
    assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_the_producer_example_is_short() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "no Python producer example"
    assert len(blocks[0].splitlines()) <= 15
