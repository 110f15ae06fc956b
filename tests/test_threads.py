"""The CPU threads of a training: one for a small step, else the cores free for it (shared
among the lrlab processes training now, less what other work keeps busy), never more than
torch's own setting."""

from __future__ import annotations

import os
import time

import pytest
import torch

import lrlab.threads as threads

CPU = torch.device("cpu")
SMALL = torch.nn.Linear(64, 10)  # 650 parameters: a small step at batch 32
BIG = torch.nn.Linear(1024, 1024)  # ~1M parameters: a big step at batch 128


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A fresh choice, a training folder of the test's own, and torch at 4 threads."""
    monkeypatch.setattr(threads, "_state", {})
    monkeypatch.setattr(threads, "_folder", lambda: tmp_path / "training")
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield tmp_path / "training"
    torch.set_num_threads(before)


def idle(monkeypatch, cores: int) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "free_cores", float)  # every core free


def test_a_small_step_runs_on_one_thread_and_an_asked_count_is_kept(machine, monkeypatch):
    idle(monkeypatch, 4)
    assert threads.choose(SMALL, 32, CPU, 0) == 1
    assert threads.choose(SMALL, 32, CPU, 3) == 3  # --threads 3
    assert threads.choose(BIG, 128, torch.device("cuda"), 0) == 4  # not ours to choose


def test_a_big_step_on_an_idle_machine_takes_the_cores_up_to_torchs_setting(machine,
                                                                           monkeypatch):
    idle(monkeypatch, 8)
    assert threads.choose(BIG, 128, CPU, 0) == 4  # 8 free, torch set to 4
    monkeypatch.setattr(threads, "_state", {})
    idle(monkeypatch, 2)
    assert threads.choose(BIG, 128, CPU, 0) == 2


def test_lrlab_processes_training_at_once_share_the_cores(machine, monkeypatch):
    idle(monkeypatch, 4)
    machine.mkdir()
    (machine / "999999").touch()  # another lrlab process, training now
    stale = machine / "999998"  # one killed long ago
    stale.touch()
    os.utime(stale, (time.time() - 1000, time.time() - 1000))
    assert threads.choose(BIG, 128, CPU, 0) == 2  # 4 cores, 2 processes
    assert (machine / str(os.getpid())).is_file()  # this one counts itself in
    assert not stale.exists()
    assert threads.training_processes() == 2


def test_cores_other_work_keeps_busy_are_not_taken(machine, monkeypatch):
    # a second of /proc/stat: 1.5 cores busy on ours, 0.5 of them this process's own
    looks = iter([(100.0, 50.0, 3.0), (101.0, 51.5, 3.5)])
    monkeypatch.setattr(threads, "_look", lambda: next(looks))
    monkeypatch.setattr(threads.time, "monotonic", lambda: 101.0)
    assert threads.free_cores(4) == pytest.approx(3.0)  # others kept 1 core busy
    looks = iter([(102.0, 56.5, 3.5)])  # then more than 4 cores' work, none of it ours
    monkeypatch.setattr(threads.time, "monotonic", lambda: 102.0)
    assert threads.free_cores(4) == 0.0


def test_a_busy_machine_leaves_one_thread_and_the_choice_is_looked_at_again(machine,
                                                                           monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    free = iter([0.2, 2.0])
    monkeypatch.setattr(threads, "free_cores", lambda cores: next(free))
    assert threads.choose(BIG, 128, CPU, 0) == 1  # never none
    assert threads.choose(BIG, 128, CPU, 0) == 1  # kept for REFRESH_S
    monkeypatch.setattr(threads, "REFRESH_S", 0.0)
    assert threads.choose(BIG, 128, CPU, 0) == 2  # the other work ended


def test_the_first_look_at_proc_stat_measures_this_machine(machine):
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat here")
    free = threads.free_cores(threads.usable_cores())
    assert 0.0 <= free <= threads.usable_cores()
    assert threads._state["look"][0] <= time.monotonic()
