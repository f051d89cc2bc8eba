# soft: bootstrapped self-alignment (SOFT / SOFT+, Self-Align) as a Snakemake workflow.
#
#   snakemake --cores all                      # the default grid on this machine
#   snakemake --cores all --resources gpu=8    # one GPU box
#   snakemake -n                               # show the bootstrapping chain
from pathlib import Path

from snakemake.utils import min_version

from soft.config import extend_config, load_schema, validate_schema
from soft.errors import SoftError, refuse
from soft.gpu_slots import check_gpu_requests

min_version("9.0")


report: "workflow/report/workflow.rst"


# A config given with --configfile replaces the default grid rather than being merged
# into it, so an ablation config never inherits the default experiments.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# An ablation config may name the config it modifies (`extends:`); its experiments replace
# the base grid. A key that moved (generation.shots -> icl.shots) is named with its new
# place, before the schema reports it as merely unexpected. The schema check is soft's,
# not snakemake.utils.validate: that one prints the whole schema and config around the one
# line that matters. Defaults are filled by soft.config (schema <- defaults <- experiment),
# not here: filling them into the raw config would mask the values of `defaults`.
try:
    _extended = extend_config(config)
    if _extended is not config:
        config.clear()
        config.update(_extended)
    validate_schema(config, load_schema(Path(workflow.basedir) / "config" / "schema" / "config.schema.yaml"))
except SoftError as e:
    refuse(e, "invalid configuration")


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/prompts.smk"
include: "rules/curriculum.smk"
include: "rules/generate.smk"
include: "rules/filter.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/validate.smk"
include: "rules/probe.smk"
include: "rules/aggregate.smk"
include: "rules/paper.smk"
include: "rules/storage.smk"


# Every rule's gpu (config, or --set-resources) against --resources gpu=N: checked now,
# since Snakemake would cap an oversized job silently instead of failing.
try:
    check_gpu_requests(
        {r.name: r.resources.get("gpu").value for r in workflow.rules if isinstance(r.resources.get("gpu").value, int)},
        workflow.global_resources.get("gpu").value,
    )
except SoftError as e:
    refuse(e, "invalid resources")


rule all:
    default_target: True
    input:
        final_outputs(),
