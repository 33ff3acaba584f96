"""Choosing the optimizer and the learning rate by measurement: LR range test, cross-validated search, studies."""
