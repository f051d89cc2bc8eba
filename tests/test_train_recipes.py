"""Training recipes on the tiny model: curriculum order as seen by the optimiser, full
fine-tuning, QLoRA on the CPU, resumable work folders, and the multi-process launch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from soft.errors import SoftError
from soft.io import read_json, write_jsonl
from soft.train.launch import processes_for, torchrun_command
from soft.principles import load_principles
from soft.train.finetune import MODEL_CARD, check_train_method, last_checkpoint, prepare_work_dir, train_model
from tiny import REPO, make_tiny_model

PRINCIPLES = load_principles(REPO / "config/principles.yaml")

TRAIN = {"init": "previous", "data": "current", "method": "lora",
         "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
         "learning_rate": 1e-3, "lr_scheduler": "constant", "warmup_ratio": 0.0, "epochs": 2,
         "batch_size": 2, "grad_accum": 1, "max_length": 256, "save_steps": 0}

# Distinct answers, so each training row can be told apart after tokenisation.
WORDS = ["apple", "river", "mountain", "violin", "candle", "harbor", "meadow", "lantern"]


def records():
    return [{"id": f"r{i}", "prompt": f"Tell me about item {i}.", "response": f"It is a {w}.",
             "round": 1, "seed": 0, "exemplar_ids": []} for i, w in enumerate(WORDS)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("m") / "tiny")


def rows_seen_by_optimiser(monkeypatch, tokenizer_dir, **train_kwargs) -> list[str]:
    """Run a real training and return, step by step, which record each row of each batch
    that reached training_step was (identified by its answer word)."""
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    seen: list[str] = []
    original = SFTTrainer.training_step

    def recording_step(self, model, inputs, *args, **kwargs):
        for row in inputs["input_ids"]:
            text = tok.decode(row, skip_special_tokens=True)
            seen.append(next(f"r{i}" for i, w in enumerate(WORDS) if f"It is a {w}." in text))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "training_step", recording_step)
    train_model(**train_kwargs)
    return seen


def test_ordered_training_sees_exactly_the_file_order(tmp_path, tiny_model, monkeypatch):
    order = [records()[i] for i in (5, 2, 7, 0, 3, 6, 1, 4)]  # some curriculum order
    seen = rows_seen_by_optimiser(
        monkeypatch, tiny_model, records=order, init_dir=tiny_model, out_dir=tmp_path / "out",
        principles=PRINCIPLES, train_cfg=TRAIN, seed=0, card={}, work_dir=tmp_path / "work", ordered=True)
    ids = [r["id"] for r in order]
    assert seen == ids * 2  # two epochs, each in exactly the given order
    card = read_json(tmp_path / "out" / MODEL_CARD)
    assert card["train_order"] == ids and card["ordered"] is True


def test_unordered_training_shuffles(tmp_path, tiny_model, monkeypatch):
    """The control: without a curriculum the Trainer's random sampler reorders the rows,
    so the test above would fail if the sequential sampler were not in place."""
    seen = rows_seen_by_optimiser(
        monkeypatch, tiny_model, records=records(), init_dir=tiny_model, out_dir=tmp_path / "out",
        principles=PRINCIPLES, train_cfg=TRAIN, seed=0, card={}, work_dir=tmp_path / "work", ordered=False)
    ids = [r["id"] for r in records()]
    assert sorted(seen) == sorted(ids * 2) and seen != ids * 2


def test_full_fine_tuning_saves_a_plain_model(tmp_path, tiny_model):
    from safetensors.torch import load_file

    out = tmp_path / "out"
    metrics = train_model(records(), tiny_model, out, PRINCIPLES, {**TRAIN, "method": "full", "epochs": 1},
                          seed=0, card={}, work_dir=tmp_path / "work")
    weights = load_file(next(out.glob("*.safetensors")))
    before = load_file(next(tiny_model.glob("*.safetensors")))
    assert not any("lora" in k for k in weights)
    assert any(not (weights[k] == before[k]).all() for k in before)  # every weight is trainable
    assert metrics["steps"] == 4 and read_json(out / MODEL_CARD)["method"] == "full"
    assert not (tmp_path / "work").exists()  # checkpoints are removed once the model is saved


def test_qlora_is_refused_without_bitsandbytes_before_any_work(monkeypatch):
    check_train_method("qlora")  # bitsandbytes 0.50 imports on this CPU
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # what `import` sees when it is absent
    with pytest.raises(SoftError, match="qlora needs the bitsandbytes package"):
        check_train_method("qlora")
    check_train_method("lora")
    with pytest.raises(SoftError, match="'train.method': 'adam'"):
        check_train_method("adam")


def test_qlora_trains_on_the_cpu_and_saves_a_merged_model(tmp_path, tiny_model):
    """4-bit NF4 base (bitsandbytes on the CPU), LoRA on top, merged into a reload of the
    init model in the compute dtype: a plain folder that reloads and differs from the init."""
    import math

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from soft.train.finetune import load_init_model, qlora_compute_dtype

    quantised = load_init_model(tiny_model, "qlora", "cpu")
    assert sum(type(m).__name__ == "Linear4bit" for m in quantised.modules()) == 14  # 7 per layer
    del quantised
    out = tmp_path / "out"
    metrics = train_model(records(), tiny_model, out, PRINCIPLES, {**TRAIN, "method": "qlora", "epochs": 1},
                          seed=0, card={}, work_dir=tmp_path / "work")
    assert metrics["steps"] == 4 and all(math.isfinite(x) for x in metrics["losses"])
    weights = load_file(next(out.glob("*.safetensors")))
    dtype = qlora_compute_dtype("cpu")
    assert not any("lora" in k for k in weights) and {t.dtype for t in weights.values()} == {dtype}
    before = load_file(next(tiny_model.glob("*.safetensors")))
    assert any(not torch.equal(weights[k], before[k].to(dtype)) for k in before if "proj" in k)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert not any("Linear4bit" in type(m).__name__ for m in model.modules())
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()
    assert read_json(out / MODEL_CARD)["method"] == "qlora"


def test_qlora_compute_dtype_follows_the_cpu():
    import torch

    from soft.train.finetune import qlora_compute_dtype

    for flags, dtype in (({"fpu", "avx512f", "avx512_bf16"}, torch.bfloat16), ({"fpu", "amx_bf16", "amx_tile"}, torch.bfloat16),
                         ({"fpu", "avx2", "avx512f"}, torch.float32)):
        assert qlora_compute_dtype("cpu", flags=frozenset(flags)) == dtype
    assert qlora_compute_dtype("cuda") in (torch.bfloat16, torch.float32)


def test_work_dir_keeps_checkpoints_of_the_same_job_only(tmp_path):
    work = tmp_path / "work"
    assert prepare_work_dir(work, {"seed": 0}) is None
    (work / "checkpoint-4").mkdir()
    (work / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (work / "checkpoint-6").mkdir()  # cut short by a kill: no trainer_state.json
    assert last_checkpoint(work) == work / "checkpoint-4"
    assert prepare_work_dir(work, {"seed": 0}) == work / "checkpoint-4"
    assert prepare_work_dir(work, {"seed": 1}) is None  # another job's checkpoints are dropped
    assert not (work / "checkpoint-4").exists()


def test_torchrun_command_one_process_per_gpu(tmp_path):
    cmd = torchrun_command(4, tmp_path / "spec.json", python="/py")
    assert cmd == ["/py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4",
                   "--max-restarts=0", "-m", "soft.train.worker", str(tmp_path / "spec.json")]
    with pytest.raises(SoftError):
        torchrun_command(1, "s.json")
    assert processes_for(0, env={}) == 1 and processes_for(1, env={}) == 1 and processes_for(8, env={}) == 8
    assert processes_for(8, env={"LOCAL_RANK": "0", "WORLD_SIZE": "8"}) == 1  # no recursive launch


def conda_like_python(root) -> str:
    """An interpreter like a `--sdm conda` env: torch and transformers importable (this
    venv's site-packages, added as a plain path), soft not installed (the editable
    install's .pth in that folder is not processed)."""
    import site
    import venv

    venv.EnvBuilder(with_pip=False).create(root)
    python = str(root / "bin" / "python")
    own = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    deps = next(p for p in site.getsitepackages() if (Path(p) / "torch").is_dir())
    (Path(own) / "job_deps.pth").write_text(deps + "\n")
    return python


def test_two_process_training_under_torchrun_from_a_conda_like_env(tmp_path, tiny_model):
    """The real multi-process path on CPU (gloo): two ranks train one model, rank 0 saves.
    Launched as a `--sdm conda` job launches it: soft on the job's sys.path only by the
    script preamble's append, which torchrun's child interpreters do not inherit."""
    python = conda_like_python(tmp_path / "env")
    no_soft = subprocess.run([python, "-c", "import torch, transformers; import soft"], capture_output=True,
                             text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert "No module named 'soft'" in no_soft.stderr, no_soft.stderr[-2000:]

    data = tmp_path / "round1.jsonl"
    write_jsonl(data, records())
    spec = {"data": [str(data)], "scores": [], "init": str(tiny_model), "out": str(tmp_path / "out"),
            "principles": str(REPO / "config/principles.yaml"), "settings": {**TRAIN, "epochs": 1},
            "curriculum": {"order": "none"}, "seed": 0, "round": 1, "work_dir": str(tmp_path / "work")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    job = ("import sys; sys.path.append(sys.argv[1])\n"  # what Snakemake's preamble does
           "from soft.train.launch import launch; launch(2, sys.argv[2], sys.argv[3])")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    proc = subprocess.run([python, "-c", job, str(REPO / "src"), str(tmp_path / "spec.json"), str(tmp_path / "log")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    log = (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""
    assert proc.returncode == 0, (proc.stderr + log)[-4000:]
    card = read_json(tmp_path / "out" / MODEL_CARD)
    assert card["world_size"] == 2
    # 8 examples, batch 2 per rank, 2 ranks: 2 optimiser steps per epoch
    assert card["train_metrics"]["steps"] == 2


def test_prompt_and_answer_length_limits(tiny_model):
    from transformers import AutoTokenizer

    from soft.train.finetune import build_dataset, clip_tokens

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    long = ("please tell me about the weather and the sea " * 20).strip()
    assert clip_tokens(tok, long, None, "end") == long
    end = clip_tokens(tok, long, 10, "end")
    start = clip_tokens(tok, long, 10, "start")
    assert len(tok(end, add_special_tokens=False).input_ids) <= 10 and long.endswith(end.strip())
    assert long.startswith(start.strip())
    rec = {**records()[0], "prompt": long, "response": long}
    row = build_dataset([rec], PRINCIPLES, tok, {**TRAIN, "max_prompt_length": 10, "max_answer_length": 5})[0]
    assert row["prompt"][1]["content"] == end and row["completion"][0]["content"] == start[:len(row["completion"][0]["content"])]
    assert len(tok(row["completion"][0]["content"], add_special_tokens=False).input_ids) <= 5
