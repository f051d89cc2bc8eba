"""Write one round's disjoint slice of the prompt pool."""
from soft.io import write_jsonl
from soft.prompts import split_rounds
from soft.records import read_prompts
from soft.runtime import log, run


def main(smk):
    settings, k = smk.params.settings, smk.params.round
    slices = split_rounds(read_prompts(smk.input.pool), settings["prompt_budget"],
                          settings["rounds"], smk.params.seed)
    write_jsonl(smk.output[0], slices[k - 1])
    log.info("round %d: %d prompts", k, len(slices[k - 1]))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
