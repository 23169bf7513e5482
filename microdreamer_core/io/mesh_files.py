"""Mesh files (glTF/GLB, OBJ) read into a :class:`~microdreamer_core.scene.mesh.Mesh`, and trimesh interchange.

Loading policy (:func:`load_mesh`)
----------------------------------
Files are read with trimesh as a scene; every triangle geometry is instanced with its node's
world transform and all parts are concatenated into one :class:`Mesh`. Colour is resolved per
part, in this order: PBR ``baseColorTexture * baseColorFactor`` or a simple material's image
(with uvs) -> texture; a material colour without an image, vertex colours or face colours ->
vertex colours; nothing -> grey 0.5. The parts are then combined:

* every part textured and all of them use the same image (compared by pixels, as glTF
  primitives sharing one material do) -> one texture, uvs unchanged;
* every part textured with different images (the Duck asset here: body + eye) -> the images
  are packed side by side into one atlas and the uvs remapped into their tile. Each tile is
  padded by wrapping the image around, enough to cover uvs overshooting [0, 1] by up to 0.25
  (REPEAT semantics, glTF's default) plus a bilinear margin, so nothing bleeds between tiles;
* truly tiling uvs (further outside [0, 1]) cannot be atlased; then, and whenever textured and
  untextured parts are mixed, the whole mesh falls back to vertex colours, sampling each
  textured part's image at its vertex uvs (loses detail between vertices but never fails).

Face colours are kept exact by giving every face its own three vertices.

Any file that cannot be read this way (corrupt, truncated, empty, no triangles, face indices out
of range, NaN coordinates, a texture over the pixel limit of :mod:`.images`) is refused with one
:class:`~microdreamer_core.errors.InputError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, shown
from ..scene.mesh import GREY, Mesh
from .images import check_pixels, pixel_guard

__all__ = ["load_mesh", "mesh_from_trimesh", "mesh_to_trimesh", "SUPPORTED_EXTENSIONS"]

SUPPORTED_EXTENSIONS = (".glb", ".gltf", ".obj")
_ATLAS_PAD = 2  # texels of extra wrap padding around each atlas tile (bilinear footprint)
_MAX_UV_OVERSHOOT = 0.25  # uvs further outside [0, 1] than this cannot be atlased (tiling textures)


@dataclass
class _Part:
    """One scene geometry in world space with its colour source (numpy, float32)."""

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None = None
    image: np.ndarray | None = None  # (H, W, 3) in [0, 1], row 0 = top
    colors: np.ndarray | None = None  # (V, 3) in [0, 1]


def _as_unit_rgba(color) -> np.ndarray | None:
    """A trimesh colour (uint8 0-255 or float 0-1, RGB or RGBA) as float RGBA in [0, 1]."""
    if color is None:
        return None
    c = np.asarray(color, dtype=np.float64).reshape(-1)
    if np.issubdtype(np.asarray(color).dtype, np.integer) or c.max() > 1.0:
        c = c / 255.0
    if c.size == 3:
        c = np.append(c, 1.0)
    return c.astype(np.float32)


def _image_to_array(image) -> np.ndarray:
    """PIL image (any mode) -> (H, W, 3) float32 in [0, 1], alpha dropped; its size is checked
    against the pixel limit before it is decoded."""
    check_pixels(image.size, "a texture of the mesh")
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _sample_image(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``image`` at OpenGL uvs with repeat wrapping (numpy; loader fallback)."""
    h, w = image.shape[:2]
    x = (uv[:, 0] - np.floor(uv[:, 0])) * w - 0.5
    y = (1.0 - (uv[:, 1] - np.floor(uv[:, 1]))) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    xs0, xs1 = x0 % w, (x0 + 1) % w
    ys0, ys1 = y0 % h, (y0 + 1) % h
    top = image[ys0, xs0] * (1 - fx) + image[ys0, xs1] * fx
    bottom = image[ys1, xs0] * (1 - fx) + image[ys1, xs1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _part_from_trimesh(geom) -> _Part:
    """Extract world-space arrays and the colour source of one (already transformed) trimesh."""
    import trimesh

    vertices = np.asarray(geom.vertices, dtype=np.float32)
    faces = np.asarray(geom.faces, dtype=np.int64)
    part = _Part(vertices, faces)
    visual = geom.visual

    if isinstance(visual, trimesh.visual.TextureVisuals):
        material = visual.material
        image, factor = None, None
        if isinstance(material, trimesh.visual.material.PBRMaterial):
            image = material.baseColorTexture
            factor = _as_unit_rgba(material.baseColorFactor)
        elif material is not None:  # SimpleMaterial (OBJ/MTL): map_Kd, else Kd
            image = getattr(material, "image", None)
            if image is None:
                factor = _as_unit_rgba(getattr(material, "diffuse", None))
        uv = visual.uv
        if image is not None and uv is not None and len(uv) == len(vertices):
            tex = _image_to_array(image)
            if factor is not None:
                tex = tex * factor[:3]
            part.image = np.clip(tex, 0.0, 1.0)
            part.uvs = np.asarray(uv, dtype=np.float32)
        elif (gltf_colors := visual.vertex_attributes.get("color")) is not None and len(gltf_colors) == len(vertices):
            # glTF COLOR_0 next to a material: trimesh keeps it as a raw attribute, in linear light.
            linear = _as_unit_rgba_array(gltf_colors)[:, :3]
            if factor is not None:
                linear = linear * srgb_to_linear(factor[:3])
            part.colors = linear_to_srgb(linear).astype(np.float32)
        elif factor is not None:
            part.colors = np.tile(factor[:3], (len(vertices), 1))
    elif isinstance(visual, trimesh.visual.ColorVisuals) and visual.defined:
        if visual.kind == "face":
            # Unshare vertices so every face keeps its own flat colour.
            fc = _as_unit_rgba_array(visual.face_colors)[:, :3]
            part.vertices = vertices[faces].reshape(-1, 3)
            part.faces = np.arange(3 * len(faces), dtype=np.int64).reshape(-1, 3)
            part.colors = np.repeat(fc, 3, axis=0)
        else:
            part.colors = _as_unit_rgba_array(visual.vertex_colors)[:, :3]
    return part


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB electro-optical transfer function (IEC 61966-2-1), element-wise on [0, 1]."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Inverse of :func:`srgb_to_linear`. glTF vertex colours are linear; ours are sRGB-encoded."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


def _as_unit_rgba_array(colors) -> np.ndarray:
    c = np.asarray(colors)
    out = c.astype(np.float32)
    if np.issubdtype(c.dtype, np.integer) or out.max(initial=0.0) > 1.0:
        out = out / 255.0
    if out.shape[1] == 3:
        out = np.concatenate([out, np.ones_like(out[:, :1])], axis=1)
    return out


def _scene_parts(scene) -> list[_Part]:
    """Every triangle geometry of a trimesh scene, instanced with its node's world transform."""
    import trimesh

    parts = []
    for node in scene.graph.nodes_geometry:
        transform, geom_name = scene.graph[node]
        geom = scene.geometry.get(geom_name)
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue  # point clouds, paths, empty meshes
        # Transform our arrays rather than a trimesh copy: copies drop glTF vertex attributes.
        part = _part_from_trimesh(geom)
        m = np.asarray(transform, dtype=np.float64)
        part.vertices = (part.vertices.astype(np.float64) @ m[:3, :3].T + m[:3, 3]).astype(np.float32)
        if np.linalg.det(m[:3, :3]) < 0:  # a mirroring transform flips the winding
            part.faces = part.faces[:, ::-1].copy()
        parts.append(part)
    return parts


def _pack_atlas(images: list[np.ndarray], uvs: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Place images side by side (top-aligned) and remap each image's uvs into its tile.

    Every tile is padded by wrapping the image around (np.pad "wrap"): uvs that overshoot [0, 1]
    by up to the padding still see the texture repeated, like glTF's default REPEAT sampler, and
    bilinear filtering at a tile border reads the wrapped neighbour instead of the next tile.
    """
    tiles, pads = [], []
    for im, uv in zip(images, uvs, strict=True):
        h, w = im.shape[:2]
        over_u = max(0.0, -float(uv[:, 0].min()), float(uv[:, 0].max()) - 1.0)
        over_v = max(0.0, -float(uv[:, 1].min()), float(uv[:, 1].max()) - 1.0)
        px, py = int(np.ceil(over_u * w)) + _ATLAS_PAD, int(np.ceil(over_v * h)) + _ATLAS_PAD
        tiles.append(np.pad(im, ((py, py), (px, px), (0, 0)), mode="wrap"))
        pads.append((px, py))
    atlas_h = max(t.shape[0] for t in tiles)
    atlas_w = sum(t.shape[1] for t in tiles)
    atlas = np.zeros((atlas_h, atlas_w, 3), dtype=np.float32)
    new_uvs, x = [], 0
    for im, tile, (px, py), uv in zip(images, tiles, pads, uvs, strict=True):
        h, w = im.shape[:2]
        atlas[: tile.shape[0], x : x + tile.shape[1]] = tile
        # The original image starts px columns into the tile and py rows below the atlas top.
        u = (x + px + uv[:, 0] * w) / atlas_w
        v = 1.0 - (py + (1.0 - uv[:, 1]) * h) / atlas_h
        new_uvs.append(np.stack([u, v], axis=1).astype(np.float32))
        x += tile.shape[1]
    return atlas, new_uvs


def _merge_parts(parts: list[_Part]) -> Mesh:
    """Concatenate parts into one Mesh following the texture/vertex-colour policy above."""
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    vertices = np.concatenate([p.vertices for p in parts])
    faces = np.concatenate([p.faces + o for p, o in zip(parts, offsets, strict=True)])

    textured = [p.image is not None for p in parts]
    if all(textured):
        # Deduplicate images by content (glTF primitives often share one texture).
        unique: dict[bytes, int] = {}
        images: list[np.ndarray] = []
        index = []
        for p in parts:
            key = p.image.shape.__repr__().encode() + p.image.tobytes()
            if key not in unique:
                unique[key] = len(images)
                images.append(p.image)
            index.append(unique[key])
        if len(images) == 1:
            uvs = np.concatenate([p.uvs for p in parts])
            return Mesh(
                torch.from_numpy(vertices), torch.from_numpy(faces), torch.from_numpy(uvs), torch.from_numpy(images[0])
            )
        in_range = all(p.uvs.min() >= -_MAX_UV_OVERSHOOT and p.uvs.max() <= 1 + _MAX_UV_OVERSHOOT for p in parts)
        if in_range:
            # Each distinct image becomes one tile; every part's uvs go into its image's tile.
            group_uvs = [
                np.concatenate([p.uvs for p, i in zip(parts, index, strict=True) if i == k]) for k in range(len(images))
            ]
            atlas, packed = _pack_atlas(images, group_uvs)
            cursor = [0] * len(images)
            uvs = []
            for p, i in zip(parts, index, strict=True):
                uvs.append(packed[i][cursor[i] : cursor[i] + len(p.uvs)])
                cursor[i] += len(p.uvs)
            return Mesh(
                torch.from_numpy(vertices),
                torch.from_numpy(faces),
                torch.from_numpy(np.concatenate(uvs)),
                torch.from_numpy(atlas),
            )

    # Vertex-colour fallback: sample textures at vertex uvs, grey where nothing is defined.
    colors = []
    for p in parts:
        if p.image is not None:
            colors.append(_sample_image(p.image, p.uvs))
        elif p.colors is not None:
            colors.append(p.colors.astype(np.float32))
        else:
            colors.append(np.full((len(p.vertices), 3), GREY, dtype=np.float32))
    return Mesh(
        torch.from_numpy(vertices), torch.from_numpy(faces), vertex_colors=torch.from_numpy(np.concatenate(colors))
    )


def load_mesh(path: str | Path) -> Mesh:
    """Load a .glb/.gltf/.obj file as one world-space :class:`Mesh` with vertex normals.

    See the module docstring for how scenes, materials and several textures are combined.
    Raises :class:`~.errors.InputError` (a ``ValueError``) for a missing file, an unsupported
    extension and any file that is not a readable triangle mesh.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InputError(f"mesh file not found: {shown(path)}")
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputError(
            f"unsupported mesh format '{shown(ext or '(none)')}' for {shown(path.name)}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    try:
        with pixel_guard(f"a texture of {path.name}"):
            parts = _scene_parts(trimesh.load(str(path), force="scene"))
            mesh = _merge_parts(parts) if parts else None
    except InputError:
        raise
    except Exception as exc:  # trimesh raises many exception types for corrupt files
        raise InputError(
            f"could not read mesh file {shown(path)} ({type(exc).__name__}: {shown(exc, 120)}): "
            "check that it is a valid .glb/.gltf/.obj"
        ) from None
    if mesh is None:
        raise InputError(f"{shown(path)} contains no triangles")
    mesh.check(f"mesh file {shown(path)}")
    return mesh.compute_vertex_normals()


# ----------------------------------------------------------------------------------------
# trimesh conversion
# ----------------------------------------------------------------------------------------
def mesh_to_trimesh(mesh: Mesh):
    """A ``trimesh.Trimesh`` with the same vertices, faces and normals (no processing/merging).

    A texture becomes ``TextureVisuals`` (uvs as they are: trimesh uses our OpenGL convention)
    with a ``PBRMaterial`` whose ``baseColorTexture`` is an 8-bit RGB PIL image (metallic 0,
    roughness 0.9, like :func:`microdreamer_core.io.export.save_glb`); vertex colours become
    ``ColorVisuals`` (uint8 RGBA); otherwise trimesh's default visuals.
    """
    import trimesh
    from PIL import Image

    cpu = mesh.to("cpu")
    vertices = cpu.vertices.detach().numpy()
    faces = cpu.faces.numpy()
    normals = None if cpu.normals is None else cpu.normals.detach().numpy()
    visual = None
    if cpu.has_texture:
        tex = cpu.texture.detach().numpy()
        tex = np.repeat(tex, 3, axis=2) if tex.shape[2] == 1 else tex[..., :3]
        image = Image.fromarray(np.clip(np.round(tex * 255.0), 0, 255).astype(np.uint8), "RGB")
        material = trimesh.visual.material.PBRMaterial(
            name="microdreamer", baseColorTexture=image, metallicFactor=0.0, roughnessFactor=0.9
        )
        visual = trimesh.visual.TextureVisuals(uv=cpu.uvs.detach().numpy(), material=material)
    elif cpu.vertex_colors is not None:
        rgb = np.clip(np.round(cpu.vertex_colors.detach().numpy() * 255.0), 0, 255).astype(np.uint8)
        rgba = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
        visual = trimesh.visual.ColorVisuals(vertex_colors=rgba)
    return trimesh.Trimesh(vertices=vertices, faces=faces, vertex_normals=normals, visual=visual, process=False)


def mesh_from_trimesh(geometry) -> Mesh:
    """A :class:`Mesh` from a ``trimesh.Trimesh`` or ``trimesh.Scene``, by :func:`load_mesh`'s rules.

    Colour sources resolve as in the loader (texture, else vertex/face/material colours, else
    grey); a scene's parts are placed by their node transforms and merged. Vertex normals are
    recomputed (area-weighted), as the loader does.
    """
    import trimesh

    if isinstance(geometry, trimesh.Scene):
        parts = _scene_parts(geometry)
    elif isinstance(geometry, trimesh.Trimesh):
        parts = [_part_from_trimesh(geometry)] if len(geometry.faces) else []
    else:
        raise InputError(f"expected a trimesh.Trimesh or trimesh.Scene, got {type(geometry).__name__}")
    if not parts:
        raise InputError("the trimesh geometry contains no triangles")
    return _merge_parts(parts).compute_vertex_normals()
