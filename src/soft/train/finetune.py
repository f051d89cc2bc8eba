"""Principle engraving: supervised fine-tuning on (distilled prompt, answer) pairs.

TRL's SFTTrainer gets prompt-completion data in the model's layout (soft.layouts): in
conversational form for the `chat` layout (TRL applies the chat template), as plain
prompt/completion strings for the `plain` layout (the completion ends with eos, so the
model learns to stop); the loss is on the completion tokens only. `train.method` picks LoRA
(adapters merged into the saved model), full fine-tuning, or QLoRA (4-bit NF4 base with
bitsandbytes, on a GPU or on the CPU). The result is a plain model folder that the next
round, lm-eval and vLLM load, saved in the dtype the model trained in.

Curriculum runs (SOFT+) train in exactly the order of the records given: the Trainer's
random sampler is replaced by a sequential one. Resumable checkpoints live in a work
folder outside the model folder, and the model folder appears only when complete.

One job with k > 1 GPUs trains with k processes: the script writes a job spec and
relaunches itself under torchrun (soft.train.launch), each rank running `run_training`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

from soft.errors import SoftError
from soft.io import atomic_path, sha256_file, write_json
from soft.layouts import Layout
from soft.precision import decide
from soft.principles import Principles, training_messages
from soft.settings import Lora, Train

log = logging.getLogger(__name__)

MODEL_CARD = "soft_model_card.json"
JOB_FINGERPRINT = "soft_job.json"
METHODS = ("lora", "full", "qlora")


def train_settings(settings: Train | dict) -> Train:
    """The train section typed: as the job gives it (the resolved mapping, Snakemake's
    param) or, in tests and the bench, a mapping over the schema's defaults."""
    from soft.config import section_settings

    return section_settings(Train, "train", settings)


def clip_tokens(tokenizer, text: str, limit: int | None, keep: str) -> str:
    """`text` cut to at most `limit` tokens, keeping its start (`keep="start"`, answers) or
    its end (`keep="end"`, prompts: the question is usually last). None = no limit."""
    if limit is None:
        return text
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) <= limit:
        return text
    return tokenizer.decode(ids[:limit] if keep == "start" else ids[-limit:])


def training_row(principles: Principles, prompt: str, response: str, layout: Layout | None = None,
                 tokenizer=None) -> dict:
    """One prompt-completion example in `layout`: messages for `chat` (TRL renders them
    with the chat template, the same text Layout.prompt_text gives), strings for `plain`."""
    if layout is None or layout.kind == "chat":
        return training_messages(principles, prompt, response)
    return {"prompt": layout.prompt_text(tokenizer, principles.system_prompt, prompt),
            "completion": response + layout.answer_suffix(tokenizer)}


def build_dataset(records: list[dict], principles: Principles, tokenizer=None, train_cfg: Train | dict | None = None,
                  layout: Layout | None = None):
    from datasets import Dataset

    max_prompt = max_answer = None
    if train_cfg is not None:
        cfg = train_settings(train_cfg)
        max_prompt, max_answer = cfg.max_prompt_length, cfg.max_answer_length
    rows = []
    for r in records:
        prompt, response = r["prompt"], r["response"]
        if tokenizer is not None:
            prompt = clip_tokens(tokenizer, prompt, max_prompt, keep="end")
            response = clip_tokens(tokenizer, response, max_answer, keep="start")
        rows.append(training_row(principles, prompt, response, layout, tokenizer))
    return Dataset.from_list(rows)


def lora_config(cfg: Lora):
    from peft import LoraConfig

    modules = cfg.target_modules if isinstance(cfg.target_modules, str) else list(cfg.target_modules)
    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=modules,
                      task_type="CAUSAL_LM")


def check_train_method(method: str) -> None:
    """Refuse a method this job cannot run, before any model is loaded. QLoRA needs
    bitsandbytes (0.50 runs 4-bit layers on the CPU as well as on CUDA)."""
    if method not in METHODS:
        raise SoftError(f"config key 'train.method': '{method}' is not one of {', '.join(METHODS)}")
    if method == "qlora":
        check_bitsandbytes("config key 'train.method'")


def check_bitsandbytes(key: str) -> None:
    """Raise SoftError naming `key` unless bitsandbytes imports here. An import, not a
    find_spec: an install built for another platform fails only when imported."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # ImportError, or a RuntimeError/OSError from its native library
        raise SoftError(f"{key}: qlora needs the bitsandbytes package, which does not import in this "
                        f"environment ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        f"pip install bitsandbytes==0.50.2, or use method lora or full") from None


def qlora_compute_dtype(device: str, flags=None):
    """The dtype the 4-bit layers compute in, and the merged model is saved in: bf16 where
    the hardware has it (soft.precision's `auto`: a bf16 GPU, or a CPU reporting amx_bf16 or
    avx512_bf16), else fp32."""
    return decide("auto", device, flags=flags, key="train.precision (qlora compute dtype)").torch_dtype


def warmup_steps(train_cfg: Train, n_examples: int, world_size: int = 1) -> int:
    """Warm-up steps, rounded down: a small round must not spend its only step at lr 0."""
    per_step = train_cfg.batch_size * train_cfg.grad_accum * world_size
    per_epoch = math.ceil(n_examples / per_step)
    return int(train_cfg.warmup_ratio * math.ceil(per_epoch * train_cfg.epochs))


def sft_config(train_cfg: Train, work_dir: Path, seed: int, device: str, n_examples: int,
               ordered: bool = False, world_size: int = 1, bf16: bool = False):
    """TRL's settings for one round. `bf16`: train under bf16 autocast (train.precision),
    on the CPU too; the weights and the optimiser stay fp32."""
    from trl import SFTConfig

    save_steps = train_cfg.save_steps
    return SFTConfig(
        output_dir=str(work_dir),
        num_train_epochs=train_cfg.epochs,
        per_device_train_batch_size=train_cfg.batch_size,
        gradient_accumulation_steps=train_cfg.grad_accum,
        learning_rate=train_cfg.learning_rate,
        lr_scheduler_type=train_cfg.lr_scheduler,
        warmup_steps=warmup_steps(train_cfg, n_examples, world_size),
        max_length=train_cfg.max_length,
        completion_only_loss=True,
        # A curriculum is an order: the default random sampler would undo it.
        train_sampling_strategy="sequential" if ordered else "random",
        logging_steps=1,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        save_total_limit=1,
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=device == "cpu",
        bf16=bf16,
        dataloader_num_workers=0,
        # about a third more compute for less than half the memory (config key)
        activation_checkpointing=train_cfg.gradient_checkpointing,
        disable_tqdm=True,
        ddp_find_unused_parameters=False if world_size > 1 else None,
    )


def last_checkpoint(work_dir: str | Path) -> Path | None:
    """The newest complete Trainer checkpoint (trainer_state.json is written last, so a
    checkpoint cut short by a kill is skipped)."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return None
    found = []
    for d in work_dir.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", d.name)
        if m and d.is_dir() and (d / "trainer_state.json").is_file():
            found.append((int(m.group(1)), d))
    return max(found)[1] if found else None


def prepare_work_dir(work_dir: str | Path, fingerprint: dict) -> Path | None:
    """Make the work folder; keep its checkpoints only if they came from the same job
    (same init, data, settings, seed and order). Returns the checkpoint to resume from."""
    work_dir = Path(work_dir)
    marker = work_dir / JOB_FINGERPRINT
    if work_dir.exists():
        try:
            same = json.loads(marker.read_text(encoding="utf-8")) == fingerprint
        except (OSError, ValueError):
            same = False
        if not same:
            log.info("%s holds checkpoints of a different job: starting afresh", work_dir)
            shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    write_json(marker, fingerprint)
    return last_checkpoint(work_dir)


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def load_init_model(init_dir: str | Path, method: str, device: str):
    from soft.models import load_causal_lm

    if method != "qlora":
        return load_causal_lm(init_dir, device=device)
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_compute_dtype=qlora_compute_dtype(device),
                               bnb_4bit_use_double_quant=True)
    model = load_causal_lm(init_dir, device=device, quantization_config=quant)
    return prepare_model_for_kbit_training(model)


def merged_model(trainer, method: str, init_dir: str | Path, work_dir: Path, device: str):
    """The model to save, in the dtype it trained in: merged LoRA, the fully trained
    model, or (QLoRA) the adapter merged into a reload of the init model in the 4-bit
    layers' compute dtype (merging into 4-bit weights loses precision; an fp32 reload
    would double a 7B round model to 27 GB)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if method == "lora":
        return model.merge_and_unload()
    if method == "full":
        return model
    from peft import PeftModel

    from soft.models import load_causal_lm

    adapter = work_dir / "adapter"
    model.save_pretrained(adapter)
    base = load_causal_lm(init_dir, device="cpu", dtype=qlora_compute_dtype(device))
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


# Metrics about this job's history (was it resumed, how many optimiser steps did it run
# itself), logged but kept off the model card: the card is the same, killed or not.
JOB_HISTORY = ("resumed_from_step", "steps_run")


def step_counter():
    """A Trainer callback counting the optimiser steps this process runs: after a resume,
    fewer than the run's total. The proof that a resume skipped the steps already done
    (a restart from scratch ends with the same weights and the same global step)."""
    from transformers import TrainerCallback

    class StepCounter(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    return StepCounter()


def train_model(records: list[dict], init_dir: str | Path, out_dir: str | Path, principles: Principles,
                train_cfg: dict, seed: int, card: dict, work_dir: str | Path,
                ordered: bool = False, callbacks: list | None = None, layout: dict | None = None) -> dict | None:
    """Fine-tune from `init_dir` on `records` (in this order when `ordered`), write the
    model to `out_dir` atomically. Returns the training metrics on rank 0, None elsewhere.
    `callbacks`: extra Trainer callbacks (the performance bench, performance/training.py,
    times the optimisation loop with one).
    `layout`: soft.layouts.layout_settings of the config (None = auto); the resolved
    layout goes into the model card."""
    from transformers import set_seed
    from trl import SFTTrainer

    from soft.models import load_tokenizer, pick_device

    if not records:
        raise SoftError("no training records")
    train_cfg = train_settings(train_cfg)
    method = train_cfg.method
    check_train_method(method)
    rank, world_size = _world()
    tokenizer = load_tokenizer(init_dir, padding_side="right")
    lay = Layout.from_settings(tokenizer, layout, where=str(init_dir))
    card = {**card, "layout": lay.describe(), "method": method, "ordered": ordered, "world_size": world_size,
            "train_order": [r["id"] for r in records] if ordered else None}
    fingerprint = {k: card[k] for k in ("init", "data", "seed", "train", "train_order", "layout") if k in card}
    set_seed(seed)
    device = pick_device()
    precision = decide(train_cfg.precision, device, key="train.precision")
    card["precision"] = precision.describe()
    work_dir = Path(work_dir)
    resume = prepare_work_dir(work_dir, fingerprint) if rank == 0 else None
    if world_size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
        box = [str(resume) if resume else None]
        dist.broadcast_object_list(box, src=0)  # every rank resumes from the same step
        resume = Path(box[0]) if box[0] else None
    model = load_init_model(init_dir, method, device)
    counter = step_counter()
    trainer = SFTTrainer(
        model=model,
        args=sft_config(train_cfg, work_dir, seed, device, len(records), ordered, world_size,
                        bf16=precision.used == "bf16" and method != "qlora"),
        train_dataset=build_dataset(records, principles, tokenizer, train_cfg, lay),
        processing_class=tokenizer,
        peft_config=lora_config(train_cfg.lora) if method in ("lora", "qlora") else None,
        callbacks=[*(callbacks or []), counter],
    )
    if device == "cpu":
        from soft.train.cpu_dropout import use_cpu_dropout

        # torch's CPU dropout is slow enough to matter (soft.train.cpu_dropout); CUDA's is not.
        if n := use_cpu_dropout(trainer.model):
            log.info("LoRA dropout: %d adapters use soft.train.cpu_dropout (CPU)", n)
    if resume:
        log.info("resuming from %s", resume)
    log.info("training (%s, %s order, %d process(es)) on %d examples from %s", method,
             "fixed" if ordered else "shuffled", world_size, len(records), card.get("init"))
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if not trainer.is_world_process_zero():
        return None
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    log.info("done: %d steps (%d run by this job), loss %.4f -> %.4f", result.global_step, counter.steps,
             losses[0], losses[-1])
    model = merged_model(trainer, method, init_dir, work_dir, device)
    metrics = {"steps": result.global_step, "loss_first": losses[0], "loss_last": losses[-1],
               "losses": losses, "resumed_from_step": int(resume.name.split("-")[1]) if resume else None,
               "steps_run": counter.steps}
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.padding_side = "left"
        tokenizer.save_pretrained(tmp)
        # The resume point is a fact about this job's history, not about the model: it
        # goes to the log, so the card stays the same whether or not the job was killed.
        write_json(Path(tmp) / MODEL_CARD, {**card, "train_metrics": {k: v for k, v in metrics.items()
                                                                      if k not in JOB_HISTORY}})
    shutil.rmtree(work_dir, ignore_errors=True)  # checkpoints are only for resuming
    return metrics


def training_record(model_dir: str | Path) -> dict:
    """What the tables report of a round's training, read from its model card: the
    optimiser steps and losses. Kept apart from the model folder, which
    storage.keep_round_models: reported may remove once the chain has finished."""
    card_path = Path(model_dir) / MODEL_CARD
    if not card_path.is_file():
        raise SoftError(f"{card_path}: file not found (the round's model card)")
    metrics = json.loads(card_path.read_text()).get("train_metrics") or {}
    steps = metrics.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise SoftError(f"{card_path}: no train_metrics.steps (optimiser steps) recorded")
    return {"train_metrics": metrics}


def data_files_card(paths: list[str | Path]) -> list[dict]:
    """Data provenance for the model card: file names relative to the run, with sha256."""
    return [{"path": os.fspath(p), "sha256": sha256_file(p)} for p in paths]


def run_training(spec: dict) -> dict | None:
    """One round's training from a job spec (paths and settings only, JSON-serialisable,
    so torchrun workers get it from a file): read the data, apply the curriculum order,
    train, save. Keys: data, scores, init, out, principles, settings, curriculum, seed,
    round, work_dir, layout (optional: soft.layouts.layout_settings)."""
    from soft.curriculum.difficulty import is_ordered, read_scores, training_order
    from soft.principles import load_principles
    from soft.records import read_training_data

    groups = [read_training_data(path) for path in spec["data"]]
    curriculum = spec["curriculum"]
    ordered = is_ordered(curriculum)
    if ordered:
        nll: dict[str, float] = {}
        for path in spec["scores"]:
            nll.update(read_scores(path))
        records = training_order(groups, nll, curriculum["order"])
    else:
        records = [r for g in groups for r in g]
    settings = spec["settings"]
    card = {
        "round": spec["round"],
        "init": os.fspath(spec["init"]),
        "init_mode": settings["init"],
        "data": data_files_card(spec["data"]),
        "seed": spec["seed"],
        "train": settings,
        "curriculum": curriculum,
    }
    return train_model(records, spec["init"], spec["out"], load_principles(spec["principles"]),
                       settings, spec["seed"], card, spec["work_dir"], ordered=ordered, layout=spec.get("layout"))
