"""Studies: the paper's experiments, one module per notebook (and the claims' rules, the training-budget checks)."""
