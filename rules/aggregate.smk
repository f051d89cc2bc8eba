# The tidy metrics table (lm-eval, validation, probe diagnostics, filter drop rates,
# training examples and steps, judge), the paired comparisons (each round vs round 0,
# the configured pairs at the fixed budget) and the figures over every experiment,
# whatever length each chain ran to.


rule aggregate_metrics:
    input:
        table_inputs,
    output:
        csv=report(f"{TABLES_DIR}/metrics.csv", caption="../workflow/report/metrics.rst", category="Grid"),
        md=f"{TABLES_DIR}/metrics.md",
        comparisons=f"{TABLES_DIR}/comparisons.csv",
    log:
        f"logs/aggregate_metrics{LOG_SUFFIX}.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        gpu=0,
    params:
        entries=table_entries,
        judges=judge_files,
        comparisons=comparison_specs,
        judge=JUDGE_IN_TABLE,
    script:
        "../workflow/scripts/aggregate_metrics.py"


rule plot_metrics:
    input:
        csv=f"{TABLES_DIR}/metrics.csv",
        comparisons=f"{TABLES_DIR}/comparisons.csv",
        stops=stop_files(),
    output:
        png=report(f"{FIGURES_DIR}/metric_vs_round.png", caption="../workflow/report/grid_figures.rst", category="Grid"),
        pdf=f"{FIGURES_DIR}/metric_vs_round.pdf",
        collapse_png=report(
            f"{FIGURES_DIR}/collapse.png", caption="../workflow/report/grid_figures.rst", category="Grid"
        ),
        collapse_pdf=f"{FIGURES_DIR}/collapse.pdf",
    log:
        f"logs/plot_metrics{LOG_SUFFIX}.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        gpu=0,
    script:
        "../workflow/scripts/plot_metrics.py"
