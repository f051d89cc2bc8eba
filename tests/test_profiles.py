"""The shipped profiles (profiles/slurm, profiles/gpu-local) parse, name real rules, and
give the model rules their GPUs; dry runs only (the real SLURM run is tests/test_slurm.py)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GPU_RULES = {"generate_responses", "train_model", "evaluate_model", "validate_model", "probe_model",
             "judge_answers"}
RULES = {m for smk in (REPO / "rules").glob("*.smk")
         for m in re.findall(r"^[ \t]*(?:rule|checkpoint) (\w+):", smk.read_text(), re.M)}
# Planned before the first early-stop checkpoint has run (later rounds, probes and the
# judge appear once validations exist, so a dry run cannot list them).
PLANNED_GPU_RULES = {"generate_responses", "train_model", "evaluate_model", "validate_model"}


def profile(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


def dry_run(tmp_path: Path, profile_name: str) -> dict[str, list[dict]]:
    """`snakemake -n --profile ...` on the default grid; resources per job, by rule."""
    (tmp_path / "config").symlink_to(REPO / "config")  # the config's relative input paths
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(REPO / "config/config.yaml"), "--profile", str(REPO / "profiles" / profile_name),
           "--dry-run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs: dict[str, list[dict]] = {}
    rule = None
    for line in proc.stdout.splitlines():
        if m := re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line):
            rule = m.group(1)
        elif rule and (m := re.match(r"^ {4}resources: (.*)$", line)):
            jobs.setdefault(rule, []).append(dict(kv.split("=", 1) for kv in m.group(1).split(", ")))
    return jobs


def test_config_resources_name_real_rules_and_each_rule_reads_its_own():
    """The schema's resources keys, the shipped configs' and the names the rules look up
    (resources_of) are rule names, each rule reading its own key."""
    schema = yaml.safe_load((REPO / "config/schema/config.schema.yaml").read_text())
    keys = set(schema["properties"]["resources"]["properties"])
    assert keys <= RULES, keys - RULES
    for cfg in [REPO / "config/config.yaml", *sorted((REPO / "config/experiments").glob("*.yaml"))]:
        assert set(yaml.safe_load(cfg.read_text()).get("resources") or {}) <= keys, cfg
    for smk in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"^(?=[ \t]*(?:rule|checkpoint) )", smk.read_text(), flags=re.M):
            rule = re.match(r"\s*(?:rule|checkpoint) (\w+):", block)
            looked_up = set(re.findall(r'resources_of\("(\w+)"\)', block))
            assert not looked_up or (rule and looked_up == {rule.group(1)}), (smk.name, looked_up)


@pytest.mark.parametrize("name", ["slurm", "gpu-local"])
def test_profile_names_only_real_rules(name):
    p = profile(name)
    for key in ("set-resources", "set-threads"):
        assert set(p.get(key, {})) <= RULES, f"profiles/{name}: {key} names an unknown rule"
    assert {r for r, res in p["set-resources"].items() if res.get("gpu")} == GPU_RULES


def test_slurm_profile_status_check_cannot_hang():
    p = profile("slurm")
    assert p["executor"] == "slurm"
    # sacct without slurmdbd never answers; squeue needs MinJobAge (default 300 s) >= 3 x init.
    assert p["slurm-status-command"] == "squeue"
    assert 3 * p["slurm-init-seconds-before-status-checks"] <= 300
    for rule, res in p["set-resources"].items():
        # The plugin refuses these in slurm_extra; they have their own resources.
        assert not re.search(r"--(gres|gpus|mem|time)\b", str(res.get("slurm_extra", ""))), rule


def test_gpu_local_profile_gives_model_rules_one_gpu(tmp_path):
    p = profile("gpu-local")
    assert p["resources"]["gpu"] >= max(r["gpu"] for r in p["set-resources"].values())
    jobs = dry_run(tmp_path, "gpu-local")
    assert PLANNED_GPU_RULES <= set(jobs)
    for rule, resources in jobs.items():
        for res in resources:
            assert res.get("gpu", "0") == ("1" if rule in GPU_RULES else "0"), (rule, res)


def test_slurm_profile_dry_run_sizes_the_model_rules(tmp_path):
    jobs = dry_run(tmp_path, "slurm")
    for rule, resources in jobs.items():
        for res in resources:
            assert res.get("runtime"), (rule, res)  # every sbatch gets a time limit
            assert res.get("gpu", "0") == ("1" if rule in GPU_RULES else "0"), (rule, res)
    assert jobs["train_model"][0]["mem_mb"] == str(profile("slurm")["set-resources"]["train_model"]["mem_mb"])
