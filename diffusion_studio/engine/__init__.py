"""The Diffusion Studio engine: DDPM on MNIST in plain PyTorch, with no Qt.

One idea per module:

- ``schedule``:   ScheduleConfig, NoiseSchedule (beta, alphabar, q_sample, ...)
- ``unet``:       UNetConfig, UNet (eps_theta)
- ``data``:       load_mnist, MNISTSplits, to_model_range / to_uint8
- ``train``:      TrainConfig, Trainer (Algorithm 1 as an iterator of records)
- ``sample``:     SamplerConfig, sample_steps / sample (Algorithm 2, DDIM)
- ``checkpoint``: save_checkpoint / load_checkpoint / load_model
- ``presets``:    named recipes ("default", "report")
- ``device``:     resolve_device, resolve_precision, autocast
- ``paths``:      per-user folders

The GUI and the CLI both drive these; nothing here prints or draws.
"""
