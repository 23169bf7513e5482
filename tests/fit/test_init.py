"""The initial Gaussians (microdreamer_core.fit.init): the paper's ball, drawn from the run's generator."""

from __future__ import annotations

import torch

from microdreamer_core.fit.init import InitialGaussians
from microdreamer_core.scene.gaussians import init_ball


def test_sample_is_init_ball_with_the_settings():
    init = InitialGaussians(num=300, radius=0.4, opacity=0.2, sh_degree=1)
    g = init.sample(torch.Generator().manual_seed(3))
    expected = init_ball(300, 0.4, 0.2, sh_degree=1, generator=torch.Generator().manual_seed(3))
    for name, t in g.params().items():
        assert torch.equal(t, expected.params()[name]), name
    assert g.num == 300 and g.sh_degree == 1
    assert (InitialGaussians().num, InitialGaussians().radius, InitialGaussians().opacity) == (
        5000,
        0.5,
        0.1,
    )  # the paper's
