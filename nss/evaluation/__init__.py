"""Evaluation: the metrics, every head of a trained network on a split next to the trivial predictor, Δ_MTL."""
