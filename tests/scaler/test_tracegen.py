"""Trace families: seeded, every family from the CLI, sparse files that load back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scaler.simulator import load_trace
from scaler.tracegen import FAMILIES, REPORT_SEEDS, TUNING_SEEDS, generate

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_from_the_cli_round_trips(family: str, tmp_path: Path) -> None:
    out = tmp_path / f"{family}.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "scaler.tracegen", family, "--seed", "7", "--hours", "1",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    counts = generate(family, 7, 1.0)
    assert load_trace(out) == counts and len(counts) == 3600
    rows = out.read_text().count("\n") - 1
    assert rows <= sum(1 for n in counts if n) + 1  # sparse: empty seconds left out


def test_seeds_are_reproducible_and_distinct() -> None:
    for family in FAMILIES:
        assert generate(family, 3) == generate(family, 3)
        assert generate(family, 3) != generate(family, 4)


def test_tuning_and_report_seeds_do_not_overlap() -> None:
    assert not set(TUNING_SEEDS) & set(REPORT_SEEDS) and len(REPORT_SEEDS) == 20


def test_the_new_families_have_their_shapes() -> None:
    batch = generate("batch", 0)
    idle = [n == 0 for n in batch]
    longest, run = 0, 0
    for quiet in idle:
        run = run + 1 if quiet else 0
        longest = max(longest, run)
    assert longest >= 5400  # hours-long idle gaps between jobs
    market = generate("marketplace", 0)
    minute = [sum(market[i:i + 60]) / 60 for i in range(0, len(market), 60)]
    assert max(minute) > 2.5 * sorted(minute)[len(minute) // 2]  # bursts on top of the cycle
