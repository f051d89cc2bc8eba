"""A job killed mid-way at any stage leaves nothing a later rule trusts, and rerunning the
same command gives the same files as a run that was never interrupted.

One tiny chain (2 rounds, early stop, probe answers, local judge) is run once without
interruption. A second copy is then driven stage by stage: each time a job of the next
stage to kill has started (this run wrote its log) and before its output is complete,
the whole Snakemake process group gets SIGKILL, the way a preempted node or an OOM kill ends
a run. The output of the killed job must not exist; `snakemake --unlock` and the same
command again continue the run. At the end every output is compared, byte for byte,
with the uninterrupted run's, and every data file's ids with the reference's.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_determinism import SIGNALS_CONFIG, digests
from tiny import REPO, tiny_config

pytestmark = pytest.mark.e2e

# Per stage, the jobs that may be killed (log, output): whichever of them is started first
# in a run whose output is missing. Snakemake does not run the stages in chain order
# (round 1's validation may run before round 1's evaluation), so each stage offers all
# its jobs.
def jobs(rule: str, rounds=(1, 2), base=False) -> list[tuple[str, str]]:
    out = []
    if base:
        out.append((f"logs/base_model/{rule}/round0.log", OUTPUTS[rule].format(exp="base_model", k=0)))
    for k in rounds:
        out.append((f"logs/soft/{rule}/round{k}.log", OUTPUTS[rule].format(exp="soft", k=k)))
    return out


OUTPUTS = {
    "generate_responses": "results/{exp}/data/round{k}_gen.jsonl",
    "train_model": "results/{exp}/models/round{k}",
    "evaluate_model": "results/{exp}/eval/round{k}.json",
    "validate_model": "results/{exp}/validation/round{k}.json",
    "probe_model": "results/{exp}/probe/round{k}.jsonl",
}
STAGES = {
    "generate_responses": jobs("generate_responses"),
    "train_model": jobs("train_model"),
    "evaluate_model": jobs("evaluate_model", base=True),
    "validate_model": jobs("validate_model", base=True),
    "probe_model": jobs("probe_model", base=True),
    "judge_answers": [("logs/soft/judge_answers.log", "results/soft/judge.json")],
}


def command(workdir: Path, cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
            str(workdir), "--configfile", str(cfg), "--cores", "2", *extra]


def kill_when_started(workdir: Path, cfg: Path, candidates: list[tuple[str, str]],
                      timeout: float = 600) -> str | None:
    """Run the workflow until one of the candidate jobs has started (its log written by
    this run) and its output is still missing, then SIGKILL the whole process group.
    Returns that job's output, or None if the run ended first."""
    start = time.time()
    # Only the stage's own outputs (and what they need) as targets: a run for one stage
    # must not complete a later stage's jobs before that stage's turn to be killed.
    targets = [output for _, output in candidates]
    proc = subprocess.Popen(command(workdir, cfg, *targets), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for log, output in candidates:
                log_path, out_path = workdir / log, workdir / output
                if log_path.exists() and log_path.stat().st_mtime >= start - 1 and not out_path.exists():
                    time.sleep(1.0)  # into the job: the script is importing torch or working
                    if not out_path.exists():
                        os.killpg(proc.pid, signal.SIGKILL)
                        return output
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    return None


def test_a_kill_at_every_stage_changes_no_output(tmp_path, run_snakemake):
    ref, work = tmp_path / "reference", tmp_path / "killed"
    for d in (ref, work):
        d.mkdir()
    ref_cfg, cfg = tiny_config(ref, **SIGNALS_CONFIG), tiny_config(work, **SIGNALS_CONFIG)
    run_snakemake(ref, ref_cfg)

    killed = []
    for rule, candidates in STAGES.items():
        output = kill_when_started(work, cfg, candidates)
        if output:
            killed.append(rule)
            # the killed job left nothing behind under its output's name
            assert not (work / output).exists(), f"{rule}: a half-written {output} was left"
        subprocess.run(command(work, cfg, "--unlock"), capture_output=True, timeout=120, check=True)
    # the model stages take seconds even on the tiny model: those kills must have hit
    assert {"generate_responses", "train_model", "evaluate_model", "validate_model", "probe_model"} <= set(killed)

    run_snakemake(work, cfg)  # the same command again finishes the run
    a, b = digests(ref), digests(work)
    assert a.keys() == b.keys() and len(a) > 20
    assert not [name for name in a if a[name] != b[name]], "outputs differ from the uninterrupted run"
    for data in sorted(ref.glob("results/soft/data/round*.jsonl")):
        ids = [json.loads(line)["id"] for line in data.read_text().splitlines()]
        again = [json.loads(line)["id"] for line in (work / data.relative_to(ref)).read_text().splitlines()]
        assert again == ids and len(set(ids)) == len(ids)  # no record lost or duplicated
    # and the killed jobs' temporaries are gone (the reruns removed them)
    leftovers = [p for p in (work / "results").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
