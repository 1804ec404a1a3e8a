"""Diffusion Studio: explore Denoising Diffusion Probabilistic Models on MNIST."""

__version__ = "0.1.0"
