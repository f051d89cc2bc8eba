# Dromedary-style filtering of the raw continuations into training answers. Its leak
# check reads the exemplars each prompt was shown from the generation records.


rule filter_responses:
    input:
        generations="results/{exp}/data/round{k}_gen.jsonl",
        principles=config["principles"],
    output:
        data="results/{exp}/data/round{k}.jsonl",
        stats="results/{exp}/data/round{k}_filter.json",
    log:
        "logs/{exp}/filter_responses/round{k}.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        gpu=0,
    params:
        settings=lambda w: experiment(w).filter.to_dict(),
    script:
        "../workflow/scripts/filter_responses.py"
