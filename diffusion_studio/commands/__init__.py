"""The CLI's subcommands, one module each, registered by ``diffusion_studio.cli``."""
