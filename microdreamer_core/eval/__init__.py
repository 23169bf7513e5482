"""Evaluation: metrics, the reconstruction protocol, the embedded demo object and demo run."""
