"""Guidance: the eps the reverse process steps with, from one or more network calls.

Classifier-free guidance (Ho & Salimans 2022) for class-conditional models,
eps = (1 + w) eps(x, t, y) - w eps(x, t, no label), and autoguidance (Karras et al. 2024)
for a model that carries a weaker copy of itself, eps + g (eps - eps_guide).
"""

from __future__ import annotations

import torch
from torch import nn

from ..device import autocast

def _channels_last(model: nn.Module) -> bool:
    """Whether the model's conv weights are channels_last. A weight with one input
    channel (the first conv's) is both layouts at once, so it decides nothing."""
    for p in model.parameters():
        if p.dim() == 4:
            cl, plain = p.is_contiguous(memory_format=torch.channels_last), p.is_contiguous()
            if cl != plain:
                return cl
    return False


def _call(model, x, t_batch, labels):
    return model(x, t_batch, labels) if labels is not None else model(x, t_batch)


def _config(model):
    return getattr(model, "config", None)


def eps_from_output(model, schedule, x: torch.Tensor, t_batch: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The noise a network's output stands for: the output itself for an eps-prediction network;
    for a v-prediction one (v = alpha eps - sigma x_0), eps = sigma x_t + alpha v, which stays
    exact at t = T (alpha = sqrt(abar_t), sigma = sqrt(1 - abar_t))."""
    if getattr(_config(model), "prediction", "eps") == "eps":
        return out
    if schedule is None:
        raise ValueError("a v-prediction network needs its noise schedule to give eps")
    a = schedule.sqrt_alphabar.to(x.device)[t_batch].view(-1, 1, 1, 1)
    s = schedule.sqrt_one_minus_alphabar.to(x.device)[t_batch].view(-1, 1, 1, 1)
    return s * x.float() + a * out.float()


def student_eps(model, x, t_batch, labels, weight, device, precision, schedule) -> torch.Tensor:
    """eps from a network that takes its guidance weight as an input (a distilled student):
    one call, whatever the weight. ``weight``: one number or a (B,) tensor."""
    w = weight.to(device=x.device, dtype=torch.float32).reshape(-1) if torch.is_tensor(weight) \
        else torch.full((x.shape[0],), float(weight), device=x.device)
    with autocast(device, precision):
        out = model(x, t_batch, labels, w) if labels is not None else model(x, t_batch, None, w)
    return eps_from_output(model, schedule, x, t_batch, out.float()).float()


def guided_eps(model, x, t_batch, labels, guidance, num_classes, device, precision, guide=None,
                 autoguidance=0.0, schedule=None):
    """eps_theta, with classifier-free guidance when labels are given: ``guidance`` is
    one weight w, or a (B,) tensor of one weight per image (the guidance sweep):
    eps = (1 + w) eps(x, t, y) - w eps(x, t, no label). With a ``guide`` network and
    ``autoguidance`` g > 0 (one weight, or a (B,) tensor of one per image), autoguidance
    (Karras et al. 2024) is added to that: + g (eps(x, t, y) - eps_guide(x, t, y))
    (without labels: eps(x, t) - eps_guide(x, t)).

    A network that takes its weight as an input (``UNetConfig.weight_input``, a distilled
    student) is called once with ``guidance`` or ``autoguidance`` as that input; a
    v-prediction one needs ``schedule``."""
    kind = getattr(_config(model), "weight_input", "")
    if kind:
        weight = guidance if kind == "guidance" and labels is not None else autoguidance if kind == "autoguidance" \
            else 0.0
        return student_eps(model, x, t_batch, labels, weight, device, precision, schedule)
    if torch.is_tensor(guidance):
        guidance = guidance.to(device=x.device, dtype=torch.float32).view(-1, 1, 1, 1)
    if torch.is_tensor(autoguidance):
        autoguidance = autoguidance.to(device=x.device, dtype=torch.float32).view(-1, 1, 1, 1)
    with autocast(device, precision):
        if labels is None or (not torch.is_tensor(guidance) and guidance == 0.0):
            eps = eps_c = _call(model, x, t_batch, labels).float()
        else:
            null = torch.full_like(labels, num_classes)
            both = model(torch.cat([x, x]), torch.cat([t_batch, t_batch]), torch.cat([labels, null]))
            eps_c, eps_u = both.float().chunk(2)
            eps = (1 + guidance) * eps_c - guidance * eps_u
        if guide is not None and (torch.is_tensor(autoguidance) or autoguidance > 0):
            eps = eps + autoguidance * (eps_c - _call(guide, x, t_batch, labels).float())
    return eps_from_output(model, schedule, x, t_batch, eps.float()).float()

