"""The app's defaults and choices, in one torch-free module.

The engine's dataclasses take their field defaults from here, and so do the
CLI's ``--help`` texts (which must not import torch) and the GUI's forms, so a
default is typed once. The measurements behind the values are in docs/quality.md.
"""

from __future__ import annotations

# ---- sampling (engine.diffusion.scheduling.SamplerConfig)
# "dpmpp2m": DPM-Solver++ (2M), Lu et al. 2022, a second-order solver of the probability-flow ODE
SAMPLER_KINDS = ("ddpm", "ddim", "dpmpp2m")
VARIANCE_KINDS = ("posterior", "beta")
DEFAULT_SAMPLER = "ddpm"  # Algorithm 2, all T steps
DEFAULT_DDIM_STEPS = 50
DEFAULT_DPM_STEPS = 20  # DPM-Solver++ (2M): Lu et al. report near-converged samples at 15-20 steps
# eta = 1 (fresh noise at every step) scored better than eta = 0 at 50 steps
# (docs/quality.md, "Earlier measurements", 3. Sampler).
DEFAULT_DDIM_ETA = 1.0
DEFAULT_VARIANCE = "posterior"
# DDPM and DDIM run Algorithm 2 and DDIM as written, unclipped (no measurement of clipping
# them is recorded: docs/quality.md, "Not measured").
DEFAULT_CLIP_X0 = False
# DPM-Solver++ clips: a deterministic solver cannot wash out a model's errors with fresh noise, and
# Lu et al. 2022 pair it with this thresholding (docs/quality.md, "The sampler at equal sampling time").
DEFAULT_DPM_CLIP_X0 = True
# classifier-free guidance weight w: eps = (1 + w) eps_c - w eps_u (diffusers' guidance_scale = w + 1).
# 0.1 is the one weight that meets the quality targets both after 15 minutes of training and on the
# bundled default-conditional (docs/quality.md, "Classifier-free guidance weight").
DEFAULT_GUIDANCE = 0.1

# autoguidance weight g (Karras et al. 2024) for checkpoints that carry a guide network, a weaker
# copy of the model: eps + g (eps - eps_guide), Karras et al.'s weight = g + 1; no guide, no effect.
# 1.5: of the weights measured on the shipped bundled `default`, the surest digits that still meet
# the three quality targets, at two seeds (docs/quality.md, "Autoguidance weight").
DEFAULT_AUTOGUIDANCE = 1.5

# the guidance interval: autoguidance only at steps whose t is above this (0 = every step).
# Narrowing it trades confidence for FD about as lowering g does, so every step is guided
# (docs/quality.md, "Autoguidance weight").
DEFAULT_AUTOGUIDANCE_MIN_T = 0

# ---- the model: what the app opens, and what sample / evaluate / explore use without --checkpoint.
# The 4-step student of the class-conditional model: 4 network calls per digit against the teacher's
# 600 with DDPM, as confident, FD a little higher (docs/distillation.md, "Quality per network call");
# its teacher, with DDPM, is one click away in the Sampler.
DEFAULT_MODEL = "default-conditional-4step"
# the steps of the students bundled with each bundled model ("default-4step", ...)
BUNDLED_STUDENT_STEPS = (8, 4, 2, 1)
# digits per Sampler run and `sample` command: 64 of the default model show 0.46 s after the
# click on a 2-core Xeon (docs/distillation.md)
DEFAULT_SAMPLE_COUNT = 64

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
# the linear schedule rescaled by 1000/T, so that x_T is noise (docs/quality.md, "x_T is not noise")
DEFAULT_SCHEDULE = "rescaled_linear"
# the Training form's time budget: the measured 15-minute recipe, which gives FD 1.5x the real-data
# floor and 94.8% confident digits at w = 0.1 (Xeon, fp32, 1.66 epochs; docs/quality.md, "Quality per
# CPU minute"). The train command keeps no budget unless --max-minutes is given.
DEFAULT_GUI_BUDGET_MINUTES = 15
# the default recipe's measured epoch on that Xeon in fp32 (15 min / 1.66 epochs), for the form's
# estimate of a run without a budget
DEFAULT_EPOCH_SECONDS = 15 * 60 / 1.66
# the Training panel's "Watch it learn" run: long enough for a few previews of recognisable strokes
DEMO_BUDGET_MINUTES = 2
# a run's first look at itself, after this many steps (0: none) instead of only at the first epoch's
# end (7.5 minutes on that Xeon): preview digits from the EMA weights, where previews are on, and an
# early estimate of the validation loss (engine.training.trainer, EarlyValidationRecord)
DEFAULT_EARLY_STEPS = 200
# the early estimate's validation digits: the first this many, with the epoch validation's fixed
# (t, eps); 3.6 s (13 training steps) for the default recipe on a 2-core Xeon (docs/training.md)
DEFAULT_EARLY_VALIDATION_IMAGES = 1000
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULE_KINDS = ("linear", "cosine", "rescaled_linear")
LR_SCHEDULES = ("constant", "cosine")

# ---- devices, data, evaluation
DEVICE_CHOICES = ("auto", "cpu", "cuda")
SPLITS = ("train", "val", "test")
METRIC_CHOICES = ("inception", "mnist", "all")
DEFAULT_METRIC = "all"
# an evaluation's digits: 10,000, the number a comparable Inception FID is computed from
DEFAULT_EVAL_N = 10_000
DEFAULT_SAMPLE_BATCH = 500  # digits per sampling batch (sample, evaluate)
DEFAULT_VIEW_DIGITS = 16  # the model's view and "denoise from here": the first this many digits

# ---- distillation (engine.training.distill): few-step students of a trained model
# the weights a student learns to take as an input: around the defaults above, up to where the
# teacher's digits stop improving (docs/quality.md)
DISTILL_GUIDANCE_RANGE = (0.0, 0.5)
DISTILL_AUTOGUIDANCE_RANGE = (0.0, 3.0)
# the space each stage's error is measured in (engine.training.distill.DistillConfig.loss): the
# guidance round matches its eps-prediction teacher in eps, the halving rounds in v
DISTILL_LOSSES = ("v", "eps")
DISTILL_LOSS = {"guidance": "eps", "halve": "v"}
# the grid the guidance round learns on: the teacher's deterministic DDIM with 16 steps scored
# FD 1.17x the floor and 97.2% confident on default-conditional (docs/distillation.md)
DISTILL_START_STEPS = 16
DISTILL_STEPS = 4  # the student a distillation ends with unless asked otherwise
DISTILL_STEP_CHOICES = (8, 4, 2, 1)  # the last student a form offers (halvings of DISTILL_START_STEPS)
DISTILL_VAL_IMAGES = 2000  # each validation runs the teacher on these once, then only the student
DISTILL_BATCH_SIZE = 64
DISTILL_LR = 2e-4  # a fine-tuning of a trained network: a fifth of training's peak
DISTILL_ROUND_MINUTES = 25.0
