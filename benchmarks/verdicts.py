"""lrlab's verdicts against the labelled set of tests/verdict_cases.py.

    python benchmarks/verdicts.py

prints the confusion matrix (rows: expected, columns: lrlab's verdict) as a Markdown
table, the agreement on the verdict and on the cause, and every disagreement with its
flags and history tail."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from verdict_cases import details, verdict_cases  # noqa: E402

from lrlab.verdicts import VERDICTS  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cases = verdict_cases(tmp)
    wall = time.perf_counter() - t0
    labels = [v for v in VERDICTS if any(c[1] == v or c[3] == v for c in cases)]
    print("| expected \\ lrlab | " + " | ".join(labels) + " | total |")
    print("|---|" + "---:|" * (len(labels) + 1))
    for want in labels:
        row = [sum(1 for c in cases if c[1] == want and c[3] == got) for got in labels]
        print(f"| **{want}** | " + " | ".join(str(n) if n else "." for n in row)
              + f" | {sum(row)} |")
    wrong = [c for c in cases if c[1] != c[3]]
    with_cause = [c for c in cases if c[2]]
    cause_ok = [c for c in with_cause if c[1] == c[3] and c[2] == c[4]]
    print(f"\n{len(cases)} cases, verdict agreement {100 * (1 - len(wrong) / len(cases)):.1f}%"
          f" ({len(cases) - len(wrong)}/{len(cases)}); cause agreement where a cause is "
          f"expected {len(cause_ok)}/{len(with_cause)}; {wall:.1f}s")
    cause_wrong = [c for c in with_cause if c[1] == c[3] and c[2] != c[4]]
    for title, group in (("verdict disagreements", wrong), ("cause disagreements", cause_wrong)):
        if not group:
            continue
        print(f"\n## {title}\n")
        for name, want, want_cause, got, got_cause in group:
            flags, hist = details.get(name, ("", ""))
            print(f"- {name}: expected {want} ({want_cause or '-'}), lrlab {got} "
                  f"({got_cause or '-'})\n  flags: {flags or '-'}")
            print("\n".join("      " + line for line in hist.splitlines()))


if __name__ == "__main__":
    main()
