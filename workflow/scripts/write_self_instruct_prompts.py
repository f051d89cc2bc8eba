"""Write the prompt pool with the base model (topic-guided self-instruct)."""
from soft.io import write_json, write_jsonl
from soft.runtime import log, run, set_threads
from soft.prompts.self_instruct import SelfInstructSettings, load_question_types, write_pool


def main(smk):
    set_threads(smk.threads)
    settings = SelfInstructSettings.from_config(smk.params.settings)
    qtypes = load_question_types(smk.input.question_types)
    pool, counts = write_pool(smk.input.model, qtypes, settings, smk.params.seed)
    write_jsonl(smk.output.pool, pool)
    write_json(smk.output.stats, counts)
    log.info("wrote %d prompts", len(pool))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
