"""From Gaussians to a textured mesh: ``extract`` (density grid, marching cubes, clean-up), ``uv``
(xatlas unwrapping), ``bake`` (texture from Gaussian renders) and ``stage`` (the runner of all three)."""
