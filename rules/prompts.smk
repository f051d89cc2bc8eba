# Disjoint per-round prompt slices. Each job recomputes the (cheap, seeded) split and
# writes its own round, so the number of outputs can differ between experiments.


rule split_prompts:
    input:
        pool=PROMPTS_FILE,
        scores=split_scores,
    output:
        "results/{exp}/prompts/round{k}.jsonl",
    log:
        "logs/{exp}/split_prompts/round{k}.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=500,
        gpu=0,
    params:
        settings=split_settings,
        round=round_of,
        seed=seed_of,
    script:
        "../workflow/scripts/split_prompts.py"


# prompts.source: self_instruct — the base model writes the pool that the rounds split.
if PROMPT_SOURCE["source"] == "self_instruct":

    rule write_self_instruct_prompts:
        input:
            model=BASE_MODEL_DIR,
            question_types=PROMPT_SOURCE["question_types"],
        output:
            pool=PROMPTS_FILE,
            stats="results/prompt_pool/self_instruct_stats.json",
        log:
            "logs/prompt_pool/write_self_instruct_prompts.log",
        benchmark:
            "benchmarks/prompt_pool/write_self_instruct_prompts.tsv"
        conda:
            "../envs/train.yaml"
        threads: resources_of("write_self_instruct_prompts")["threads"]
        resources:
            mem_mb=resources_of("write_self_instruct_prompts")["mem_mb"],
            gpu=resources_of("write_self_instruct_prompts")["gpu"],
        params:
            settings=PROMPT_SOURCE,
            seed=SEED,
        script:
            "../workflow/scripts/write_self_instruct_prompts.py"


# prompts.source: hub — one field of a Hugging Face hub dataset file becomes the pool.
if PROMPT_SOURCE["source"] == "hub":

    # A download: on a cluster it runs where Snakemake runs, which usually has the network
    # that compute nodes lack.
    rule fetch_prompt_pool:
        input:
            # a copy fetched by hand (prompts.local_file) instead of the download
            local=PROMPT_SOURCE.get("local_file") or [],
        output:
            pool=PROMPTS_FILE,
            stats=HUB_POOL_STATS,
        log:
            "logs/prompt_pool/fetch_prompt_pool.log",
        benchmark:
            "benchmarks/prompt_pool/fetch_prompt_pool.tsv"
        localrule: True
        threads: 1
        resources:
            mem_mb=2000,
            gpu=0,
        params:
            settings=PROMPT_SOURCE,
        script:
            "../workflow/scripts/fetch_prompt_pool.py"
