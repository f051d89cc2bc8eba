"""Which round models a finished chain keeps (rules/storage.smk)."""
