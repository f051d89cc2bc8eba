"""LoRA training: the optimisation loop alone (a Trainer callback) and the whole
train_model() job."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from performance import REPO
from performance.matmul import n_params_on_disk


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
    from soft.train.finetune import train_model

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
