"""Collect every evaluation and collapse signal into the tidy metrics table (CSV and Markdown)."""
from soft.aggregate import metrics_table, write_table
from soft.runtime import log, run


def main(smk):
    df = metrics_table(smk.params.entries, smk.params.judges)
    write_table(df, smk.output.csv, smk.output.md)
    log.info("%d rows", len(df))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
