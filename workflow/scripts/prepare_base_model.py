"""Fetch or convert the base model into resources/models/<name> (safetensors)."""
from pathlib import Path

from soft.resources.base_model import prepare_base_model
from soft.runtime import run, set_threads


def main(smk):
    set_threads(smk.threads)
    out = Path(smk.output[0])
    # base_model.template only checks the tokenizer here (chat needs a chat template), it
    # changes nothing in the folder: read from the config, not a param, so a changed
    # template does not rebuild the base model
    prepare_base_model(smk.params.source, out, out.parent.parent / "downloads",
                       template=smk.config["base_model"].get("template", "auto"))


# A hub model is a download: that job alone is not made offline (an HF_HUB_OFFLINE the
# user set still holds).
run(main, snakemake, hub=snakemake.params.source["kind"] == "hub")  # noqa: F821 (injected by Snakemake)
