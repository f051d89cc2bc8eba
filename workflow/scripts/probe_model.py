"""One model's answers to the probe prompts and their collapse diagnostics."""
from soft.io import write_json, write_jsonl
from soft.principles import load_principles
from soft.probe.answers import probe_model
from soft.records import read_prompts
from soft.runtime import run, set_threads


def main(smk):
    set_threads(smk.threads)
    records, summary = probe_model(smk.input.model, read_prompts(smk.input.prompts),
                                   load_principles(smk.input.principles), smk.params.settings,
                                   smk.params.seed, int(smk.wildcards.k), layout=smk.params.layout)
    write_jsonl(smk.output.answers, records)
    write_json(smk.output.diagnostics, summary)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
