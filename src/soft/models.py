"""Loading model folders: the one place that decides device, dtype and safety flags."""

from __future__ import annotations

import logging
from pathlib import Path

from soft.errors import SoftError

log = logging.getLogger(__name__)


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str):
    """fp32 on CPU (bf16 matmul is ~400x slower there), bf16 on GPUs that support it."""
    import torch

    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


# /proc/cpuinfo flags of CPUs with native bf16 arithmetic (AVX512-BF16, AMX).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True when this CPU computes bf16 natively. Without it bf16 matmuls are emulated and
    ~400x slower than fp32 (DESIGN.md section 4), so fp32 is the choice there. Reads the
    kernel's CPU flags; where there are none (not Linux), asks oneDNN."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        import torch

        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[-1].split()}
    return any(flag in flags for flag in CPU_BF16_FLAGS)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def check_model_dir(path: str | Path, need_tokenizer: bool = False) -> Path:
    """Check a model folder before anything loads it: config, safetensors, tokenizer."""
    path = Path(path)
    if not path.is_dir():
        raise SoftError(f"{path}: model folder not found")
    if not (path / "config.json").is_file():
        raise SoftError(f"{path}: no config.json (not a transformers model folder)")
    if not any(path.glob("*.safetensors")):
        raise SoftError(f"{path}: no *.safetensors weights (only safetensors are loaded)")
    if need_tokenizer and not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise SoftError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    return path


def load_tokenizer(path: str | Path, padding_side: str = "left"):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str | Path, device: str | None = None, quantization_config=None, dtype=None):
    """A model folder on `device` (default: CUDA if seen, else CPU), in `dtype` (default:
    pick_dtype). With a quantization_config (QLoRA) the weights are placed by
    bitsandbytes on that device (GPU 0 or the CPU), not moved."""
    from transformers import AutoModelForCausalLM

    path = check_model_dir(path)
    device = device or pick_device()
    extra = {}
    if quantization_config:
        extra = {"quantization_config": quantization_config, "device_map": {"": 0 if device == "cuda" else "cpu"}}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype or pick_dtype(device), use_safetensors=True, trust_remote_code=False, **extra
        )
    except (OSError, ValueError, RuntimeError) as e:
        raise SoftError(f"{path}: cannot load the model ({str(e).splitlines()[0]})") from None
    return model if quantization_config else model.to(device)
