"""Plot metric vs cumulative training prompts, one line per experiment."""
import pandas as pd

from soft.aggregate import plot_metric_vs_round
from soft.runtime import run


def main(smk):
    plot_metric_vs_round(pd.read_csv(smk.input.csv), smk.output.png, smk.output.pdf)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
