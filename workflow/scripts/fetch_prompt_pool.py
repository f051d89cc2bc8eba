"""Take the prompt pool from a Hugging Face hub dataset file (prompts.source: hub)."""
from soft.prompts.hub import fetch_hub_pool
from soft.runtime import log, run


def main(smk):
    stats = fetch_hub_pool(smk.params.settings, smk.output.pool, smk.output.stats)
    log.info("wrote %d prompts from %d rows (%d empty, %d duplicates, %d in drop_categories; %d with "
             "a passage joined)", stats["kept"], stats["rows"], stats["skipped_empty"], stats["duplicates"],
             stats["dropped_category"], stats["with_context"])


# hub=True: this job is a download, so it is not made offline (an HF_HUB_OFFLINE the user
# set still holds, and fails with one message).
run(main, snakemake, hub=True)  # noqa: F821 (injected by Snakemake)
