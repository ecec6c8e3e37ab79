"""Torch modules: autoencoders, conditional U-Net, baselines."""
