"""Datasets: the dataset folder format, adapters from public benchmarks, the synthetic benchmark."""
