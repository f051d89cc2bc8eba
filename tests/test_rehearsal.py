"""The paper rehearsal (`make rehearse`, config/experiments/paper_rehearsal.yaml).

- Not marked: the rehearsal config differs from paper.yaml only in the stated sizes and
  sources (the difference is printed), so what the rehearsal runs is what a GPU user runs.
- Marked `rehearsal` (`make test-rehearsal`, in CI): `python -m soft.tools.rehearse` in a fresh
  folder holding a copy of config/, as a user on a fresh clone would run it, and the files
  show that every paper code path ran: the plain layout, vLLM generation, QLoRA, the
  Dolly passages, the endpoint judge's verdicts from the served model, the paper's tables
  and figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from test_dag import fresh_workdir
from tiny import REPO

from soft.config import extend_config

EXPERIMENTS = REPO / "config" / "experiments"

# Key paths the rehearsal may change, with why. Anything else that differs fails the test.
SIZES_AND_SOURCES = {
    "run_name": "its own output folder",
    "base_model.name": "source: the embedded model",
    "base_model.source": "source: the embedded model (config.yaml's), not the hub's Llama-2-7b-hf",
    "base_model.template": "the plain layout auto gives Llama-2-7b-hf, forced on weights that carry a template",
    "prompts.local_file": "source: a Dolly-shaped file in the checkout instead of the hub's",
    "prompts.sha256": "source: that file's hash",
    "seeds": "size: one seed, not three",
    "defaults.prompt_budget": "size",
    "defaults.icl.shots": "size: two exemplars a prompt, not five (the prefill is most of vLLM's CPU time)",
    "experiments.soft.rounds": "size: two rounds (round 2 runs every path a later round does)",
    "experiments.soft_plus.rounds": "size: two rounds",
    "defaults.generation.max_new_tokens": "size",
    "defaults.train.max_length": "size",
    "defaults.train.max_prompt_length": "size",
    "defaults.train.max_answer_length": "size",
    "defaults.filter.min_chars": "size: 128-token answers, after the thoughts, are shorter than Dromedary's 160-character cut",
    "evaluation.limit": "size",
    "evaluation.probe.max_new_tokens": "size",
    "evaluation.probe.max_prompts": "size",
    "evaluation.judge.url": "source: the served model on 127.0.0.1",
    "paper.include": "size: the ablation panels are not rehearsed",
    "resources": "size: one 2-core machine without a GPU",
}


def resolved(name: str) -> dict:
    cwd = os.getcwd()
    os.chdir(REPO)  # extends: paths are relative to the checkout
    try:
        return extend_config(yaml.safe_load((EXPERIMENTS / name).read_text()))
    finally:
        os.chdir(cwd)


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def allowed(path: str) -> bool:
    return any(path == key or path.startswith(key + ".") for key in SIZES_AND_SOURCES)


def test_the_rehearsal_changes_only_sizes_and_sources(capsys):
    paper, rehearsal = flatten(resolved("paper.yaml")), flatten(resolved("paper_rehearsal.yaml"))
    changed = sorted(k for k in paper.keys() | rehearsal.keys() if paper.get(k, "<absent>") != rehearsal.get(k, "<absent>"))
    with capsys.disabled():
        print("\npaper_rehearsal.yaml vs paper.yaml:")
        for key in changed:
            print(f"  {key}: {paper.get(key, '<absent>')!r} -> {rehearsal.get(key, '<absent>')!r}")
    assert [k for k in changed if not allowed(k)] == []
    # the code paths the rehearsal exists for are paper.yaml's own
    for key, value in {"defaults.generation.backend": "vllm", "defaults.train.method": "qlora",
                       "evaluation.judge.kind": "endpoint", "prompts.source": "hub",
                       "prompts.context_field": "context"}.items():
        assert paper[key] == rehearsal[key] == value, key
    # the same chains and settings; only their lengths (listed above) differ
    def without_rounds(cfg):
        return {name: {k: v for k, v in exp.items() if k != "rounds"} for name, exp in cfg["experiments"].items()}

    assert without_rounds(resolved("paper_rehearsal.yaml")) == without_rounds(resolved("paper.yaml"))
    # the embedded source is config.yaml's, not a copy that could drift
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())["base_model"]["source"]
    assert resolved("paper_rehearsal.yaml")["base_model"]["source"] == default


def test_an_allowed_key_does_not_hide_others():
    assert allowed("resources.train_model.gpu") and allowed("seeds")
    assert not allowed("defaults.train.method") and not allowed("seedsX")


@pytest.mark.rehearsal
def test_make_rehearse_runs_the_paper_paths(tmp_path):
    run = fresh_workdir(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "soft.tools.rehearse", "--cores", "all"], cwd=run,
                          capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    r = run / "results"
    plain = None
    for exp in ("single_round", "soft", "soft_plus"):
        stop = json.loads((r / exp / "stop.json").read_text())
        assert stop["rounds_run"] >= 1, exp
        card = json.loads((r / exp / "models/round1/soft_model_card.json").read_text())
        assert card["layout"]["kind"] == "plain" and card["train"]["method"] == "qlora", exp
        plain = plain or card["layout"]
        assert "backend vllm" in (run / f"logs/{exp}/generate_responses/round1.log").read_text(), exp
    # Dolly's passages joined their instructions (passage first)
    pool = [json.loads(line) for line in (r / "prompt_pool/hub.jsonl").read_text().splitlines()]
    assert sum("\n\n" in p["prompt"] for p in pool) == 15 and len(pool) == 40
    # the served judge gave verdicts (its requests are in the server's log)
    judged = json.loads((r / "soft/judge.json").read_text())
    assert judged["judge"]["kind"] == "endpoint" and judged["comparisons"]
    assert "POST /v1/chat/completions" in (run / "logs/rehearse/serve.log").read_text()
    paper = r / "paper/paper_rehearsal"
    for name in ("main_table.md", "main_table.csv", "metrics_by_seed.csv", "benchmarks.png", "collapse.png",
                 "metric_vs_round.png", "provenance.json"):
        assert (paper / name).is_file(), name
    seeds = pd.read_csv(paper / "metrics_by_seed.csv")
    assert set(seeds.seed) == {0} and set(seeds.experiment) == {"single_round", "soft", "soft_plus"}
