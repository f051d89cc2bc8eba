"""Tidy metrics table and the metric-vs-round figure."""

from __future__ import annotations

from pathlib import Path

from soft.io import atomic_path, read_json

COLUMNS = ["experiment", "round", "task", "metric", "value", "stderr", "n_train_prompts"]

# Panels of the headline figure: (task, metric, label). Absent pairs are skipped.
HEADLINE = [
    ("soft_hhh", "acc_norm", "HHH overall, acc_norm"),
    ("soft_hhh", "acc", "HHH overall, acc"),
    ("soft_truthfulqa_mc1", "acc", "TruthfulQA MC1, acc"),
    ("soft_truthfulqa_mc2", "acc", "TruthfulQA MC2"),
]


def tidy_rows(experiment: str, round_k: int, n_train_prompts: int, eval_json: dict) -> list[dict]:
    rows = []
    for task, metrics in sorted(eval_json["tasks"].items()):
        for metric, vals in sorted(metrics.items()):
            rows.append({"experiment": experiment, "round": round_k, "task": task, "metric": metric,
                         "value": vals["value"], "stderr": vals.get("stderr"),
                         "n_train_prompts": n_train_prompts})
    return rows


def metrics_table(evals: list[tuple[str, int, int, str | Path]]):
    """evals: (experiment, round, cumulative training prompts, eval JSON path)."""
    import pandas as pd

    rows = []
    for exp, k, n, path in evals:
        rows += tidy_rows(exp, k, n, read_json(path))
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["experiment", "round", "task", "metric"], kind="stable").reset_index(drop=True)


def write_table(df, csv_path: str | Path, md_path: str | Path) -> None:
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")
    wide = df[df.apply(lambda r: (r["task"], r["metric"]) in {(t, m) for t, m, _ in HEADLINE}, axis=1)]
    # A column per headline metric that some row has (MC2 only when it was evaluated).
    present = {(t, m) for t, m in zip(wide.task, wide.metric)}
    columns = [h for h in HEADLINE if (h[0], h[1]) in present] or HEADLINE[:1]
    lines = ["| experiment | round | n_train_prompts | " + " | ".join(l for _, _, l in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for (exp, k, n), grp in wide.groupby(["experiment", "round", "n_train_prompts"], sort=True):
        cells = []
        for task, metric, _ in columns:
            hit = grp[(grp.task == task) & (grp.metric == metric)]
            cells.append(f"{hit.value.iloc[0]:.3f} ± {hit.stderr.iloc[0]:.3f}" if len(hit) else "–")
        lines.append(f"| {exp} | {k} | {n} | " + " | ".join(cells) + " |")
    with atomic_path(md_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_metric_vs_round(df, png_path: str | Path, pdf_path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, m, l) for t, m, l in HEADLINE if ((df.task == t) & (df.metric == m)).any()]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.4),
                             squeeze=False)
    for ax, (task, metric, label) in zip(axes[0], panels):
        sub = df[(df.task == task) & (df.metric == metric)]
        for exp, grp in sub.groupby("experiment", sort=True):
            grp = grp.sort_values("round")
            ax.errorbar(grp.n_train_prompts, grp.value, yerr=grp.stderr, marker="o", capsize=3,
                        label=exp)
            for _, r in grp.iterrows():
                ax.annotate(f"r{r['round']}", (r.n_train_prompts, r.value), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("cumulative training prompts")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("SOFT vs single-round Self-Align (round 0 = base model)", fontsize=11)
    fig.tight_layout()
    for path in (png_path, pdf_path):
        with atomic_path(path) as tmp:
            # metadata pinned so reruns give identical bytes
            fig.savefig(tmp, format=Path(path).suffix[1:], dpi=150,
                        metadata={"CreationDate": None} if str(path).endswith(".pdf") else {"Software": None})
    plt.close(fig)
