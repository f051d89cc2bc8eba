"""Round k's training record (steps, losses) out of its model card, for the tables."""
from soft.io import write_json
from soft.runtime import run
from soft.train.finetune import training_record


def main(smk):
    write_json(smk.output[0], training_record(smk.input.model))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
