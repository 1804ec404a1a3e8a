"""The app's defaults and choices, in one torch-free module.

The engine's dataclasses take their field defaults from here, and so do the
CLI's ``--help`` texts (which must not import torch) and the GUI's forms, so a
default is typed once. Each value was chosen by a measurement in the README.
"""

from __future__ import annotations

# ---- sampling (engine.sample.SamplerConfig)
# "dpmpp2m": DPM-Solver++ (2M), Lu et al. 2022, a second-order solver of the probability-flow ODE
SAMPLER_KINDS = ("ddpm", "ddim", "dpmpp2m")
VARIANCE_KINDS = ("posterior", "beta")
DEFAULT_SAMPLER = "ddpm"  # Algorithm 2, all T steps
DEFAULT_DDIM_STEPS = 50
DEFAULT_DPM_STEPS = 20  # DPM-Solver++ (2M): Lu et al. report near-converged samples at 15-20 steps
# DDIM noise by default: eta = 1 (ancestral sampling on the shortened chain). On the
# epoch-6 plain model, 5,000 digits with 50 steps scored FD 55.4 and 67.2% confident
# at eta = 1 against FD 73.2 and 61.0% at eta = 0 (README "Quality").
DEFAULT_DDIM_ETA = 1.0
DEFAULT_VARIANCE = "posterior"
# Clipping the predicted x_0 changed nothing measurable for DDPM and DDIM with eta = 1
# (README "Quality"), so their default is Algorithm 2 exactly as written.
DEFAULT_CLIP_X0 = False
# DPM-Solver++ clips by default: a deterministic solver cannot wash out a young model's
# errors with fresh noise, and without clipping 18% of the pixels of the 15-minute model's
# digits ended outside [-1, 1] (as with DDIM at eta = 0; README "Quality per CPU minute").
# Lu et al. 2022 pair DPM-Solver++ with this thresholding for pixel-space models.
DEFAULT_DPM_CLIP_X0 = True
# classifier-free guidance weight for class-conditional models (README "Quality per CPU
# minute": after 15 minutes of the default recipe, 1,000 digits with DDIM 50, eta 1, scored
# w = 0: FD 8.0, 92.1% confident, 94.8% of the asked-for class; w = 0.5: FD 13.0, 99.2%, 99.6%;
# w = 1: FD 31.5, 99.8%; w = 2: FD 63.8, 100%; the real-data floor is FD 4.0, 98.0%).
# 0.5 keeps almost every digit recognisable and the asked-for one, at a third of w = 1's FD.
DEFAULT_GUIDANCE = 0.5

# ---- training
PRESET_NAMES = ("default", "plain", "report")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULE_KINDS = ("linear", "cosine", "rescaled_linear")
