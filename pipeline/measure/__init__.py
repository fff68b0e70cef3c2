"""Measurements: speed, memory, FLOPs, kernels, receptive field and the length sweep."""
