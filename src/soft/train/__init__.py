"""Fine-tuning a round's model (rules/train.smk): the trainer, its torchrun launch and
worker, and the CPU LoRA dropout."""
