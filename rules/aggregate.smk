# The tidy metrics table and the metric-vs-round figure over every experiment.


rule aggregate_metrics:
    input:
        evals=[entry[3] for entry in eval_table_entries()],
        filter_stats=filter_stats_paths(),
    output:
        csv=f"{TABLES_DIR}/metrics.csv",
        md=f"{TABLES_DIR}/metrics.md",
    params:
        entries=eval_table_entries(),
    log:
        f"logs/aggregate_metrics{LOG_SUFFIX}.log",
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
        csv=f"{TABLES_DIR}/metrics.csv",
    output:
        png=f"{FIGURES_DIR}/metric_vs_round.png",
        pdf=f"{FIGURES_DIR}/metric_vs_round.pdf",
    log:
        f"logs/plot_metrics{LOG_SUFFIX}.log",
    threads: 1
    resources:
        mem_mb=1000,
        gpu=0,
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/plot_metrics.py"
