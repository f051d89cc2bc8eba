"""Which paired comparisons a grid implies, and the tidy comparisons table.

Every comparison is a candidate (experiment, round per seed) against a reference
(experiment, round per seed), scored on the same documents (soft.stats):

- each round k >= 1 of a chain against round 0 (the base model) of the same chain;
- each configured pair (config `comparisons`: soft vs single_round, soft_plus vs soft),
  and in `snakemake paper` each ablation experiment vs its config's reference, at the
  fixed budget: each chain's last round, where it has consumed its whole prompt budget
  (a chain stopped early is compared at its last trained round, and the table says so).

A plan is plain data (JSON-able: Snakemake params carry it) built from the runs' chain
lengths; comparison_table reads the sample files it names."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from soft.errors import SoftError
from soft.stats import ALL_METRICS, COMPARISON_COLUMNS, compare, read_samples

BASE_REFERENCE = "round0"
FIXED_BUDGET = "fixed budget"


def rounds_label(rounds: list[int]) -> str:
    """"2" when every seed is at round 2, "1-2" when seeds stopped at different rounds."""
    lo, hi = min(rounds), max(rounds)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def plan_comparisons(runs: dict[str, dict], pairs: list[dict], samples_path: Callable[[str, int], str]) -> list[dict]:
    """runs: instance -> {"experiment", "seed", "rounds_run"}; pairs: [{"experiment",
    "reference"}] (pairs naming an experiment that did not run are left out);
    samples_path(instance, k) -> that round's samples file. Returns specs
    {"experiment", "round", "reference", "reference_round", "kind", "candidate": {seed:
    path}, "baseline": {seed: path}} in a fixed order."""
    by_exp: dict[str, dict[int, tuple[str, int]]] = {}
    for instance, run in sorted(runs.items()):
        seeds = by_exp.setdefault(str(run["experiment"]), {})
        if int(run["seed"]) in seeds:
            raise SoftError(f"experiment {run['experiment']!r} runs twice at seed {run['seed']}")
        seeds[int(run["seed"])] = (instance, int(run["rounds_run"]))
    specs = []
    for exp, seeds in by_exp.items():
        last = max(n for _, n in seeds.values())
        for k in range(1, last + 1):
            have = {s: inst for s, (inst, n) in sorted(seeds.items()) if n >= k}
            specs.append({"experiment": exp, "round": str(k), "reference": exp, "reference_round": "0",
                          "kind": BASE_REFERENCE,
                          "candidate": {s: samples_path(i, k) for s, i in have.items()},
                          "baseline": {s: samples_path(i, 0) for s, i in have.items()}})
        lasts = {s: n for s, (_, n) in seeds.items()}
        if len(set(lasts.values())) > 1:
            # seeds stopped at different rounds: the fixed-budget point (each seed's last
            # round) against round 0, the main table's change from the base model
            specs.append({"experiment": exp, "round": rounds_label(list(lasts.values())), "reference": exp,
                          "reference_round": "0", "kind": FIXED_BUDGET,
                          "candidate": {s: samples_path(i, n) for s, (i, n) in sorted(seeds.items())},
                          "baseline": {s: samples_path(i, 0) for s, (i, _) in sorted(seeds.items())}})
    seen = set()
    for pair in pairs:
        exp, ref = str(pair["experiment"]), str(pair["reference"])
        if exp == ref or (exp, ref) in seen or exp not in by_exp or ref not in by_exp:
            continue
        seen.add((exp, ref))
        common = sorted(set(by_exp[exp]) & set(by_exp[ref]))
        if not common:
            continue
        cand = {s: by_exp[exp][s] for s in common}
        base = {s: by_exp[ref][s] for s in common}
        specs.append({"experiment": exp, "round": rounds_label([n for _, n in cand.values()]), "reference": ref,
                      "reference_round": rounds_label([n for _, n in base.values()]), "kind": FIXED_BUDGET,
                      "candidate": {s: samples_path(i, n) for s, (i, n) in cand.items()},
                      "baseline": {s: samples_path(i, n) for s, (i, n) in base.items()}})
    return specs


def comparison_pairs(configured: list[dict], panels: list[dict] = ()) -> list[dict]:
    """The configured pairs, then each ablation panel's experiments vs its reference."""
    pairs = [{"experiment": p["experiment"], "reference": p["reference"]} for p in configured]
    for panel in panels:
        ref = panel.get("reference")
        if ref:
            pairs += [{"experiment": e, "reference": ref} for e in panel["experiments"] if e != ref]
    return pairs


def comparison_table(specs: list[dict], metrics=ALL_METRICS, **kwargs):
    """The tidy table (soft.stats.COMPARISON_COLUMNS plus kind and n_seeds), one row per
    comparison, metric and test. A sample file is read once however often it is used."""
    import pandas as pd

    cache: dict[str, dict] = {}

    def load(path: str):
        if path not in cache:
            cache[path] = read_samples(path)
        return cache[path]

    rows = []
    for spec in specs:
        seeds = sorted(spec["candidate"], key=int)
        if sorted(spec["baseline"], key=int) != seeds:
            raise SoftError(f"comparison {spec['experiment']} vs {spec['reference']}: the two sides have "
                            f"different seeds")
        cand = {int(s): load(str(spec["candidate"][s])) for s in seeds}
        base = {int(s): load(str(spec["baseline"][s])) for s in seeds}
        for row in compare(cand, base, metrics=metrics, **kwargs):
            rows.append({"experiment": spec["experiment"], "round": spec["round"], "reference": spec["reference"],
                         "reference_round": spec["reference_round"], **row, "kind": spec["kind"],
                         "n_seeds": len(seeds)})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS + ["kind", "n_seeds"])


def write_comparisons(df, path: str | Path) -> None:
    from soft.io import atomic_path

    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n")


# ------------------------------------------------------------------ two sample files

def compare_files(candidate: str | Path, reference: str | Path, metrics=ALL_METRICS) -> list[dict]:
    """Two models' per-document results (round{k}_samples.jsonl, or the same model scored
    two ways, e.g. in bf16 and fp32) on every headline and second-view metric both have:
    the means, the paired test (soft.stats) and how many documents changed."""
    from soft.stats import outcomes

    cand, ref = read_samples(candidate), read_samples(reference)
    rows = []
    for row, h in zip(compare({0: cand}, {0: ref}, metrics=metrics),
                      [h for h in metrics if outcomes(cand, h) and outcomes(ref, h)]):
        c, r = outcomes(cand, h), outcomes(ref, h)
        rows.append({"label": h.label, **row, "reference_mean": sum(r.values()) / len(r),
                     "candidate_mean": sum(c.values()) / len(c),
                     "changed": sum(1 for k in r if abs(c[k] - r[k]) > 1e-9)})
    return rows


def main(argv: list[str] | None = None) -> int:
    """python -m soft.aggregate.comparisons CANDIDATE REFERENCE: print the paired comparison."""
    import argparse
    import sys

    from soft.stats import format_diff

    p = argparse.ArgumentParser(prog="python -m soft.aggregate.comparisons", description=main.__doc__.split(": ", 1)[1])
    p.add_argument("candidate", help="a samples JSONL (results/{exp}/eval/round{k}_samples.jsonl)")
    p.add_argument("reference", help="another, scored on the same documents")
    args = p.parse_args(argv)
    try:
        rows = compare_files(args.candidate, args.reference)
    except SoftError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("| metric | n (documents; HHH: items) | reference | candidate | candidate - reference [95% CI], p | changed |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['n']} | {r['reference_mean']:.3f} | {r['candidate_mean']:.3f} | "
              f"{format_diff(r)} ({r['test']}) | {r['changed']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
