"""Score one model on the configured lm-eval tasks (layout view and raw view); write the
normalised result JSON and the per-document results."""
from soft.evaluate.harness import evaluate_model
from soft.principles import load_principles
from soft.runtime import run, set_threads


def main(smk):
    set_threads(smk.threads)
    s = smk.params.settings
    evaluate_model(smk.input.model, s["tasks"], smk.input.benchmarks, smk.output.result,
                   batch_size=s["batch_size"], limit=s.get("limit"), seed=smk.params.seed,
                   raw_tasks=s.get("raw_tasks"), system_prompt=load_principles(smk.input.principles).system_prompt,
                   layout=smk.params.layout, samples_out=smk.output.samples, precision=s.get("precision", "fp32"),
                   **({"model_class": s["model_class"]} if "model_class" in s else {}))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
