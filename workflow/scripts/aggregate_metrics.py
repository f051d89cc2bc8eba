"""Collect every evaluation and collapse signal into the tidy metrics table (CSV and
Markdown), and the paired comparisons into comparisons.csv."""
import pandas as pd

from soft.aggregate.tables import judge_comparison_rows, metrics_table, write_table
from soft.aggregate.comparisons import comparison_table, write_comparisons
from soft.io import read_json
from soft.runtime import log, run


def main(smk):
    df = metrics_table(smk.params.entries, smk.params.judges)
    comparisons = comparison_table(smk.params.comparisons)
    judged = [r for path in smk.params.judges for r in judge_comparison_rows(read_json(path))]
    if judged:
        comparisons = pd.concat([comparisons, pd.DataFrame(judged, columns=comparisons.columns)], ignore_index=True)
    write_comparisons(comparisons, smk.output.comparisons)
    write_table(df, smk.output.csv, smk.output.md, comparisons, judge=smk.params.judge)
    log.info("%d rows, %d comparison rows", len(df), len(comparisons))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
