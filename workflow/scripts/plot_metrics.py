"""The figures: metric vs cumulative training prompts (error bars: paired CI of the change
from round 0), and collapse signals vs round."""
from pathlib import Path

import pandas as pd

from soft.aggregate import plot_collapse, plot_metric_vs_round
from soft.io import read_json
from soft.runtime import run


def main(smk):
    df = pd.read_csv(smk.input.csv)
    comparisons = pd.read_csv(smk.input.comparisons, dtype={"round": str, "reference_round": str})
    plot_metric_vs_round(df, smk.output.png, smk.output.pdf, comparisons)
    stops = {Path(p).parent.name: read_json(p) for p in smk.input.stops}
    plot_collapse(df, stops, smk.output.collapse_png, smk.output.collapse_pdf)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
