"""The JUnit file always parses: text XML 1.0 forbids (an ANSI colour, a NUL, a lone
surrogate) is written visibly escaped, as pytest's junitxml does."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pandas as pd

from lrlab.junit import write_junit, xml_text

ROW = dict(train_acc=0.9, val_acc=0.5, gap_acc=0.4, gl=12.0, best_epoch=1, epochs_run=2,
           wall_s=0.5, error=None)


def result(*rows, name="t"):
    return SimpleNamespace(runs=pd.DataFrame([{**ROW, **r} for r in rows]),
                           config=SimpleNamespace(name=name), wall_s=1.25)


def cases(path):
    suite = ET.parse(path).getroot().find("testsuite")
    return suite, {c.get("name"): c for c in suite.findall("testcase")}


def test_the_normal_case_parses_with_a_case_per_run(tmp_path):
    path = tmp_path / "j.xml"
    write_junit(result({"run_id": "a", "verdict": "ok", "flags": ""},
                       {"run_id": "b", "verdict": "overfit", "flags": "overfit: gap 0.4 & <GL>"},
                       {"run_id": "c", "verdict": "error", "flags": "error",
                        "error": "ValueError: bad"}), path)
    suite, by_name = cases(path)
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    assert suite.get("errors") == "1" and suite.get("name") == "lrlab.t"
    assert by_name["a"].find("failure") is None and by_name["a"].find("error") is None
    failure = by_name["b"].find("failure")
    assert failure.get("type") == "overfit"
    assert failure.get("message") == "overfit: gap 0.4 & <GL>"
    assert failure.text.startswith("overfit: gap 0.4 & <GL>\nkept epoch")
    assert by_name["c"].find("error").text == "ValueError: bad"


def test_characters_xml_forbids_are_escaped_and_the_file_parses(tmp_path):
    path = tmp_path / "j.xml"
    write_junit(result(
        {"run_id": "bad", "verdict": "error", "flags": "error \x1b[31mred\x1b[0m\x00",
         "error": "RuntimeError: \x1b[31mboom\x1b[0m\x00 at\tline\n2\x07 \uffff"},
        {"run_id": "fail", "verdict": "diverged", "flags": "diverged (nonfinite): \x1b[31m\x00"},
        name="n\x1b"), path)
    raw = path.read_bytes()
    assert b"\x1b" not in raw and b"\x00" not in raw
    suite, by_name = cases(path)
    assert suite.get("name") == "lrlab.n#x1B"
    error = by_name["bad"].find("error")
    assert error.get("message") == "error #x1B[31mred#x1B[0m#x00"
    assert error.text == "RuntimeError: #x1B[31mboom#x1B[0m#x00 at\tline\n2#x07 #xFFFF"
    failure = by_name["fail"].find("failure")
    assert failure.get("message") == "diverged (nonfinite): #x1B[31m#x00"
    assert failure.text.startswith("diverged (nonfinite): #x1B[31m#x00\nkept epoch")


def test_xml_text_leaves_what_xml_allows():
    allowed = "tab\tnew\nline\rcr é ✓ \U0001f600 <&>\"'"
    assert xml_text(allowed) == allowed
    assert xml_text("\x7f\x1f\x01\ufffe") == "#x7F#x1F#x01#xFFFE"
    # lone surrogates (a pandas string column cannot hold them, a Python str can)
    assert xml_text("lone \ud800 and \udfff") == "lone #xD800 and #xDFFF"
    assert xml_text(3) == "3"
