"""Held-out probe answers, collapse diagnostics and the pairwise judge (rules/probe.smk)."""
