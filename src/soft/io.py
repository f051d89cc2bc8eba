"""Atomic file output and validated JSONL input.

Every output is first written under a temporary name in the same folder and renamed
into place when complete, so a killed job never leaves a file that a later rule trusts.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from soft.errors import SoftError


# Fault injection for the kill tests: hold every finished temporary this many seconds before
# its rename, so a test can SIGKILL a job while its output exists only as a temporary (the
# moment a kill could leave a half-written file). Unset in normal runs.
HOLD_ENV = "SOFT_TEST_HOLD_BEFORE_RENAME_S"


def _hold_before_rename() -> None:
    hold = os.environ.get(HOLD_ENV)
    if hold:
        import time

        time.sleep(float(hold))


# The declared outputs of the running job, while commit_outputs_together holds their
# renames: resolved path -> (temporary, is_dir).
_held: dict[Path, tuple[Path, bool]] | None = None
_held_targets: frozenset[Path] = frozenset()


def _remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def _rename_into_place(tmp: Path, path: Path, is_dir: bool) -> None:
    if is_dir and path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


@contextlib.contextmanager
def commit_outputs_together(outputs: Iterable[str | os.PathLike]) -> Iterator[None]:
    """Inside the block, atomic_path writes of these paths (a job's declared outputs) are
    held as temporaries and renamed into place together when the block succeeds; other
    writes (a training checkpoint, a file inside an output folder) go in at once. A job
    killed before its end leaves none of its outputs, so Snakemake never meets an output
    of a killed job that exists but is marked incomplete (which it refuses without
    --rerun-incomplete). A failed block removes the held temporaries."""
    global _held, _held_targets
    if _held is not None:
        raise RuntimeError("commit_outputs_together is already active")
    _held, _held_targets = {}, frozenset(Path(p).resolve() for p in outputs)
    try:
        yield
        held = list(_held.items())
        if held:
            _hold_before_rename()
        for path, (tmp, is_dir) in held:
            _rename_into_place(tmp, path, is_dir)
    except BaseException:
        for tmp, _ in _held.values():
            _remove(tmp)
        raise
    finally:
        _held, _held_targets = None, frozenset()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` when the block succeeds
    (or, for a job output under commit_outputs_together, when the job's block does)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A job killed with SIGKILL cannot clean up: its rerun removes the stale temporaries
    # of the same output (Snakemake runs one job per output at a time).
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        _remove(stale)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp create private (0600/0700) paths; outputs get the usual umask modes.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, (0o777 if is_dir else 0o666) & ~umask)
    try:
        yield tmp
        if _held is not None and path.resolve() in _held_targets:
            _held[path.resolve()] = (tmp, is_dir)  # a second write of it replaced the first's temporary
            return
        _hold_before_rename()
        _rename_into_place(tmp, path, is_dir)
    except BaseException:
        _remove(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def dumps_json(obj: Any) -> str:
    """Stable JSON: sorted keys, so equal content gives equal bytes."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, dumps_json(obj))


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    lines = [json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records]
    write_text(path, "".join(lines))


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    text = _read_utf8(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SoftError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None


def _read_utf8(path: Path) -> str:
    if not path.is_file():
        raise SoftError(f"{path}: file not found")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise SoftError(f"{path}: line {line}: not valid UTF-8") from None


# A record field spec: name -> (type or tuple of types, required)
FieldSpec = dict[str, tuple[type | tuple[type, ...], bool]]

MAX_LINE_CHARS = 1_000_000


def read_jsonl(
    path: str | os.PathLike,
    fields: FieldSpec,
    *,
    allow_empty: bool = False,
    non_empty: Iterable[str] = (),
    check: Callable[[dict], str | None] | None = None,
) -> list[dict]:
    """Read and validate a JSONL file: one object per line, typed fields, unique `id`.

    Errors name the file, the line and the field. Blank lines are skipped.
    """
    path = Path(path)
    text = _read_utf8(path)
    non_empty = set(non_empty)
    records: list[dict] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        if len(line) > MAX_LINE_CHARS:
            raise SoftError(f"{where}: line is {len(line)} characters long (limit {MAX_LINE_CHARS})")
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SoftError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise SoftError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        for name, (types, required) in fields.items():
            if name not in rec:
                if required:
                    raise SoftError(f"{where}: missing field '{name}'")
                continue
            value = rec[name]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
                want = " or ".join(t.__name__ for t in _as_tuple(types))
                raise SoftError(f"{where}: field '{name}' must be {want}, got {type(value).__name__}")
            if name in non_empty and isinstance(value, str) and not value.strip():
                raise SoftError(f"{where}: field '{name}' is empty")
        if "id" in rec:
            rid = rec["id"]
            if rid in seen:
                raise SoftError(f"{where}: duplicate id '{rid}' (first on line {seen[rid]})")
            seen[rid] = lineno
        if check is not None:
            problem = check(rec)
            if problem:
                raise SoftError(f"{where}: {problem}")
        records.append(rec)
    if not records and not allow_empty:
        raise SoftError(f"{path}: no records (the file is empty)")
    return records


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def yaml_problem(path: str | os.PathLike, error: Exception) -> str:
    """`file: line L, column C: not valid YAML (problem)` on one line. PyYAML's own text
    spans several lines and quotes the source around the mark; the line and column name
    the place."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{path}: {where}not valid YAML ({problem})"
