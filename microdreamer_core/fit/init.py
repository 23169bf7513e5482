"""The Gaussians every fit starts from: the paper's ball (:func:`~..scene.gaussians.init_ball`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..scene.gaussians import Gaussians, init_ball

__all__ = ["InitialGaussians"]


@dataclass
class InitialGaussians:
    """``num`` Gaussians uniform in a ball of ``radius``, of opacity ``opacity``, with colour
    coefficients up to SH degree ``sh_degree`` (the paper's values)."""

    num: int = 5000
    radius: float = 0.5
    opacity: float = 0.1
    sh_degree: int = 0

    def sample(self, generator: torch.Generator) -> Gaussians:
        """The ball, drawn from ``generator`` (the first draws of a run's seeded generator)."""
        return init_ball(self.num, self.radius, self.opacity, sh_degree=self.sh_degree, generator=generator)
