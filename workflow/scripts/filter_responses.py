"""Filter raw continuations into training answers; count every drop by reason."""
from soft.errors import SoftError
from soft.filters import FilterSettings, filter_records
from soft.icl import IclSettings, load_pool
from soft.io import write_json, write_jsonl
from soft.principles import load_principles
from soft.records import read_generations
from soft.runtime import log, run


def main(smk):
    principles = load_principles(smk.input.principles)
    # The same pool generate_responses drew from (grown exemplars included), so the leak
    # check compares each answer with the exemplars its prompt was actually shown.
    pool = load_pool(smk.input.exemplars, IclSettings.from_config(smk.params.icl), smk.params.seed,
                     list(zip(smk.params.grown_rounds, smk.input.grown)), principles.self_id)
    settings = FilterSettings.from_config(smk.params.settings, principles.self_id)
    kept, stats = filter_records(read_generations(smk.input.generations), {e["id"]: e for e in pool}, settings)
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
