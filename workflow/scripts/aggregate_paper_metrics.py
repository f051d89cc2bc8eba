"""results/paper/metrics_by_seed.csv, metrics_summary.csv and comparisons.csv: every
experiment of the paper grid (ablations included) at every seed, the mean / std over
seeds, and the paired comparisons (seeds pooled, plus the t interval over seeds)."""
from soft.aggregate.tables import metrics_table, seed_table
from soft.aggregate.comparisons import comparison_table, write_comparisons
from soft.io import atomic_path
from soft.paper.summary import summarize_seeds
from soft.runtime import log, run


def main(smk):
    by_seed = seed_table(metrics_table(smk.params.entries, smk.params.judges), smk.params.instances)
    summary = summarize_seeds(by_seed)
    for df, path in ((by_seed, smk.output.by_seed), (summary, smk.output.summary)):
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6f")
    comparisons = comparison_table(smk.params.comparisons)
    write_comparisons(comparisons, smk.output.comparisons)
    log.info("%d rows over %d experiments and %d seeds; %d comparison rows", len(by_seed),
             by_seed.experiment.nunique(), by_seed.seed.nunique(), len(comparisons))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
