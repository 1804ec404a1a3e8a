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
# classifier-free guidance weight for class-conditional models, the one weight that meets the
# quality issue's targets both after 15 minutes and for the bundled model (README "Quality per
# CPU minute"; DDIM 50, eta 1, digits 0-9 in turn):
#   15 minutes of the default recipe, n = 1,000 (real-data floor FD 4.00, 98.0% confident):
#     w = 0: FD 8.04, 92.1% confident; w = 0.1: FD 6.17, 94.8%; w = 0.25: FD 6.92, 97.1%;
#     w = 0.5: FD 13.0, 99.2%; w = 1: FD 31.5, 99.8%.
#   the bundled default-conditional (14.6 epochs), n = 5,000 (floor FD 1.66, 97.9%):
#     w = 0: FD 2.03, 97.0%; w = 0.1: FD 2.58, 97.9%; w = 0.25: FD 4.20, 98.8%; w = 0.5: FD 7.74, 99.7%.
# A little guidance lowers a young model's FD and raises its confidence; on the converged model
# every step of w moves FD away from the floor. 0.1 keeps FD within 1.6x the floor on both.
DEFAULT_GUIDANCE = 0.1

# autoguidance weight g (Karras et al. 2024, "Guiding a diffusion model with a bad version of
# itself") for models whose checkpoint carries a guide network, a weaker copy of the model:
# eps = eps(x, t) + g (eps(x, t) - eps_guide(x, t)). Checkpoints without a guide ignore it.
# The bundled unconditional model carries its own run's 6.7-epoch weights as guide. Its
# 49.6-epoch weights at n = 5,000 (DDIM 50, eta 1; real-data floor FD 1.66, 97.9% confident):
#   g = 0: FD 3.77, 91.1%; g = 0.5: FD 2.38, 93.9%; g = 1: FD 2.59, 94.9%, every share within
#   1.6 points; g = 2: FD 3.87 (2.3x), 96.6%, 1s at 12.4%.
# On those weights g = 1 was the most confident weight that kept FD within 2x the floor and every
# share within 2 points (the quality issue's targets); 0.5, the default before, was chosen at n = 1,000
# on younger weights, where g = 1 drifted the shares. The 67.2-epoch weights at g = 1: FD 2.72,
# 96.0%; at g = 1.5: 96.98% and 96.8% confident, FD 1.99x and 2.05x (seeds 0 and 1). The shipped
# weights, fine-tuned to 75 epochs (lr 2e-4, EMA 0.9998), keep the confidence and lower FD (g = 1:
# FD 2.11, 1.28x, 95.9%), room that g = 1.5 turns into surer digits: FD 2.73 and 2.81 (1.65x and
# 1.67x their floors), 97.1% and 97.0% confident, every share within 1.3 and 1.5 points (seeds 0, 1).
# README "The bundled models".
DEFAULT_AUTOGUIDANCE = 1.5

# the guidance interval: autoguidance only at steps whose t is above this (0 = every step). On the
# 49.6-epoch weights at n = 5,000, g = 2 scored FD 3.87 / 96.6% confident on every step, 3.70 / 96.4% above
# t = 50 and 3.49 / 95.9% above t = 100: narrowing the interval trades confidence for FD about as
# lowering g does, so every step stays the default (README "The bundled models").
DEFAULT_AUTOGUIDANCE_MIN_T = 0

# ---- training
PRESET_NAMES = ("default", "plain", "report")
# the default preset's training settings (presets.PRESETS["default"] is built from them, and the
# train command's --help quotes them); the report's recipe keeps TrainConfig's own (Adam 1e-3,
# batch 128, no EMA, a constant rate), and "plain" sets its own
DEFAULT_BATCH_SIZE = 32
DEFAULT_LR = 1e-3
DEFAULT_EMA_DECAY = 0.999
DEFAULT_LR_SCHEDULE = "cosine"  # to the end of the epoch or time budget
DEFAULT_WARMUP_STEPS = 100
DEFAULT_GRAD_CLIP = 1.0
DEFAULT_EPOCHS = 50
DEFAULT_PATIENCE = 5
DEFAULT_TIMESTEPS = 300
DEFAULT_SCHEDULE = "rescaled_linear"  # the linear schedule rescaled by 1000/T (README "Quality")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULE_KINDS = ("linear", "cosine", "rescaled_linear")
