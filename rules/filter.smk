# Dromedary-style filtering of the raw continuations into training answers. The filter
# rebuilds generate_responses' exemplar pool (same inputs, soft.icl) for its leak check.


rule filter_responses:
    input:
        generations="results/{exp}/data/round{k}_gen.jsonl",
        principles=config["principles"],
        exemplars=config["exemplars"],
        grown=grown_data,
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
        settings=lambda w: experiment(w)["filter"],
        icl=icl_settings,
        grown_rounds=grown_rounds,
        seed=seed_of,
    script:
        "../workflow/scripts/filter_responses.py"
