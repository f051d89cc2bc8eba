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
