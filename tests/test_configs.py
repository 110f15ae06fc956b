"""The configs table: one verdict per configuration across seeds, and the best chosen on
validation among the configurations that learned."""

from __future__ import annotations

import pandas as pd

from lrlab.configs import (
    best_configuration,
    config_id,
    config_table,
    majority,
    no_best_reason,
    verdict_counts,
)


def runs(*rows):
    base = {"model": "mlp", "augment": "none", "epochs": 10, "num_classes": 10,
            "tested_val_loss": 0.3, "tested_gap_acc": 0.02, "tested_gl": 1.0,
            "test_acc": 0.9, "cause": ""}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_a_run_id_less_its_seed_names_its_configuration():
    assert config_id("mlp-lr0.1-ep30-flip-s12") == "mlp-lr0.1-ep30-flip"


def test_the_majority_wins_and_a_tie_goes_to_the_more_severe_verdict():
    assert majority(["ok", "ok", "overfit"]) == "ok"
    assert majority(["ok", "overfit"]) == "overfit"
    assert majority(["diverged", "unstable"]) == "diverged"


def test_one_row_per_configuration_counts_every_seeds_verdict_and_the_spread():
    table = config_table(runs(
        {"run_id": "a-lr0.1-s0", "lr": 0.1, "verdict": "overfit", "cause": "gap",
         "tested_val_acc": 0.90},
        {"run_id": "a-lr0.1-s1", "lr": 0.1, "verdict": "ok", "tested_val_acc": 0.92},
        {"run_id": "a-lr0.1-s2", "lr": 0.1, "verdict": "ok", "tested_val_acc": 0.94},
        {"run_id": "a-lr1-s0", "lr": 1.0, "verdict": "diverged", "tested_val_acc": 0.1}))
    row = table.set_index("config_id").loc["a-lr0.1"]
    assert (row["n"], row["n_ok"], row["n_overfit"], row["verdict"]) == (3, 2, 1, "ok")
    assert verdict_counts(row) == "2 ok, 1 overfit of 3 seeds"
    assert abs(row["val_acc_mean"] - 0.92) < 1e-9 and abs(row["val_acc_std"] - 0.02) < 1e-9
    assert table.set_index("config_id").loc["a-lr1", "learned"] == False  # noqa: E712


def test_the_best_is_chosen_among_configurations_that_learned():
    # the stuck run's val acc is the highest number of all here only if chance counted
    table = runs({"run_id": "a-lr0.01-s0", "lr": 0.01, "verdict": "ok",
                  "tested_val_acc": 0.60},
                 {"run_id": "a-lr1-s0", "lr": 1.0, "verdict": "diverged",
                  "tested_val_acc": 0.95})
    best = best_configuration(table)
    assert list(best["run_id"]) == ["a-lr0.01-s0"]


def test_when_nothing_learned_no_configuration_is_named_best():
    # a dataset whose features hold NaN: every run diverges at chance
    table = runs(*({"run_id": f"a-lr{lr}-s0", "lr": lr, "verdict": "diverged",
                    "cause": "nonfinite", "tested_val_acc": 0.1} for lr in (0.01, 0.1)))
    assert best_configuration(table) is None
    assert "no configuration learned (2 diverged)" in no_best_reason(config_table(table))
