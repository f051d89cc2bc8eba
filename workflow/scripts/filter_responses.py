"""Filter raw continuations into training answers; count every drop by reason."""
from soft.errors import SoftError
from soft.filter.responses import FilterSettings, filter_records
from soft.io import write_json, write_jsonl
from soft.principles import load_principles
from soft.records import read_generations
from soft.runtime import log, run


def main(smk):
    principles = load_principles(smk.input.principles)
    settings = FilterSettings.from_config(smk.params.settings, principles.self_id)
    # Each record carries the exemplars its prompt was shown (grown ones included): the
    # leak check reads them there, not from a rebuilt pool.
    kept, stats = filter_records(read_generations(smk.input.generations), settings)
    log.info("kept %d of %d; dropped %s", stats["kept"], stats["total"], stats["dropped"])
    if not kept:
        raise SoftError(
            f"{smk.input.generations}: the filter kept none of {stats['total']} answers "
            f"(dropped: {stats['dropped']}); nothing to train round on. Loosen the 'filter' "
            f"settings or check the generations"
        )
    write_jsonl(smk.output.data, kept)
    write_json(smk.output.stats, stats)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
