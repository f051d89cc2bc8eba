"""Perplexity of each example under the curriculum's scorer model (SOFT+): the budget
prompts of an experiment (scope across_rounds) or one round's filtered answers
(within_round), one score record per example."""
from soft.curriculum.difficulty import score_records
from soft.io import write_jsonl
from soft.principles import load_principles
from soft.prompts.split import budget_prompts
from soft.records import read_prompts, read_training_data
from soft.runtime import log, run, set_threads


def main(smk):
    set_threads(smk.threads)
    cur = smk.params.curriculum
    if "pool" in smk.input.keys():
        records = budget_prompts(read_prompts(smk.input.pool), smk.params.prompt_budget, smk.params.seed,
                                 where=str(smk.input.pool))
    else:
        records = read_training_data(smk.input.data)
    scores = score_records(records, smk.input.model, load_principles(smk.input.principles),
                           cur["target"], cur["batch_size"], smk.params.max_length, layout=smk.params.layout)
    write_jsonl(smk.output[0], scores)
    log.info("scored %d examples (target %s, scorer %s)", len(scores), cur["target"], smk.input.model)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
