"""SIR's last clean-up: the reference's floater filter (microdreamer_core.fit.floaters)."""

from __future__ import annotations

import torch

from microdreamer_core.fit.floaters import (
    FloaterFilterConfig,
    floater_candidates,
    remove_floaters,
)
from microdreamer_core.pipeline.sir import SIRConfig
from microdreamer_core.scene.gaussians import Gaussians, rgb_to_sh0

SMALL = FloaterFilterConfig(resolution=96)


def _gaussians(means, scales, opacities, colors) -> Gaussians:
    n = len(means)
    return Gaussians(
        means=torch.as_tensor(means, dtype=torch.float32),
        scales=torch.log(torch.as_tensor(scales, dtype=torch.float32))[:, None].expand(n, 3).clone(),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(n, 4).clone(),
        opacities=torch.logit(torch.as_tensor(opacities, dtype=torch.float32)),
        sh0=rgb_to_sh0(torch.as_tensor(colors, dtype=torch.float32))[:, None],
        shN=torch.zeros(n, 0, 3),
    )


def _scene() -> tuple[Gaussians, dict[str, int]]:
    """An opaque grey object (a ball of small Gaussians) plus four planted Gaussians."""
    gen = torch.Generator().manual_seed(0)
    n = 1500
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    means = d * 0.3 * torch.rand(n, 1, generator=gen) ** (1 / 3)
    obj = _gaussians(means, [0.04] * n, [0.95] * n, [[0.4, 0.4, 0.45]] * n)
    planted = _gaussians(
        [
            [0.7, 0.35, 0.1],  # floater: large and over-white, in the open -> removed
            [0.0, 0.0, 0.0],  # large over-white Gaussian inside the object: removing it changes nothing -> kept
            [-0.7, 0.3, 0.0],  # small over-white Gaussian (scale < 0.01) -> not a candidate
            [0.0, 0.7, -0.5],
        ],  # large but not over-white -> not a candidate
        [0.08, 0.06, 0.005, 0.08],
        [0.9, 0.9, 0.9, 0.9],
        [[1.3, 1.25, 1.2], [1.3, 1.3, 1.3], [1.4, 1.4, 1.4], [0.95, 1.2, 1.2]],
    )
    g = Gaussians(**{k: torch.cat([getattr(obj, k), getattr(planted, k)]) for k in Gaussians.PARAMS})
    return g, {"floater": n, "inside": n + 1, "small": n + 2, "grey_big": n + 3}


def _contains(g: Gaussians, point) -> bool:
    return bool(((g.means - torch.tensor(point)).norm(dim=-1) < 1e-6).any())


def test_candidates_are_large_and_brighter_than_white():
    g, idx = _scene()
    cand = floater_candidates(g)
    assert cand[idx["floater"]] and cand[idx["inside"]]
    assert not cand[idx["small"]] and not cand[idx["grey_big"]]
    assert int(cand.sum()) == 2  # the object's grey Gaussians are not candidates


def test_planted_white_floater_is_removed_and_the_object_kept():
    g, idx = _scene()
    out, removed = remove_floaters(g, SMALL, backend="torch")
    assert removed == 1 and out.num == g.num - 1
    assert not _contains(out, [0.7, 0.35, 0.1])
    for point in ([0.0, 0.0, 0.0], [-0.7, 0.3, 0.0], [0.0, 0.7, -0.5]):
        assert _contains(out, point)
    assert torch.equal(out.means[: idx["floater"]], g.means[: idx["floater"]])  # the object, untouched


def test_floater_filter_at_the_reference_settings_and_in_sir():
    g, _ = _scene()
    out, removed = remove_floaters(g, backend="torch")  # 6 cameras at 512 px, fovy 49
    assert removed == 1 and not _contains(out, [0.7, 0.35, 0.1])
    assert SIRConfig().floaters == FloaterFilterConfig()  # on by default in every SIR run
    assert remove_floaters(g[:1500], SMALL)[1] == 0  # nothing to do without candidates
