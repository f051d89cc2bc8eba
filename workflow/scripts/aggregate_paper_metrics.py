"""results/paper/metrics_by_seed.csv and metrics_summary.csv: every experiment of the paper
grid (ablations included) at every seed, and the mean / std over seeds."""
from soft.aggregate import metrics_table, seed_table
from soft.io import atomic_path
from soft.paper import summarize_seeds
from soft.runtime import log, run


def main(smk):
    by_seed = seed_table(metrics_table(smk.params.entries, smk.params.judges), smk.params.instances)
    summary = summarize_seeds(by_seed)
    for df, path in ((by_seed, smk.output.by_seed), (summary, smk.output.summary)):
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6f")
    log.info("%d rows over %d experiments and %d seeds", len(by_seed), by_seed.experiment.nunique(),
             by_seed.seed.nunique())


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
