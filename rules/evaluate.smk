# lm-eval on local benchmark tasks. Round 0 (the base model) is evaluated once, as
# results/base_model/eval/round0.json, and shared by every experiment.


rule evaluate_model:
    input:
        model=eval_model,
        benchmarks=BENCHMARK_DIR,
        # the layout view's system prompt (principles.yaml system_prompt)
        principles=config["principles"],
    output:
        result="results/{exp}/eval/round{k}.json",
        # per-document metrics, to pair documents across rounds and experiments
        samples="results/{exp}/eval/round{k}_samples.jsonl",
    log:
        "logs/{exp}/evaluate_model/round{k}.log",
    benchmark:
        "benchmarks/{exp}/evaluate_model/round{k}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: resources_of("evaluate_model")["threads"]
    resources:
        mem_mb=resources_of("evaluate_model")["mem_mb"],
        gpu=resources_of("evaluate_model")["gpu"],
    params:
        settings=LM_EVAL_SETTINGS,
        seed=seed_of,
        layout=LAYOUT,
    script:
        "../workflow/scripts/evaluate_model.py"
