"""The things the pipeline works on: cameras, posed views, Gaussians, meshes, splat interchange."""
