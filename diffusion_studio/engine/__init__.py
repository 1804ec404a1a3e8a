"""The Diffusion Studio engine: DDPM on MNIST in plain PyTorch, with no Qt.

- ``diffusion/``:  the maths. ``schedule`` (ScheduleConfig, NoiseSchedule: beta, alphabar,
                   q_sample), ``unet`` (UNetConfig, UNet: eps_theta), ``scheduling`` (SamplerConfig,
                   the pure DDPM / DDIM / DPM-Solver++ steps and their timestep plans), ``guidance``
                   (classifier-free guidance and autoguidance), ``sampling`` (the loop), ``explore``
                   (interpolation, guidance sweeps, denoise from x_t, identity kept).
- ``training/``:   ``config`` (TrainConfig and the records a run yields), ``algorithm`` (Algorithm 1's
                   noised batch, label dropout, EMA, BatchNorm recalibration), ``plan`` (TrainPlan:
                   new, resume, continue), ``state`` and ``files`` (a run's position and its files),
                   ``trainer`` (the loop), ``presets``.
- ``evaluation/``: ``metrics``, ``classifier`` (the offline metric's MNIST classifier), ``fid``
                   (pytorch-fid's Inception), ``neighbours`` (memorisation), ``report`` and
                   ``report_files`` (the evaluation and its files), ``charts``.
- ``runs/``:       run folders: naming, the catalogue, liveness and locks, editing and deleting,
                   curves, verification.
- ``storage/``:    ``checkpoint`` (the versioned format, its validator, LoadedModel), ``atomic``
                   writes, ``data`` (MNIST), ``images``, ``bundled`` models, ``paths``.
- ``defaults`` (every default and choice list, torch-free), ``device``, ``text``, ``stopping``.

The task layer (``diffusion_studio.tasks``) builds the use cases from these; the GUI and the
CLI call it. Nothing here prints or draws.
"""
