"""Every chaos test against the broken build it guards: each run must FAIL.

    .venv/bin/python tests/chaos/support/broken_builds.py      (make chaos-broken)

A chaos test that passes on a build that loses messages, answers twice or never backs off proves
nothing; this runs each (test, CHAOS_BREAK) pair from docs/reliability.md, expects a failure,
keeps the failing assertion's first line as evidence, and writes docs/results/chaos-broken.json.
Exit code 1 when any pair passed (the test did not catch its bug).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402

# (test file, break, CHAOS_SCALE): smoke where the test runs at smoke scale
PAIRS = [
    ("test_chaos_1_crash.py", "delete_before_write", "smoke"),
    ("test_chaos_2_drain.py", "no_release", "smoke"),
    ("test_chaos_2_drain.py", "double_write", "smoke"),
    ("test_chaos_3_sqs_faults.py", "ignore_failed", "smoke"),
    ("test_chaos_3_sqs_faults.py", "hot_retry", "smoke"),
    ("test_chaos_4_slow_model.py", "no_heartbeat", "quick"),
    ("test_chaos_5_poison_fuzz.py", "retry_poison", "smoke"),
    ("test_chaos_6_scaler_faults.py", "scaler_no_clamp", "smoke"),
    ("test_chaos_7_soak.py", "leak", "quick"),
]
FAILED_LINE = re.compile(r"^E\s+(.*\S)", re.M)


def run(test: str, broken: str, scale: str) -> dict[str, object]:
    env = {**os.environ, "CHAOS_BREAK": broken, "CHAOS_SCALE": scale}
    if scale == "smoke":
        env.pop("CHAOS_SCALE")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=900",
         f"tests/chaos/{test}"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    evidence = FAILED_LINE.findall(done.stdout)
    return {
        "test": test.removesuffix(".py").removeprefix("test_chaos_"),
        "break": broken,
        "scale": scale,
        "caught": done.returncode != 0,
        "evidence": (evidence[0] if evidence else done.stdout.strip().splitlines()[-1])[:300],
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> int:
    outcomes = []
    for test, broken, scale in PAIRS:
        outcome = run(test, broken, scale)
        verdict = "caught" if outcome["caught"] else "NOT CAUGHT"
        print(f"{test} with {broken}: {verdict} ({outcome['seconds']} s): {outcome['evidence']}",
              flush=True)
        outcomes.append(outcome)
    results.write("chaos-broken", {"runs": outcomes})
    missed = [o for o in outcomes if not o["caught"]]
    print(f"{len(outcomes) - len(missed)}/{len(outcomes)} broken builds caught")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
