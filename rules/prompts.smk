# Disjoint per-round prompt slices. Each job recomputes the (cheap, seeded) split and
# writes its own round, so the number of outputs can differ between experiments.


rule split_prompts:
    input:
        pool=config["prompts"],
        scores=split_scores,
    output:
        "results/{exp}/prompts/round{k}.jsonl",
    params:
        settings=split_settings,
        round=round_of,
        seed=SEED,
    log:
        "logs/{exp}/split_prompts/round{k}.log",
    threads: 1
    resources:
        mem_mb=500,
        gpu=0,
    script:
        "../workflow/scripts/split_prompts.py"
