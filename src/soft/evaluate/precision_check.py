"""Does scoring in bf16 move accuracies? One model scored on the full suites twice, in fp32
and in bf16, both views, with per-document log-likelihoods compared (issue 18, item 2).

    python -m soft.evaluate.precision_check [--model resources/models/smollm2-135m-instruct]
                                   [--limit N] [--out results/precision_check]

Writes scoring.json and scoring.md under --out: per task the documents, each precision's
accuracy, how many documents flip (McNemar's p on the flips, soft.stats), and the largest
and mean absolute log-likelihood difference over every answer choice; and each pass's
seconds. This is the measurement behind `evaluation.precision`'s default (README
"Precision"), not part of the workflow: it reads the prepared model and benchmarks."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from soft.errors import SoftError

LAYOUT_TASKS = ("soft_hhh_ab", "soft_truthfulqa_mc1", "soft_truthfulqa_mc2")
RAW_TASKS = ("soft_hhh", "soft_bigbench_truthfulqa_mc1")
PRECISIONS = ("fp32", "bf16")


def document_scores(raw: dict) -> dict[tuple[str, int], dict]:
    """lm-eval's logged samples -> {(task, doc_id): {"lls": [per-choice log-likelihood],
    metric: value}} for the unfiltered samples."""
    from soft.evaluate.harness import METRICS

    out = {}
    for task, samples in (raw.get("samples") or {}).items():
        for s in samples:
            if s.get("filter", "none") != "none":
                continue
            lls = [float(r[0]) for r in s["filtered_resps"]]
            out[(task, int(s["doc_id"]))] = {"lls": lls, **{m: float(s[m]) for m in METRICS if m in s}}
    return out


def compare_documents(ref: dict, cand: dict) -> dict[str, dict]:
    """Per task: documents, both accuracies, flips and log-likelihood differences.
    ref/cand: document_scores of the fp32 and the bf16 pass (same documents)."""
    from soft.stats import paired_test

    if set(ref) != set(cand):
        raise SoftError("the two passes scored different documents")
    rows: dict[str, dict] = {}
    for task in sorted({t for t, _ in ref}):
        keys = sorted(k for k in ref if k[0] == task)
        diffs = [abs(a - b) for k in keys for a, b in zip(ref[k]["lls"], cand[k]["lls"], strict=True)]
        row = {"documents": len(keys), "choices": len(diffs),
               "max_abs_ll_diff": round(max(diffs), 4), "mean_abs_ll_diff": round(sum(diffs) / len(diffs), 4)}
        for m in ("acc", "acc_norm"):
            if m not in ref[keys[0]]:
                continue
            a = {k[1]: ref[k][m] for k in keys}
            b = {k[1]: cand[k][m] for k in keys}
            test = paired_test(b, a)
            row[m] = {"fp32": round(sum(a.values()) / len(a), 4), "bf16": round(sum(b.values()) / len(b), 4),
                      "flipped": sum(1 for d in a if a[d] != b[d]), "diff_ci95": [round(test["ci_low"], 4),
                                                                            round(test["ci_high"], 4)],
                      "p": round(test["p_value"], 4), "test": test["test"]}
        rows[task] = row
    return rows


def score_pass(model_dir: Path, bench_dir: Path, precision: str, limit: int | None, system_prompt: str,
               layout: dict, batch_size: int) -> tuple[dict, float]:
    """Both views of one model at one precision, every document logged: (document_scores,
    seconds)."""
    from soft.evaluate.harness import DEFAULT_MODEL_CLASS, load_lm, run_lm_eval
    from soft.precision import decide

    prec = decide(precision, "cpu", key="precision_check")
    t0 = time.perf_counter()
    lm = load_lm(model_dir, DEFAULT_MODEL_CLASS, batch_size, "cpu", layout, dtype=prec.dtype_name)
    docs: dict = {}
    for view, tasks in (("layout", LAYOUT_TASKS), ("raw", RAW_TASKS)):
        raw = run_lm_eval(model_dir, list(tasks), bench_dir, batch_size, limit, model_class=DEFAULT_MODEL_CLASS,
                          view=view, system_prompt=system_prompt, layout=layout, lm=lm, log_samples=True)
        docs.update(document_scores(raw))
    return docs, time.perf_counter() - t0


def markdown(result: dict) -> str:
    lines = [f"Scoring in fp32 and bf16: {result['model']}, limit {result['limit']}, "
             f"batch {result['batch_size']}, {result['cpu_bf16']}.", "",
             "| task | docs | metric | fp32 | bf16 | flipped | bf16 - fp32 (95% CI) | p | max / mean abs log-lik diff |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task, row in result["tasks"].items():
        for m in ("acc", "acc_norm"):
            if m in row:
                r = row[m]
                lines.append(f"| {task} | {row['documents']} | {m} | {r['fp32']:.4f} | {r['bf16']:.4f} | "
                             f"{r['flipped']} | {r['diff_ci95'][0]:+.4f} .. {r['diff_ci95'][1]:+.4f} | "
                             f"{r['p']:.3f} | {row['max_abs_ll_diff']:.3f} / {row['mean_abs_ll_diff']:.4f} |")
    lines += ["", "Seconds (model load and both views): "
              + ", ".join(f"{p} {s:.0f} s" for p, s in result["seconds"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from soft.io import write_json, write_text
    from soft.layouts import layout_settings
    from soft.precision import cpu_bf16_flags, cpu_flags
    from soft.principles import load_principles
    from soft.runtime import set_threads

    ap = argparse.ArgumentParser(prog="python -m soft.evaluate.precision_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resources/models/smollm2-135m-instruct")
    ap.add_argument("--benchmarks", default="resources/benchmarks")
    ap.add_argument("--principles", default="config/principles.yaml")
    ap.add_argument("--limit", type=int, default=None, help="documents per task (default: the full suites)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/precision_check")
    a = ap.parse_args(argv)
    for p in (a.model, a.benchmarks, a.principles):
        if not Path(p).exists():
            raise SystemExit(f"{p} not found: prepare it first (make setup; snakemake --cores 2 {a.model} "
                             f"{a.benchmarks})")
    set_threads(a.threads)
    system_prompt = load_principles(a.principles).system_prompt
    layout = layout_settings({})
    passes, seconds = {}, {}
    for prec in PRECISIONS:
        print(f"scoring {a.model} in {prec} (limit {a.limit}) ...", flush=True)
        passes[prec], seconds[prec] = score_pass(Path(a.model), Path(a.benchmarks), prec, a.limit, system_prompt,
                                                 layout, a.batch_size)
        print(f"  {seconds[prec]:.0f} s", flush=True)
    flags = cpu_bf16_flags(cpu_flags())
    result = {"model": a.model, "limit": a.limit, "batch_size": a.batch_size,
              "cpu_bf16": "the CPU reports " + (", ".join(flags) if flags else "no bf16 units"),
              "seconds": {p: round(s, 1) for p, s in seconds.items()},
              "tasks": compare_documents(passes["fp32"], passes["bf16"])}
    out = Path(a.out)
    write_json(out / "scoring.json", result)
    write_text(out / "scoring.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
