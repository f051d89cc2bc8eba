# Collapse diagnostics and the judge's answers: every round's model answers the held-out
# probe prompts (evaluation.probe). Round 0 (the base model) is probed once, under
# results/base_model/, and shared by every experiment.


rule probe_model:
    input:
        model=eval_model,
        prompts=PROBE.prompts or [],
        principles=config["principles"],
    output:
        answers="results/{exp}/probe/round{k}.jsonl",
        diagnostics="results/{exp}/probe/round{k}_diagnostics.json",
    log:
        "logs/{exp}/probe_model/round{k}.log",
    benchmark:
        "benchmarks/{exp}/probe_model/round{k}.tsv"
    conda:
        "../envs/train.yaml"
    threads: resources_of("probe_model")["threads"]
    resources:
        mem_mb=resources_of("probe_model")["mem_mb"],
        gpu=resources_of("probe_model")["gpu"],
    params:
        settings=PROBE.to_dict(),
        seed=seed_of,
        layout=LAYOUT,
    script:
        "../workflow/scripts/probe_model.py"


rule judge_answers:
    input:
        answers=judge_inputs,
        judge_model=JUDGE.model or BASE_MODEL_DIR if JUDGE.kind == "local" else [],
    output:
        "results/{exp}/judge.json",
    log:
        "logs/{exp}/judge_answers.log",
    benchmark:
        "benchmarks/{exp}/judge_answers.tsv"
    conda:
        "../envs/train.yaml"
    threads: resources_of("judge_answers")["threads"]
    resources:
        mem_mb=resources_of("judge_answers")["mem_mb"],
        gpu=resources_of("judge_answers")["gpu"],
    params:
        comparisons=lambda w: [(k, label, cand, ref) for k, label, cand, ref in judge_comparisons(w.exp)],
        settings=JUDGE.to_dict(),
        layout=JUDGE_LAYOUT,
    script:
        "../workflow/scripts/judge_answers.py"
