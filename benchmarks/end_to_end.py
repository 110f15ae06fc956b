"""End to end: what a person waits for, from the command to the last file.

Runs, as fresh processes and in alternation (median of the reps):

- **lrlab**: ``lrlab sweep`` with no arguments: the default 12-run sweep on digits
  (6 learning rates x {none, noise(std=0.3)}, 40 epochs, the MLP, SGD with momentum),
  imports, plugin loading, training, verdicts, tables and the HTML report included;
- **plain loop**: the script a tutorial would have a person write for the same 12 runs
  (same model, optimizer, batch size, epochs, augmentation and split fractions; a
  ``DataLoader`` and an optimizer per run, a clean evaluation of train and val after each
  epoch, test at the end), imports included, writing one CSV of results; no verdicts,
  no report.

    python benchmarks/end_to_end.py              # 3 reps each
    python benchmarks/end_to_end.py --reps 5 --device cuda

Prints each wall time, the medians and the ratio, and the ``-X importtime`` top of the
commands that train nothing (``lrlab --help``, ``lrlab sweep --help``, ``lrlab list``,
``lrlab show``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN = r'''
import sys, time
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

device = torch.device(sys.argv[1])
d = load_digits()
x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
y = torch.tensor(d.target)
idx = np.arange(len(y))
tr, rest = train_test_split(idx, train_size=0.6, stratify=d.target, random_state=0)
va, te = train_test_split(rest, train_size=0.5, stratify=d.target[rest], random_state=0)
parts = {k: (x[v], y[v]) for k, v in (("train", tr), ("val", va), ("test", te))}


def evaluate(model, dl):
    model.eval()
    loss = correct = n = 0
    with torch.no_grad():
        for xb, yb in dl:
            xb, yb = xb.to(device), yb.to(device)
            out = model(xb)
            loss += nn.functional.cross_entropy(out, yb, reduction="sum").item()
            correct += (out.argmax(1) == yb).sum().item()
            n += len(yb)
    model.train()
    return loss / n, correct / n


rows = []
for augment in ("none", "noise"):
    for lr in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(),
                              nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        train = DataLoader(TensorDataset(*parts["train"]), batch_size=32, shuffle=True)
        evals = {k: DataLoader(TensorDataset(*v), batch_size=64) for k, v in parts.items()}
        for epoch in range(40):
            for xb, yb in train:
                xb, yb = xb.to(device), yb.to(device)
                if augment == "noise":
                    xb = xb + 0.3 * torch.randn_like(xb)
                loss = nn.functional.cross_entropy(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
            evaluate(model, evals["train"])
            val = evaluate(model, evals["val"])
        rows.append((augment, lr, *val, *evaluate(model, evals["test"])))
with open("plain_results.csv", "w") as fh:
    fh.write("augment,lr,val_loss,val_acc,test_loss,test_acc\n")
    for r in rows:
        fh.write(",".join(str(v) for v in r) + "\n")
'''


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return wall


def import_top(args: list[str], cwd: Path, env: dict[str, str], n: int = 4) -> str:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "lrlab", *args],
                          cwd=cwd, env=env, capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            try:
                rows.append((int(cumulative), name.rstrip()))
            except ValueError:
                continue
    top = sorted(rows, reverse=True)[:n]
    return ", ".join(f"{name.strip()} {us / 1e6:.2f}s" for us, name in top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    work = Path(tempfile.mkdtemp(prefix="lrlab-e2e-"))
    (work / "plain.py").write_text(PLAIN)
    lrlab = [sys.executable, "-m", "lrlab", "sweep", "--device", args.device, "--fresh", "-q"]
    plain = [sys.executable, "plain.py", args.device]
    times: dict[str, list[float]] = {"lrlab sweep": [], "plain loop": []}
    timed(lrlab, work, env)  # warm the file cache and torch's first-run costs
    for rep in range(args.reps):
        order = [("lrlab sweep", lrlab), ("plain loop", plain)]
        for name, cmd in order if rep % 2 == 0 else reversed(order):
            times[name].append(timed(cmd, work, env))
            print(f"rep {rep + 1}: {name:12s} {times[name][-1]:6.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nmedian: lrlab sweep {med['lrlab sweep']:.2f} s, plain loop "
          f"{med['plain loop']:.2f} s: lrlab {med['plain loop'] / med['lrlab sweep']:.2f}x "
          f"faster end to end ({args.reps} reps, device {args.device})")
    report = work / "reports" / "digits"
    commands = (["--help"], ["sweep", "--help"], ["list"], ["show", str(report)],
                ["report", str(report)])
    print("\ncommands that train nothing (one fresh process each):")
    for cmd in commands:
        wall = timed([sys.executable, "-m", "lrlab", *cmd], work, env)
        print(f"  lrlab {' '.join(cmd[:2]) if cmd[0] != 'show' and cmd[0] != 'report' else cmd[0] + ' DIR':14s} {wall:5.2f} s   slowest imports: {import_top(cmd, work, env)}")


if __name__ == "__main__":
    main()
