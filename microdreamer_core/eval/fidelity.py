"""Mesh-stage fidelity protocol: is the mesh as faithful as the Gaussians it comes from? (issue 15)

For one :mod:`.fidelity_objects` object:

1. render the ground truth, antialiased (:func:`~.protocol.render_rgba`), from 6 training views
   at ``resolution`` (:func:`fidelity_train_cameras`: azimuths 60 degrees apart from the front,
   elevations alternating 30 degrees above and 15 below, so the tops, the undersides and every
   leg are seen);
2. reconstruct 3D Gaussians from them (:func:`~.fit.reconstruct.reconstruct`, ``steps`` Adam steps);
3. run the mesh stage (:func:`~.meshing.stage.gaussians_to_mesh`, ``mesh`` settings), timing
   each of its steps;
4. score 8 held-out views (:func:`fidelity_eval_cameras`: a ring between the training azimuths,
   one view from high above and one from low below): silhouette IoU and PSNR on white of the Gaussians and of the
   mesh against the truth, and of the mesh against the Gaussians' own renders; image detail
   (:func:`~.metrics.mean_gradient` inside all three silhouettes) of the Gaussians over the truth
   and of the mesh over the Gaussians;
5. surface distances (:func:`~.metrics.point_surface_distance`, fractions of the object radius):
   mean mesh -> truth and truth -> mesh, their mean (two-sided Chamfer), and the mean *signed*
   mesh -> truth distance (positive: the mesh lies outside the true surface, i.e. inflated);
6. for every thin part (chair legs, the bag's handle): the fraction of its surface samples
   within ``coverage_tolerance`` x radius of the mesh (1 = the part is all there);
7. optionally (``bake_on_truth``) the mesh stage's unwrap + bake applied to the *true* geometry:
   its PSNR separates texture loss (the bake) from geometry loss (the extraction).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..fit.fitter import FitRuntime
from ..fit.reconstruct import ReconstructConfig, reconstruct
from ..meshing.bake import BakeConfig, bake_texture
from ..meshing.stage import MeshConfig, gaussians_to_mesh
from ..meshing.uv import unwrap_uv
from ..scene.cameras import Cameras, orbit_cameras
from ..scene.gaussians import Gaussians
from ..scene.mesh import Mesh, sample_surface
from ..scene.views import PosedViews
from .fidelity_objects import FidelityObject
from .metrics import mask_iou, mean_gradient, point_surface_distance, psnr
from .protocol import render_rgba

__all__ = [
    "fidelity_train_cameras",
    "fidelity_eval_cameras",
    "FidelityConfig",
    "FidelityReport",
    "FidelityRun",
    "evaluate_mesh_fidelity",
    "part_coverage",
]

_WHITE = (1.0, 1.0, 1.0)


def fidelity_train_cameras(resolution: int = 128) -> Cameras:
    """The 6 training views: azimuths 0, 60, ..., 300 (0 = the front), elevations alternating
    -30 (above) and 15 (below), radius 2."""
    return orbit_cameras([-30.0, 15.0] * 3, [60.0 * i for i in range(6)], 2.0, resolution)


def fidelity_eval_cameras(resolution: int = 128) -> Cameras:
    """8 held-out views, radius 2: a ring of 6 halfway between the training azimuths (30 + 60 i,
    elevations alternating -15 above and 10 below), one from high above (elevation -60, azimuth
    90) and one from low below (45, 270). Each is at least 25 degrees from every training view."""
    el = [-15.0, 10.0] * 3 + [-60.0, 45.0]
    az = [30.0 + 60.0 * i for i in range(6)] + [90.0, 270.0]
    return orbit_cameras(el, az, 2.0, resolution)


@dataclass
class FidelityConfig:
    """Settings of :func:`evaluate_mesh_fidelity`.

    Attributes:
        steps, resolution, seed, device: the reconstruction (the Duck protocol's 500 steps at 128 px).
        mesh: the mesh stage's settings (its defaults: what users get).
        surface_samples: area-uniform points per surface for the Chamfer distances.
        part_samples: points per thin part for the coverage check.
        coverage_tolerance: a part's point is covered when the mesh is within this x radius.
        bake_on_truth: also unwrap + bake the true geometry (one more bake, ~10 s on a CPU).
    """

    steps: int = 500
    resolution: int = 128
    seed: int = 0
    device: str = "auto"
    mesh: MeshConfig = field(default_factory=MeshConfig)
    surface_samples: int = 20_000
    part_samples: int = 2_000
    coverage_tolerance: float = 0.05
    bake_on_truth: bool = True


@dataclass
class FidelityReport:
    """The protocol's numbers for one object (distances: fractions of the object radius; PSNR in
    dB on white; times in seconds, wall clock)."""

    object: str
    steps: int
    resolution: int
    seed: int
    gaussians: int
    mesh_faces: int
    gaussians_iou: float
    gaussians_psnr_db: float
    mesh_iou: float
    mesh_psnr_db: float
    mesh_vs_gaussians_iou: float
    mesh_vs_gaussians_psnr_db: float
    detail_gaussians_over_truth: float
    detail_mesh_over_gaussians: float
    chamfer: float
    chamfer_mesh_to_truth: float
    chamfer_truth_to_mesh: float
    signed_mesh_to_truth: float
    thin_part_coverage: dict[str, float]
    thin_part_min: float | None
    truth_baked_psnr_db: float | None
    truth_baked_vs_gaussians_psnr_db: float | None
    reconstruct_s: float
    mesh_times_s: dict[str, float]
    mesh_total_s: float
    eval_s: float

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict, floats (also inside dicts) rounded to 4 decimals."""

        def r(v):
            if isinstance(v, float):
                return round(v, 4)
            if isinstance(v, dict):
                return {k: r(x) for k, x in v.items()}
            return v

        return {k: r(v) for k, v in self.__dict__.items()}


@dataclass
class FidelityRun:
    """A scored object: the report, the Gaussians, the mesh and the held-out views."""

    report: FidelityReport
    gaussians: Gaussians
    mesh: Mesh
    truth: PosedViews
    gaussian_views: PosedViews
    mesh_views: PosedViews


def part_coverage(
    obj: FidelityObject, mesh: Mesh, part: str, samples: int, tolerance: float, generator: torch.Generator
) -> float:
    """Fraction of ``samples`` area-uniform points of ``obj``'s ``part`` within ``tolerance``
    (world units) of ``mesh``'s surface."""
    points = sample_surface(obj.mesh, samples, generator, faces=obj.parts[part])[0]
    dist = point_surface_distance(points, mesh, generator=generator)[0]
    return float((dist <= tolerance).float().mean())


def _detail(rgb: torch.Tensor, alphas: list[torch.Tensor]) -> float:
    """mean_gradient inside every silhouette, eroded by one pixel (the silhouette edge is no detail)."""
    inside = torch.stack(alphas).amin(0)
    inside = -torch.nn.functional.max_pool2d(-inside[:, None], 3, stride=1, padding=1)[:, 0]
    return mean_gradient(rgb, inside > 0.99)


def evaluate_mesh_fidelity(
    obj: FidelityObject, config: FidelityConfig | None = None, gaussians: Gaussians | None = None
) -> FidelityRun:
    """Run the protocol (module docstring) on ``obj``; ``gaussians`` skips the reconstruction
    (e.g. a saved one: ``reconstruct_s`` is then 0)."""
    cfg = FidelityConfig() if config is None else config
    gen = torch.Generator().manual_seed(cfg.seed)
    res = int(cfg.resolution)
    train_cams, eval_cams = fidelity_train_cameras(res), fidelity_eval_cameras(res)
    truth = PosedViews(render_rgba(obj.mesh, eval_cams), eval_cams)

    reconstruct_s = 0.0
    if gaussians is None:
        train = PosedViews(render_rgba(obj.mesh, train_cams), train_cams)
        rc = ReconstructConfig(steps=int(cfg.steps), runtime=FitRuntime(seed=int(cfg.seed), device=cfg.device))
        result = reconstruct(train, rc)
        gaussians, reconstruct_s = result.gaussians, result.seconds
    gaussians = gaussians.detach().to("cpu")

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    mesh = gaussians_to_mesh(gaussians, cfg.mesh, timings=times)
    mesh_total = time.perf_counter() - t0

    t1 = time.perf_counter()
    g_views = PosedViews(render_rgba(gaussians, eval_cams), eval_cams)
    m_views = PosedViews(render_rgba(mesh, eval_cams), eval_cams)
    t_rgb, g_rgb, m_rgb = truth.rgb_on(_WHITE), g_views.rgb_on(_WHITE), m_views.rgb_on(_WHITE)
    alphas = [truth.masks, g_views.masks, m_views.masks]

    radius = float(obj.radius)
    n = int(cfg.surface_samples)
    mesh_points = sample_surface(mesh, n, gen)[0]
    dist, closest, face = point_surface_distance(mesh_points, obj.mesh, max(n, 50_000), generator=gen)
    signed = ((mesh_points - closest) * obj.mesh.face_normals()[face]).sum(-1).sign() * dist
    truth_points = sample_surface(obj.mesh, n, gen)[0]
    m2t = float(dist.mean())
    t2m = float(point_surface_distance(truth_points, mesh, max(n, 50_000), generator=gen)[0].mean())
    coverage = {
        p: part_coverage(obj, mesh, p, int(cfg.part_samples), cfg.coverage_tolerance * radius, gen)
        for p in obj.thin_parts
    }

    baked_psnr = baked_vs_g = None
    if cfg.bake_on_truth:
        plain = Mesh(obj.mesh.vertices, obj.mesh.faces, normals=obj.mesh.normals)
        unwrapped = unwrap_uv(plain, texture_size=int(cfg.mesh.texture_size), charts=cfg.mesh.uv_charts)
        bake = BakeConfig(texture_size=int(cfg.mesh.texture_size), render_resolution=int(cfg.mesh.bake_resolution))
        baked = bake_texture(unwrapped, gaussians, bake)
        b_rgb = PosedViews(render_rgba(baked, eval_cams), eval_cams).rgb_on(_WHITE)
        baked_psnr, baked_vs_g = psnr(b_rgb, t_rgb), psnr(b_rgb, g_rgb)

    report = FidelityReport(
        object=obj.name,
        steps=int(cfg.steps),
        resolution=res,
        seed=int(cfg.seed),
        gaussians=gaussians.num,
        mesh_faces=mesh.num_faces,
        gaussians_iou=mask_iou(g_views.masks, truth.masks),
        gaussians_psnr_db=psnr(g_rgb, t_rgb),
        mesh_iou=mask_iou(m_views.masks, truth.masks),
        mesh_psnr_db=psnr(m_rgb, t_rgb),
        mesh_vs_gaussians_iou=mask_iou(m_views.masks, g_views.masks),
        mesh_vs_gaussians_psnr_db=psnr(m_rgb, g_rgb),
        detail_gaussians_over_truth=_detail(g_rgb, alphas) / max(_detail(t_rgb, alphas), 1e-8),
        detail_mesh_over_gaussians=_detail(m_rgb, alphas) / max(_detail(g_rgb, alphas), 1e-8),
        chamfer=(m2t + t2m) / 2 / radius,
        chamfer_mesh_to_truth=m2t / radius,
        chamfer_truth_to_mesh=t2m / radius,
        signed_mesh_to_truth=float(signed.mean()) / radius,
        thin_part_coverage=coverage,
        thin_part_min=min(coverage.values()) if coverage else None,
        truth_baked_psnr_db=baked_psnr,
        truth_baked_vs_gaussians_psnr_db=baked_vs_g,
        reconstruct_s=float(reconstruct_s),
        mesh_times_s=dict(times),
        mesh_total_s=mesh_total,
        eval_s=time.perf_counter() - t1,
    )
    return FidelityRun(report, gaussians, mesh, truth, g_views, m_views)
