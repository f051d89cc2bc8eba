"""The grid's figures, drawn as the paper's are (soft.aggregate.figures) with one seed: headline
metrics vs cumulative training prompts (error bars: paired CI of the change from round 0),
and every collapse signal vs round."""
from pathlib import Path

import pandas as pd

from soft.aggregate.tables import one_seed
from soft.aggregate.figures import COLLAPSE_PANELS, plot_collapse_panel, plot_rounds
from soft.io import read_json
from soft.paper.summary import summarize_seeds
from soft.runtime import log, run


def main(smk):
    df = one_seed(pd.read_csv(smk.input.csv))
    comparisons = pd.read_csv(smk.input.comparisons, dtype={"round": str, "reference_round": str})
    experiments = sorted(df.experiment.unique())
    notes = plot_rounds(summarize_seeds(df), experiments, smk.output.png, smk.output.pdf,
                        "SOFT vs single-round Self-Align (round 0 = base model)", comparisons,
                        x="n_train_prompts")
    stops = {(Path(p).parent.name, 0): read_json(p) for p in smk.input.stops}
    notes += plot_collapse_panel(df, stops, experiments, smk.output.collapse_png, smk.output.collapse_pdf,
                                 panels=tuple(COLLAPSE_PANELS), drop_empty=True,
                                 title="Collapse signals by round (x = early stop: the next round was not run)")
    for note in notes:
        log.info("note: %s", note)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
