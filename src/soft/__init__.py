"""soft: bootstrapped self-alignment (SOFT / SOFT+, Self-Align) as a Snakemake workflow.

The workflow's scripts are thin wrappers; everything they compute lives in this package,
which is what the unit tests import.
"""

__version__ = "0.1.0"
