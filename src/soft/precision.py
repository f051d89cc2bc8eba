"""Numeric precision per stage (generation, training, scoring), decided in the job.

Machines of one kind differ: on CPUs with bf16 units (AMX, or AVX-512 BF16) bf16 matmul runs
several times faster than fp32; on CPUs without them torch falls back to a path measured
400x slower. So `auto` is decided where the job runs, from what the hardware reports, never
assumed; the decision and its reason go into the job's log and its outputs' model card.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from soft.errors import SoftError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
# CPU flags (Linux /proc/cpuinfo names) that mean a native bf16 matmul path.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The first processor's flags; empty where /proc/cpuinfo does not exist."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_bf16_flags(flags: frozenset[str] | set[str]) -> list[str]:
    return [f for f in CPU_BF16_FLAGS if f in flags]


@dataclass(frozen=True)
class Precision:
    requested: str
    used: str  # "fp32" | "bf16"
    device: str
    reason: str

    @property
    def torch_dtype(self):
        import torch

        return torch.bfloat16 if self.used == "bf16" else torch.float32

    @property
    def dtype_name(self) -> str:
        return "bfloat16" if self.used == "bf16" else "float32"

    def describe(self) -> dict:
        return {"requested": self.requested, "used": self.used, "device": self.device, "reason": self.reason}


def decide(requested: str, device: str, flags: frozenset[str] | set[str] | None = None,
           cuda_bf16: bool | None = None, key: str = "precision") -> Precision:
    """`requested` (auto | fp32 | bf16, config key `key`) on `device` (cpu | cuda) -> the
    precision used. Logged, so every job's log says what it ran in and why."""
    if requested not in PRECISIONS:
        raise SoftError(f"config key '{key}': '{requested}' is not one of {', '.join(PRECISIONS)}")
    p = _decide(requested, device, flags, cuda_bf16, key)
    log.info("%s: %s -> %s on %s (%s)", key, p.requested, p.used, p.device, p.reason)
    return p


def _decide(requested: str, device: str, flags, cuda_bf16, key: str) -> Precision:
    if device.startswith("cuda"):
        if cuda_bf16 is None:
            import torch

            cuda_bf16 = bool(torch.cuda.is_bf16_supported())
        if requested == "fp32":
            return Precision(requested, "fp32", "cuda", "fp32 asked for")
        if cuda_bf16:
            return Precision(requested, "bf16", "cuda", "the GPU supports bf16")
        if requested == "bf16":
            raise SoftError(f"config key '{key}': bf16 asked for, but this GPU does not support it")
        return Precision(requested, "fp32", "cuda", "the GPU has no bf16")
    flags = cpu_flags() if flags is None else flags
    found = cpu_bf16_flags(flags)
    if requested == "fp32":
        return Precision(requested, "fp32", "cpu", "fp32 asked for")
    if requested == "bf16":
        if not found:
            log.warning("%s: bf16 asked for on a CPU that reports none of %s; bf16 matmul "
                        "there has been measured hundreds of times slower than fp32", key,
                        ", ".join(CPU_BF16_FLAGS))
        return Precision(requested, "bf16", "cpu", "bf16 asked for" + ("" if found else " (no bf16 units)"))
    if found:
        return Precision(requested, "bf16", "cpu", f"the CPU reports {', '.join(found)}")
    return Precision(requested, "fp32", "cpu", f"the CPU reports none of {', '.join(CPU_BF16_FLAGS)}")
