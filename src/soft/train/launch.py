"""Multi-process training inside one job: a job given k > 1 GPUs relaunches its training
under torchrun with one process per GPU (data parallel). The job spec travels as a JSON
file, so the workers run the same function as a single-process job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from soft.errors import SoftError
from soft.io import read_json, write_json

WORKER_MODULE = "soft.train.worker"


def in_distributed_worker(env: dict | None = None) -> bool:
    env = os.environ if env is None else env
    return "LOCAL_RANK" in env and "WORLD_SIZE" in env


def processes_for(gpus: int, env: dict | None = None) -> int:
    """Training processes for a job with `gpus` devices: one per GPU, one on CPU, and one
    when we already are a torchrun worker (no recursive launch)."""
    if in_distributed_worker(env):
        return 1
    return max(1, int(gpus or 0))


def torchrun_command(nproc: int, spec_path: str | Path, python: str = sys.executable) -> list[str]:
    """The torchrun call that runs soft.train.worker on `spec_path` with `nproc` ranks on
    this node. --standalone picks a free rendezvous port, so two jobs on one machine do
    not collide."""
    if nproc < 2:
        raise SoftError(f"torchrun is for 2 or more processes, got {nproc}")
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "--max-restarts=0", "-m", WORKER_MODULE, os.fspath(spec_path)]


def worker_env(env: dict | None = None) -> dict:
    """The environment for a child interpreter (torchrun and its ranks, the forecast's dry
    runs): the folder holding this package first on PYTHONPATH. Under `snakemake --sdm
    conda` the job's env does not install soft; the job imports it only because
    Snakemake's script preamble appends the launcher's sys.path, which a child interpreter
    does not inherit."""
    env = dict(os.environ if env is None else env)
    package_root = str(Path(__file__).resolve().parents[2])
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != package_root]
    env["PYTHONPATH"] = os.pathsep.join([package_root, *rest])
    return env


def write_spec(path: str | Path, spec: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, spec)
    return path


def read_spec(path: str | Path) -> dict:
    return read_json(path)


def launch(nproc: int, spec_path: str | Path, log_path: str | Path | None = None) -> None:
    """Run the training under torchrun; the ranks' output is appended to the job's log."""
    cmd, env = torchrun_command(nproc, spec_path), worker_env()
    if log_path:
        with open(log_path, "a", encoding="utf-8") as log_file:
            proc = subprocess.run(cmd, check=False, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    else:
        proc = subprocess.run(cmd, check=False, env=env)
    if proc.returncode != 0:
        where = f"see {log_path}" if log_path else "see the output above"
        raise SoftError(f"torchrun with {nproc} processes failed (exit {proc.returncode}); "
                        f"each rank's messages are prefixed rank<N> ({where})")
