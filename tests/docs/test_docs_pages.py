"""The docs: every page renders (its references exist, its figures are in their result files),
every setting is described, and the metrics a page names exist. `make docs` builds the site
strictly and `make docs-check` opens it in Chromium; these catch the same mistakes in seconds."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import docs_hooks  # noqa: E402

PAGES = sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_page_renders_from_the_code_and_the_result_files(page: Path) -> None:
    rendered = docs_hooks.render(page.read_text())
    assert docs_hooks.FIGURE.search(rendered) is None and "<!-- reference:" not in rendered
    assert rendered.lstrip().startswith("# "), f"{page.name} has no title heading"


def test_a_figure_its_result_file_does_not_hold_fails_the_build() -> None:
    with pytest.raises(docs_hooks.DocsError, match=r"holds no 'figures\.no_such_figure'"):
        docs_hooks.render("{{ sim-report.figures.no_such_figure }}")
    with pytest.raises(docs_hooks.DocsError, match="does not exist"):
        docs_hooks.render("{{ no-such-results.figures.x }}")
    with pytest.raises(docs_hooks.DocsError, match="no reference of kind"):
        docs_hooks.render("<!-- reference: nonsense x -->")
    with pytest.raises(docs_hooks.DocsError, match="not a figure"):
        docs_hooks.render("{{ sim-report.figures.a b }}")


def test_figures_are_read_from_the_file_and_conditionals_follow_its_existence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "demo.json").write_text(
        '{"provenance": {"date": "D", "commit": "C", "machine": {"cpus": 2}}, '
        '"figures": {"x": 0.5, "n": 1234}}'
    )
    monkeypatch.setattr(docs_hooks, "RESULTS", tmp_path)
    text = "{{ demo.figures.x }} {{ demo.figures.n }} {{ demo.figures.x :.0% }}"
    assert docs_hooks.render(text) == "0.5 1,234 50%"
    shown = (
        "<!-- if-results demo -->yes<!-- end-if -->"
        "<!-- unless-results demo -->no<!-- end-unless -->"
    )
    assert docs_hooks.render(shown) == "yes"
    assert "commit `C`" in docs_hooks.render("{{ demo.provenance }}")


@pytest.mark.parametrize("kind", ["worker", "scaler"])
def test_every_setting_has_a_description(kind: str) -> None:
    table = docs_hooks.settings_table(kind)  # raises naming the first undescribed field
    assert table.count("\n") >= 10


def test_the_metrics_the_operations_page_names_exist() -> None:
    from worker.metrics import Metrics

    text = (ROOT / "docs" / "operations.md").read_text()
    named = set(re.findall(r"`(gpuqueue_[a-z_]+)", text))
    exported = Metrics().render().decode()
    missing = sorted(n for n in named if n not in exported)
    assert named and missing == []


def test_a_goal_verdict_is_computed_from_the_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "demo.json").write_text('{"figures": {"ratio": 0.93, "ms": 0.35, "label": "x"}}')
    monkeypatch.setattr(docs_hooks, "RESULTS", tmp_path)
    text = "{{ demo.figures.ratio :goal>=1.15 }} {{ demo.figures.ratio :goal>=0.9 }} " \
        "{{ demo.figures.ms :goal<=0.35 }} {{ demo.figures.ms :goal<=0.3 }}"
    assert docs_hooks.render(text) == "**missed** met met **missed**"
    with pytest.raises(docs_hooks.DocsError, match="not a number"):
        docs_hooks.render("{{ demo.figures.label :goal>=1 }}")
