# Round k's data is written by round k-1's model (round 0 = the base model; with
# generation.model: base, by the base model in every round), prompted
# with the principles and a few exemplars chosen per the experiment's `icl` mode; in
# growing mode the pool also holds the answers accepted in rounds 1..k-1.


rule generate_responses:
    input:
        prompts="results/{exp}/prompts/round{k}.jsonl",
        model=generation_model,
        principles=config["principles"],
        exemplars=config["exemplars"],
        grown=grown_data,
    output:
        "results/{exp}/data/round{k}_gen.jsonl",
    log:
        "logs/{exp}/generate_responses/round{k}.log",
    benchmark:
        "benchmarks/{exp}/generate_responses/round{k}.tsv"
    conda:
        generation_env
    threads: resources_of("generate_responses")["threads"]
    resources:
        mem_mb=resources_of("generate_responses")["mem_mb"],
        gpu=resources_of("generate_responses")["gpu"],
    params:
        settings=generation_settings,
        icl=icl_settings,
        grown_rounds=grown_rounds,
        round=round_of,
        seed=seed_of,
        gpus=job_gpus,
    script:
        "../workflow/scripts/generate_responses.py"
