"""Principle engraving: LoRA supervised fine-tuning on (distilled prompt, answer) pairs.

TRL's SFTTrainer gets prompt-completion data in conversational form, applies the chat
template and computes the loss on the completion tokens only. The LoRA adapter is merged
and the result saved as a plain model folder that the next round, lm-eval and vLLM load.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from soft.errors import SoftError
from soft.io import atomic_path, sha256_file, write_json
from soft.principles import Principles, training_messages

log = logging.getLogger(__name__)

MODEL_CARD = "soft_model_card.json"


def build_dataset(records: list[dict], principles: Principles):
    from datasets import Dataset

    rows = [training_messages(principles, r["prompt"], r["response"]) for r in records]
    return Dataset.from_list(rows)


def lora_config(cfg: dict):
    from peft import LoraConfig

    return LoraConfig(r=cfg["r"], lora_alpha=cfg["alpha"], lora_dropout=cfg["dropout"],
                      target_modules=cfg["target_modules"], task_type="CAUSAL_LM")


def warmup_steps(train_cfg: dict, n_examples: int) -> int:
    """Warm-up steps, rounded down: a small round must not spend its only step at lr 0."""
    per_epoch = math.ceil(n_examples / (train_cfg["batch_size"] * train_cfg["grad_accum"]))
    return int(train_cfg["warmup_ratio"] * math.ceil(per_epoch * train_cfg["epochs"]))


def sft_config(train_cfg: dict, work_dir: Path, seed: int, device: str, n_examples: int):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(work_dir),
        num_train_epochs=train_cfg["epochs"],
        per_device_train_batch_size=train_cfg["batch_size"],
        gradient_accumulation_steps=train_cfg["grad_accum"],
        learning_rate=train_cfg["learning_rate"],
        lr_scheduler_type=train_cfg["lr_scheduler"],
        warmup_steps=warmup_steps(train_cfg, n_examples),
        max_length=train_cfg["max_length"],
        completion_only_loss=True,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=device == "cpu",
        bf16=device == "cuda",
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def train_model(records: list[dict], init_dir: str | Path, out_dir: str | Path, principles: Principles,
                train_cfg: dict, seed: int, card: dict, work_dir: str | Path) -> dict:
    """Fine-tune from `init_dir` on `records`, write the merged model to `out_dir` atomically.

    Returns the training metrics (loss per logged step)."""
    from transformers import set_seed
    from trl import SFTTrainer

    from soft.models import load_causal_lm, load_tokenizer, pick_device

    if not records:
        raise SoftError("no training records")
    if train_cfg["method"] != "lora":
        raise SoftError(f"config key 'train.method': '{train_cfg['method']}' is not supported")
    set_seed(seed)
    device = pick_device()
    tokenizer = load_tokenizer(init_dir, padding_side="right")
    model = load_causal_lm(init_dir, device=device)
    dataset = build_dataset(records, principles)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(train_cfg, work_dir, seed, device, len(records)),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(train_cfg["lora"]),
    )
    log.info("training on %d examples from %s", len(records), card.get("init"))
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    log.info("done: %d steps, loss %.4f -> %.4f", result.global_step, losses[0], losses[-1])
    merged = trainer.model.merge_and_unload()
    with atomic_path(out_dir, is_dir=True) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.padding_side = "left"
        tokenizer.save_pretrained(tmp)
        metrics = {"steps": result.global_step, "loss_first": losses[0], "loss_last": losses[-1],
                   "losses": losses}
        write_json(Path(tmp) / MODEL_CARD, {**card, "train_metrics": metrics})
    return metrics


def data_files_card(paths: list[str | Path]) -> list[dict]:
    """Data provenance for the model card: file names relative to the run, with sha256."""
    return [{"path": os.fspath(p), "sha256": sha256_file(p)} for p in paths]
