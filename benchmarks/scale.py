"""Does a 1,000-run sweep fit? Wall time and peak memory of one ``lrlab sweep`` process.

    python benchmarks/scale.py                 # 10 lrs x 10 seeds x epochs 1..10 = 1,000 runs
    python benchmarks/scale.py --seeds 1       # 100 runs (a smoke test)

The sweep: ``lrlab sweep`` in a fresh process on digits, the default MLP, learning rates
log-spaced from 0.001 to 0.3, seeds 0..N-1, the epochs axis 1,2,...,10, no augmentation,
the default executor and ``--save`` (best), report included. Its process tree's resident
memory (the sum over the process and its children, from /proc) is sampled every 0.1 s,
and the largest RSS of any child is read from ``getrusage`` at the end. Printed: runs,
wall time, time per run, peak memory (target: under 2 GB), load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", default=",".join(str(e) for e in range(1, 11)))
    parser.add_argument("--executor", default=None)
    args = parser.parse_args()
    lrs = ",".join(f"{0.001 * 300 ** (i / max(1, args.lrs - 1)):.3g}" for i in range(args.lrs))
    runs = args.lrs * args.seeds * len(args.epochs.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="lrlab-scale-"))
    cmd = [sys.executable, "-m", "lrlab", "sweep", "--lr", lrs, "--seeds", str(args.seeds),
           "--epochs", args.epochs, "--augment", "none", "--out", str(tmp / "out"), "-q"]
    if args.executor:
        cmd += ["--executor", args.executor]
    try:
        load = os.getloadavg()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        peak = [0]

        def sample() -> None:
            while proc.poll() is None:
                peak[0] = max(peak[0], tree_rss(proc.pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = proc.communicate()
        wall = time.perf_counter() - start
        sampler.join()
        if proc.returncode != 0:
            raise SystemExit(f"the sweep failed ({proc.returncode}): {err.strip()[-3000:]}")
        child_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        report = (tmp / "out" / "digits" / "index.html")
        print(out.strip().splitlines()[-1] if out.strip() else "")
        print(f"{runs} runs: wall {wall:.1f} s, {wall / runs * 1e3:.0f} ms per run; peak RSS "
              f"of the process tree {peak[0] / 2**20:.0f} MiB (largest process "
              f"{child_max / 2**20:.0f} MiB; target < 2048 MiB); report "
              f"{report.stat().st_size / 2**20:.1f} MiB; load average before "
              f"{load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
