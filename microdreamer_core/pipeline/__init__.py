"""The method: conditions, SIR (and the SDS baseline), texture refinement, presets, generate()."""
