"""Score one model on the configured lm-eval tasks; write the normalised result JSON."""
from soft.evaluate import evaluate_model
from soft.runtime import run, set_threads


def main(smk):
    set_threads(smk.threads)
    s = smk.params.settings
    evaluate_model(smk.input.model, s["tasks"], smk.input.benchmarks, smk.output[0],
                   batch_size=s["batch_size"], limit=s.get("limit"), seed=smk.params.seed,
                   **({"model_class": s["model_class"]} if "model_class" in s else {}))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
