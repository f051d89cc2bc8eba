"""A prompt pool taken from a Hugging Face hub dataset file (config `prompts: {source: hub}`).

One job (fetch_prompt_pool) downloads one data file of a hub dataset repo with
huggingface_hub (or reads `local_file`, a copy fetched by hand), checks its sha256 when
the config gives one, takes one field of every row as a prompt and writes
results/prompt_pool/hub.jsonl ({id, prompt, optional category}) and a stats JSON.
Everything but the download is pure and works on local files; the download is a seam
(`download`) so that it can be replaced by a local path.

Rows with a passage (Dolly-15k's closed QA, information extraction and summarisation
instructions point at a `context` the model must see): `context_field` joins that
field's text into the prompt with `context_format` (default the passage first, then the
instruction, so that cutting a long prompt from the left keeps the instruction). Rows
of the categories in `drop_categories` are left out.

Ids are "<dataset name>-<row index>" (0-based, 6 digits): they depend only on the file,
so a pool fetched again at the same revision has the same ids and the same split.
"""

from __future__ import annotations

import json
import os
import re
import string
from pathlib import Path
from typing import Any, Callable

from soft.errors import SoftError
from soft.io import read_json, sha256_file, write_json, write_jsonl

# The settings that decide the pool's content; the stats record them, so a pool fetched
# with other settings is never counted as this config's.
POOL_SETTINGS = ("dataset", "file", "revision", "field", "category_field", "max_prompts",
                 "context_field", "context_format", "drop_categories")
CONTEXT_FORMAT = "{context}\n\n{prompt}"
_FORMAT_NAMES = {"prompt", "context"}
LOCAL_HINT = ("run this job where the hub is reachable, or convert the file yourself and "
              "set `prompts: path/to/file.jsonl` (one {\"id\", \"prompt\"} object a line)")
_TRUE = {"1", "ON", "YES", "TRUE"}


def describe(settings: dict) -> str:
    return f"{settings['file']} of hub dataset {settings['dataset']}@{settings.get('revision') or 'main'}"


def dedupe_key(text: str) -> str:
    """Exact duplicates up to case and whitespace."""
    return " ".join(text.split()).casefold()


def check_hub_settings(settings: dict) -> None:
    """What the schema cannot say about a hub source: the context format names exactly
    {prompt} and {context}, and dropping categories needs the category field."""
    fmt = settings.get("context_format") or CONTEXT_FORMAT
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None}
    except ValueError as e:
        raise SoftError(f"config key 'prompts.context_format': {fmt!r} is not a format string ({e})") from None
    if names != _FORMAT_NAMES:
        raise SoftError(f"config key 'prompts.context_format': {fmt!r} must name exactly {{prompt}} and "
                        f"{{context}} (it names {', '.join(sorted('{' + n + '}' for n in names)) or 'nothing'})")
    if settings.get("drop_categories") and not settings.get("category_field"):
        raise SoftError("config key 'prompts.drop_categories': needs prompts.category_field, the field "
                        "the categories are read from (dolly-15k's is category)")


def check_local_copy(settings: dict, pool_path: str | os.PathLike) -> None:
    """prompts.local_file, checked when the DAG is built as the fetch job would: it exists,
    has the configured sha256 and is a readable data file. Skipped once the pool exists."""
    if not settings.get("local_file") or Path(pool_path).is_file():
        return
    path = local_copy(settings)
    expected = settings.get("sha256")
    if expected and sha256_file(path) != expected.strip().lower():
        raise SoftError(f"config key 'prompts.local_file': {path}: sha256 mismatch (config key 'prompts.sha256')")
    read_rows(path)


def join_context(prompt: str, context: str, fmt: str | None = None) -> str:
    """The prompt with its passage joined in; a row without a passage keeps its prompt."""
    return (fmt or CONTEXT_FORMAT).format(prompt=prompt, context=context) if context else prompt


def convert_rows(rows: list[dict], field: str, category_field: str | None = None,
                 max_prompts: int | None = None, where: str = "the dataset file",
                 id_prefix: str = "hub", context_field: str | None = None,
                 context_format: str | None = None, drop_categories: list[str] | tuple = ()
                 ) -> tuple[list[dict], dict]:
    """(prompt records, counts) of the rows in file order: the text of `field`, stripped,
    with the text of `context_field` joined in by `context_format` when it is not empty;
    rows whose `category_field` is in `drop_categories` are skipped and counted, rows
    whose field is empty or not a string are skipped and counted, exact duplicates
    (case- and whitespace-insensitive, after the join) dropped and counted; with
    `max_prompts`, rows after the N-th kept prompt are not read. A row without a named
    field at all is an error (a misspelt field would otherwise skip every row)."""
    records: list[dict] = []
    seen: set[str] = set()
    dropped = set(drop_categories or ())
    counts = {"rows": len(rows), "kept": 0, "skipped_empty": 0, "duplicates": 0, "beyond_max_prompts": 0,
              "dropped_category": 0, "with_context": 0}
    for i, row in enumerate(rows):
        if max_prompts is not None and len(records) >= max_prompts:
            counts["beyond_max_prompts"] = len(rows) - i
            break
        if not isinstance(row, dict):
            raise SoftError(f"{where}: row {i} is a {type(row).__name__}, not an object with fields")
        _require(row, field, i, "field", where)
        category = None
        if category_field is not None:
            _require(row, category_field, i, "category_field", where)
            cat = row[category_field]
            category = cat.strip() if isinstance(cat, str) and cat.strip() else None
            if category in dropped:
                counts["dropped_category"] += 1
                continue
        value = row[field]
        if not isinstance(value, str) or not value.strip():
            counts["skipped_empty"] += 1
            continue
        text = value.strip()
        if context_field is not None:
            _require(row, context_field, i, "context_field", where)
            context = row[context_field]
            context = context.strip() if isinstance(context, str) else ""
            text = join_context(text, context, context_format)
            counts["with_context"] += bool(context)
        key = dedupe_key(text)
        if key in seen:
            counts["duplicates"] += 1
            continue
        seen.add(key)
        rec = {"id": f"{id_prefix}-{i:06d}", "prompt": text}
        if category is not None:
            rec["category"] = category
        records.append(rec)
    counts["kept"] = len(records)
    if not records:
        raise SoftError(f"{where}: no usable prompts in field {field!r} ({len(rows)} rows, "
                        f"{counts['skipped_empty']} of them empty or not text, "
                        f"{counts['dropped_category']} in drop_categories)")
    return records, counts


def _require(row: dict, name: str, i: int, key: str, where: str) -> None:
    if name not in row:
        fields = ", ".join(map(str, row)) or "none"
        raise SoftError(f"{where}: row {i} has no field {name!r} (config key 'prompts.{key}'); "
                        f"its fields: {fields}")


def hub_records(rows: list[dict], field: str, category_field: str | None = None,
                max_prompts: int | None = None, where: str = "the dataset file",
                id_prefix: str = "hub") -> list[dict]:
    """The prompt records of `rows` (see convert_rows)."""
    return convert_rows(rows, field, category_field, max_prompts, where, id_prefix)[0]


def read_rows(path: str | os.PathLike, where: str | None = None) -> list[dict]:
    """The rows of a .jsonl (one object a line), .json (a list of objects) or .parquet file."""
    path = Path(path)
    where = where or str(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".parquet"):
        raise SoftError(f"{where}: cannot read {suffix or 'a file without extension'} files "
                        f"(config key 'prompts.file' must end in .jsonl, .json or .parquet)")
    if not path.is_file():
        raise SoftError(f"{where}: file not found")
    if suffix == ".parquet":
        return _read_parquet(path, where)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise SoftError(f"{where}: not valid UTF-8") from None
    if suffix == ".jsonl":
        rows, labels = [], []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                rows.append(_loads(line, f"{where}: line {lineno}"))
                labels.append(f"line {lineno}")
    else:
        rows = _loads(text, where)
        if not isinstance(rows, list):
            raise SoftError(f"{where}: expected a list of objects, got {type(rows).__name__}")
        labels = [f"item {i}" for i in range(len(rows))]
    for label, row in zip(labels, rows):
        if not isinstance(row, dict):
            raise SoftError(f"{where}: {label}: expected a JSON object, got {type(row).__name__}")
    return rows


def _loads(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SoftError(f"{where}: not valid JSON (line {e.lineno}: {e.msg})") from None


def _read_parquet(path: Path, where: str) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SoftError(f"{where}: reading a .parquet file needs the pyarrow package "
                        f"(pip install pyarrow), or choose a .jsonl or .json file of the dataset") from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow's ArrowInvalid and friends
        raise SoftError(f"{where}: not a readable parquet file ({e})") from None


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (1/ON/YES/TRUE = offline)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def _unreachable(settings: dict, reason: str) -> SoftError:
    return SoftError(f"{describe(settings)}: cannot download it from the Hugging Face hub ({reason}); "
                     f"{LOCAL_HINT}")


def hub_download(settings: dict) -> Path:
    """Download the dataset file into the huggingface_hub cache; its local path."""
    if hub_offline():
        reason = (f"HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']} is set; unset it or set "
                  f"HF_HUB_OFFLINE=0 to allow this download")
        raise _unreachable(settings, reason)
    try:
        from huggingface_hub import errors, hf_hub_download
    except ImportError:
        raise SoftError("prompts.source hub needs the huggingface_hub package (pip install huggingface_hub)") from None
    dataset, file, revision = settings["dataset"], settings["file"], settings.get("revision") or "main"
    try:
        return Path(hf_hub_download(repo_id=dataset, filename=file, repo_type="dataset", revision=revision))
    except errors.GatedRepoError:
        raise SoftError(f"config key 'prompts.dataset': hub dataset {dataset} is gated: accept its terms "
                        f"on the hub and log in (`hf auth login` or HF_TOKEN)") from None
    except errors.RepositoryNotFoundError:
        raise SoftError(f"config key 'prompts.dataset': no hub dataset {dataset!r} (a private one "
                        f"needs a login: `hf auth login` or HF_TOKEN)") from None
    except errors.RevisionNotFoundError:
        raise SoftError(f"config key 'prompts.revision': hub dataset {dataset} has no revision "
                        f"{revision!r}") from None
    except errors.RemoteEntryNotFoundError:
        raise SoftError(f"config key 'prompts.file': hub dataset {dataset} has no file {file!r} "
                        f"at revision {revision}") from None
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled):
        # what huggingface_hub raises when the hub cannot be reached and nothing is cached
        raise _unreachable(settings, "the hub is unreachable and the file is not cached") from None
    except errors.HfHubHTTPError as e:
        raise SoftError(f"{describe(settings)}: the hub refused the download: "
                        f"{str(e).splitlines()[0]}") from None
    except OSError as e:
        raise _unreachable(settings, f"{type(e).__name__}: {e}") from None


def local_copy(settings: dict) -> Path:
    """The dataset file fetched by hand (config key prompts.local_file), for machines
    without the hub; it goes through the same checks and conversion as a download."""
    path = Path(settings["local_file"])
    if not path.is_file():
        raise SoftError(f"config key 'prompts.local_file': {path}: file not found")
    return path


def snapshot_commit(path: str | os.PathLike) -> str | None:
    """The commit a huggingface_hub cache path belongs to (…/snapshots/<sha>/<file>)."""
    parts = Path(path).parts
    for a, b in zip(parts, parts[1:]):
        if a == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", b):
            return b
    return None


def fetch_hub_pool(settings: dict, out_path: str | os.PathLike, stats_path: str | os.PathLike,
                   download: Callable[[dict], str | os.PathLike] | None = None) -> dict:
    """Download the dataset file (`download`, default the hub), check it, convert it, and
    write the pool JSONL and its stats JSON (no paths, no timestamps); the stats."""
    where = describe(settings)
    check_hub_settings(settings)
    if download is None and settings.get("local_file"):
        where = f"{settings['local_file']} (config key 'prompts.local_file', for {where})"
        download = local_copy
    path = Path((download or hub_download)(settings))
    digest = sha256_file(path)
    expected = settings.get("sha256")
    if expected and digest != expected.strip().lower():
        raise SoftError(f"{where}: sha256 mismatch: expected {expected} (config key 'prompts.sha256'), "
                        f"got {digest}; pin prompts.revision to a commit sha to keep the file fixed")
    rows = read_rows(path, where)
    records, counts = convert_rows(rows, settings.get("field") or "prompt", settings.get("category_field"),
                                   settings.get("max_prompts"), where,
                                   id_prefix=settings["dataset"].split("/")[-1],
                                   context_field=settings.get("context_field"),
                                   context_format=settings.get("context_format"),
                                   drop_categories=settings.get("drop_categories") or ())
    stats: dict[str, Any] = {key: settings.get(key) for key in POOL_SETTINGS}
    stats.update(sha256=digest, commit=snapshot_commit(path), **counts)
    write_jsonl(out_path, records)
    write_json(stats_path, stats)
    return stats


def known_pool_size(settings: dict, pool_path: str | os.PathLike, stats_path: str | os.PathLike) -> int | None:
    """Prompts in an already fetched pool, when it was fetched with these settings; None
    when it is not there yet (or stale): its size is then known only once fetched."""
    from soft.records import read_prompts

    if not Path(pool_path).is_file() or not Path(stats_path).is_file():
        return None
    try:
        stats = read_json(stats_path)
    except SoftError:
        return None
    if not isinstance(stats, dict) or any(stats.get(k) != settings.get(k) for k in POOL_SETTINGS):
        return None
    if settings.get("sha256") and stats.get("sha256") != settings["sha256"].lower():
        return None
    return len(read_prompts(pool_path))
