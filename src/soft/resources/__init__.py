"""What the workflow fetches once (rules/resources.smk): the base model as a safetensors
folder, and the evaluation tasks built from the BIG-bench sdist (with the overlap check
between the project's own text files and their questions)."""
