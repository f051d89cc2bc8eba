"""storage.keep_round_models: reported. A finished chain keeps only its reported round's model."""
from pathlib import Path

from soft.io import read_json, write_json
from soft.runtime import log, run
from soft.storage.round_models import remove_round_models


def main(smk):
    record = remove_round_models(Path(smk.input.stop).parent / "models", read_json(smk.input.stop),
                                 smk.params.model_round)
    log.info("kept round %d, removed rounds %s", record["kept_round"], record["removed_rounds"])
    write_json(smk.output[0], record)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
