"""Score one round's model on the experiment's validation set (early stop's input)."""
from soft.validate.early_stop import score_validation
from soft.io import write_json
from soft.principles import load_principles
from soft.runtime import log, run, set_threads


def main(smk):
    set_threads(smk.threads)
    result = score_validation(smk.input.model, smk.params.settings, load_principles(smk.input.principles),
                              smk.input.benchmarks or "", smk.params.batch_size, smk.params.limit,
                              smk.params.seed, layout=smk.params.layout)
    log.info("validation %s: %s", result["validation"], result["metrics"])
    write_json(smk.output[0], result)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
