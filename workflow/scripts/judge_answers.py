"""Pairwise judging of each round's probe answers against round 0's (and the reference
experiment's last round): win / tie / loss, both answer orders."""
from soft.io import write_json
from soft.probe.judge import make_judge, run_comparisons
from soft.runtime import run, set_threads


def main(smk):
    set_threads(smk.threads)
    judge = make_judge(smk.params.settings, smk.input.judge_model or None, layout=smk.params.layout)
    write_json(smk.output[0], run_comparisons(judge, smk.params.comparisons, smk.wildcards.exp))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
