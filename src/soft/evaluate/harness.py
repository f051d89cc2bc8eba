"""Evaluate a model folder with lm-eval on the local benchmark tasks; normalise results.

The benchmark folder (see soft.resources.eval_tasks) is passed as lm-eval's include_path. The
normalised JSON holds no paths, timestamps or model names, so two runs of the same model
and settings write the same bytes and the file can be compared across machines.
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any

from soft.errors import SoftError
from soft.models import check_model_dir
from soft.resources.eval_tasks import HHH_AB_GROUP, HHH_AB_TASKS
from soft.precision import decide
from soft.stats import HHH_BOTH_ORDERS, MARGIN, both_orders_outcomes

OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
METRICS = ("acc", "acc_norm")
# config key evaluation.model_class -> the lm-eval model name. "cached" is soft.evaluate.lm_eval_cached's
# HFLM subclass: the same scores, each shared prompt prefix (TruthfulQA's primer) run once.
MODEL_CLASSES = {"hf": "hf", "cached": "soft-hf-cached"}
DEFAULT_MODEL_CLASS = "cached"
# layout: each request as a user turn after the distilled system prompt, in the model's
# layout (soft.layouts), as every round is trained; raw: the task's text as it is.
VIEWS = ("layout", "raw")
# Tasks whose per-document metric is a fraction (MC2: the normalised true mass), not 0|1.
FRACTION_TASKS = ("soft_truthfulqa_mc2",)


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


def load_lm(model_dir: Path, model_class: str, batch_size: int, device: str = "cpu",
            layout: dict | None = None, dtype: str | None = None):
    """The lm-eval model object, loaded once and shared by both views of a job.
    `layout`: soft.layouts.layout_settings, for the cached class's apply_chat_template."""
    from lm_eval.api.registry import get_model

    if model_class == "cached":
        import soft.evaluate.lm_eval_cached  # noqa: F401 - registers the lm-eval model class
    dtype = dtype or ("float32" if str(device).startswith("cpu") else "auto")
    args: dict[str, Any] = {"pretrained": str(model_dir), "dtype": dtype, "trust_remote_code": False}
    if model_class == "cached":
        args["layout"] = layout
    return get_model(MODEL_CLASSES[model_class]).create_from_arg_obj(args, {"batch_size": batch_size,
                                                                           "device": device})


def model_layout(lm, model_class: str, layout: dict | None):
    """The layout the layout view renders requests in. The cached class renders through
    soft.layouts; the stock class only knows the tokenizer's chat template, so it runs the
    layout view only when the model's layout is `chat`."""
    from soft.layouts import Layout

    if model_class == "cached":
        return lm.layout
    resolved = Layout.from_settings(lm.tokenizer, layout, where="lm-eval model")
    if resolved.kind != "chat":
        raise SoftError("config key 'evaluation.model_class': hf renders the layout view (evaluation.tasks) "
                        "with the tokenizer's chat template, but this model's layout is plain; "
                        "use model_class cached")
    return resolved


def _check_args(model_dir: Path, include_path: Path, batch_size: int, limit: int | None, model_class: str) -> None:
    check_model_dir(model_dir)
    if not include_path.is_dir():
        raise SoftError(f"{include_path}: benchmark task folder not found")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise SoftError(f"config key eval.batch_size: must be a positive integer, got {batch_size!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise SoftError(f"config key eval.limit: must be a positive integer or null, got {limit!r}")
    if model_class not in MODEL_CLASSES:
        raise SoftError(f"config key evaluation.model_class: must be one of {', '.join(MODEL_CLASSES)}, "
                        f"got {model_class!r}")


def run_lm_eval(
    model_dir: Path,
    tasks: list[str],
    include_path: Path,
    batch_size: int,
    limit: int | None,
    device: str = "cpu",
    seed: int = 0,
    model_class: str = DEFAULT_MODEL_CLASS,
    view: str = "raw",
    system_prompt: str | None = None,
    layout: dict | None = None,
    lm=None,
    log_samples: bool = False,
) -> dict:
    """Run lm_eval.simple_evaluate with the hf backend; return its raw result dict.

    `limit` caps the number of documents per task (for a group: per subtask; lm-eval
    takes the first N). `device` goes to simple_evaluate only, never into model_args
    (giving it in both places is an error in lm-eval). `model_class`: "hf" (lm-eval's
    stock class) or "cached" (soft.evaluate.lm_eval_cached: shared prefixes computed once).

    `view`: "raw" scores each request's text as the task writes it; "layout" has lm-eval
    render it as a user turn after `system_prompt` (lm-eval's apply_chat_template and
    system_instruction) in the model's layout (`layout`: soft.layouts.layout_settings).
    `lm`: a model from load_lm, else one is loaded.
    """
    model_dir, include_path = Path(model_dir), Path(include_path)
    _check_args(model_dir, include_path, batch_size, limit, model_class)
    if not tasks:
        raise SoftError("no evaluation tasks given (config key evaluation.tasks)")
    if view not in VIEWS:
        raise SoftError(f"unknown evaluation view {view!r} (one of {', '.join(VIEWS)})")
    _set_offline()

    import lm_eval

    tm = task_manager(include_path, tasks)
    known = set(tm.all_tasks) if hasattr(tm, "all_tasks") else None
    if known is not None:
        missing = [t for t in tasks if t not in known]
        if missing:
            raise SoftError(
                f"{include_path}: lm-eval task(s) not found: {', '.join(missing)} (config key evaluation.tasks)"
            )
    if lm is None:
        lm = load_lm(model_dir, model_class, batch_size, device, layout)
    if view == "layout":
        model_layout(lm, model_class, layout)  # refuses a layout the class cannot render
    raw = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks),
        batch_size=batch_size,
        device=device,
        limit=limit,
        task_manager=tm,
        log_samples=log_samples,
        apply_chat_template=view == "layout",
        system_instruction=system_prompt if view == "layout" else None,
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


def merge_views(parts: list[dict]) -> dict:
    """One result object from the normalised results of the two views: their task names
    must differ (a task scored in both views would be ambiguous)."""
    out: dict[str, Any] = {"tasks": {}, "n_samples": {}, "groups": {}, "task_versions": {}}
    for part in parts:
        for key in out:
            clash = sorted(set(out[key]) & set(part[key]))
            if clash:
                raise SoftError(f"config keys 'evaluation.tasks' and 'evaluation.raw_tasks' both score "
                                f"{', '.join(clash)}; a task belongs to one view")
            out[key].update(part[key])
    for key in out:
        out[key] = dict(sorted(out[key].items()))
    for key in ("lm_eval_version", "limit", "batch_size"):
        out[key] = parts[0][key] if parts else None
    return out


def sample_records(raw: dict, fraction_tasks: tuple[str, ...] = FRACTION_TASKS) -> list[dict]:
    """lm-eval's logged samples -> one record per (task, doc_id): {"task", "doc_id",
    "metrics": {"acc": 0|1, "acc_norm": 0|1}} ({"acc": fraction} for MC2; the A/B tasks
    add "margin", letter_margin), sorted by task then doc_id. No prompts, paths or model
    names: only what pairs documents across rounds and experiments."""
    out = []
    for task, samples in sorted((raw.get("samples") or {}).items()):
        seen: dict[int, dict] = {}
        for s in samples:
            if s.get("filter", "none") != "none":
                continue
            doc_id = int(s["doc_id"])
            metrics = {}
            for m in METRICS:
                if m not in s:
                    continue
                v = float(s[m])
                if task in fraction_tasks:
                    metrics[m] = round(v, 6)
                else:
                    if v not in (0.0, 1.0):
                        raise SoftError(f"lm-eval sample {task}/{doc_id}: {m} is {v}, expected 0 or 1")
                    metrics[m] = int(v)
            if task in HHH_AB_TASKS:  # one item in both orders: the eval JSON's acc_both_orders
                metrics[MARGIN] = letter_margin(s, task)
            if doc_id in seen:
                raise SoftError(f"lm-eval logged document {doc_id} of task {task} twice")
            seen[doc_id] = {"task": task, "doc_id": doc_id, "metrics": metrics}
        out += [seen[d] for d in sorted(seen)]
    return out


def letter_margin(sample: dict, task: str) -> float:
    """One logged A/B sample -> log-likelihood of the preferred answer's letter minus the
    other letter's (6 decimals, so the sample file's bytes do not hang on the last float
    digit)."""
    lls = []
    for resp in sample.get("filtered_resps") or []:
        # (loglikelihood, is_greedy) per choice; some lm-eval paths keep it in a 1-list
        while isinstance(resp, (list, tuple)) and resp and isinstance(resp[0], (list, tuple)):
            resp = resp[0]
        lls.append(float(resp[0]) if isinstance(resp, (list, tuple)) else float("nan"))
    target = sample.get("target")
    if len(lls) != 2 or target not in (0, 1) or not all(math.isfinite(x) for x in lls):
        raise SoftError(f"lm-eval sample {task}/{sample.get('doc_id')}: expected two letter "
                        f"log-likelihoods and a 0/1 target, got {lls} and {target!r}")
    return round(lls[target] - lls[1 - target], 6)


def add_both_orders(norm: dict, samples: list[dict]) -> None:
    """The eval JSON's acc_both_orders for each A/B task and their group, from the samples'
    margins (soft.stats.both_orders_outcomes: the same per-item outcomes the paired
    comparisons use); stderr as lm-eval's for a mean, over items."""
    by_task: dict[str, list[float]] = {}
    for task in sorted({r["task"] for r in samples if r["task"] in HHH_AB_TASKS}):
        margins = {r["doc_id"]: r["metrics"][MARGIN] for r in samples if r["task"] == task}
        by_task[task] = list(both_orders_outcomes(margins).values())
    if HHH_AB_GROUP in norm["tasks"]:
        by_task[HHH_AB_GROUP] = [v for t in norm["groups"].get(HHH_AB_GROUP, []) for v in by_task.get(t, [])]
    for task, values in by_task.items():
        if task not in norm["tasks"] or not values:
            continue
        stderr = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
        norm["tasks"][task][HHH_BOTH_ORDERS] = {"value": statistics.fmean(values), "stderr": stderr}


def write_samples(path: Path, records: list[dict]) -> None:
    """JSONL in the key order of sample_records (task, doc_id, metrics): same records,
    same bytes."""
    import json

    from soft.io import write_text

    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def evaluate_model(model_dir: Path, tasks: list[str], include_path: Path, out_json: Path,
                   batch_size: int, limit: int | None, device: str | None = None, seed: int = 0,
                   model_class: str = DEFAULT_MODEL_CLASS, raw_tasks: list[str] | None = None,
                   system_prompt: str | None = None, layout: dict | None = None,
                   samples_out: Path | None = None, precision: str = "fp32") -> dict:
    """Both views of one model, merged into one result written atomically to `out_json`:
    `tasks` in the layout view (after `system_prompt`, in the model's layout: `layout`,
    soft.layouts.layout_settings) and `raw_tasks` in the raw view, with one model load.
    `samples_out`: also write the per-document results there (sample_records).
    `precision` (config evaluation.precision): the weights' dtype while scoring.

    `device` defaults to the job's GPU when it has one (a `gpu: 1` evaluate_model job
    would otherwise hold a GPU and score on the CPU), else the CPU.
    """
    from soft.io import write_json
    from soft.models import pick_device

    tasks, raw_tasks = list(tasks or []), list(raw_tasks or [])
    if not tasks and not raw_tasks:
        raise SoftError("no evaluation tasks given (config keys evaluation.tasks and evaluation.raw_tasks)")
    clash = sorted(set(tasks) & set(raw_tasks))
    if clash:
        raise SoftError(f"config keys 'evaluation.tasks' and 'evaluation.raw_tasks' both name {', '.join(clash)}")
    if tasks and system_prompt is None:
        raise SoftError("the layout view (evaluation.tasks) needs the distilled system prompt")
    model_dir, include_path = Path(model_dir), Path(include_path)
    _check_args(model_dir, include_path, batch_size, limit, model_class)
    device = device or pick_device()
    prec = decide(precision, device, key="evaluation.precision")
    _set_offline()
    lm = load_lm(model_dir, model_class, batch_size, device, layout, dtype=prec.dtype_name)
    parts, samples, views = [], [], {}
    for view, names in (("layout", tasks), ("raw", raw_tasks)):
        if not names:
            continue
        raw = run_lm_eval(model_dir, names, include_path, batch_size, limit, device=device, seed=seed,
                          model_class=model_class, view=view, system_prompt=system_prompt, layout=layout,
                          lm=lm, log_samples=True)
        parts.append(normalise_results(raw, limit=limit, batch_size=batch_size))
        samples += sample_records(raw)
        views[view] = {"tasks": names}
        if view == "layout":
            views[view]["layout"] = model_layout(lm, model_class, layout).describe()
    norm = {**merge_views(parts), "views": views, "precision": prec.describe()}
    add_both_orders(norm, samples)
    if samples_out is not None:
        samples.sort(key=lambda r: (r["task"], r["doc_id"]))
        write_samples(Path(samples_out), samples)
    write_json(out_json, norm)
    return norm
