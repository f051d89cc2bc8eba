"""Answer one round's prompts with the previous round's model, principles and exemplars."""
from soft.generate import GenerationSettings, generate_records
from soft.io import write_jsonl
from soft.principles import load_exemplars, load_principles
from soft.records import read_prompts
from soft.runtime import log, run, set_threads


def main(smk):
    set_threads(smk.threads)
    prompts = read_prompts(smk.input.prompts)
    records = generate_records(
        prompts, smk.input.model, load_principles(smk.input.principles),
        load_exemplars(smk.input.exemplars), GenerationSettings(**smk.params.settings),
        seed=smk.params.seed, round_k=smk.params.round,
    )
    write_jsonl(smk.output[0], records)
    log.info("wrote %d generations", len(records))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
