"""Validation and the early stop of a chain (rules/validate.smk)."""
