"""Early stop after round k: does the chain go on to round k+1? (validations of rounds 0..k)"""
from soft.validate.early_stop import decide, validation_value
from soft.io import read_json, write_json
from soft.runtime import log, run


def main(smk):
    s = smk.params.settings
    values = [validation_value(read_json(p), s["metric"]) for p in smk.input.validations]
    verdict = decide(values, s["patience"], s["min_delta"])
    verdict["history"] = [{"round": k, "value": round(v, 6)} for k, v in enumerate(values)]
    log.info("after round %d: %s (%s)", len(values) - 1, "go on" if verdict["continue"] else "stop",
             verdict["reason"])
    write_json(smk.output[0], verdict)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
