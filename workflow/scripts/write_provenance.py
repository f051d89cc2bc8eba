"""results/paper/provenance.json: config hash, git commit, package versions, base model and
benchmark hashes."""
from soft.paper.provenance import provenance, write_provenance
from soft.runtime import log, run


def main(smk):
    record = provenance(smk.params.config, smk.params.repo, smk.input.model, smk.input.benchmarks)
    write_provenance(smk.output[0], record)
    log.info("git commit %s (dirty: %s), config %s", record["git"]["commit"], record["git"]["dirty"],
             record.get("config_hash"))


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
