"""Validation-based early stop of a bootstrapping chain.

SOFT reports that late rounds collapse and stops on a validation set. After each round
the model is scored on a held-out validation set (a preference JSONL scored by answer
likelihood, or an lm-eval task); the chain goes on to round k+1 only while the metric
keeps improving: once `patience` rounds in a row failed to beat the best value so far
by more than `min_delta`, round k+1 is never generated (the workflow's checkpoint,
decide_next_round, writes decide()'s verdict and the DAG reads it). Round 0 (the base model) is the first point of the
history, so a chain whose first round already falls below the base stops there.
"""

from __future__ import annotations

from pathlib import Path

from soft.errors import SoftError

# Metrics of the preference JSONL (soft.probe.diagnostics.preference_scores).
PREFERENCE_METRICS = ("margin", "acc")


def validation_kind(validation: str) -> str:
    """`jsonl` for a preference file, `lm_eval` for a task name."""
    return "jsonl" if validation.endswith(".jsonl") else "lm_eval"


def check_early_stop(key: str, settings: dict, rounds: int) -> None:
    """Cross-field checks the schema cannot express, at DAG build."""
    validation = settings.get("validation")
    if validation is None:
        return
    if validation_kind(validation) == "jsonl":
        if not Path(validation).is_file():
            raise SoftError(f"config key '{key}.validation': {validation}: file not found")
        if settings["metric"] not in PREFERENCE_METRICS:
            raise SoftError(f"config key '{key}.metric': a preference JSONL gives "
                            f"{' or '.join(PREFERENCE_METRICS)}, not {settings['metric']!r}")
        from soft.probe.diagnostics import read_validation

        read_validation(validation)  # the validate job's reader: a malformed line fails now
    if settings["patience"] < 1:
        raise SoftError(f"config key '{key}.patience': must be at least 1")


def decide(history: list[float], patience: int, min_delta: float) -> dict:
    """Whether the chain goes on after the last round of `history` (index = round).

    The best round is the first to beat every earlier one by more than min_delta; the
    chain stops when the last `patience` rounds all failed to do so.
    """
    if not history:
        raise SoftError("no validation values to decide on")
    best_round, best = 0, history[0]
    for k, value in enumerate(history[1:], start=1):
        if value > best + min_delta:
            best_round, best = k, value
    last = len(history) - 1
    stale = last - best_round
    stop = last >= 1 and stale >= patience
    if stop:
        reason = (f"no round beat round {best_round}'s {best:.6f} by more than {min_delta} "
                  f"for {stale} round(s) (patience {patience})")
    else:
        reason = f"round {best_round} is the best so far ({best:.6f})"
    return {"continue": not stop, "best_round": best_round, "best_value": round(best, 6),
            "rounds_without_improvement": stale, "reason": reason}


def stop_record(settings: dict, rounds: int, values: list[float]) -> dict:
    """The content of results/{exp}/stop.json: the rule, every value and the outcome."""
    if settings.get("validation") is None:
        return {"early_stop": False, "rounds_configured": rounds, "rounds_run": rounds,
                "stopped_early": False, "reason": "early_stop.validation is null: every round ran"}
    run = len(values) - 1
    verdict = decide(values, settings["patience"], settings["min_delta"])
    stopped = run < rounds
    return {
        "early_stop": True,
        # a file by its name, like the validation results: outputs hold no absolute paths
        "validation": Path(settings["validation"]).name if validation_kind(settings["validation"]) == "jsonl"
        else settings["validation"],
        "metric": settings["metric"],
        "patience": settings["patience"],
        "min_delta": settings["min_delta"],
        "history": [{"round": k, "value": round(v, 6)} for k, v in enumerate(values)],
        "rounds_configured": rounds,
        "rounds_run": run,
        "stopped_early": stopped,
        "stop_after_round": run if stopped else None,
        "best_round": verdict["best_round"],
        "best_value": verdict["best_value"],
        "reason": (verdict["reason"] + f": round {run + 1} was not run") if stopped
        else f"all {rounds} rounds ran; {verdict['reason']}",
    }


def validation_value(validation_json: dict, metric: str) -> float:
    try:
        return float(validation_json["metrics"][metric])
    except KeyError:
        raise SoftError(f"validation result has no metric {metric!r} "
                        f"(has: {', '.join(sorted(validation_json.get('metrics', {})))})") from None


def score_preferences(model_dir: str, validation: str, principles, batch_size: int = 8,
                      max_length: int = 512, layout: dict | None = None) -> dict:
    """Mean answer NLL of `chosen` and `rejected` given the prompt, in the training layout
    (soft.layouts; the distilled system prompt, as the round's model was trained), -> acc
    and margin. `layout`: soft.layouts.layout_settings of the config (None = auto)."""
    from soft.probe.diagnostics import preference_scores, read_validation
    from soft.scoring import encode_pair, load_scorer, scoring_texts, span_nll

    items = read_validation(validation)
    tokenizer, lay, model = load_scorer(model_dir, layout)
    pairs = []
    for item in items:
        for answer in (item["chosen"], item["rejected"]):
            context, span = scoring_texts(tokenizer, lay, principles, item["prompt"], answer)
            pairs.append(encode_pair(tokenizer, context, span, max_length, lay.add_special_tokens))
    nll = [n for n, _ in span_nll(model, pairs, tokenizer.pad_token_id, batch_size)]
    return preference_scores(nll[0::2], nll[1::2])


def score_validation(model_dir: str, settings: dict, principles, benchmarks_dir: str,
                     batch_size: int, limit: int | None, seed: int, layout: dict | None = None) -> dict:
    """One model's validation result: {"validation", "kind", "metrics": {name: value}}.
    An lm-eval task runs in the layout view (the model's layout, the distilled system
    prompt), as evaluate_model's `evaluation.tasks` do, unless it is one of the raw
    benchmark tasks (soft.resources.eval_tasks.RAW_VIEW_TASKS)."""
    validation = settings["validation"]
    kind = validation_kind(validation)
    if kind == "jsonl":
        metrics = score_preferences(model_dir, validation, principles, batch_size=batch_size, layout=layout)
    else:
        from soft.evaluate.harness import normalise_results, run_lm_eval

        from soft.resources.eval_tasks import RAW_VIEW_TASKS

        view = "raw" if validation in RAW_VIEW_TASKS else "layout"
        raw = run_lm_eval(Path(model_dir), [validation], Path(benchmarks_dir), batch_size, limit, seed=seed,
                          view=view, layout=layout, system_prompt=principles.system_prompt)
        norm = normalise_results(raw, limit=limit, batch_size=batch_size,
                                 metrics=("acc", "acc_norm", settings["metric"]))
        task = norm["tasks"].get(validation)
        if not task:
            raise SoftError(f"lm-eval returned no metrics for validation task {validation!r}")
        metrics = {m: v["value"] for m, v in task.items()}
        metrics["n"] = norm["n_samples"].get(validation)
    return {"validation": Path(validation).name if kind == "jsonl" else validation, "kind": kind,
            "metrics": metrics}
