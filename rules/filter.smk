# Dromedary-style filtering of the raw continuations into training answers.


rule filter_responses:
    input:
        generations="results/{exp}/data/round{k}_gen.jsonl",
        principles=config["principles"],
        exemplars=config["exemplars"],
    output:
        data="results/{exp}/data/round{k}.jsonl",
        stats="results/{exp}/data/round{k}_filter.json",
    params:
        settings=lambda w: experiment(w)["filter"],
    log:
        "logs/{exp}/filter_responses/round{k}.log",
    threads: 1
    resources:
        mem_mb=1000,
        gpu=0,
    script:
        "../workflow/scripts/filter_responses.py"
