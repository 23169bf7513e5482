"""Multi-view diffusion: DDIM schedules, the multi-view UNet, the models, sampling and loading."""
