"""Dromedary-style filtering of raw continuations into training answers (rules/filter.smk)."""
