"""Training loops, losses, distillation and export helpers (needs the train extra)."""
