"""Degradation models and datasets for training pairs."""
