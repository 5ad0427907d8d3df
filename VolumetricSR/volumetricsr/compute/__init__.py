"""Compute layer: the sliding-window engine, predictors, model cards, networks, devices, trust maps."""
