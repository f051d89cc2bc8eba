"""The grid's report (rules/aggregate.smk): tidy tables, paired comparisons and every
figure (the paper's figures too)."""
