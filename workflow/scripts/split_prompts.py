"""Write one round's disjoint slice of the prompt pool (sorted by difficulty first when
the experiment's curriculum works across rounds)."""
from soft.curriculum.difficulty import read_scores
from soft.io import write_jsonl
from soft.prompts.split import split_rounds
from soft.records import read_prompts
from soft.runtime import log, run


def main(smk):
    settings, k = smk.params.settings, smk.params.round
    scores = list(smk.input.scores)  # the pool's difficulty scores, across_rounds only
    slices = split_rounds(read_prompts(smk.input.pool), settings["prompt_budget"], settings["rounds"],
                          smk.params.seed, difficulty=read_scores(scores[0]) if scores else None,
                          order=settings.get("curriculum_order", "none"), where=str(smk.input.pool))
    write_jsonl(smk.output[0], slices[k - 1])
    log.info("round %d: %d prompts", k, len(slices[k - 1]))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
