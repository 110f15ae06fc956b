"""How long the report takes: what a person waits for after the last run finished.

Times, as fresh processes (imports included), median of the reps, in alternation:

- **report, default sweep**: ``lrlab report DIR`` on the default 12-run digits sweep
  (6 learning rates x {none, noise(std=0.3)}, 40 epochs), trained once by the script;
- **report, 1,000 runs**: ``lrlab report DIR`` on a made-up sweep of 1,000 runs
  (:mod:`lrlab.report.synthetic`: 25 learning rates x 2 augmentations x 2 stoppers x
  2 schedules x 5 seeds, 40 epochs; the curves shaped like real ones and judged by the
  built-in diagnoses, so every figure and table has real work to do);
- **resume, nothing to train**: ``lrlab sweep`` run again on the default sweep's folder:
  every run is stored, so it trains nothing, judges the stored runs again, rewrites the
  tables and the report.

    python benchmarks/report_speed.py                    # 5 reps each
    python benchmarks/report_speed.py --reps 3 --cache /tmp/lrlab-report-bench

``--cache`` keeps the trained default sweep and the made-up one between calls (the first
call trains the default sweep: about a minute on 2 cores). Prints each wall time, the
medians against the targets, and the load average before and after.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"report, default sweep (12 runs)": 1.5, "report, 1,000 runs": 10.0,
           "resume, nothing to train": 3.0}
SYNTHETIC = {"lrs": [10 ** (-4 + 5 * i / 24) for i in range(25)],
             "augments": ("none", "noise"), "stoppers": ("none", "patience"),
             "schedules": ("constant", "cosine"), "seeds": 5, "epochs": (40,)}


def lrlab() -> list[str]:
    return [sys.executable, "-m", "lrlab"]


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one fresh process: on a shared machine the
    CPU time moves less with the load than the wall time does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):  # 1: a run failed its verdict (--strict only)
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def prepare(cache: Path, tree: str, env: dict[str, str] | None) -> dict[str, list[str]]:
    """The three commands, with their folders made (trained or written) when missing;
    each lrlab tree trains its own default sweep (another version may key runs otherwise,
    and would train them all again on resume)."""
    default = cache / ("default" if tree == "this" else "default-" + hashlib.sha1(tree.encode()).hexdigest()[:8])
    folder = default / "digits"
    if not (folder / "runs.parquet").is_file():
        print(f"training the default sweep once (lrlab sweep, {tree}) ...", flush=True)
        subprocess.run([*lrlab(), "sweep", "--out", str(default)], cwd=cache, check=True,
                       capture_output=True, env=env)
    big = cache / "synthetic-1000"
    if not (big / "runs.parquet").is_file():
        from lrlab.report.synthetic import write_synthetic

        print("writing a made-up 1,000-run sweep ...", flush=True)
        write_synthetic(big, name="synthetic-1000", **SYNTHETIC)
    return {"report, default sweep (12 runs)": [*lrlab(), "report", str(folder)],
            "report, 1,000 runs": [*lrlab(), "report", str(big)],
            "resume, nothing to train": [*lrlab(), "sweep", "--out", str(default)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the sweeps here between calls (default: a temp folder)")
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="also time the lrlab package in this folder (e.g. an older "
                             "version, from `git archive REV lrlab | tar -x -C DIR`), in "
                             "alternation with this one; repeatable")
    args = parser.parse_args()
    trees = {"this": None, **{str(t): t for t in args.tree}}
    cache = args.cache or Path(tempfile.mkdtemp(prefix="lrlab-report-bench-"))
    cache.mkdir(parents=True, exist_ok=True)
    try:
        envs = {t: None if path is None else
                {**os.environ, "PYTHONPATH": str(path.resolve())} for t, path in trees.items()}
        commands = {t: prepare(cache, t, envs[t]) for t in trees}
        for path in trees.values():  # every tree timed with its .pyc files, as installed
            compileall.compile_dir(path / "lrlab" if path else Path(__file__).parents[1] /
                                   "lrlab", quiet=1)
        load_before = os.getloadavg()
        cases = [(t, name) for name in TARGETS for t in trees]
        for t, name in cases:  # warm the file cache and .pyc files, untimed
            timed(commands[t][name], cache, envs[t])
        walls: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
        cpus: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
        for rep in range(args.reps):
            for case in cases:
                wall, cpu = timed(commands[case[0]][case[1]], cache, envs[case[0]])
                walls[case].append(wall)
                cpus[case].append(cpu)
            print(f"rep {rep + 1}: " + ", ".join(f"{t}: {n} {w[-1]:.2f}s"
                                               for (t, n), w in walls.items()), flush=True)
        load_after = os.getloadavg()
    finally:
        if args.cache is None:
            shutil.rmtree(cache, ignore_errors=True)
    print()
    print("| what | lrlab | wall s (median) | best s | CPU s (median) | target s | met |")
    print("|---|---|---|---|---|---|---|")
    for (t, name), w in walls.items():
        median = statistics.median(w)
        print(f"| {name} | {t} | {median:.2f} | {min(w):.2f} | "
              f"{statistics.median(cpus[t, name]):.2f} | {TARGETS[name]:g} | "
              f"{'yes' if median <= TARGETS[name] else 'no'} |")
    print(f"\n{args.reps} reps each, fresh processes, in alternation; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
