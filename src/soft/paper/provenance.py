"""Provenance records: what code, packages, model and benchmarks produced a result.

A record holds no timestamps and no absolute paths (folders are named by their last
component), and is dumped with sorted keys, so two runs of the same inputs on
different machines or in different checkouts write the same bytes.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

from soft.config import config_hash
from soft.errors import SoftError
from soft.io import read_json, sha256_file, write_json

# Distributions whose versions change results. Names are distribution names; a tuple
# lists alternative spellings (lm-eval publishes as "lm_eval", older wheels "lm-eval").
DEFAULT_PACKAGES: tuple[str | tuple[str, ...], ...] = (
    "snakemake", "torch", "transformers", "peft", ("lm_eval", "lm-eval"), "pandas",
    "matplotlib", "vllm", "accelerate", "safetensors", "numpy",
)
# Files that define a model: weights, config, tokenizer, chat template.
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".model", ".jinja", ".txt")
GIT_TIMEOUT_S = 10


def _git(repo_dir: Path, *args: str) -> str | None:
    """stdout of a git command, or None when git is missing, fails or hangs."""
    try:
        # --no-optional-locks: `git status` would otherwise refresh the index, taking
        # index.lock and racing any git command the user runs meanwhile.
        proc = subprocess.run(["git", "--no-optional-locks", "-C", str(repo_dir), *args],
                              capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(repo_dir: str | os.PathLike) -> dict:
    """{"commit": 40-hex HEAD or None, "dirty": tracked files modified, or None}.

    None values mean git is missing or `repo_dir` is not a repository (or has no
    commit yet); provenance must never stop a run, so this does not raise.
    """
    repo_dir = Path(repo_dir)
    head = _git(repo_dir, "rev-parse", "--verify", "--quiet", "HEAD")
    commit = head.strip() if head and len(head.strip()) == 40 else None
    # Untracked files are ignored: results/ and resources/ would always count otherwise.
    status = _git(repo_dir, "status", "--porcelain", "--untracked-files=no")
    dirty = None if status is None else bool(status.strip())
    return {"commit": commit, "dirty": dirty}


def _version(names: str | tuple[str, ...]) -> str | None:
    # importlib.metadata only reads the installed metadata: vllm is never imported.
    for name in (names,) if isinstance(names, str) else names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def package_versions(names: tuple[str | tuple[str, ...], ...] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    """Distribution name (first spelling) -> installed version, None if not installed."""
    return {(n if isinstance(n, str) else n[0]): _version(n) for n in names}


def _folder_name(path: Path) -> str:
    # resolve() so that "." or "models/x/" still give the folder's own name.
    return path.resolve().name


def model_fingerprint(model_dir: str | os.PathLike) -> dict:
    """Name, source.json content and per-file sha256 of a model folder (top level only)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise SoftError(f"{model_dir}: model folder not found")
    files = {
        p.name: sha256_file(p)
        for p in sorted(model_dir.iterdir(), key=lambda p: p.name)
        if p.is_file() and p.name.endswith(MODEL_FILE_SUFFIXES)
    }
    source_path = model_dir / "source.json"
    # A hub or hand-made folder may have no source.json: its file hashes still pin it.
    source = read_json(source_path) if source_path.is_file() else None
    return {"name": _folder_name(model_dir), "source": source, "files": files,
            "sha256": _combined_sha256(files)}


def _combined_sha256(files: dict[str, str]) -> str:
    lines = "".join(f"{name} {digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def benchmark_fingerprint(benchmark_dir: str | os.PathLike) -> dict:
    """The sdist record of `manifest.json` and, per task, its record count and file sha256."""
    benchmark_dir = Path(benchmark_dir)
    if not benchmark_dir.is_dir():
        raise SoftError(f"{benchmark_dir}: benchmark folder not found")
    manifest_path = benchmark_dir / "manifest.json"
    manifest = read_json(manifest_path)
    for key in ("sdist", "tasks"):
        if not isinstance(manifest, dict) or not isinstance(manifest.get(key), dict):
            raise SoftError(f"{manifest_path}: missing key '{key}' (an object)")
    tasks = {}
    for name, task in sorted(manifest["tasks"].items()):
        file = task.get("file") if isinstance(task, dict) else None
        # The manifest names files inside its own folder; anything else is not ours to hash.
        if not isinstance(file, str) or PurePosixPath(file).is_absolute() or ".." in PurePosixPath(file).parts:
            raise SoftError(f"{manifest_path}: task '{name}': 'file' must be a name inside the folder")
        path = benchmark_dir / file
        if not path.is_file():
            raise SoftError(f"{path}: file not found (task '{name}' of {manifest_path})")
        tasks[name] = {"records": task.get("records"), "sha256": sha256_file(path)}
    return {"sdist": copy.deepcopy(manifest["sdist"]), "tasks": tasks}


def _path_free(section: Any) -> Any:
    """A config section with every absolute path cut to its last component (a local model
    folder, a local benchmark sdist): the record names files, not where they lay."""
    if isinstance(section, dict):
        return {k: _path_free(v) for k, v in section.items()}
    if isinstance(section, list):
        return [_path_free(v) for v in section]
    if isinstance(section, str) and Path(section).is_absolute():
        return Path(section).name
    return copy.deepcopy(section)


def machine_precision() -> dict:
    """What `precision: auto` resolves to where provenance is written (the jobs decide on
    their own machines and record it in their model cards, logs and eval JSONs): the CPU's
    bf16 flags and the decision they give."""
    from soft.precision import cpu_bf16_flags, cpu_flags, decide
    from soft.models import pick_device

    device = pick_device()
    auto = decide("auto", device, key="precision")
    return {"device": device, "cpu_bf16_flags": cpu_bf16_flags(cpu_flags()), "auto": auto.used,
            "reason": auto.reason}


def provenance(config: dict, repo_dir: str | os.PathLike, base_model_dir: str | os.PathLike,
               benchmark_dir: str | os.PathLike, extra: dict | None = None) -> dict:
    """The full provenance record of a run; `extra` keys are added at the top level."""
    return {
        # config_hash is the first 16 hex digits of the sha256 of the sorted-keys JSON.
        "config_hash": config_hash(config),
        "git": git_state(repo_dir),
        "python": platform.python_version(),
        "packages": package_versions(),
        "base_model": {"config": _path_free(config["base_model"]),
                       **model_fingerprint(base_model_dir)},
        "benchmarks": {"config": _path_free(config["benchmarks"]),
                       **benchmark_fingerprint(benchmark_dir)},
        "precision": machine_precision(),
        **(extra or {}),
    }


def write_provenance(path: str | os.PathLike, record: dict) -> None:
    """Write `record` atomically as sorted-keys JSON."""
    write_json(path, record)
