# Principle engraving: fine-tune on round k's filtered answers, starting from round k-1
# (train.init: previous) or from the base model (train.init: base).


rule train_model:
    input:
        data=train_data,
        init=train_init_model,
        principles=config["principles"],
        scores=training_scores,
    output:
        directory("results/{exp}/models/round{k}"),
    log:
        "logs/{exp}/train_model/round{k}.log",
    benchmark:
        "benchmarks/{exp}/train_model/round{k}.tsv"
    conda:
        "../envs/train.yaml"
    threads: resources_of("train_model")["threads"]
    resources:
        mem_mb=resources_of("train_model")["mem_mb"],
        gpu=resources_of("train_model")["gpu"],
    params:
        settings=lambda w: experiment(w).train.to_dict(),
        curriculum=curriculum_of,
        round=round_of,
        seed=seed_of,
        work_dir=lambda w: f"results/{w.exp}/train_work/round{w.k}",
        layout=LAYOUT,
    script:
        "../workflow/scripts/train_model.py"


# The steps and losses of round k's training, out of its model card, for the tables: the
# model folder itself may be removed once the chain has finished (storage.smk).


rule record_training:
    input:
        model="results/{exp}/models/round{k}",
    output:
        "results/{exp}/train/round{k}.json",
    log:
        "logs/{exp}/record_training/round{k}.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=500,
        gpu=0,
    script:
        "../workflow/scripts/record_training.py"
