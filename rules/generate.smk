# Round k's data is written by round k-1's model (round 0 = the base model), prompted
# with the principles and a few sampled exemplars.


rule generate_responses:
    input:
        prompts="results/{exp}/prompts/round{k}.jsonl",
        model=generation_model,
        principles=config["principles"],
        exemplars=config["exemplars"],
    output:
        "results/{exp}/data/round{k}_gen.jsonl",
    params:
        settings=lambda w: experiment(w)["generation"],
        round=round_of,
        seed=SEED,
    log:
        "logs/{exp}/generate_responses/round{k}.log",
    benchmark:
        "benchmarks/{exp}/generate_responses/round{k}.tsv"
    threads: resources_of("generate_responses")["threads"]
    resources:
        mem_mb=resources_of("generate_responses")["mem_mb"],
        gpu=resources_of("generate_responses")["gpu"],
    script:
        "../workflow/scripts/generate_responses.py"
