"""A faster dropout for LoRA training on CPU.

torch's CPU dropout draws each mask element as a double-precision Bernoulli sample, which
profiled at 21% of the LoRA training loop here (SmolLM2-135M, all-linear LoRA: 210
adapters, each drawing a mask over its input, twice with activation checkpointing). This
module draws 15 random bits per element instead (torch's int16 random_() fills 0..32767)
and keeps an element when its draw is at least round(p * 32768): the same Bernoulli
dropout with p quantised to 1/32768 (0.05 becomes 0.04999), about 1.8x faster. Masks
come from torch's global generator, so a seeded run repeats them and activation
checkpointing's saved RNG state recomputes the same mask in the backward pass.
"""

from __future__ import annotations

import torch
from torch import nn

LEVELS = 32768  # int16 random_() draws from [0, 32767]


class CpuDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * LEVELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        keep = torch.empty(x.shape, dtype=torch.int16, device=x.device).random_() >= self.threshold
        return x.mul(keep).mul_(LEVELS / (LEVELS - self.threshold))

    def extra_repr(self) -> str:
        return f"p={self.threshold}/{LEVELS}"


def use_cpu_dropout(model: nn.Module) -> int:
    """Replace every LoRA adapter's nn.Dropout (peft's `lora_dropout` dicts) with
    CpuDropout of the same p. Returns how many were replaced."""
    replaced = 0
    for name, module in model.named_modules():
        if not name.endswith("lora_dropout") or not isinstance(module, nn.ModuleDict):
            continue
        for key, drop in list(module.items()):
            if isinstance(drop, nn.Dropout) and drop.p > 0:
                module[key] = CpuDropout(drop.p)
                replaced += 1
    return replaced
