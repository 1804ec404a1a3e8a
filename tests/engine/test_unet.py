import pytest
import torch

from diffusion_studio.engine.diffusion.unet import UNet, UNetConfig, count_parameters, forward_flops, sinusoidal_embedding


def test_output_shape_and_timestep_dependence():
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=8)).eval()
    x = torch.randn(3, 1, 28, 28)
    out1 = net(x, torch.tensor([1, 1, 1]))
    out2 = net(x, torch.tensor([200, 200, 200]))
    assert out1.shape == x.shape
    assert not torch.allclose(out1, out2)  # the timestep enters the network


def test_structure_channels_double_down_and_halve_up():
    net = UNet(UNetConfig(base_channels=16))
    assert net.enc1.conv1.out_channels == 16
    assert net.enc2.conv1.out_channels == 32
    assert net.mid.conv1.out_channels == 64
    assert isinstance(net.up2, torch.nn.ConvTranspose2d) and net.up2.out_channels == 32
    assert net.dec2.conv1.in_channels == 64  # upsampled 32 + skip 32
    assert net.dec1.conv1.in_channels == 32
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_default_width_costs_about_150_mflop():
    assert 140e6 < forward_flops(UNetConfig()) < 160e6
    assert count_parameters(UNet(UNetConfig())) < 1_000_000


def test_sinusoidal_embedding():
    e = sinusoidal_embedding(torch.tensor([0, 5]), 16)
    assert e.shape == (2, 16)
    assert torch.allclose(e[0, :8], torch.zeros(8)) and torch.allclose(e[0, 8:], torch.ones(8))
    assert torch.allclose(e[1, 0], torch.sin(torch.tensor(5.0)))


def test_conditional_network_uses_labels():
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=8, num_classes=10)).eval()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([50, 50])
    a = net(x, t, torch.tensor([3, 3]))
    b = net(x, t, torch.tensor([7, 7]))
    null = net(x, t)  # None -> the "no label" token
    assert not torch.allclose(a, b) and torch.allclose(null, net(x, t, torch.tensor([10, 10])))


def test_config_validation_and_round_trip():
    c = UNetConfig(base_channels=8, num_classes=10)
    assert UNetConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="time_embed_dim"):
        UNetConfig(time_embed_dim=7)


def test_residual_unet_shapes_flops_and_conditioning():
    from diffusion_studio.engine.diffusion.unet import ResUNet, build_model

    cfg = UNetConfig(arch="res", level_channels=(8, 16, 16), level_blocks=(1, 1, 1), norm_groups=4)
    net = build_model(cfg)
    assert isinstance(net, ResUNet)
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([1, 5, 9])
    assert net(x, t).shape == (3, 1, 28, 28)
    # every residual branch and the output conv start at zero (the net starts as the
    # identity path); once they are nudged, the output depends on t
    zero = [p for p in net.parameters() if p.dim() > 1 and not p.any()]
    assert len(zero) >= 6
    assert torch.equal(net(x, t), torch.zeros(3, 1, 28, 28))
    for p in zero:
        torch.nn.init.normal_(p, std=0.1)
    assert not torch.allclose(net(x, t), net(x, torch.tensor([9, 5, 1])))
    default = UNetConfig(arch="res")
    assert 1.5e6 < count_parameters(build_model(default)) < 2.5e6
    assert 300e6 < forward_flops(default) < 420e6  # 2.4x the plain U-Net, mostly at 14 and 7 px
    cond = build_model(UNetConfig(arch="res", level_channels=(8, 16, 16), norm_groups=4, num_classes=10))
    for p in cond.parameters():
        if p.dim() > 1 and not p.any():
            torch.nn.init.normal_(p, std=0.1)
    assert not torch.allclose(cond(x, t, torch.tensor([0, 1, 2])), cond(x, t, torch.tensor([3, 4, 5])))


def test_residual_config_round_trip_and_old_checkpoints_load_as_plain():
    cfg = UNetConfig(arch="res", level_channels=(16, 32, 64), level_blocks=(1, 2, 3))
    data = cfg.to_dict()
    data["level_channels"] = list(data["level_channels"])  # as JSON gives it back
    assert UNetConfig.from_dict(data) == cfg
    old = {k: v for k, v in UNetConfig().to_dict().items()
           if k in ("base_channels", "convs_per_block", "time_embed_dim", "image_channels", "num_classes")}
    assert UNetConfig.from_dict(old).arch == "plain"
    with pytest.raises(ValueError, match="choose one of plain, res"):
        UNetConfig(arch="transformer")
    with pytest.raises(ValueError, match="norm_groups"):
        UNetConfig(arch="res", level_channels=(12, 24, 48), norm_groups=8)
