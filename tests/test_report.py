"""The HTML report: its structure, its numbers, escaping, plugin sections, scale, side effects."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time

import matplotlib
import numpy as np
import pytest
from htmldom import cells, parse, png_size, table_rows

import lrlab
from lrlab import hookimpl
from lrlab.plugins import load_plugins
from lrlab.report import Section, write_report
from lrlab.report.analysis import hint
from lrlab.report.synthetic import synthetic_tables, write_synthetic
from lrlab.results import load_results

FIGURES = ["lr-sensitivity", "learning-curves", "gap-heatmap", "augmentation",
           "early-stopping", "axis-effects", "lr-schedule"]
XSS = "<script>alert(1)</script>"
FLAGGED_ORDER = ["overfit", "diverged", "underfit", "error"]

# -- plugins used by the tests ---------------------------------------------------------------


class SectionsA:
    """Adds two sections; its html is trusted markup."""

    @hookimpl
    def lrlab_report_sections(self, runs, history, manifest):
        return [Section("Alpha one", f"<p class='alpha'>{len(runs)} runs</p>"),
                Section("Alpha two", "<p class='alpha2'>second</p>")]


class SectionsB:
    """Asks only for the runs table, returns one section."""

    @hookimpl
    def lrlab_report_sections(self, runs):
        return [Section("Beta", "<p class='beta'>beta</p>")]


class FailOneRun:
    """Makes the lr=10, augment=noise run raise, so the sweep has an error run."""

    @hookimpl
    def lrlab_run_start(self, run):
        if run.lr == 10.0 and str(run.augment[0]) == "noise":
            raise RuntimeError("made-up failure in run_start")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real tiny sweep with every verdict and every figure: 3 LRs x 2 augmentations,
    a stopper, a cosine schedule; a low gap threshold so the good LR overfits."""
    out = tmp_path_factory.mktemp("reports")
    result = lrlab.run_sweep(out=out, name="structure", lr=[0.001, 0.1, 10.0], epochs=5,
                             augment=["none", "noise"], stopper="patience(patience=1)",
                             schedule="cosine", thresholds={"overfit_gap_acc": 0.005},
                             plugins=[SectionsA(), SectionsB(), FailOneRun()])
    assert all(result.counts.get(v) for v in FLAGGED_ORDER), result.counts  # ok is optional
    return result


@pytest.fixture(scope="module")
def dom(sweep):
    return parse(sweep.folder / "index.html")


# -- structure -------------------------------------------------------------------------------


def test_sweep_writes_report_with_every_section(sweep, dom):
    assert (sweep.folder / "index.html").is_file()
    for sid in ("summary", "flagged", "figures", "runs", "plugins"):
        assert dom.find("section", id=sid) is not None, f"section #{sid} missing"
    assert "structure" in dom.find("title").text()


def test_every_figure_is_drawn_with_title_caption_and_decodable_png(dom):
    for key in FIGURES:
        fig = dom.find("figure", id=f"fig-{key}")
        assert fig is not None, f"figure {key} missing"
        assert fig.attrs["data-shown"] == "yes", fig.text()
        assert fig.find("h3").text().strip()
        assert len(fig.find("figcaption").text()) > 60  # a sentence saying how to read it
        img = fig.find("img")
        assert img.attrs["alt"]
        width, height = png_size(img)
        assert width > 300 and height > 150


def test_summary_counts_verdicts_and_names_best_config_with_its_test_metric(sweep, dom):
    runs = sweep.runs
    for v in lrlab.verdicts.VERDICTS:
        box = dom.find("div", data_verdict=v)
        assert box.find("span").text() == str(int((runs["verdict"] == v).sum()))
    learned = runs[runs["verdict"] != "error"].sort_values(["val_acc", "val_loss"],
                                                          ascending=[False, True])
    best = learned.iloc[0]  # one seed: the best run is the best configuration
    block = dom.find("div", id="best").text()
    assert f"{best['val_acc']:.3f}" in block and f"{best['test_acc']:.3f}" in block
    assert f"lr={best['lr']:.3g}" in block
    summary = dom.find("section", id="summary").text()
    for needle in ("Sweep settings", "Environment", "device", "versions", "command line",
                   "torch", "patience(patience=1)"):
        assert needle in summary


def test_test_metrics_appear_only_for_the_chosen_configuration(sweep, dom):
    headers = [th.text() for th in dom.find("table", id="runs-table").iter("th")]
    assert not any("test" in h for h in headers)
    assert "val acc" in headers


def test_flagged_table_lists_every_flagged_run_with_its_numbers_and_a_hint(sweep, dom):
    ordered = table_rows(dom, "flagged-table")
    order = [FLAGGED_ORDER.index(r.attrs["data-verdict"]) for r in ordered]
    assert order == sorted(order)  # overfit first, then diverged, underfit, error
    gaps = [float(cells(r)[3].replace("−", "-")) for r in ordered
            if r.attrs["data-verdict"] == "overfit"]
    assert gaps == sorted(gaps, reverse=True)  # by how much they overfit
    rows = {cells(r)[1]: r for r in ordered}
    flagged = sweep.runs[sweep.runs["verdict"] != "ok"]
    assert set(rows) == set(flagged["run_id"])
    for run in flagged.to_dict("records"):
        row = rows[run["run_id"]]
        assert row.attrs["class"] == f"r-{run['verdict']}"  # coloured by verdict
        text = cells(row)
        hint_cell = text[-1]
        assert hint_cell, run["run_id"]
        if run["verdict"] == "error":
            assert "made-up failure" in hint_cell
            continue
        assert text[2] == f"{run['lr']:.3g}"
        gap = run["gap_acc"]
        assert text[3] in (f"{gap:+.3f}".replace("-", "−"), "0.000")
        assert text[5].startswith(f"{run['best_epoch']} / {run['epochs_run']} of 5")
        if run["verdict"] == "diverged":
            mine = sweep.history[sweep.history["run_id"] == run["run_id"]]
            peak = mine["max_batch_loss"].max()
            # the epoch it blew up: that of its largest mini-batch loss, not its last
            at = int(mine.loc[mine["max_batch_loss"].fillna(-1).idxmax(), "epoch"])
            assert text[6] in (f"epoch {run['epochs_run']}: train loss {run['train_loss']:.3g}",
                               f"epoch {at}: a mini-batch loss reached {peak:.3g}")
            assert "lower the LR" in hint_cell
        if run["verdict"] == "underfit":
            assert "raise the LR" in hint_cell and f"{run['best_train_acc']:.3f}" in hint_cell
        if run["verdict"] == "overfit":
            assert "stop earlier" in hint_cell or "gap" in hint_cell


def test_all_runs_table_is_sorted_by_validation_accuracy(sweep, dom):
    table = dom.find("table", id="runs-table")
    headers = [th.text() for th in table.iter("th")]
    col = headers.index("val acc")
    rows = table_rows(dom, "runs-table")
    assert len(rows) == len(sweep.runs)
    values = [list(r.iter("td"))[col].attrs["data-v"] for r in rows]
    numbers = [float(v) for v in values if v != ""]
    assert numbers == sorted(numbers, reverse=True)
    assert values[len(numbers):] == [""] * (len(values) - len(numbers))  # failed runs last
    assert "sortable" in table.attrs["class"]


def test_plugin_sections_in_hook_order_each_under_its_plugin(sweep, dom):
    groups = [g for g in dom.find("section", id="plugins").find_all("div", **{"class": "plugin"})
              if g.attrs["data-plugin"].startswith("Sections")]  # installed plugins may add more
    names = [g.attrs["data-plugin"] for g in groups]
    assert names == ["SectionsB-1", "SectionsA-0"]  # pluggy's order: the last registered first
    titles = [[h.text() for h in g.iter("h3")] for g in groups]
    assert titles == [["Beta"], ["Alpha one", "Alpha two"]]
    assert groups[1].find("p", **{"class": "alpha"}).text() == f"{len(sweep.runs)} runs"


# -- plugin contract -------------------------------------------------------------------------


@pytest.fixture
def stored(tmp_path):
    return write_synthetic(tmp_path / "sweep", lrs=[1e-3, 0.1, 10.0], epochs=(8,))


def test_a_failing_section_hook_shows_its_error_and_the_report_is_still_written(stored):
    class Broken:
        @hookimpl
        def lrlab_report_sections(self, runs):
            raise ValueError("boom")

    host = load_plugins(use_entry_points=False)
    host.pm.register(Broken(), name="broken-plugin")
    html = write_report(stored, plugins=host).read_text()
    assert "plugin &#x27;broken-plugin&#x27; failed in lrlab_report_sections: ValueError: boom" \
        in html
    assert "Learning curves" in html  # the rest of the report is there


def test_a_section_hook_returning_junk_is_shown_as_a_plugin_error(stored):
    class Junk:
        @hookimpl
        def lrlab_report_sections(self):
            return ["<p>not a Section</p>"]

    host = load_plugins(use_entry_points=False)
    host.pm.register(Junk(), name="junk")
    html = write_report(stored, plugins=host).read_text()
    assert "plugin &#x27;junk&#x27; returned list from lrlab_report_sections" in html
    assert "<p>not a Section</p>" not in html


def test_plugins_none_loads_the_default_plugins(stored):
    path = write_report(stored)
    assert path == stored / "index.html" and path.is_file()


# -- escaping --------------------------------------------------------------------------------


def test_names_ids_flags_and_plugin_titles_are_escaped(tmp_path):
    runs, history = synthetic_tables(lrs=[1e-3, 0.1, 10.0], epochs=(8,))
    runs.loc[0, "run_id"] = XSS
    history.loc[history["run_id"] == history["run_id"].iloc[0], "run_id"] = XSS
    runs["flags"] = runs["flags"] + "; " + XSS
    runs.loc[1, "augment"] = XSS
    folder = tmp_path / "x"
    folder.mkdir()
    lrlab.results.atomic_write_parquet(runs, folder / "runs.parquet")
    lrlab.results.atomic_write_parquet(history, folder / "history.parquet")
    manifest = {"name": XSS, "command_line": XSS, "notes": [XSS]}
    lrlab.results.atomic_write_text(folder / "manifest.json", json.dumps(manifest))

    class Evil:
        @hookimpl
        def lrlab_report_sections(self):
            return [Section(XSS, "<b class='trusted'>trusted</b>")]

    host = load_plugins(use_entry_points=False)
    host.pm.register(Evil(), name=XSS)
    page = write_report(folder, plugins=host).read_text(encoding="utf-8")
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b class='trusted'>trusted</b>" in page  # a plugin's html is trusted markup
    dom = parse(folder / "index.html")
    assert dom.find("title").text() == f"lrlab report · {XSS}"
    assert not [s for s in dom.iter("script") if "alert" in s.text()]


# -- figures that do not apply ---------------------------------------------------------------


def test_figures_that_do_not_apply_say_why(tmp_path):
    folder = write_synthetic(tmp_path / "plain", lrs=[1e-3, 0.1, 10.0], augments=("none",),
                             epochs=(10,))
    dom = parse(write_report(folder, plugins=load_plugins(use_entry_points=False)))
    why = {key: dom.find("figure", id=f"fig-{key}") for key in FIGURES}
    for key in ("augmentation", "early-stopping", "lr-schedule"):
        assert why[key].attrs["data-shown"] == "no"
        assert why[key].find("img") is None
    assert "one augmentation" in why["augmentation"].text()
    assert "no early stopping" in why["early-stopping"].text()
    assert "constant learning rate" in why["lr-schedule"].text()
    for key in ("lr-sensitivity", "learning-curves", "gap-heatmap"):
        assert why[key].attrs["data-shown"] == "yes"


# -- scale -----------------------------------------------------------------------------------


def test_a_200_run_sweep_gives_capped_facets_and_every_run(tmp_path, capsys):
    lrs = [float(v) for v in np.logspace(-4, 1, 10)]
    folder = write_synthetic(tmp_path / "big", lrs=lrs, epochs=(20, 40), seeds=5)
    host = load_plugins(use_entry_points=False)
    start, cpu = time.perf_counter(), time.process_time()
    path = write_report(folder, plugins=host)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    with capsys.disabled():  # a number to quote, not to assert: the box is shared
        print(f"\n[report] 200-run report built in {took:.2f} s wall, {cpu:.2f} s CPU")
    dom = parse(path)
    assert len(table_rows(dom, "runs-table")) == 200
    curves = dom.find("figure", id="fig-learning-curves")
    assert "Showing 6 of 10 learning rates" in curves.find("figcaption").text()
    for key in ("lr-sensitivity", "learning-curves", "gap-heatmap", "augmentation"):
        width, height = png_size(dom.find("figure", id=f"fig-{key}").find("img"))
        assert width <= 1300 and height <= 1400, (key, width, height)
    flagged = table_rows(dom, "flagged-table")
    runs, _, _ = load_results(folder)
    assert len(flagged) == int((runs["verdict"] != "ok").sum())
    assert path.stat().st_size < 3_000_000


# -- side effects ----------------------------------------------------------------------------


def test_report_writes_only_index_html_in_its_folder(tmp_path, monkeypatch):
    folder = write_synthetic(tmp_path / "sweep", lrs=[1e-3, 0.1], epochs=(6,),
                             stoppers=("none", "patience"), schedules=("constant", "cosine"))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    backend, rc = matplotlib.get_backend(), dict(matplotlib.rcParams)
    write_report(folder, plugins=load_plugins(use_entry_points=False))
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert set(after) - set(before) == {folder / "index.html"}
    assert all(after[p] == t for p, t in before.items())  # the tables are left untouched
    assert not any(elsewhere.iterdir())
    assert matplotlib.get_backend() == backend
    changed = [k for k, v in matplotlib.rcParams.items() if rc.get(k) != v
               and not (isinstance(v, float) and math.isnan(v))]
    assert changed == []


def test_report_of_a_sweep_with_no_finished_runs_still_renders(tmp_path):
    folder = write_synthetic(tmp_path / "failed", lrs=[0.1], epochs=(3,), augments=("none",),
                             errors=1)
    dom = parse(write_report(folder, plugins=load_plugins(use_entry_points=False)))
    assert dom.find("div", data_verdict="error").find("span").text() == "1"
    assert len(table_rows(dom, "flagged-table")) == 1


def test_missing_results_is_a_usage_error(tmp_path):
    with pytest.raises(lrlab.UsageError, match="no sweep results"):
        write_report(tmp_path)


# -- hints -----------------------------------------------------------------------------------


def _row(**kw):
    base = {"verdict": "ok", "lr": 0.1, "best_lr": 0.1, "epochs_run": 30, "epochs": 30,
            "best_epoch": 30, "train_loss": 0.1, "best_train_acc": 0.9, "gap_acc": 0.0,
            "augment": "none", "stopper": "none", "model": "mlp"}
    return {**base, **kw}


def test_a_model_lrlab_cannot_grow_or_regularize_gets_no_command_that_repeats_it():
    """A plugin's model (here the built-in resnet18, which takes no parameters): the cure
    names the need and points at the models' parameters, never the same model again."""
    from lrlab.plugins import load_plugins

    registry = load_plugins().registry
    stuck = hint(_row(verdict="underfit", cause="stuck", lr=0.1, best_lr=0.1,
                      model="resnet18"), registry)
    assert "more capacity than resnet18" in stuck and stuck.endswith("next: lrlab list model "
                                                                       "(each model's parameters)")
    over = hint(_row(verdict="overfit", cause="gap", model="resnet18", augment="flip",
                     gap_acc=0.2), registry)
    assert "--model resnet18" not in over and "weight decay" in over
    assert over.endswith("lrlab list model (the parameters of resnet18)")
    grown = hint(_row(verdict="underfit", cause="stuck", lr=0.1, best_lr=0.1,
                      model="cnn(channels=8)"), registry)
    assert grown.endswith("--model 'cnn(channels=64)' --augment none --lr 0.1 --epochs 30")


def test_hints_follow_the_numbers_and_never_contradict_the_run():
    assert hint(_row(verdict="overfit", cause="gl", best_epoch=7, gap_acc=0.2)) == (
        "val loss bottomed at epoch 7 of 30: stop earlier (early stopping) or augment; next: "
        "lrlab sweep --model mlp --augment none --stopper 'patience(patience=5,restore_best=True)' --lr 0.1 "
        "--epochs 30")
    assert "augment" in hint(_row(verdict="overfit", best_epoch=30, gap_acc=0.2))
    # a run whose stopper stopped and restored is never told to stop earlier
    kept = hint(_row(verdict="overfit", cause="gap", best_epoch=7, restored_epoch=7,
                     stopped_by="stopper", stopper="patience", tested_gap_acc=0.08))
    assert "stop earlier" not in kept and "kept (7" in kept
    assert hint(_row(verdict="diverged", lr=1.0, epochs_run=2, train_loss=math.inf)) == \
        "diverged at lr 1 in epoch 2 (train loss ∞): the LR is too large: lower the LR by a " \
        "decade (lr 0.1 did best); next: lrlab sweep --model mlp --augment none --lr 0.1 --epochs 30"
    # no best LR known: a decade below
    assert hint(_row(verdict="diverged", lr=3.0, best_lr=math.nan)).endswith(
        "next: lrlab sweep --model mlp --augment none --lr 0.3 --epochs 30")
    # blown up in epoch 1 and never came back, though it trained on to epoch 20
    assert hint(_row(verdict="diverged", lr=1.0, epochs_run=20, train_loss=2.3,
                     peak_loss=87.0, peak_epoch=1.0)).startswith(
        "diverged at lr 1 in epoch 1 (a mini-batch loss reached 87)")
    # blown up inside the epoch: the clean epoch loss looks tame, the batch loss does not
    assert hint(_row(verdict="diverged", lr=1.0, epochs_run=1, train_loss=2.42,
                     peak_loss=87.0)).startswith(
        "diverged at lr 1 in epoch 1 (a mini-batch loss reached 87)")
    assert hint(_row(verdict="underfit", cause="stuck", lr=1e-4, best_train_acc=0.19,
                     epochs_run=40)) == \
        "train acc 0.190 after 40 epochs at lr 0.0001: barely moved from chance: raise the " \
        "LR (lr 0.1 did best); next: lrlab sweep --model mlp --augment none --lr 0.1 --epochs 30"
    # stuck at the best LR already: not "raise the LR", a bigger model
    at_best = hint(_row(verdict="underfit", cause="stuck", lr=0.1, best_lr=0.1))
    assert "raise the LR" not in at_best and "bigger model" in at_best
    assert at_best.endswith("--model 'mlp(width=512),cnn' --augment none --lr 0.1 --epochs 30")
    assert "lower the LR" in hint(_row(verdict="underfit", cause="stuck", lr=1.0))
    # dropout keeps the model's other parameters
    wide = hint(_row(verdict="overfit", cause="gap", model="mlp(width=256)", augment="flip",
                     gap_acc=0.2))
    assert wide.endswith("--model 'mlp(width=256,dropout=0.3)' --augment flip --lr 0.1 "
                         "--epochs 30")
    longer = hint(_row(verdict="underfit", cause="still_improving", lr=0.1, epochs=30))
    assert "train longer (--epochs 60)" in longer and "raise the LR" not in longer
    assert longer.endswith("next: lrlab sweep --model mlp --augment none --lr 0.1 --epochs 60")
    # a run that already used one-cycle is not told to try it
    warm = hint(_row(verdict="unstable", cause="spikes", lr=1.0, schedule="onecycle"))
    assert "warm up" not in warm and "--schedule onecycle " in warm  # its own schedule kept
    assert "lower the LR" in warm and "--lr 0.1,0.33" in warm
    assert "onecycle" in hint(_row(verdict="unstable", cause="rising", lr=1.0,
                                   schedule="constant"))


def test_every_hint_ends_with_a_next_command():
    for kw in (dict(verdict="diverged", lr=1.0), dict(verdict="unstable", cause="rising"),
               dict(verdict="underfit", cause="stuck", lr=1e-3),
               dict(verdict="underfit", cause="still_improving"),
               dict(verdict="overfit", cause="gap"), dict(verdict="overfit", cause="gap",
                                                          augment="noise"),
               dict(verdict="overfit", cause="gl", best_epoch=7, restored_epoch=7,
                    stopped_by="stopper", stopper="patience")):
        text = hint(_row(model="mlp", **kw))
        assert "; next: lrlab sweep --model " in text, text
        assert " --lr " in text.rsplit("; next: ", 1)[1]
        assert re.search(r" --epochs \d+$", text), text  # the command is the last thing


def test_the_hints_best_lr_is_the_summarys_best_configuration_ties_included():
    import pandas as pd

    from lrlab.report.analysis import _peer_best_lr
    from lrlab.results import best_configuration

    runs = pd.DataFrame({  # a tie on accuracy, broken by the lower validation loss
        "lr": [0.01, 0.1, 1.0], "model": "mlp", "seed": 0, "verdict": "ok",
        "tested_val_acc": [0.95, 0.95, 0.5], "tested_val_loss": [0.30, 0.20, 2.0]})
    assert float(best_configuration(runs)["lr"].iloc[0]) == 0.1
    assert list(_peer_best_lr(runs, ["model"])) == [0.1, 0.1, 0.1]


def test_the_overfitting_map_marks_which_rule_made_a_cell_overfit():
    import pandas as pd

    from lrlab.report.fig_fit import _rule

    cell = pd.DataFrame({"verdict": ["overfit", "overfit", "ok"], "cause": ["gl", "gap", ""]})
    assert _rule(cell) == " (gap) (GL)"
    assert _rule(cell.iloc[[2]]) == ""


def test_learning_curve_panels_never_drop_runs_silently():
    from lrlab.report.analysis import view
    from lrlab.report.fig_lr import learning_curves
    from lrlab.report.synthetic import synthetic_tables

    # --epochs 1,3,10,30,100: five runs per (lr, augment) panel, one more than it draws
    runs, history = synthetic_tables(lrs=[0.01, 0.1], augments=["none"],
                                     epochs=[1, 3, 10, 30, 100])
    figure = learning_curves(view(runs, history, {}, "t"))
    assert "2 run(s) are not drawn" in figure.caption


def _captured(monkeypatch, module):
    """Run a figure builder and keep the matplotlib Figure it drew."""
    drawn = {}
    real = module.shown

    def keep(key, title, caption, fig, alt):
        drawn["fig"] = fig
        return real(key, title, caption, fig, alt)

    monkeypatch.setattr(module, "shown", keep)
    return drawn


def _two_losses():
    """A synthetic sweep with a second loss function (mse, losses on another scale)."""
    import pandas as pd

    runs, history = synthetic_tables(lrs=[0.01, 0.1], augments=["none"], epochs=[5, 10])
    mse, mse_h = runs.copy(), history.copy()
    mse["loss"], mse["run_id"] = "mse", mse["run_id"] + "-mse"
    mse_h["run_id"] = mse_h["run_id"] + "-mse"
    for col in ("train_loss", "val_loss", "max_batch_loss", "batch_loss"):
        mse_h[col] = mse_h[col] / 50
    for col in ("train_loss", "val_loss", "best_val_loss", "best_train_loss"):
        mse[col] = mse[col] / 50
    return (pd.concat([runs, mse], ignore_index=True),
            pd.concat([history, mse_h], ignore_index=True))


def test_learning_curves_panel_with_several_lines_has_a_legend(monkeypatch):
    from lrlab.report import fig_lr
    from lrlab.report.analysis import view

    runs, history = synthetic_tables(lrs=[0.01, 0.1], augments=["none"], epochs=[5, 10])
    drawn = _captured(monkeypatch, fig_lr)
    figure = fig_lr.learning_curves(view(runs, history, {}, "t"))
    panels = [ax for ax in drawn["fig"].axes if ax.get_title().startswith("lr ")]
    assert len(panels) == 2
    for ax in panels:  # two runs (epochs 5 and 10) per panel, told apart by a legend
        legend = ax.get_legend()
        assert legend is not None
        assert sorted(t.get_text() for t in legend.get_texts()) == ["epochs 10", "epochs 5"]
    assert "Lines in one panel differ in epochs" in figure.caption


def test_losses_of_different_loss_functions_are_never_pooled(monkeypatch):
    from lrlab.report import fig_lr
    from lrlab.report.analysis import view

    runs, history = _two_losses()
    sw = view(runs, history, {}, "t")
    assert "loss" in sw.varying
    drawn = _captured(monkeypatch, fig_lr)
    curves = fig_lr.learning_curves(sw)
    panels = [ax for ax in drawn["fig"].axes if ax.get_title().startswith("lr ")]
    by_loss = {name: [ax for ax in panels if ax.get_title().endswith(name)]
               for name in ("cross_entropy", "mse")}
    assert all(len(axs) == 2 for axs in by_loss.values())  # a row of panels per loss
    ce, mse = by_loss["cross_entropy"][0], by_loss["mse"][0]
    assert not ce.get_shared_y_axes().joined(ce, mse)  # each loss has its own y axis
    assert ce.get_ylim() != mse.get_ylim()
    assert "loss function" in curves.caption
    fig_lr.lr_sensitivity(sw)
    titles = [ax.get_title() for ax in drawn["fig"].axes]
    assert "loss · loss cross_entropy" in titles and "loss · loss mse" in titles


def test_per_configuration_table_when_a_configuration_has_several_seeds(tmp_path):
    from lrlab.configs import config_table

    folder = write_synthetic(tmp_path / "seeds", lrs=[1e-3, 0.1, 10.0], augments=("none",),
                             epochs=(8,), seeds=3)
    dom = parse(write_report(folder, plugins=load_plugins(use_entry_points=False)))
    rows = table_rows(dom, "configs-table")
    runs, _, _ = load_results(folder)
    table = config_table(runs).set_index("config_id")
    assert len(rows) == len(table) == 3
    headers = [th.text() for th in dom.find("table", id="configs-table").iter("th")]
    for v in lrlab.verdicts.VERDICTS:
        assert v in headers
    for row in rows:
        c = table.loc[row.attrs["data-config"]]
        text = cells(row)
        assert row.attrs["data-verdict"] == c["verdict"]
        assert text[2] == "3"
        counts = [int(text[3 + i]) for i in range(len(lrlab.verdicts.VERDICTS))]
        assert counts == [int(c[f"n_{v}"]) for v in lrlab.verdicts.VERDICTS]
        assert sum(counts) == 3
        if math.isfinite(c["val_acc_mean"]):  # the mean and its 95% interval over seeds
            assert text[headers.index("val acc")] == \
                f"{c['val_acc_mean']:.3f} [{c['val_acc_lo']:.3f}, {c['val_acc_hi']:.3f}]"
        assert text[headers.index("vs best")].startswith(c["vs_best"])
    # one seed: no such table (it would repeat the all-runs table)
    single = write_synthetic(tmp_path / "one", lrs=[1e-3, 0.1], augments=("none",),
                             epochs=(8,))
    dom = parse(write_report(single, plugins=load_plugins(use_entry_points=False)))
    assert dom.find("table", id="configs-table") is None


def test_the_flagged_table_shows_the_kept_epochs_numbers_and_old_tables_still_render():
    from lrlab.report.analysis import flagged, view

    runs, history = synthetic_tables(lrs=[0.1], augments=["none"], epochs=(30,))
    runs.loc[:, "verdict"] = "overfit"
    runs.loc[:, "tested_gap_acc"], runs.loc[:, "gap_acc"] = 0.123, 0.5
    assert flagged(view(runs, history, {}, "t"))[0]["gap_acc"] == "+0.123"
    old = runs.drop(columns=["tested_gap_acc", "tested_gl", "tested_train_acc"])
    assert flagged(view(old, history, {}, "t"))[0]["gap_acc"] == "+0.500"


# -- speed: what the report and a finished sweep's re-run do not do --------------------------


def test_drawing_every_figure_imports_neither_seaborn_nor_torch(tmp_path):
    # seaborn's import cost more than drawing; torch only when a schedule is replayed
    folder = write_synthetic(tmp_path / "s", lrs=[1e-3, 0.1, 1.0], stoppers=("none", "gl"),
                             schedules=("constant", "cosine"), seeds=2, epochs=(8,))
    code = ("import sys; from lrlab.report import render; from lrlab.results import "
            "load_results; page = render(*load_results(sys.argv[1])); "
            "assert page.count('data:image/png') == 7, 'a figure is missing'; "
            "print(sorted({'seaborn', 'torch'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_finished_sweep_run_again_builds_nothing_and_rewrites_its_report(tmp_path,
                                                                          monkeypatch):
    import lrlab.sweep

    built: list[list[str]] = []
    real = lrlab.sweep.dry_build
    monkeypatch.setattr(lrlab.sweep, "dry_build", lambda runs, context: (
        built.append([r.run_id for r in runs]), real(runs, context)))
    grid = {"out": tmp_path, "name": "again", "lr": [0.01, 0.1], "epochs": 1, "augment": "none"}
    first = lrlab.run_sweep(**grid)
    page = first.folder / "index.html"
    page.unlink()
    again = lrlab.run_sweep(**grid)
    assert [sorted(b) for b in built] == [sorted(first.runs["run_id"]), []]
    assert again.ran == [] and sorted(again.skipped) == sorted(first.runs["run_id"])
    assert page.is_file()
    wider = {**grid, "lr": [0.01, 0.1, 1.0]}
    third = lrlab.run_sweep(**wider)  # one new run: only it is built (and trained)
    assert built[-1] == third.ran == [r for r in third.runs["run_id"] if "lr1-" in r]
