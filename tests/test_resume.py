"""Kill a real training job mid-way (SIGKILL, as a preempted node would) and rerun the
workflow: the job resumes from its last Trainer checkpoint, the model folder appears
only once complete, and the result equals an uninterrupted run's."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tiny import tiny_config

from conftest import REPO, snakemake
from soft.io import read_json

pytestmark = pytest.mark.e2e
MODEL = "results/soft/models/round1"
WORK = "results/soft/train_work/round1"
# 6 prompts x 30 epochs at batch 1: 180 optimiser steps, a checkpoint every 5.
EXPERIMENTS = {"soft": {"rounds": 1, "train": {"epochs": 30, "batch_size": 1, "save_steps": 5,
                                               "lr_scheduler": "constant", "warmup_ratio": 0.0}}}


def start(workdir: Path, cfg: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(cfg), "--cores", "1", MODEL]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def wait_for_checkpoint(workdir: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sorted((workdir / WORK).glob("checkpoint-*/trainer_state.json"))
        if done:
            return done[0].parent
        if proc.poll() is not None:
            raise AssertionError(f"the workflow ended (exit {proc.returncode}) before any checkpoint")
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def test_killed_training_resumes_from_its_checkpoint(tmp_path):
    killed = tmp_path / "killed"
    killed.mkdir()
    cfg = tiny_config(killed, experiments=EXPERIMENTS)
    proc = start(killed, cfg)
    checkpoint = wait_for_checkpoint(killed, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and the training job, no clean-up
    proc.wait()
    assert not (killed / MODEL).exists(), "a half-trained model folder was left behind"
    step = int(checkpoint.name.split("-")[1])
    assert step < 180

    snakemake(killed, cfg, "--unlock")
    snakemake(killed, cfg, MODEL)
    log = (killed / "logs/soft/train_model/round1.log").read_text()
    resumed = re.findall(r"resuming from results/soft/train_work/round1/checkpoint-(\d+)", log)
    assert len(resumed) == 1 and int(resumed[0]) >= step, log[-3000:]
    # The rerun ran only the optimiser steps after its checkpoint: a silent restart from
    # scratch would end at the same weights and the same global step, but run all 180.
    done = re.findall(r"done: (\d+) steps \((\d+) run by this job\)", log)
    assert done == [("180", str(180 - int(resumed[0])))], log[-3000:]
    card = read_json(killed / MODEL / "soft_model_card.json")
    assert card["train_metrics"]["steps"] == 180
    assert not (killed / WORK).exists()  # checkpoints go once the model is saved

    # The same job, never interrupted, gives the same model.
    clean = tmp_path / "clean"
    clean.mkdir()
    snakemake(clean, tiny_config(clean, experiments=EXPERIMENTS), MODEL)
    assert "done: 180 steps (180 run by this job)" in (clean / "logs/soft/train_model/round1.log").read_text()
    a = load_file(next((killed / MODEL).glob("*.safetensors")))
    b = load_file(next((clean / MODEL).glob("*.safetensors")))
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert card == read_json(clean / MODEL / "soft_model_card.json")
