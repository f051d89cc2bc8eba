# The tidy metrics table and the metric-vs-round figure over every experiment.


rule aggregate_metrics:
    input:
        evals=[entry[3] for entry in eval_table_entries()],
        filter_stats=filter_stats_paths(),
    output:
        csv="results/tables/metrics.csv",
        md="results/tables/metrics.md",
    params:
        entries=eval_table_entries(),
    log:
        "logs/aggregate_metrics.log",
    threads: 1
    resources:
        mem_mb=1000,
        gpu=0,
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/aggregate_metrics.py"


rule plot_metrics:
    input:
        csv="results/tables/metrics.csv",
    output:
        png="results/figures/metric_vs_round.png",
        pdf="results/figures/metric_vs_round.pdf",
    log:
        "logs/plot_metrics.log",
    threads: 1
    resources:
        mem_mb=1000,
        gpu=0,
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/plot_metrics.py"
