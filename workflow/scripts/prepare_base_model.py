"""Fetch or convert the base model into resources/models/<name> (safetensors)."""
from pathlib import Path

from soft.base_model import prepare_base_model
from soft.runtime import run, set_threads


def main(smk):
    set_threads(smk.threads)
    out = Path(smk.output[0])
    prepare_base_model(smk.params.source, out, out.parent.parent / "downloads")


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
