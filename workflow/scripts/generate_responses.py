"""Answer one round's prompts with the previous round's model, principles and exemplars."""
from soft.generate.decoding import GenerationSettings
from soft.generate.responses import generate_records
from soft.generate.icl import IclSettings, load_pool
from soft.io import write_jsonl
from soft.principles import load_principles
from soft.records import read_prompts
from soft.runtime import log, run, set_threads


def main(smk):
    set_threads(smk.threads)
    prompts = read_prompts(smk.input.prompts)
    principles = load_principles(smk.input.principles)
    icl = IclSettings.from_config(smk.params.icl)
    # Earlier rounds' accepted answers join the pool in growing mode only (else no inputs).
    pool = load_pool(smk.input.exemplars, icl, smk.params.seed,
                     list(zip(smk.params.grown_rounds, smk.input.grown)), principles.self_id)
    records = generate_records(
        prompts, smk.input.model, principles, pool, GenerationSettings(**smk.params.settings), icl,
        seed=smk.params.seed, round_k=smk.params.round, gpus=smk.params.gpus,
        # a machine setting read from the config, not a param: a new interpreter path is
        # no reason to rerun generation (and everything after it)
        vllm_python=smk.config.get("vllm_python"),
    )
    write_jsonl(smk.output[0], records)
    log.info("wrote %d generations", len(records))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
