"""Evaluate a model folder with lm-eval on the local benchmark tasks; normalise results.

The benchmark folder (see soft.benchmarks) is passed as lm-eval's include_path. The
normalised JSON holds no paths, timestamps or model names, so two runs of the same model
and settings write the same bytes and the file can be compared across machines.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from soft.errors import SoftError
from soft.models import check_model_dir

OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
METRICS = ("acc", "acc_norm")
# config key evaluation.model_class -> the lm-eval model name. "cached" is soft.lm_eval_cached's
# HFLM subclass: the same scores, each shared prompt prefix (TruthfulQA's primer) run once.
MODEL_CLASSES = {"hf": "hf", "cached": "soft-hf-cached"}
DEFAULT_MODEL_CLASS = "cached"


def _set_offline() -> None:
    # datasets / huggingface_hub read these when imported (and hub also per call);
    # set them before lm_eval imports datasets. Offline unless the user's environment
    # says otherwise (HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 for a built-in task's data).
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)


def task_manager(include_path: Path, tasks: list[str]):
    """lm-eval's TaskManager over the local benchmark folder; with lm-eval's built-in
    tasks too when a task name is not local (users with a hub can evaluate any lm-eval
    task: its dataset is then downloaded by lm-eval). Indexing the ~14,700 built-ins
    costs about 7 s on 2 cores, so the local-only default skips it."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(include_path), include_defaults=False)
    if hasattr(tm, "all_tasks") and any(t not in set(tm.all_tasks) for t in tasks):
        tm = TaskManager(include_path=str(include_path), include_defaults=True)
    return tm


def run_lm_eval(
    model_dir: Path,
    tasks: list[str],
    include_path: Path,
    batch_size: int,
    limit: int | None,
    device: str = "cpu",
    seed: int = 0,
    model_class: str = DEFAULT_MODEL_CLASS,
) -> dict:
    """Run lm_eval.simple_evaluate with the hf backend; return its raw result dict.

    `limit` caps the number of documents per task (for a group: per subtask; lm-eval
    takes the first N). `device` goes to simple_evaluate only, never into model_args
    (giving it in both places is an error in lm-eval). `model_class`: "hf" (lm-eval's
    stock class) or "cached" (soft.lm_eval_cached: shared prefixes computed once).
    """
    model_dir, include_path = Path(model_dir), Path(include_path)
    check_model_dir(model_dir)
    if not include_path.is_dir():
        raise SoftError(f"{include_path}: benchmark task folder not found")
    if not tasks:
        raise SoftError("no evaluation tasks given (config key eval.tasks)")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise SoftError(f"config key eval.batch_size: must be a positive integer, got {batch_size!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise SoftError(f"config key eval.limit: must be a positive integer or null, got {limit!r}")
    if model_class not in MODEL_CLASSES:
        raise SoftError(f"config key evaluation.model_class: must be one of {', '.join(MODEL_CLASSES)}, "
                        f"got {model_class!r}")
    _set_offline()

    import lm_eval

    if model_class == "cached":
        import soft.lm_eval_cached  # noqa: F401 - registers the lm-eval model class

    tm = task_manager(include_path, tasks)
    known = set(tm.all_tasks) if hasattr(tm, "all_tasks") else None
    if known is not None:
        missing = [t for t in tasks if t not in known]
        if missing:
            raise SoftError(
                f"{include_path}: lm-eval task(s) not found: {', '.join(missing)} (config key eval.tasks)"
            )
    dtype = "float32" if str(device).startswith("cpu") else "auto"
    raw = lm_eval.simple_evaluate(
        model=MODEL_CLASSES[model_class],
        model_args={"pretrained": str(model_dir), "dtype": dtype, "trust_remote_code": False},
        tasks=list(tasks),
        batch_size=batch_size,
        device=device,
        limit=limit,
        task_manager=tm,
        log_samples=False,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    if raw is None:
        raise RuntimeError("lm_eval.simple_evaluate returned no results (non-zero rank?)")
    return raw


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, str):  # lm-eval writes "N/A" for missing stderr
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def normalise_results(
    raw: dict,
    *,
    limit: int | None = None,
    batch_size: int | None = None,
    lm_eval_version: str | None = None,
    metrics: tuple[str, ...] = METRICS,
) -> dict:
    """lm-eval's raw result dict -> one small deterministic, path-free JSON object.

    {"tasks": {task: {metric: {"value", "stderr"}}}, "n_samples": {task: n},
     "groups": {group: [subtasks]}, "task_versions": {...}, "lm_eval_version", "limit",
     "batch_size"}. Groups (e.g. soft_hhh) appear in "tasks" beside their subtasks.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("results"), dict):
        raise SoftError("lm-eval result has no 'results' mapping")
    if lm_eval_version is None:
        try:
            import importlib.metadata as md

            lm_eval_version = md.version("lm_eval")
        except Exception:  # noqa: BLE001 - version is informational
            lm_eval_version = None

    tasks: dict[str, dict] = {}
    for task, res in sorted(raw["results"].items()):
        entry: dict[str, dict] = {}
        for key, value in res.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            if metric not in metrics or filt != "none":
                continue
            entry[metric] = {"value": _num(value), "stderr": _num(res.get(f"{metric}_stderr,{filt}"))}
        if entry:
            tasks[task] = entry

    groups = {g: sorted(subs) for g, subs in sorted((raw.get("group_subtasks") or {}).items()) if subs}
    n_samples: dict[str, int] = {}
    for task, n in sorted((raw.get("n-samples") or {}).items()):
        if isinstance(n, dict):
            n = n.get("effective", n.get("original"))
        if isinstance(n, int):
            n_samples[task] = n
    for g, subs in groups.items():
        if all(s in n_samples for s in subs):
            n_samples[g] = sum(n_samples[s] for s in subs)

    # lm-eval reports group versions as str and task versions as float: unify as str
    versions = {t: str(v) for t, v in sorted((raw.get("versions") or {}).items()) if v is not None}
    return {
        "tasks": tasks,
        "n_samples": n_samples,
        "groups": groups,
        "task_versions": versions,
        "lm_eval_version": lm_eval_version,
        "limit": limit,
        "batch_size": batch_size,
    }


def evaluate_model(model_dir: Path, tasks: list[str], include_path: Path, out_json: Path,
                   batch_size: int, limit: int | None, device: str | None = None, seed: int = 0,
                   model_class: str = DEFAULT_MODEL_CLASS) -> dict:
    """run_lm_eval + normalise_results, written atomically to `out_json`.

    `device` defaults to the job's GPU when it has one (a `gpu: 1` evaluate_model job
    would otherwise hold a GPU and score on the CPU), else the CPU.
    """
    from soft.io import write_json
    from soft.models import pick_device

    raw = run_lm_eval(model_dir, tasks, include_path, batch_size, limit, device=device or pick_device(),
                      seed=seed, model_class=model_class)
    norm = normalise_results(raw, limit=limit, batch_size=batch_size)
    write_json(out_json, norm)
    return norm
