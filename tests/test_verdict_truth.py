"""lrlab's verdicts against a labelled set whose truth is known by construction
(tests/verdict_cases.py): hand-written edge-case histories and real digits trainings."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from verdict_cases import details, verdict_cases  # noqa: E402


def describe(case) -> str:
    name, want, want_cause, got, got_cause = case
    flags, hist = details.get(name, ("", ""))
    return (f"{name}: expected {want}{f' ({want_cause})' if want_cause else ''}, lrlab said "
            f"{got}{f' ({got_cause})' if got_cause else ''}\n  flags: {flags or '-'}\n"
            + "\n".join("    " + line for line in hist.splitlines()))


def test_verdicts_agree_with_the_labelled_set(tmp_path):
    cases = verdict_cases(tmp_path)
    assert len(cases) >= 40, f"only {len(cases)} cases"
    wrong = [c for c in cases if c[1] != c[3]]
    agreement = 1 - len(wrong) / len(cases)
    assert agreement >= 0.95, (
        f"{agreement:.1%} agreement ({len(wrong)} of {len(cases)} wrong):\n\n"
        + "\n\n".join(describe(c) for c in wrong))
