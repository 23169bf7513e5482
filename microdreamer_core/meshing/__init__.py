"""From Gaussians to a textured mesh: extraction, uv unwrap, baking, the mesh-stage runner."""
