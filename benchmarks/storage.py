"""How fast does the result store keep up with a large sweep? 10,000 runs, stored one by one.

    python benchmarks/storage.py                 # 10,000 runs of 10 epochs
    python benchmarks/storage.py --runs 2000     # fewer (a smoke test)

The rows are realistic: one real digits run (10 epochs, the default MLP) is trained first,
and its ``runs`` row and ``history`` rows are the template of every stored run: the grid
is ``lr`` x ``seed`` (100 x 100 for 10,000 runs), each run's row is made by
:func:`lrlab.results.summarize` from its own history (the template's, its numbers jittered
and its ``lr`` column the run's), with the template's verdict, flags, key and code record
(no weights: ``--save none``). Building them is not timed.

Timed, through the real store API in the order ``lrlab sweep`` calls it:
``resume`` (an empty folder), ``start``, ``add`` for each run, ``tables`` and ``finish``.
Printed: the total, and the cost per run in the 1,000 runs before 1k, 5k and 10k (about
equal when storing is O(1) per run, growing when every run rewrites the whole tables);
then the time to resume from the folder as a killed sweep leaves it (a fresh store reading
it before ``finish``) and as a finished one leaves it (``resume`` of the whole grid: every
run skipped), and :func:`lrlab.load_results` (what ``lrlab report`` reads).
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import lrlab
from lrlab.config import build_config, expand, run_key
from lrlab.results import ResultStore, RunResult, load_results, summarize

TEMPLATE_COLUMNS = ("verdict", "cause", "flags", "code", "device")


def template(folder: Path, epochs: int) -> tuple[dict, list[dict]]:
    """The row and the history rows of one real digits run."""
    result = lrlab.run_sweep(out=folder, name="template", lr=0.05, epochs=epochs,
                             augment="none", executor="local", report=False, save="none")
    row = result.runs.iloc[0].to_dict()
    history = result.history.drop(columns="run_id").to_dict("records")
    return row, history


def results(n: int, epochs: int, row: dict, history: list[dict]):
    """``n`` runs of an lr x seed grid, their keys and their results."""
    seeds = 100 if n >= 100 else 1
    lrs = [round(1e-4 * 1.05 ** i, 8) for i in range(math.ceil(n / seeds))]
    cfg = build_config(overrides={"name": "storage", "lr": lrs, "seeds": seeds,
                                  "epochs": epochs, "augment": "none", "save": "none"})
    runs = expand(cfg)[:n]
    rng = random.Random(0)
    made = []
    for run in runs:
        own = [{**h, "lr": run.lr, "wall_s": h["wall_s"] * rng.uniform(0.8, 1.2),
                **{m: h[m] * rng.uniform(0.95, 1.05) for m in
                   ("train_loss", "val_loss", "max_batch_loss", "batch_loss")
                   if isinstance(h.get(m), float)}} for h in history]
        summary = summarize(run, own, test_loss=row["test_loss"], test_acc=row["test_acc"],
                            num_classes=int(row["num_classes"]), wall_s=row["wall_s"],
                            device=row["device"], key=run_key(run, cfg))
        summary.update({c: row[c] for c in TEMPLATE_COLUMNS if c in row})
        made.append(RunResult(run, summary, own))
    return cfg, runs, made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lrlab-storage-"))
    try:
        row, history = template(tmp, args.epochs)
        cfg, runs, made = results(args.runs, args.epochs, row, history)
        selected = {r.summary["key"]: r.run for r in made}
        folder = tmp / "storage"
        manifest = {"config": cfg.to_dict(), "command_line": "benchmarks/storage.py"}
        print(f"{len(made)} runs x {len(history)} history rows, folder {folder}",
              flush=True)

        start = time.perf_counter()
        store = ResultStore(folder)
        store.resume(selected, set(selected))
        store.start(dict(manifest))
        marks = {}
        for i, result in enumerate(made, 1):
            store.add(result)
            if i % 1000 == 0 or i == len(made):
                marks[i] = time.perf_counter() - start
                print(f"  {i:>6} runs stored: {marks[i]:7.2f} s", flush=True)
        before_finish = time.perf_counter()

        killed = ResultStore(folder)  # a killed sweep's folder, read by the next one
        t = time.perf_counter()
        todo, skipped, _ = killed.resume(selected, set(selected))
        resume_killed = time.perf_counter() - t
        assert not todo and len(skipped) == len(made), (len(todo), len(skipped))

        t = time.perf_counter()
        store.tables(order=[r.run_id for r in runs])
        store.finish(pd.DataFrame({"n": [len(made)]}), dict(manifest), wall_s=0.0, notes=[])
        total = time.perf_counter() - start - (t - before_finish)

        again = ResultStore(folder)
        t = time.perf_counter()
        todo, skipped, _ = again.resume(selected, set(selected))
        resume_done = time.perf_counter() - t
        assert not todo and len(skipped) == len(made)
        t = time.perf_counter()
        stored, hist, _ = load_results(folder)
        load_s = time.perf_counter() - t
        assert len(stored) == len(made) and len(hist) == len(made) * len(history)

        print(f"\nstored {len(made)} runs in {total:.2f} s "
              f"({total / len(made) * 1e3:.2f} ms per run)")
        for mark in (1000, 5000, 10_000):
            if mark in marks:
                per = (marks[mark] - marks.get(mark - 1000, 0.0)) / 1000
                print(f"  per run, runs {mark - 999}-{mark}: {per * 1e3:6.2f} ms")
        print(f"resume of a killed sweep's folder: {resume_killed:.2f} s")
        print(f"resume of the finished folder:     {resume_done:.2f} s")
        print(f"load_results:                      {load_s:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
