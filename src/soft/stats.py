"""Paired statistics over per-document benchmark outcomes, and the headline metrics.

With 25-800 documents a task, two models' accuracies differ by a few points from noise
alone, and lm-eval's stderr (of one model's mean) says nothing about a *difference*
between two models scored on the same documents. The outcomes of the same document
under two models are paired, so the comparisons here are paired:

- the difference of means (candidate - reference) with a paired bootstrap CI
  (scipy.stats.bootstrap, paired=True, BCa, seeded);
- a p-value: the exact McNemar test (statsmodels) on 0/1 outcomes (only the documents
  on which the two models disagree carry information), the Wilcoxon signed-rank test
  (scipy) on continuous ones (TruthfulQA MC2's true-answer mass);
- over seeds, beside the pooled test: a t interval over the per-seed differences
  (scipy.stats.ttest_1samp), which also carries the run-to-run variance of the chain.

Inputs are lm-eval sample files, `results/{exp}/eval/round{k}_samples.jsonl`: one line
per (task, doc_id), `{"task", "doc_id", "metrics": {"acc": 0|1, "acc_norm": 0|1}}` (MC2:
`{"acc": float}`; the A/B HHH documents add `"margin"`). Every function is
deterministic: same inputs, same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from soft.errors import SoftError
from soft.io import read_jsonl

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
COMPARISON_COLUMNS = ["experiment", "round", "reference", "reference_round", "task", "metric", "n", "diff",
                      "ci_low", "ci_high", "p_value", "test"]
# `test` values: the pooled tests on documents, and the interval over seeds.
TEST_MCNEMAR = "mcnemar_exact"
TEST_WILCOXON = "wilcoxon"
TEST_SEEDS = "t_over_seeds"


@dataclass(frozen=True)
class Headline:
    """One reported benchmark number: `task` is the name in the eval JSON and in every
    table; a group's documents are its `subtasks`' documents, pooled."""

    label: str
    task: str
    metric: str
    subtasks: tuple[str, ...] = ()
    binary: bool = True
    # The outcome is per item, from documents 2i and 2i+1 (the item in both A/B orders):
    # see both_orders_outcomes.
    both_orders: bool = False

    def tasks(self) -> tuple[str, ...]:
        """The sample files' task names whose documents make this number."""
        return self.subtasks or (self.task,)


HHH_AB_SUBTASKS = ("soft_hhh_ab_harmless", "soft_hhh_ab_helpful", "soft_hhh_ab_honest", "soft_hhh_ab_other")
HHH_RAW_SUBTASKS = ("soft_hhh_harmless", "soft_hhh_helpful", "soft_hhh_honest", "soft_hhh_other")

# The one place that says which number each benchmark reports. HHH: both answers shown
# as A) / B) (Dromedary's scoring), an item counted right when the preferred answer's
# letter wins summed over both orders (acc_both_orders); TruthfulQA: MC1 accuracy and
# MC2's mass on the true answers. No acc_norm: one metric per benchmark.
# HHH was per-order `acc` until every model of the default grid scored exactly 0.500 on
# it: a model that prefers one letter whatever the answers gets one order of every item
# right and the other wrong, so per-order accuracy cannot move while the bias dominates.
# Summing over both orders cancels a constant letter preference.
HHH_BOTH_ORDERS = "acc_both_orders"
MARGIN = "margin"
HEADLINE_METRICS: tuple[Headline, ...] = (
    Headline("HHH", "soft_hhh_ab", HHH_BOTH_ORDERS, HHH_AB_SUBTASKS, both_orders=True),
    Headline("TruthfulQA MC1", "soft_truthfulqa_mc1", "acc"),
    Headline("TruthfulQA MC2", "soft_truthfulqa_mc2", "acc", binary=False),
)
# A second view: the same benchmarks scored as raw continuations (lm-eval's usual
# multiple choice). In metrics.csv and comparisons.csv, not in the main table.
SECOND_VIEW_METRICS: tuple[Headline, ...] = (
    Headline("HHH A/B (each order a document)", "soft_hhh_ab", "acc", HHH_AB_SUBTASKS),
    Headline("HHH (continuation)", "soft_hhh", "acc", HHH_RAW_SUBTASKS),
    Headline("TruthfulQA MC1 (BIG-bench continuation)", "soft_bigbench_truthfulqa_mc1", "acc"),
)
ALL_METRICS = HEADLINE_METRICS + SECOND_VIEW_METRICS


# ------------------------------------------------------------------ reading samples

Samples = dict[tuple[str, int], dict[str, float]]


SAMPLE_FIELDS = {"task": (str, True), "doc_id": (int, True), "metrics": (dict, True)}


def read_samples(path: str | Path) -> Samples:
    """(task, doc_id) -> {metric: value} from a samples JSONL (soft.evaluate.harness writes them);
    errors name the file and line (soft.io.read_jsonl)."""
    seen: set[tuple[str, int]] = set()

    def check(rec: dict) -> str | None:
        if not rec["metrics"]:
            return "field 'metrics' is empty"
        for name, value in rec["metrics"].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"metric {name!r} must be a finite number, got {value!r}"
        key = (rec["task"], rec["doc_id"])
        if key in seen:
            return f"(task {key[0]!r}, doc_id {key[1]}) appears twice"
        seen.add(key)
        return None

    records = read_jsonl(path, SAMPLE_FIELDS, allow_empty=True, non_empty=["task"], check=check)
    return {(r["task"], r["doc_id"]): {k: float(v) for k, v in r["metrics"].items()} for r in records}


def outcomes(samples: Samples, headline: Headline) -> dict[tuple[str, int], float]:
    """(task, doc_id) -> the headline metric, over the headline's (sub)tasks' documents;
    for a both-orders metric (task, item) -> 0|1 (both_orders_outcomes)."""
    wanted = set(headline.tasks())
    if headline.both_orders:
        out = {}
        for task in sorted(wanted):
            margins = {doc: m[MARGIN] for (t, doc), m in samples.items() if t == task and MARGIN in m}
            out.update({(task, item): v for item, v in both_orders_outcomes(margins).items()})
        return out
    out = {}
    for (task, doc), metrics in sorted(samples.items()):
        if task in wanted and headline.metric in metrics:
            out[(task, doc)] = metrics[headline.metric]
    return out


def both_orders_outcomes(margins: dict[int, float]) -> dict[int, float]:
    """One A/B task's per-document margins (log-likelihood of the preferred answer's letter
    minus the other letter's; documents 2i and 2i+1 are item i in both orders) -> item i ->
    1.0 when the two margins sum to more than 0, else 0.0. In the sum each letter is scored
    once in front of each answer, so a constant preference for a letter cancels (our
    reading of Dromedary's A/B scoring, which sums over both orders). An item with one
    order missing (an odd evaluation.limit) is left out; a tie (exactly equal sums) counts
    as wrong."""
    out = {}
    for doc in sorted(margins):
        if doc % 2 == 0 and doc + 1 in margins:
            out[doc // 2] = 1.0 if margins[doc] + margins[doc + 1] > 0 else 0.0
    return out


# ------------------------------------------------------------------ the tests

def _nan_result(n: int, test: str) -> dict:
    return {"n": n, "diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan, "test": test}


def paired_bootstrap_ci(candidate, reference, *, confidence: float = CONFIDENCE,
                        n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Paired bootstrap CI (BCa, seeded) of mean(candidate - reference)."""
    import numpy as np
    from scipy.stats import bootstrap

    a, b = np.asarray(candidate, dtype=float), np.asarray(reference, dtype=float)
    d = a - b
    if len(d) == 0:
        return math.nan, math.nan
    if np.all(d == d[0]):
        # every resample gives the same difference (BCa is undefined there)
        return float(d[0]), float(d[0])

    def mean_diff(x, y, axis=-1):
        return np.mean(x - y, axis=axis)

    res = bootstrap((a, b), mean_diff, paired=True, vectorized=True, n_resamples=n_resamples,
                    confidence_level=confidence, method="BCa", rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):
        # BCa can fail on very lopsided resamples (few discordant pairs): percentile instead
        res = bootstrap((a, b), mean_diff, paired=True, vectorized=True, n_resamples=n_resamples,
                        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high


def mcnemar_p(candidate, reference) -> float:
    """Exact McNemar p-value (two-sided binomial test on the discordant pairs)."""
    from statsmodels.stats.contingency_tables import mcnemar

    n10 = sum(1 for a, b in zip(candidate, reference) if a == 1 and b == 0)
    n01 = sum(1 for a, b in zip(candidate, reference) if a == 0 and b == 1)
    n11 = sum(1 for a, b in zip(candidate, reference) if a == 1 and b == 1)
    n00 = sum(1 for a, b in zip(candidate, reference) if a == 0 and b == 0)
    if n10 + n01 == 0:
        return 1.0  # no document changed: no evidence of a difference
    return float(mcnemar([[n11, n10], [n01, n00]], exact=True).pvalue)


def wilcoxon_p(candidate, reference) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences (zeros dropped)."""
    from scipy.stats import wilcoxon

    d = [a - b for a, b in zip(candidate, reference)]
    if not any(d):
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def is_binary(values) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def paired_test(candidate: dict, reference: dict, *, binary: bool | None = None, confidence: float = CONFIDENCE,
                n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED, where: str = "") -> dict:
    """Compare two {key: outcome} maps on their common keys (a key is (task, doc_id), or
    (seed, task, doc_id) when seeds are pooled). binary None: McNemar when every outcome
    is 0/1, else Wilcoxon. Returns n, diff (candidate - reference), ci_low, ci_high,
    p_value, test. Keys present on one side only are an error: the two models must have
    been scored on the same documents."""
    only_c, only_r = sorted(set(candidate) - set(reference)), sorted(set(reference) - set(candidate))
    if only_c or only_r:
        first = (only_c or only_r)[0]
        raise SoftError(f"{where or 'paired test'}: the two sides were scored on different documents "
                        f"({len(only_c)} only in the candidate, {len(only_r)} only in the reference, e.g. "
                        f"{first}); evaluate both with the same evaluation.limit and tasks")
    keys = sorted(candidate)
    a = [float(candidate[k]) for k in keys]
    b = [float(reference[k]) for k in keys]
    if binary is None:
        binary = is_binary(a) and is_binary(b)
    elif binary and not (is_binary(a) and is_binary(b)):
        raise SoftError(f"{where or 'paired test'}: McNemar needs 0/1 outcomes")
    test = TEST_MCNEMAR if binary else TEST_WILCOXON
    if not keys:
        return _nan_result(0, test)
    low, high = paired_bootstrap_ci(a, b, confidence=confidence, n_resamples=n_resamples, seed=seed)
    p = mcnemar_p(a, b) if binary else wilcoxon_p(a, b)
    diff = sum(x - y for x, y in zip(a, b)) / len(keys)
    return {"n": len(keys), "diff": diff, "ci_low": low, "ci_high": high, "p_value": p, "test": test}


def seed_interval(differences: list[float], *, confidence: float = CONFIDENCE) -> dict:
    """t interval (and one-sample t-test p) over per-seed differences; n = seeds. With one
    seed, or differences that do not vary, only the mean is defined."""
    from scipy.stats import ttest_1samp

    d = [float(x) for x in differences if not math.isnan(float(x))]
    if not d:
        return _nan_result(0, TEST_SEEDS)
    mean = sum(d) / len(d)
    if len(d) < 2 or all(x == d[0] for x in d):
        return {**_nan_result(len(d), TEST_SEEDS), "diff": mean}
    res = ttest_1samp(d, 0.0)
    ci = res.confidence_interval(confidence_level=confidence)
    return {"n": len(d), "diff": mean, "ci_low": float(ci.low), "ci_high": float(ci.high),
            "p_value": float(res.pvalue), "test": TEST_SEEDS}


# ------------------------------------------------------------------ comparisons

def compare(candidate: dict[int, Samples], reference: dict[int, Samples], metrics=ALL_METRICS,
            **kwargs) -> list[dict]:
    """Rows of task, metric, n, diff, ci_low, ci_high, p_value, test for each metric both
    sides have: candidate and reference map seed -> samples of the same seeds. The pooled
    test pairs (seed, task, doc_id); with several seeds a t_over_seeds row follows it."""
    if sorted(candidate) != sorted(reference):
        raise SoftError(f"paired comparison over different seeds: {sorted(candidate)} vs {sorted(reference)}")
    rows = []
    for h in metrics:
        per_seed_c = {s: outcomes(candidate[s], h) for s in sorted(candidate)}
        per_seed_r = {s: outcomes(reference[s], h) for s in sorted(reference)}
        if not all(per_seed_c.values()) or not all(per_seed_r.values()):
            continue  # this benchmark was not evaluated on one side
        pooled_c = {(s, *k): v for s, m in per_seed_c.items() for k, v in m.items()}
        pooled_r = {(s, *k): v for s, m in per_seed_r.items() for k, v in m.items()}
        where = f"{h.task} {h.metric}"
        rows.append({"task": h.task, "metric": h.metric,
                     **paired_test(pooled_c, pooled_r, binary=h.binary, where=where, **kwargs)})
        if len(candidate) > 1:
            diffs = [_mean_diff(per_seed_c[s], per_seed_r[s], where) for s in sorted(candidate)]
            rows.append({"task": h.task, "metric": h.metric,
                         **seed_interval(diffs, confidence=kwargs.get("confidence", CONFIDENCE))})
    return rows


def _mean_diff(candidate: dict, reference: dict, where: str) -> float:
    if set(candidate) != set(reference):
        raise SoftError(f"{where}: the two sides were scored on different documents")
    return sum(candidate[k] - reference[k] for k in candidate) / len(candidate)


def format_diff(row: dict, digits: int = 3) -> str:
    """"+0.040 [-0.010, +0.090], p=0.12" for a table cell; "–" when undefined."""
    diff = row.get("diff")
    if diff is None or (isinstance(diff, float) and math.isnan(diff)):
        return "–"
    low, high, p = row.get("ci_low"), row.get("ci_high"), row.get("p_value")
    text = f"{diff:+.{digits}f}"
    if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
        text += f" [{low:+.{digits}f}, {high:+.{digits}f}]"
    if p is not None and not math.isnan(p):
        text += f", p={p:.2g}" if p >= 0.001 else ", p<0.001"
    return text
