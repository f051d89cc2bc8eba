"""The local GPU slot allocator: disjoint ids across processes, release on crash, clear errors."""

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from soft import gpu_slots
from soft.errors import SoftError

REPO = Path(__file__).resolve().parents[1]

# A job stand-in: claims GPUs the way soft.runtime.run does, reports the ids on stdout,
# then holds them until `release` exists (or until it is killed).
HOLDER = """
import json, os, sys, time
from pathlib import Path
from soft.gpu_slots import claim_gpus
ids = claim_gpus(int(sys.argv[1]), rule="holder")
print(json.dumps({"ids": ids, "env": os.environ["CUDA_VISIBLE_DEVICES"]}), flush=True)
release = Path(sys.argv[2])
while not release.exists():
    time.sleep(0.05)
"""


def slot_env(tmp_path, count=4, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.update(SOFT_GPU_COUNT=str(count), SOFT_GPU_SLOT_DIR=str(tmp_path / "slots"),
               SOFT_GPU_WAIT_S="30", **extra)
    return env


def start_holder(n, release, env):
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(n), str(release)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def claimed(proc):
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return json.loads(line)


def stop(*procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)


def test_concurrent_jobs_get_disjoint_devices(tmp_path):
    env, release = slot_env(tmp_path, count=4), tmp_path / "release"
    procs = [start_holder(2, release, env) for _ in range(2)]
    try:
        a, b = (claimed(p) for p in procs)
        assert len(a["ids"]) == len(b["ids"]) == 2
        assert set(a["ids"]).isdisjoint(b["ids"])
        assert set(a["ids"]) | set(b["ids"]) == {"0", "1", "2", "3"}
        assert a["env"] == ",".join(a["ids"]) and b["env"] == ",".join(b["ids"])
        # A third job finds every device taken: it waits, then fails with a clear message.
        late = subprocess.run([sys.executable, "-c", HOLDER, "2", str(release)],
                              env={**env, "SOFT_GPU_WAIT_S": "1"}, capture_output=True, text=True, timeout=60)
        assert late.returncode != 0
        assert "waited 1 s for 2 free GPUs of 4" in late.stderr
        release.touch()
        for p in procs:
            assert p.wait(timeout=30) == 0
    finally:
        stop(*procs)


def test_a_killed_job_releases_its_devices_and_a_waiting_job_gets_them(tmp_path):
    env, release = slot_env(tmp_path, count=2), tmp_path / "release"
    holder = start_holder(2, release, env)
    waiter = None
    try:
        assert sorted(claimed(holder)["ids"]) == ["0", "1"]
        waiter = start_holder(2, release, env)
        time.sleep(1.0)
        assert waiter.poll() is None  # still waiting: both devices are taken
        os.kill(holder.pid, signal.SIGKILL)  # a crash: no cleanup code runs
        holder.wait(timeout=30)
        assert sorted(claimed(waiter)["ids"]) == ["0", "1"]
    finally:
        release.touch()
        stop(holder, *([waiter] if waiter else []))


def test_asking_more_gpus_than_the_machine_has_is_an_error(tmp_path):
    env = slot_env(tmp_path, count=2)
    with pytest.raises(SoftError, match=r"rule train_model asks for 3 GPUs .* this machine has 2 "
                                        r"\(SOFT_GPU_COUNT=2\).*resources\.train_model\.gpu"):
        gpu_slots.claim_gpus(3, rule="train_model", env=env)
    with pytest.raises(SoftError, match="has 0"):
        gpu_slots.claim_gpus(1, rule="train_model", env={**env, "SOFT_GPU_COUNT": "0"})
    assert "CUDA_VISIBLE_DEVICES" not in env


def test_slurm_jobs_keep_the_schedulers_devices(tmp_path):
    env = slot_env(tmp_path, count=1, SLURM_JOB_ID="42", CUDA_VISIBLE_DEVICES="3,5")
    # More than "the machine" has: SLURM decided, so neither a check nor a lock happens.
    assert gpu_slots.claim_gpus(2, rule="train_model", env=env) is None
    assert env["CUDA_VISIBLE_DEVICES"] == "3,5"
    assert gpu_slots.visible_gpu_count(env) == 2
    assert not (tmp_path / "slots").exists()
    # A CPU job still sees no GPU, even on a cluster that does not fence devices off.
    assert gpu_slots.claim_gpus(0, rule="aggregate_metrics", env=env) == []
    assert env["CUDA_VISIBLE_DEVICES"] == "" and gpu_slots.visible_gpu_count(env) == 0


def test_cpu_jobs_see_no_gpu_and_off_touches_nothing(tmp_path):
    env = slot_env(tmp_path, count=4, CUDA_VISIBLE_DEVICES="0,1")
    assert gpu_slots.claim_gpus(0, env=env) == []
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    env = slot_env(tmp_path, count=4, CUDA_VISIBLE_DEVICES="0,1", SOFT_GPU_SLOTS="off")
    assert gpu_slots.claim_gpus(2, env=env) is None and env["CUDA_VISIBLE_DEVICES"] == "0,1"
    with pytest.raises(SoftError, match="SOFT_GPU_SLOTS"):
        gpu_slots.claim_gpus(1, env={**env, "SOFT_GPU_SLOTS": "maybe"})


def test_device_list_sources(monkeypatch, tmp_path):
    assert gpu_slots.machine_devices({"SOFT_GPU_COUNT": "3", "CUDA_VISIBLE_DEVICES": "7"})[0] == ["0", "1", "2"]
    # The user's own restriction is kept, ids and all; CUDA ignores ids after an invalid one.
    assert gpu_slots.machine_devices({"CUDA_VISIBLE_DEVICES": "4, 5"})[0] == ["4", "5"]
    assert gpu_slots.machine_devices({"CUDA_VISIBLE_DEVICES": "2,-1,3"})[0] == ["2"]
    assert gpu_slots.machine_devices({"CUDA_VISIBLE_DEVICES": ""})[0] == []
    with pytest.raises(SoftError, match="SOFT_GPU_COUNT"):
        gpu_slots.machine_devices({"SOFT_GPU_COUNT": "two"})
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA A100 (UUID: GPU-a)'\necho '  MIG 1g.10gb Device 0: (UUID: MIG-x)'\n"
        "echo 'GPU 1: NVIDIA A100 (UUID: GPU-b)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    assert gpu_slots.machine_devices({}) == (["0", "1"], "nvidia-smi -L")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert gpu_slots.machine_devices({})[0] == []


@pytest.fixture
def root_logging():
    """runtime.run reconfigures the root logger; put it back for the tests that follow."""
    import logging

    handlers, level = logging.root.handlers[:], logging.root.level
    yield
    for h in logging.root.handlers:
        if h not in handlers:
            h.close()
    logging.root.handlers[:], logging.root.level = handlers, level


def test_runtime_run_claims_the_rules_gpus_before_main(monkeypatch, tmp_path, root_logging):
    from soft import runtime

    for k, v in slot_env(tmp_path, count=2).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # restored after the test
    seen = {}
    smk = SimpleNamespace(log=[str(tmp_path / "job.log")], output=[], rulename="train_model",
                          resources={"gpu": 2})  # .get like Snakemake's Resources
    try:
        runtime.run(lambda s: seen.update(cvd=os.environ["CUDA_VISIBLE_DEVICES"]), smk)
    finally:
        gpu_slots.release_all()
    assert sorted(seen["cvd"].split(",")) == ["0", "1"]
    assert "rule train_model: GPUs" in (tmp_path / "job.log").read_text()
    # An over-ask is a user error: one line in the log and exit 1, no traceback.
    smk.resources = {"gpu": 3}
    with pytest.raises(SystemExit) as exit_:
        runtime.run(lambda s: None, smk)
    assert exit_.value.code == 1
    assert "asks for 3 GPUs" in (tmp_path / "job.log").read_text()


def test_scripts_import_nothing_that_imports_torch():
    """The scripts import soft modules at the top; CUDA must not start before the GPU claim."""
    for script in sorted((REPO / "workflow/scripts").glob("*.py")):
        tree = ast.parse(script.read_text())
        imports = [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        code = "\n".join(imports + ["import sys", "print('torch' in sys.modules)"])
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "False", f"{script.name}: its top-level imports import torch"


def test_gpu_requests_above_the_runs_limit_are_refused():
    gpu_slots.check_gpu_requests({"train_model": 8, "evaluate_model": 1}, None)  # no limit set
    gpu_slots.check_gpu_requests({"train_model": 2, "evaluate_model": 1}, 2)
    with pytest.raises(SoftError, match=r"train_model asks for gpu=8, but the run was started "
                                        r"with --resources gpu=2 .*silently"):
        gpu_slots.check_gpu_requests({"train_model": 8, "evaluate_model": 1}, 2)


def test_the_dag_refuses_a_rule_above_resources_gpu(tmp_path):
    """Snakemake would cap train_model's gpu=2 to 1 without a word: the DAG build fails
    instead, naming the rule; the same request with --resources gpu=2 plans normally."""
    import yaml

    from test_dag import SNAKEFILE, assert_refused, write_config

    cfg_path = write_config(tmp_path, {"soft": {"rounds": 1}})
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["resources"]["train_model"]["gpu"] = 2
    cfg_path.write_text(yaml.safe_dump(cfg))

    def plan(gpus):
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
               str(tmp_path), "--cores", "2", "--dry-run", "--resources", f"gpu={gpus}",
               "--configfile", str(cfg_path)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    assert_refused(plan(1), "invalid resources: train_model asks for gpu=2, but the run was started with "
                            "--resources gpu=1 (Snakemake would silently run it with 1); lower "
                            "resources.<rule>.gpu in the config or raise --resources gpu")
    assert plan(2).returncode == 0
