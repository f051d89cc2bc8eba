# SOFT+ difficulty scores (perplexity under the curriculum's scorer model). Across rounds
# the experiment's whole prompt budget is scored once, before the split; within a round
# each round's filtered answers are scored before that round trains.


rule score_pool_difficulty:
    input:
        pool=PROMPTS_FILE,
        model=BASE_MODEL_DIR,
        principles=config["principles"],
    output:
        "results/{exp}/curriculum/pool_scores.jsonl",
    log:
        "logs/{exp}/score_pool_difficulty.log",
    benchmark:
        "benchmarks/{exp}/score_pool_difficulty.tsv"
    conda:
        "../envs/train.yaml"
    threads: resources_of("score_pool_difficulty")["threads"]
    resources:
        mem_mb=resources_of("score_pool_difficulty")["mem_mb"],
        gpu=resources_of("score_pool_difficulty")["gpu"],
    params:
        curriculum=curriculum_of,
        prompt_budget=lambda w: experiment(w).prompt_budget,
        max_length=lambda w: experiment(w).train.max_length,
        seed=seed_of,
        layout=LAYOUT,
    script:
        "../workflow/scripts/score_difficulty.py"


rule score_round_difficulty:
    input:
        data="results/{exp}/data/round{k}.jsonl",
        model=curriculum_scorer_model,
        principles=config["principles"],
    output:
        "results/{exp}/curriculum/round{k}_scores.jsonl",
    log:
        "logs/{exp}/score_round_difficulty/round{k}.log",
    benchmark:
        "benchmarks/{exp}/score_round_difficulty/round{k}.tsv"
    conda:
        "../envs/train.yaml"
    threads: resources_of("score_round_difficulty")["threads"]
    resources:
        mem_mb=resources_of("score_round_difficulty")["mem_mb"],
        gpu=resources_of("score_round_difficulty")["gpu"],
    params:
        curriculum=curriculum_of,
        max_length=lambda w: experiment(w).train.max_length,
        seed=seed_of,
        layout=LAYOUT,
    script:
        "../workflow/scripts/score_difficulty.py"
