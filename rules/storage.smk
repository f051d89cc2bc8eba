# storage.keep_round_models: reported. Once a chain has finished (stop.json needs every
# evaluation, validation and probe of the chain, hence every job that read one of its
# models) and every round's training record is written (the tables read those, not the
# models), every round model but the reported one is removed (soft.storage.round_models).


rule remove_round_models:
    input:
        unpack(removal_inputs),
    output:
        "results/{exp}/round_models_removed.json",
    log:
        "logs/{exp}/remove_round_models.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=500,
        gpu=0,
    params:
        model_round=PAPER.model_round,
    script:
        "../workflow/scripts/remove_round_models.py"
