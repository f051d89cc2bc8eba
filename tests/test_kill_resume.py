"""A job killed mid-way at any stage leaves nothing a later rule trusts, and rerunning the
same command gives the same files as a run that was never interrupted.

One tiny chain (2 rounds, early stop, probe answers, local judge) is run once without
interruption. A second copy is then driven stage by stage, every rule that writes data
included. Each run holds every finished temporary a moment before its rename
(soft.io.HOLD_ENV), and the test SIGKILLs the whole Snakemake process group as soon as a
temporary of the stage's output exists: the kill lands inside the job's output write, the
way a preempted node or an OOM kill ends a run at its worst moment. The output must then not
exist; `snakemake --unlock` and the same command again continue the run. At the end every
file under results/ and resources/ is compared, byte for byte, with the uninterrupted run's.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import REPO, SIGNALS_CONFIG, digests, tiny_config

from soft.io import HOLD_ENV

pytestmark = pytest.mark.e2e


def rounds(pattern: str, ks=(1, 2), exps=("soft",)) -> list[str]:
    return [pattern.format(exp=e, k=k) for e in exps for k in ks]


# Per rule, the outputs whose write may be killed: whichever starts first in a run where
# it is missing. Snakemake does not run a stage's jobs in chain order, so each stage
# offers all its jobs.
STAGES = {
    "split_prompts": rounds("results/{exp}/prompts/round{k}.jsonl"),
    "generate_responses": rounds("results/{exp}/data/round{k}_gen.jsonl"),
    "filter_responses": rounds("results/{exp}/data/round{k}.jsonl"),
    "train_model": rounds("results/{exp}/models/round{k}"),
    "record_training": rounds("results/{exp}/train/round{k}.json"),
    "evaluate_model": rounds("results/{exp}/eval/round{k}.json") + ["results/base_model/eval/round0.json"],
    "validate_model": rounds("results/{exp}/validation/round{k}.json") + ["results/base_model/validation/round0.json"],
    "decide_next_round": rounds("results/{exp}/validation/round{k}_decision.json", ks=(1,)),
    "probe_model": rounds("results/{exp}/probe/round{k}.jsonl") + ["results/base_model/probe/round0.jsonl"],
    "judge_answers": ["results/soft/judge.json"],
    "write_stop_record": ["results/soft/stop.json"],
    "aggregate_metrics": ["results/tables/metrics.csv"],
    "plot_metrics": ["results/figures/metric_vs_round.png"],
}
HOLD_S = "2"


def command(workdir: Path, cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
            str(workdir), "--configfile", str(cfg), "--cores", "2", *extra]


def temporaries(path: Path) -> list[str]:
    """soft.io.atomic_path's temporaries of `path` (file or folder)."""
    return glob.glob(str(path.parent / f".{glob.escape(path.name)}.*.tmp"))


def kill_inside_write(workdir: Path, cfg: Path, outputs: list[str], log: Path,
                      timeout: float = 600) -> str | None:
    """Run the workflow towards `outputs` until one of them exists only as a temporary, then
    SIGKILL the whole process group. Returns that output, or None if the run ended first
    (Snakemake's output is in `log`, for the failure message)."""
    # Only the stage's own outputs (and what they need) as targets: a run for one stage
    # must not complete a later stage's jobs before that stage's turn to be killed.
    env = {**os.environ, HOLD_ENV: HOLD_S}
    with open(log, "w") as sink:
        proc = subprocess.Popen(command(workdir, cfg, *outputs), stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for output in outputs:
                path = workdir / output
                if temporaries(path) and not path.exists():
                    os.killpg(proc.pid, signal.SIGKILL)
                    return output
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    return None


def test_a_kill_at_every_stage_changes_no_output(tmp_path, run_snakemake, signals_run):
    # the reference is the session's clean run (tests/conftest.py), also the determinism test's
    ref, work = signals_run, tmp_path / "killed"
    work.mkdir()
    cfg = tiny_config(work, **SIGNALS_CONFIG)

    killed, missed = [], {}
    for rule, candidates in STAGES.items():  # in chain order
        log = tmp_path / f"{rule}.log"
        output = kill_inside_write(work, cfg, candidates, log)
        if output:
            killed.append(rule)
            # the killed job left nothing behind under its output's name
            assert not (work / output).exists(), f"{rule}: a half-written {output} was left"
        else:
            missed[rule] = log.read_text()[-3000:]
        subprocess.run(command(work, cfg, "--unlock"), capture_output=True, timeout=120, check=True)
    # every finished temporary is held before its rename, so every stage's kill must hit
    assert killed == list(STAGES), "\n".join(f"--- {rule} ran to its end:\n{tail}" for rule, tail in missed.items())

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
