"""Evaluation: metrics, the reconstruction protocol, the embedded demo object and demo run, and the
mesh-stage fidelity protocol with its test objects."""
