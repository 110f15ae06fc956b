"""Each run as a JUnit test case, so any CI system shows the verdicts."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from lrlab.verdicts import FAILING

# Everything XML 1.0 does not allow (Char ::= #x9 | #xA | #xD | [#x20-#xD7FF] |
# [#xE000-#xFFFD] | [#x10000-#x10FFFF]), and DEL, as pytest's junitxml does.
_ILLEGAL_XML = re.compile(
    "[^\u0009\u000a\u000d\u0020-\u007e\u0080-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape(char: re.Match[str]) -> str:
    code = ord(char.group())
    return f"#x{code:02X}" if code <= 0xFF else f"#x{code:04X}"


def xml_text(value: object) -> str:
    """``value`` as text XML 1.0 can hold: each character it forbids (an ANSI colour's
    ``\\x1b``, ``\\x00``, a lone surrogate) is written visibly, as ``#x1B`` (pytest's
    ``bin_xml_escape``); the rest is left to the XML writer to escape."""
    return _ILLEGAL_XML.sub(_escape, str(value))


def write_junit(result, path: Path) -> None:
    """Write ``result``'s runs: overfit, unstable and diverged fail, error errors (as
    ``--strict`` counts them); ok and underfit pass."""
    runs = result.runs
    suite = ET.Element("testsuite", name=xml_text(f"lrlab.{result.config.name}"),
                       tests=str(len(runs)),
                       failures=str(int(runs["verdict"].isin(FAILING).sum()) if len(runs) else 0),
                       errors=str(int((runs["verdict"] == "error").sum()) if len(runs) else 0),
                       time=f"{result.wall_s:.3f}")
    for row in runs.itertuples():
        case = ET.SubElement(suite, "testcase", classname=suite.get("name"),
                             name=xml_text(row.run_id), time=f"{row.wall_s:.3f}")
        if row.verdict in FAILING:
            failure = ET.SubElement(case, "failure", type=xml_text(row.verdict),
                                    message=xml_text(row.flags))
            failure.text = xml_text(
                f"{row.flags}\nkept epoch {getattr(row, 'tested_epoch', '?')}: "
                f"train acc {getattr(row, 'tested_train_acc', row.train_acc):.4f}, "
                f"val acc {getattr(row, 'tested_val_acc', row.val_acc):.4f}, gap "
                f"{getattr(row, 'tested_gap_acc', row.gap_acc):.4f}, GL "
                f"{getattr(row, 'tested_gl', row.gl):.1f}%, "
                f"best epoch {row.best_epoch} of {row.epochs_run}")
        elif row.verdict == "error":
            error = ET.SubElement(case, "error", message=xml_text(row.flags))
            error.text = xml_text(row.error) if isinstance(row.error, str) else None
    tree = ET.ElementTree(ET.Element("testsuites"))
    tree.getroot().append(suite)
    ET.indent(tree)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
