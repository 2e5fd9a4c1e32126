"""Why the attack worked: per-pixel contributions that add up, obscuring vs leading pixels, the ablation proof, attribution maps."""
