"""The ``ray`` executor from the command line: its own local cluster, started and stopped."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd


def test_lrlab_sweep_executor_ray_starts_and_stops_its_own_cluster(tmp_path):
    lrlab = Path(sys.executable).with_name("lrlab")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # start, never join
    done = subprocess.run(
        [str(lrlab), "sweep", "--executor", "ray(num_cpus=1)", "--model", "linear",
         "--lr", "0.01,0.1", "--epochs", "1", "--augment", "none", "--out", str(tmp_path),
         "--name", "cli"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = pd.read_parquet(tmp_path / "cli" / "runs.parquet")
    assert len(runs) == 2
    assert list(runs["error"]) == ["", ""]
    assert set(runs["device"]) == {"cpu"}
