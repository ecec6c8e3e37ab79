"""Layer analysis: metrics, segmentation, 3D stack, roughness, anomaly flags, reports."""
