# `snakemake paper`: every comparison of the paper as figures and tables in results/paper/,
# over the grid's experiments and the ablation configs of paper.include, mean and standard
# deviation over `seeds`, paired comparisons (each round vs round 0, the configured pairs
# and each ablation vs its reference) in comparisons.csv. Every figure and table is in
# `snakemake paper --report report.html`.


rule aggregate_paper_metrics:
    input:
        lambda w: table_inputs(w, experiments=PAPER_EXPERIMENTS),
    output:
        by_seed=report(
            f"{PAPER_DIR}/metrics_by_seed.csv",
            caption="../workflow/report/metrics_by_seed.rst",
            category="Paper",
            subcategory="Tables",
        ),
        summary=report(
            f"{PAPER_DIR}/metrics_summary.csv",
            caption="../workflow/report/metrics_summary.rst",
            category="Paper",
            subcategory="Tables",
        ),
        comparisons=f"{PAPER_DIR}/comparisons.csv",
    log:
        f"logs/paper{LOG_SUFFIX}/aggregate_paper_metrics.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        gpu=0,
    params:
        entries=lambda w: table_entries(experiments=PAPER_EXPERIMENTS),
        judges=lambda w: judge_files(experiments=PAPER_EXPERIMENTS),
        comparisons=lambda w: comparison_specs(experiments=PAPER_EXPERIMENTS, by_name=True, panels=PAPER_PANELS),
        instances=paper_instances(),
    script:
        "../workflow/scripts/aggregate_paper_metrics.py"


rule write_paper_tables:
    input:
        by_seed=f"{PAPER_DIR}/metrics_by_seed.csv",
        comparisons=f"{PAPER_DIR}/comparisons.csv",
        stops=stop_files(PAPER_EXPERIMENTS),
    output:
        csv=report(
            f"{PAPER_DIR}/main_table.csv",
            caption="../workflow/report/main_table.rst",
            category="Paper",
            subcategory="Tables",
        ),
        md=f"{PAPER_DIR}/main_table.md",
        tex=f"{PAPER_DIR}/main_table.tex",
    log:
        f"logs/paper{LOG_SUFFIX}/write_paper_tables.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        gpu=0,
    params:
        instances=paper_instances(),
        main=PAPER_MAIN,
        model_round=PAPER.model_round,
        judge=JUDGE_IN_TABLE,
    script:
        "../workflow/scripts/write_paper_tables.py"


rule plot_paper_figures:
    input:
        by_seed=f"{PAPER_DIR}/metrics_by_seed.csv",
        comparisons=f"{PAPER_DIR}/comparisons.csv",
        stops=stop_files(PAPER_EXPERIMENTS),
    output:
        benchmarks_png=report(
            f"{PAPER_DIR}/benchmarks.png",
            caption="../workflow/report/benchmarks.rst",
            category="Paper",
            subcategory="Figures",
        ),
        benchmarks_pdf=f"{PAPER_DIR}/benchmarks.pdf",
        rounds_png=report(
            f"{PAPER_DIR}/metric_vs_round.png",
            caption="../workflow/report/metric_vs_round.rst",
            category="Paper",
            subcategory="Figures",
        ),
        rounds_pdf=f"{PAPER_DIR}/metric_vs_round.pdf",
        collapse_png=report(
            f"{PAPER_DIR}/collapse.png",
            caption="../workflow/report/collapse.rst",
            category="Paper",
            subcategory="Figures",
        ),
        collapse_pdf=f"{PAPER_DIR}/collapse.pdf",
        ablation_png=report(
            [f"{PAPER_DIR}/ablation_{p['name']}.png" for p in PAPER_PANELS],
            caption="../workflow/report/ablation.rst",
            category="Paper",
            subcategory="Ablations",
        ),
        ablation_pdf=[f"{PAPER_DIR}/ablation_{p['name']}.pdf" for p in PAPER_PANELS],
    log:
        f"logs/paper{LOG_SUFFIX}/plot_paper_figures.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
    params:
        instances=paper_instances(),
        main=PAPER_MAIN,
        panels=PAPER_PANELS,
        model_round=PAPER.model_round,
    script:
        "../workflow/scripts/plot_paper_figures.py"


rule write_provenance:
    input:
        model=BASE_MODEL_DIR,
        benchmarks=BENCHMARK_DIR,
        # written last, so that it describes the code and packages that made the tables
        tables=f"{PAPER_DIR}/main_table.csv",
    output:
        report(
            f"{PAPER_DIR}/provenance.json",
            caption="../workflow/report/provenance.rst",
            category="Paper",
            subcategory="Provenance",
        ),
    log:
        f"logs/paper{LOG_SUFFIX}/write_provenance.log",
    localrule: True
    conda:
        "../envs/train.yaml"  # soft.precision asks torch what the machine has
    threads: 1
    resources:
        mem_mb=500,
        gpu=0,
    params:
        config=config,
        repo=workflow.basedir,
    script:
        "../workflow/scripts/write_provenance.py"


rule paper:
    input:
        paper_outputs(),
