"""The diffusion maths: the noise schedule, the network, the reverse process and its explorations."""
