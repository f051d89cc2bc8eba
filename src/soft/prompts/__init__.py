"""Prompt pools and their per-round split (rules/prompts.smk): the seeded split, a hub
dataset's prompts, and the base model's own red-teaming prompts (self-instruct)."""
