# Validation-based early stop. decide_next_round is a checkpoint: the chain's length is
# read from its outputs (rounds_run in common.smk), so round k+1 is planned only after
# round k's decision says the chain goes on. write_stop_record keeps the outcome.


rule validate_model:
    input:
        model=eval_model,
        validation=lambda w: early_stop_of(w.exp)["validation"] if validation_is_file(w) else [],
        principles=config["principles"],
        benchmarks=lambda w: [] if validation_is_file(w) else BENCHMARK_DIR,
    output:
        "results/{exp}/validation/round{k}.json",
    log:
        "logs/{exp}/validate_model/round{k}.log",
    benchmark:
        "benchmarks/{exp}/validate_model/round{k}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: resources_of("validate_model")["threads"]
    resources:
        mem_mb=resources_of("validate_model")["mem_mb"],
        gpu=resources_of("validate_model")["gpu"],
    params:
        settings=lambda w: early_stop_of(w.exp),
        batch_size=EVALUATION.batch_size,
        limit=EVALUATION.limit,
        seed=seed_of,
        layout=LAYOUT,
    script:
        "../workflow/scripts/validate_model.py"


checkpoint decide_next_round:
    input:
        validations=lambda w: [validation_path(w.exp, j) for j in range(round_of(w) + 1)],
    output:
        "results/{exp}/validation/round{k}_decision.json",
    log:
        "logs/{exp}/decide_next_round/round{k}.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=500,
        gpu=0,
    params:
        settings=lambda w: early_stop_of(w.exp),
    script:
        "../workflow/scripts/decide_next_round.py"


rule write_stop_record:
    input:
        unpack(stop_inputs),
    output:
        "results/{exp}/stop.json",
    log:
        "logs/{exp}/write_stop_record.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=500,
        gpu=0,
    params:
        settings=lambda w: early_stop_of(w.exp),
        rounds=lambda w: EXPERIMENTS[w.exp].rounds,
    script:
        "../workflow/scripts/write_stop_record.py"
