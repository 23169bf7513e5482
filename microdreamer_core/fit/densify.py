"""Adaptive density control for 3D Gaussians, as a strategy object separate from the optimiser loop.

MicroDreamer keeps DreamGaussian's schedule (METHOD.md): at a few fixed steps, Gaussians whose mean
screen-space gradient is large are cloned (small ones) or split in two (large ones), and
transparent or oversized Gaussians are pruned; a final clean-up prunes harder.

The gradient threshold is in the units of the Inria rasteriser, whose screen-space means live in
normalised device coordinates; our rasterisers report pixel positions, so the per-camera gradient
is multiplied by (W/2, H/2) before taking its norm. Each camera's render counts as one observation,
as in the reference, which renders views one at a time.

Host round trips: the per-step bookkeeping never waits for the device. An edit needs the number
of Gaussians it makes on the host (the new tensors' sizes), so a densify-and-prune reads three
counts at once (clone, split, hot) and a prune one (drop); every row selection then uses indices
of known size (``torch.nonzero_static``) instead of boolean masks, each of which would wait for the
device again (about 40 waits per edit before).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..scene.gaussians import quat_to_rotmat

__all__ = ["DensifyConfig", "DensifyStrategy", "edit_parameters"]


@dataclass
class DensifyConfig:
    """When and how to densify and prune (the paper's values)."""

    steps: tuple[int, ...] = (100, 200, 300)
    grad_threshold: float = 0.01
    clone_max_scale: float = 0.04
    split_scale_divisor: float = 1.6
    prune_opacity: float = 0.005
    prune_max_scale: float = 0.4
    final_prune_opacity: float = 0.01
    final_prune_max_scale: float = 0.1
    max_gaussians: int = 200_000


def true_indices(mask: Tensor, count: int) -> Tensor:
    """The indices where the 1-D bool ``mask`` is True, ascending, given their ``count`` (which the
    caller has on the host already): unlike ``mask.nonzero()`` it does not wait for the device."""
    return torch.nonzero_static(mask, size=count).squeeze(1)


def edit_parameters(
    params: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    keep: Tensor,
    extra: dict[str, Tensor] | None = None,
) -> None:
    """Keep the rows ``keep`` (indices; or a bool mask, one host sync more) of every parameter and
    append ``extra`` rows, in place.

    The optimiser's per-parameter state (Adam moments) follows the rows: kept rows keep their
    moments, appended rows start from zero.
    """
    if keep.dtype == torch.bool:
        keep = keep.nonzero().squeeze(1)
    for group in optimizer.param_groups:
        name = group["name"]
        old = group["params"][0]
        new_rows = extra[name] if extra else old.new_zeros((0, *old.shape[1:]))
        new = torch.nn.Parameter(torch.cat([old.detach().index_select(0, keep), new_rows.to(old)], dim=0))
        state = optimizer.state.pop(old, None)
        if state is not None:
            for key, value in state.items():
                if isinstance(value, Tensor) and value.shape == old.shape:
                    zeros = torch.zeros_like(new_rows, dtype=value.dtype)
                    state[key] = torch.cat([value.index_select(0, keep), zeros], dim=0)
            optimizer.state[new] = state
        group["params"][0] = new
        params[name] = new


@dataclass
class DensifyStrategy:
    """Accumulates screen-space gradient statistics and edits the Gaussians at scheduled steps.

    Use: ``pre_backward(render)`` before ``loss.backward()``, ``post_backward(step, params,
    optimizer, render)`` after the optimiser step, and ``final_cleanup(params, optimizer)`` at the end.
    """

    config: DensifyConfig = field(default_factory=DensifyConfig)
    grad_accum: Tensor | None = None
    grad_count: Tensor | None = None
    history: list[dict] = field(default_factory=list)

    def pre_backward(self, render) -> None:
        if render.means2d.requires_grad:
            render.means2d.retain_grad()

    def post_backward(self, step: int, params: dict[str, torch.nn.Parameter], optimizer, render) -> None:
        """Update statistics with this step's render; densify and prune if ``step`` is scheduled."""
        cfg = self.config
        if not cfg.steps or step > max(cfg.steps):
            return
        self._accumulate(render, params["means"].shape[0])
        if step in cfg.steps:
            self._densify_and_prune(params, optimizer, step)

    def _accumulate(self, render, n: int) -> None:
        grad = render.means2d.grad
        if grad is None:
            return
        if self.grad_accum is None or self.grad_accum.shape[0] != n:
            self.grad_accum = torch.zeros(n, device=grad.device)
            self.grad_count = torch.zeros(n, device=grad.device)
        h, w = render.rgb.shape[1:3]
        ndc = grad.detach().clone()  # scaled column by column: no (w/2, h/2) tensor copied to the device
        ndc[..., 0] *= w / 2.0
        ndc[..., 1] *= h / 2.0
        visible = (render.radii > 0).float()  # (C, N)
        self.grad_accum += (ndc.norm(dim=-1) * visible).sum(dim=0)
        self.grad_count += visible.sum(dim=0)

    @torch.no_grad()
    def _densify_and_prune(self, params, optimizer, step: int) -> None:
        cfg = self.config
        n0 = params["means"].shape[0]
        if self.grad_accum is None:
            mean_grad = torch.zeros(n0, device=params["means"].device)
        else:
            mean_grad = self.grad_accum / self.grad_count.clamp(min=1)
        max_scale = params["scales"].exp().amax(dim=-1)
        hot = mean_grad >= cfg.grad_threshold
        room = max(cfg.max_gaussians - n0, 0)
        clone = hot & (max_scale <= cfg.clone_max_scale)
        split = hot & (max_scale > cfg.clone_max_scale)
        n_clone, n_split = _counts(clone, split)  # the host wait of this edit
        if n_clone + n_split > room:  # cap growth: keep the hottest
            order = torch.argsort(torch.where(hot, mean_grad, -1.0), descending=True)
            allowed = torch.zeros_like(hot)
            allowed[order[:room]] = True
            clone, split = clone & allowed, split & allowed
            n_clone, n_split = _counts(clone, split)

        # Clone: an exact copy (the copy then moves apart under the optimiser).
        clone_idx = true_indices(clone, n_clone)
        extra = {name: p.detach().index_select(0, clone_idx) for name, p in params.items()}
        # Split: two samples from the Gaussian itself, each with its scale divided.
        if n_split:
            idx = true_indices(split, n_split).repeat(2)
            std = params["scales"].detach()[idx].exp()
            rot = quat_to_rotmat(params["quats"].detach()[idx])
            offset = (rot @ (torch.randn_like(std) * std)[..., None])[..., 0]
            for name, p in params.items():
                rows = p.detach()[idx]
                if name == "means":
                    rows = rows + offset
                elif name == "scales":
                    rows = rows - torch.log(torch.tensor(cfg.split_scale_divisor))
                extra[name] = torch.cat([extra[name], rows], dim=0)
        edit_parameters(params, optimizer, true_indices(~split, n0 - n_split), extra)
        n1 = params["means"].shape[0]
        pruned = self.prune(params, optimizer, cfg.prune_opacity, cfg.prune_max_scale)
        self.history.append(
            {
                "step": step,
                "cloned": n_clone,
                "split": n_split,
                "pruned": pruned,
                "before": n0,
                "after": n1 - pruned,
            }
        )
        self.grad_accum = self.grad_count = None

    @staticmethod
    @torch.no_grad()
    def prune(params, optimizer, min_opacity: float, max_scale: float) -> int:
        """Remove Gaussians that are nearly transparent or larger than ``max_scale``; returns the count."""
        opacity = torch.sigmoid(params["opacities"].detach())
        too_big = params["scales"].detach().exp().amax(dim=-1) > max_scale
        drop = (opacity < min_opacity) | too_big
        n = drop.shape[0]
        n_drop = int(drop.sum())  # the host wait of this prune
        if n_drop == n:  # never prune to nothing: keep the most opaque one
            drop[opacity.argmax()] = False
            n_drop -= 1
        if n_drop:
            edit_parameters(params, optimizer, true_indices(~drop, n - n_drop))
        return n_drop

    def final_cleanup(self, params, optimizer) -> int:
        cfg = self.config
        return self.prune(params, optimizer, cfg.final_prune_opacity, cfg.final_prune_max_scale)


def _counts(*masks: Tensor) -> list[int]:
    """How many True each bool mask has, read to the host in one transfer."""
    return torch.stack([m.sum() for m in masks]).tolist()
