"""Each run as a JUnit test case, so any CI system shows the verdicts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from lrlab.verdicts import FAILING


def write_junit(result, path: Path) -> None:
    """Write ``result``'s runs: overfit, unstable and diverged fail, error errors (as
    ``--strict`` counts them); ok and underfit pass."""
    runs = result.runs
    suite = ET.Element("testsuite", name=f"lrlab.{result.config.name}",
                       tests=str(len(runs)),
                       failures=str(int(runs["verdict"].isin(FAILING).sum()) if len(runs) else 0),
                       errors=str(int((runs["verdict"] == "error").sum()) if len(runs) else 0),
                       time=f"{result.wall_s:.3f}")
    for row in runs.itertuples():
        case = ET.SubElement(suite, "testcase", classname=f"lrlab.{result.config.name}",
                             name=row.run_id, time=f"{row.wall_s:.3f}")
        if row.verdict in FAILING:
            failure = ET.SubElement(case, "failure", type=row.verdict,
                                    message=row.flags)
            failure.text = (f"{row.flags}\nkept epoch {getattr(row, 'tested_epoch', '?')}: "
                            f"train acc {getattr(row, 'tested_train_acc', row.train_acc):.4f}, "
                            f"val acc {getattr(row, 'tested_val_acc', row.val_acc):.4f}, gap "
                            f"{getattr(row, 'tested_gap_acc', row.gap_acc):.4f}, GL "
                            f"{getattr(row, 'tested_gl', row.gl):.1f}%, "
                            f"best epoch {row.best_epoch} of {row.epochs_run}")
        elif row.verdict == "error":
            error = ET.SubElement(case, "error", message=str(row.flags))
            error.text = row.error
    tree = ET.ElementTree(ET.Element("testsuites"))
    tree.getroot().append(suite)
    ET.indent(tree)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
