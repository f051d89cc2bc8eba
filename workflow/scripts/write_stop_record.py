"""results/{exp}/stop.json: the early-stop rule, every validation value and the outcome."""
from soft.validate.early_stop import stop_record, validation_value
from soft.io import read_json, write_json
from soft.runtime import log, run


def main(smk):
    settings = smk.params.settings
    values = [validation_value(read_json(p), settings["metric"]) for p in smk.input.validations]
    record = stop_record(settings, smk.params.rounds, values)
    log.info("%s", record["reason"])
    write_json(smk.output[0], record)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
