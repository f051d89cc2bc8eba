# soft: bootstrapped self-alignment (SOFT / SOFT+, Self-Align) as a Snakemake workflow.
#
#   snakemake --cores all                      # the default grid on this machine
#   snakemake --cores all --resources gpu=8    # one GPU box
#   snakemake -n                               # show the bootstrapping chain
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema/config.schema.yaml")


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/prompts.smk"
include: "rules/generate.smk"
include: "rules/filter.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
