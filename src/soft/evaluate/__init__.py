"""Benchmark evaluation with lm-eval (rules/evaluate.smk), its shared-prefix cached model,
and the bf16-vs-fp32 scoring check."""
