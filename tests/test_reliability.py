"""Nothing lost, nothing half-written: interrupts, two writers, full and unwritable disks,
stale resumes. Real processes where it matters (signals, two sweeps, a tmpfs)."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lrlab.errors import UsageError
from lrlab.results import load_results
from lrlab.storage import AppendLog, FolderLock, StorageError, atomic_write, check_writable
from lrlab.sweep import run_sweep

# one run that diverges at once (stored within a second), one that trains for minutes
SLOW = ["--lr", "10,0.01", "--epochs", "5000", "--augment", "none", "--executor", "local",
        "--model", "mlp(width=16)"]


def start(folder: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lrlab", "sweep", *args], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(check, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def stored_runs(folder: Path) -> int:
    """The runs a reader finds (the tables and the journal's records since)."""
    path = folder / "reports" / "digits"
    return len(load_results(path)[0]) if (path / "runs.parquet").is_file() else 0


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_keeps_what_finished_and_says_how_to_resume(tmp_path, sig, code):
    proc = start(tmp_path, *SLOW)
    wait_for(lambda: stored_runs(tmp_path) == 1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("interrupted: 1 finished run(s) stored in reports/digits/, "
                               "1 not finished"), lines
    assert lines[0].endswith("resume with: lrlab sweep " + " ".join(
        f"'{a}'" if "(" in a else a for a in SLOW))
    folder = tmp_path / "reports" / "digits"
    assert stored_runs(tmp_path) == 1 and (folder / "index.html").is_file()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["interrupted"] is True and "finished" in manifest
    assert not leftovers(tmp_path)


def test_a_second_sweep_on_the_same_folder_is_refused_naming_the_first(tmp_path):
    first = start(tmp_path, *SLOW)
    lock = tmp_path / "reports" / "digits" / ".lock"
    wait_for(lambda: lock.is_file() and lock.read_text().strip())
    second = subprocess.run([sys.executable, "-m", "lrlab", "sweep", *SLOW, "-k", "lr10"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    [line] = second.stderr.strip().splitlines()
    assert f"is in use by another lrlab sweep (pid {first.pid} on " in line
    first.kill()  # kill -9: the operating system releases the lock with the process
    first.communicate(timeout=30)
    with FolderLock(tmp_path / "reports" / "digits"):
        pass


def test_an_unwritable_out_is_one_line_up_front_and_nothing_is_written(tmp_path):
    with pytest.raises(UsageError, match=r"cannot write results to /proc/lrlab-x/digits: "
                                         r"cannot create a file in /proc"):
        run_sweep(out="/proc/lrlab-x", epochs=1, cwd=tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        check_writable(tmp_path / "file" / "sub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "runs.parquet"
    target.write_text("old")

    def full(fh):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match="cannot write .*runs.parquet: No space left"):
        atomic_write(target, full)
    assert target.read_text() == "old" and not leftovers(tmp_path)


def test_a_failed_journal_append_leaves_no_half_record_and_the_next_one_lands(
        tmp_path, monkeypatch):
    import lrlab.storage

    journal = AppendLog(tmp_path / ".journal.jsonl")
    journal.append(b'{"n": 1}')
    real = os.write

    def half_then_full(fd, data):
        real(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lrlab.storage.os, "write", half_then_full)
    with pytest.raises(StorageError, match=r"cannot write .*\.journal\.jsonl: No space left"):
        journal.append(b'{"n": 2}')
    monkeypatch.setattr(lrlab.storage.os, "write", real)
    journal.append(b'{"n": 3}')
    journal.close()  # waits for the disk
    assert (tmp_path / ".journal.jsonl").read_bytes() == b'{"n": 1}\n{"n": 3}\n'


def test_a_journal_sync_that_fails_is_one_line_at_the_next_append(tmp_path, monkeypatch):
    import lrlab.storage

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(lrlab.storage.os, "fdatasync", broken)
    journal = AppendLog(tmp_path / ".journal.jsonl")
    journal.append(b'{"n": 1}')
    with pytest.raises(StorageError, match=r"cannot write .*: Input/output error"):
        journal.sync()
    with pytest.raises(StorageError, match="Input/output error"):
        journal.append(b'{"n": 2}')


@pytest.fixture
def tiny_disk(tmp_path):
    """A 400 kB tmpfs (root and mount needed; skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) for a tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_mid_sweep_is_one_line_exit_1_and_keeps_what_was_stored(tmp_path,
                                                                           tiny_disk):
    done = subprocess.run([sys.executable, "-m", "lrlab", "sweep", "--lr",
                           "0.001,0.003,0.01,0.03,0.1,0.3", "--epochs", "20", "--seeds", "4",
                           "--executor", "local", "--model", "mlp(width=16)",
                           "--out", str(tiny_disk), "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    [line] = done.stderr.strip().splitlines()
    assert "No space left on device" in line and "the runs stored before are intact" in line
    assert "Traceback" not in done.stderr
    assert not leftovers(tiny_disk)
    runs = tiny_disk / "digits" / "runs.parquet"
    if runs.is_file():  # whatever was stored reads back whole
        assert len(pd.read_parquet(runs)) >= 0
        assert len(load_results(runs.parent)[0]) >= 0


MODEL = '''
import torch


def lrlab_register_models(register):
    register("mine", mine)


def mine(input_shape, num_classes):
    """A model."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, {width}),
                               torch.nn.ReLU(), torch.nn.Linear({width}, num_classes))
'''


def test_a_changed_component_retrains_its_runs_and_says_why(tmp_path):
    (tmp_path / "lrlab_plugins.py").write_text(MODEL.format(width=8))
    grid = {"model": "mine,mlp(width=8)", "lr": 0.1, "epochs": 2, "augment": "none",
            "report": False, "cwd": tmp_path, "out": tmp_path / "r"}
    first = run_sweep(**grid)
    again = run_sweep(**grid)
    assert sorted(again.skipped) == sorted(first.ran) and not again.ran
    (tmp_path / "lrlab_plugins.py").write_text(MODEL.format(width=64))
    edited = run_sweep(**grid)
    assert edited.ran == ["mine-lr0.1-ep2-none-s0"]  # the built-in mlp runs are kept
    assert "1 stored run(s) trained again: model 'mine' changed since" in edited.notes
    code = json.loads(edited.runs.set_index("run_id").loc["mine-lr0.1-ep2-none-s0", "code"])
    assert code["model 'mine'"].startswith("sha256:") and "lrlab" in code


def test_an_lrlab_upgrade_retrains_and_says_so(tmp_path, monkeypatch):
    grid = {"lr": 0.1, "epochs": 1, "augment": "none", "report": False, "cwd": tmp_path,
            "out": tmp_path / "r"}
    run_sweep(**grid)
    monkeypatch.setattr("lrlab.version.__version__", "99.0")
    upgraded = run_sweep(**grid)
    assert upgraded.ran and any("lrlab (version" in n and "-> 99.0)" in n
                                for n in upgraded.notes)
