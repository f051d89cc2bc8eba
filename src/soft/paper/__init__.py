"""The paper target (rules/paper.smk): seed summaries, the main table and provenance."""
