"""Sequence backbones: one contract (models/base.py), registered by decorator (models/registry.py)."""
