"""Every disk format and safe writing: images, transforms.json, PLY, mesh files, GLB/OBJ export."""
