"""Fitting 3D Gaussians to posed images: the fitter, densification, floater filter, plain reconstruction."""
