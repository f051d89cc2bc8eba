"""vLLM itself, in the venv `make vllm-env` builds (.venv-vllm: vLLM's CPU build):

- the real generate_responses rule with generation.backend: vllm, run twice with the same
  seed (same bytes);
- soft.probe.judge.EndpointJudge against a real `vllm serve` on 127.0.0.1, started and stopped
  here.

Skipped when .venv-vllm is absent, except under CI (CI=true), where that is a failure.
The tiny model is built with head_dim 32: vLLM's CPU attention has no head_dim 16 kernel.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import yaml
from conftest import snakemake
from tiny import REPO, make_tiny_model, tiny_config

from soft.probe.judge import VERDICTS, EndpointJudge, judge_pairs
from soft.records import read_generations
from soft.generate.vllm_server import http_get
from soft.generate.vllm_backend import engine_dtype

pytestmark = pytest.mark.vllm

VLLM_BIN = REPO / ".venv-vllm" / "bin"


@pytest.fixture(scope="module")
def vllm_venv() -> Path:
    if not (VLLM_BIN / "python").is_file():
        why = f"{VLLM_BIN / 'python'} is absent (`make vllm-env` builds it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; under CI the vLLM tests must run")
        pytest.skip(why)
    return VLLM_BIN


def test_generation_rule_with_vllm_is_well_formed_and_repeatable(tmp_path, vllm_venv):
    """generate_responses with backend vllm: records like the hf backend's, the engine run
    in .venv-vllm (its lines in the job's log), and a forced rerun (the interpreter now
    named by the config key vllm_python) writes the same bytes."""
    # 16 whole prompts (max_prompt_tokens 1536, not the tiny config's 512) of about 1,100
    # tokens: even with the shared principles cached once, they exceed one engine step's
    # 4,096 tokens, so some prompts are prefilled in two steps, with seeded sampling (vLLM
    # 0.32's CPU sampler failed on exactly that).
    generation = {"backend": "vllm", "max_prompt_tokens": 1536}
    cfg = tiny_config(tmp_path, experiments={"single_round": {"rounds": 1, "prompt_budget": 16,
                                                              "generation": generation}})
    make_tiny_model(tmp_path / "tiny_model_src", head_dim=32)
    target = "results/single_round/data/round1_gen.jsonl"
    snakemake(tmp_path, cfg, target)
    out = tmp_path / target
    first = out.read_bytes()
    log = (tmp_path / "logs/single_round/generate_responses/round1.log").read_text()
    assert "backend vllm (generation.backend: vllm)" in log
    assert f"vllm engine: {vllm_venv / 'python'} -m soft.generate.vllm_backend (16 prompts)" in log
    # dtype auto, decided from this CPU's flags (float32 without bf16 units)
    assert "[vllm]" in log and f"on CPU, dtype {engine_dtype('auto', cuda=False)}; engine start" in log
    records = read_generations(out)
    prompts = [json.loads(line) for line in (tmp_path / "results/single_round/prompts/round1.jsonl").open()]
    assert [r["id"] for r in records] == [p["id"] for p in prompts]
    assert all(r["round"] == 1 and r["seed"] == 0 and len(r["exemplar_ids"]) == 1 for r in records)
    # sampled (temperature 0.7) from a random model: different, non-empty continuations
    assert len({r["continuation"] for r in records}) == len(records) and all(r["continuation"] for r in records)

    # again, with the interpreter named by the config key: the same bytes
    config = yaml.safe_load(cfg.read_text())
    config["vllm_python"] = str(vllm_venv / "python")
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake(tmp_path, cfg, target, "--forcerun", "generate_responses")
    assert out.read_bytes() == first


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_planted_judge(out_dir: Path) -> Path:
    """The tiny model with weights set so that greedy decoding answers "A" and stops, for
    any prompt: the layers add nothing to the residual stream (o_proj and down_proj are
    zero), every token but "A" has the same input embedding u and "A" an orthogonal one
    w; the output rows score "A" highest after u and end-of-turn highest after w."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    make_tiny_model(out_dir, head_dim=32)
    tok = AutoTokenizer.from_pretrained(out_dir)
    (a_id,) = tok("A", add_special_tokens=False).input_ids
    eos_id = tok.convert_tokens_to_ids("<|im_end|>")
    weights = load_file(out_dir / "model.safetensors")
    for name in weights:
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            weights[name] = torch.zeros_like(weights[name])
    vocab, hidden = weights["model.embed_tokens.weight"].shape
    u, w = torch.zeros(hidden), torch.zeros(hidden)
    u[0], w[1] = 1.0, 1.0
    embed = u.repeat(vocab, 1)
    embed[a_id] = w
    head = u.repeat(vocab, 1)
    head[a_id] = 2 * u  # after u: "A" scores 2, every other token 1
    head[eos_id] = 3 * w  # after "A" (w): end of turn scores 3, every other token 0
    weights["model.embed_tokens.weight"], weights["lm_head.weight"] = embed, head
    save_file(weights, out_dir / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((out_dir / "config.json").read_text())
    config["tie_word_embeddings"] = False
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir


@pytest.fixture(scope="module")
def vllm_server(vllm_venv, tmp_path_factory):
    """vLLM's server (soft.generate.vllm_server, as `make rehearse` starts it) of the planted judge on
    a free port of 127.0.0.1; stopped with its whole process group afterwards."""
    from soft.errors import SoftError
    from soft.generate.vllm_server import serve

    model = make_planted_judge(tmp_path_factory.mktemp("judge") / "planted-judge")
    try:
        with serve(str(vllm_venv / "python"), model, "planted-judge", free_port(), model.parent / "serve.log",
                   max_model_len=1024) as base:
            yield base
    except SoftError as e:
        pytest.fail(str(e))


def served_requests(base: str) -> float:
    """Finished requests by the server's own count (its Prometheus metrics)."""
    total = 0.0
    for line in http_get(f"{base}/metrics").splitlines():
        if line.startswith("vllm:request_success_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_endpoint_judge_against_vllm_serve(vllm_server):
    """Three pairs, both orders: six chat completions on the real server, every reply the
    planted "A" (so parsed, and every pair a tie: the position bias cancels)."""
    before = served_requests(vllm_server)
    judge = EndpointJudge(f"{vllm_server}/v1/chat/completions", "planted-judge", None, timeout_s=120,
                          max_retries=0)
    result = judge_pairs(judge, ["What is 2 + 2?", "Name a colour.", "Is water wet?"],
                         ["Four.", "Blue.", "Yes."], ["Five.", "Loud.", "No."])
    assert [(i["ab"], i["ba"], i["outcome"]) for i in result["items"]] == [("A", "A", "tie")] * 3
    summary = result["summary"]
    assert {k: summary[k] for k in ("n", "win_rate", "tie_rate", "loss_rate", "unparsed")} == {
        "n": 3, "win_rate": 0.0, "tie_rate": 1.0, "loss_rate": 0.0, "unparsed": 0}
    # a judge that always answers "A" prefers neither answer over both orders
    assert summary["preference"] == 0.5
    assert set(VERDICTS) >= {i["ab"] for i in result["items"]}
    assert served_requests(vllm_server) - before == 6


def test_bench_backends_quick(tmp_path, vllm_venv):
    """`python -m performance --backends` in quick mode: both backends on the same prompts,
    whole job and generation timed apart, and the section in bench.md."""
    from performance.backends import bench_backends
    from performance.report import markdown

    model = make_tiny_model(tmp_path / "m", head_dim=32)
    b = bench_backends(str(model), 3, 8, 4)
    assert b["measured"] is True and b["prompts"] == 3 and b["vllm_python"] == str(vllm_venv / "python")
    for k in ("hf", "vllm"):
        assert b[k]["new_tokens"] > 0 and 0 < b[k]["generate_s"] < b[k]["job_s"]
        # the seconds are rounded to 10 ms and the rate is computed from the unrounded ones, so
        # the rate lies within what the rounding allows (a 0.11 s run can be anything in 0.105-0.115)
        n, s = b[k]["new_tokens"], b[k]["generate_s"]
        assert n / (s + 0.005) * 0.999 <= b[k]["new_tok_per_s"] <= n / max(s - 0.005, 1e-3) * 1.001
    assert 0 < b["vllm"]["engine_start_s"] < b["vllm"]["job_s"]
    assert 0 <= b["same_continuations"] <= 3
    md = markdown({"matmul_n": 1, "matmul_flops": 1.0, "backends": b, "targets": []})
    assert "## Generation backends" in md and "| vllm |" in md and "| hf |" in md
