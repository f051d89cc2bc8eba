"""SOFT+'s curriculum (rules/curriculum.smk): difficulty as perplexity, and the orders
built from it."""
