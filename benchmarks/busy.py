"""Does a sweep share a busy machine, or fight over it? One sweep alone against two at once.

    python benchmarks/busy.py                  # 2 reps of each, in alternation
    python benchmarks/busy.py --threads 2      # every run on 2 threads (the old choice)

The sweep: ``lrlab sweep`` in a fresh process, 8 learning rates (0.001 to 0.1, log-spaced)
x 2 seeds = 16 runs of the default MLP on digits, 20 epochs, no augmentation, the default
executor (``auto``: one vectorized group), report included. *Alone*: one such process;
*together*: two started at the same moment (each its own folder), timed until both have
finished. On a machine with C free cores a sweep that shares them fairly takes about
twice as long together (each gets half), whatever C is; torch's default (a thread per
core, spinning while it waits) made it 12x on 2 cores. Printed per rep: the load average
before it, each wall time; then the medians and together / alone (target: under 2.5).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LRS = ",".join(f"{0.001 * 100 ** (i / 7):.3g}" for i in range(8))


def command(out: Path, threads: int | None, epochs: int) -> list[str]:
    args = [sys.executable, "-m", "lrlab", "sweep", "--lr", LRS, "--seeds", "2", "--epochs",
            str(epochs), "--augment", "none", "--out", str(out), "--fresh", "-q"]
    return args + (["--threads", str(threads)] if threads else [])


def sweeps(n: int, tmp: Path, threads: int | None, epochs: int) -> list[float]:
    """Start ``n`` sweeps at once; each one's wall time, in seconds."""
    start = time.perf_counter()
    procs = [subprocess.Popen(command(tmp / f"out{i}", threads, epochs), cwd=tmp,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    walls = []
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a sweep failed ({proc.returncode}): {err.strip()[-2000:]}")
        walls.append(time.perf_counter() - start)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None,
                        help="pass --threads N to every sweep (default: lrlab's choice)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lrlab-busy-"))
    alone, together = [], []
    try:
        print(f"cores: {len(os.sched_getaffinity(0))}; threads: "
              f"{args.threads or 'lrlab chooses'}", flush=True)
        for rep in range(args.reps):
            order = [(1, alone), (2, together)] if rep % 2 == 0 else [(2, together),
                                                                       (1, alone)]
            for n, walls in order:
                load = os.getloadavg()
                times = sweeps(n, tmp, args.threads, args.epochs)
                walls.append(max(times))
                print(f"rep {rep + 1}: {'alone' if n == 1 else 'together'}: "
                      f"{', '.join(f'{t:.1f}' for t in times)} s (load average before: "
                      f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f})", flush=True)
        a, b = statistics.median(alone), statistics.median(together)
        print(f"\nmedian: alone {a:.1f} s, two together {b:.1f} s: {b / a:.2f}x "
              f"(target < 2.5x); load average now {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
