"""``lrlab compare A B``: deltas with intervals, the --fail-if-worse gate (its false-alarm
rate under no change, and its power), JUnit, the page, exit codes and bad input."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lrlab.cli import app
from lrlab.compare import compare, parse_thresholds, write_html
from lrlab.errors import UsageError

runner = CliRunner()
CONFIGS = [(lr, aug) for lr in (0.03, 0.1) for aug in ("none", "noise")]


def sweep(rng, seed_effect, shift=0.0, seeds=3, configs=CONFIGS, dataset="digits",
          noise=0.01, verdict="ok"):
    """A runs table: each configuration's val acc is 0.95 + the seed's effect (shared by
    every sweep that runs that seed) + noise + ``shift``."""
    n = len(configs) * seeds
    lr = np.repeat([c[0] for c in configs], seeds)
    aug = np.repeat([c[1] for c in configs], seeds)
    seed = np.tile(np.arange(seeds), len(configs))
    acc = 0.95 + seed_effect[seed] + rng.normal(0, noise, n) + shift
    return pd.DataFrame({
        "run_id": [f"mlp-lr{a}-{b}-s{s}" for a, b, s in zip(lr, aug, seed, strict=True)],
        "key": "k", "dataset": dataset, "model": "mlp", "augment": aug, "lr": lr,
        "epochs": 15, "seed": seed, "verdict": verdict, "cause": "", "flags": "",
        "tested_val_acc": acc, "tested_val_loss": 0.2 + rng.normal(0, 0.01, n),
        "tested_gap_acc": 0.03 + rng.normal(0, 0.005, n), "tested_gl": 1.0,
        "val_acc": acc, "test_acc": acc})


def store(folder, runs):
    folder.mkdir(parents=True, exist_ok=True)
    runs.to_parquet(folder / "runs.parquet")
    return folder


def invoke(*args):
    return runner.invoke(app, ["compare", *[str(a) for a in args]], catch_exceptions=False)


# -- the statistics of the gate ---------------------------------------------------------------


def test_no_true_difference_fails_the_gate_at_no_more_than_the_nominal_rate():
    rng = np.random.default_rng(2024)
    fails = {"paired": 0, "unpaired": 0}
    draws = 200
    for i in range(draws):
        effect = rng.normal(0, 0.01, 5)  # the seeds' own effect, shared by A and B
        a = sweep(rng, effect)
        if i % 2:  # same seeds: paired
            b, kind = sweep(rng, effect), "paired"
        else:  # other seeds: unpaired
            b, kind = sweep(rng, rng.normal(0, 0.01, 5), seeds=4), "unpaired"
        c = compare(a, b, fail_if_worse=["val_acc=0"])
        assert set(c.table["pairing"]) == {kind}
        fails[kind] += c.failed
    rate = sum(fails.values()) / draws
    assert rate <= 0.06, fails  # nominal: 2.5% (one side of 95%, over all 4 configurations)


def test_a_large_drop_is_flagged_and_pairing_by_seed_finds_what_unpaired_cannot():
    rng = np.random.default_rng(5)
    effect = rng.normal(0, 0.02, 3)  # large seed effects, shared
    a = sweep(rng, effect, noise=0.002)
    worse = compare(a, sweep(rng, effect, shift=-0.05, noise=0.002),
                    fail_if_worse=["val_acc=0.01"])
    assert worse.failed and worse.table["fails"].all()
    assert (worse.table["change"] == "worse").all()
    assert "val_acc −0.05" in worse.table["fails_on"].iloc[0]
    small = sweep(rng, effect, shift=-0.01, noise=0.002)
    paired = compare(a, small)
    shuffled = compare(a, small.assign(seed=(small["seed"] + 1) % 3 + 10))
    assert (paired.table["pairing"] == "paired").all()
    assert (paired.table["change"] == "worse").all()
    assert (shuffled.table["pairing"] == "unpaired").all()
    assert (shuffled.table["val_acc_hi"] - shuffled.table["val_acc_lo"]
            > paired.table["val_acc_hi"] - paired.table["val_acc_lo"]).all()


def test_new_missing_and_changed_verdicts_are_reported():
    rng = np.random.default_rng(0)
    effect = rng.normal(0, 0.01, 3)
    a = sweep(rng, effect, configs=CONFIGS[:3])
    b = sweep(rng, effect, configs=CONFIGS[1:])
    b.loc[b["lr"] == 0.03, "verdict"] = "overfit"
    c = compare(a, b)
    status = dict(zip(c.table["config"], c.table["status"], strict=True))
    assert status == {"augment=none, lr=0.03": "missing", "augment=noise, lr=0.03": "both",
                      "augment=none, lr=0.1": "both", "augment=noise, lr=0.1": "new"}
    changed = c.table.set_index("config").loc["augment=noise, lr=0.03"]
    assert (changed["verdict_a"], changed["verdict_b"], changed["verdict_changed"]) == \
        ("ok", "overfit", True)
    assert list(c.table["status"]) == ["both", "both", "new", "missing"]
    assert "1 new, 1 missing; 1 verdict change(s)" in c.summary_line()


# -- thresholds and bad input -----------------------------------------------------------------


def test_thresholds_parse_and_bad_ones_say_what_is_wrong():
    assert parse_thresholds(["val_acc=0.01", "gap_acc=0.02,gl=5"]) == \
        {"val_acc": 0.01, "gap_acc": 0.02, "gl": 5.0}
    for bad, says in (("val_acc", "expected METRIC=THRESHOLD"), ("val_ac=0.01", "'val_acc'"),
                      ("val_acc=abc", "a number >= 0"), ("val_acc=-1", "a number >= 0"),
                      ("=1", "expected METRIC=THRESHOLD")):
        with pytest.raises(UsageError, match=says):
            parse_thresholds([bad])


@pytest.fixture()
def folders(tmp_path):
    rng = np.random.default_rng(1)
    effect = rng.normal(0, 0.01, 3)
    a = store(tmp_path / "a", sweep(rng, effect, noise=0.002))
    same = store(tmp_path / "same", sweep(rng, effect, noise=0.002))
    worse = store(tmp_path / "worse", sweep(rng, effect, shift=-0.05, noise=0.002))
    return a, same, worse


def test_exit_codes_through_the_cli(folders, tmp_path):
    a, same, worse = folders
    ok = invoke(a, same, "--fail-if-worse", "val_acc=0.01")
    assert ok.exit_code == 0, ok.output
    assert "--fail-if-worse: passed" in ok.stdout.splitlines()[-1]
    assert (same / "compare.html").is_file()  # the page defaults to B's folder
    bad = invoke(a, worse, "--fail-if-worse", "val_acc=0.01", "--out", tmp_path / "c.html",
                 "--junit-xml", tmp_path / "c.xml")
    assert bad.exit_code == 1, bad.output
    assert "FAIL augment=none, lr=0.03: val_acc −0.05" in bad.stdout
    assert (tmp_path / "c.html").is_file() and not (worse / "compare.html").exists()
    suite = ET.parse(tmp_path / "c.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("4", "4")
    assert invoke(a, worse).exit_code == 0  # no gate asked for: a report, not a verdict


def test_bad_input_is_one_line_and_exit_code_2(folders, tmp_path):
    a, same, _ = folders
    rng = np.random.default_rng(3)
    mnist = store(tmp_path / "mnist", sweep(rng, np.zeros(3), dataset="mnist"))
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, says in (((a, mnist), "different datasets (digits vs mnist)"),
                       ((a, empty), "holds no sweep results"),
                       ((a, same, "--fail-if-worse", "val_ac=0.01"), "unknown metric 'val_ac'"),
                       ((a, same, "--fail-if-worse", "val_acc=lots"), "a number >= 0"),
                       ((a, same, "--fail-if-worse", "val_acc"), "METRIC=THRESHOLD")):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines


def test_junit_escapes_and_the_page_is_self_contained(tmp_path):
    rng = np.random.default_rng(4)
    effect = rng.normal(0, 0.01, 3)
    odd = [(0.1, "noise\x1b[31m<b>&")]
    a = sweep(rng, effect, configs=odd + CONFIGS[:1])
    b = sweep(rng, effect, configs=odd + CONFIGS[:1], shift=-0.1, noise=0.001)
    c = compare(a, b, fail_if_worse={"val_acc": 0.0})
    from lrlab.compare import write_junit

    path = write_junit(c, tmp_path / "j.xml")
    names = [t.get("name") for t in ET.parse(path).getroot().iter("testcase")]
    assert any("#x1B" in n and "<b>&" in n for n in names)
    page = write_html(c, tmp_path / "page.html").read_text()
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page.replace("<b>&lt;", "")
    assert "http://" not in page and "https://" not in page
    assert 'id="fig-deltas" data-shown="yes"' in page and "FAILED" in page


def test_the_help_lists_compare_and_the_command_module_stays_light():
    import subprocess

    assert "compare" in runner.invoke(app, ["--help"]).stdout
    code = ("import sys, lrlab.cli; heavy = {'pandas', 'torch', 'scipy'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
