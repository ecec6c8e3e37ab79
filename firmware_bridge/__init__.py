"""Laser-signal sources and the layer edge detector that turns samples into LayerEvents."""
