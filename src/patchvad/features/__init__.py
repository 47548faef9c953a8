"""Patch features: snippets, backbones, parallel extraction, the feature store, PCA reduction."""
