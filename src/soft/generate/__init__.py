"""Response generation (rules/generate.smk): per-prompt exemplars, the principle-driven
prompts' decoding, and the transformers and vLLM backends."""
