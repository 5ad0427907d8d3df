"""The TVSRN network and its swin layers: shapes, shifted-window attention, mask tokens, learning."""
import math

import pytest
import torch

from volumetricsr.compute.networks import TVSRN
from volumetricsr.compute.networks.swin import SwinStage

TINY = dict(channels=4, heads=2, window=4, group=4, tab_window=(2, 4), enc_layers=2, tab_layers=2, dec_layers=2)


def naive_stage(stage: SwinStage, x: torch.Tensor) -> torch.Tensor:
    """Swin stage computed token by token from the definition (no roll, no padding, no windows).

    Two tokens attend to each other when they fall in the same shifted window without wrapping
    around the map: group = floor((coordinate - shift) / window) per axis. The map is padded to
    whole windows only to decide whether a side is shifted at all.
    """
    b, h, w, c = x.shape
    wh, ww = stage.window
    hp, wp = math.ceil(h / wh) * wh, math.ceil(w / ww) * ww
    r, q = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    r, q = r.reshape(-1), q.reshape(-1)
    t = x.reshape(b, h * w, c).double()
    for i, layer in enumerate(stage.layers):
        s = (wh // 2 if hp > wh and i % 2 else 0, ww // 2 if wp > ww and i % 2 else 0)
        group = torch.div(r - s[0], wh, rounding_mode="floor") * 10_000 + torch.div(q - s[1], ww, rounding_mode="floor")
        same = group[:, None] == group[None, :]
        rel = (r[:, None] - r[None, :] + wh - 1) * (2 * ww - 1) + (q[:, None] - q[None, :] + ww - 1)
        attn = layer.attn
        heads = attn.heads
        bias = torch.zeros(heads, h * w, h * w, dtype=torch.float64)
        bias[:, same] = attn.bias_table.double()[rel[same]].T
        y = torch.nn.functional.layer_norm(t, (c,), layer.norm1.weight.double(), layer.norm1.bias.double())
        qkv = y @ attn.qkv.weight.double().T + attn.qkv.bias.double()
        qh, kh, vh = qkv.reshape(b, h * w, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        logits = qh @ kh.transpose(-1, -2) / math.sqrt(c // heads) + bias
        logits = logits.masked_fill(~same, -math.inf)
        out = (logits.softmax(-1) @ vh).transpose(1, 2).reshape(b, h * w, c)
        t = t + out @ attn.proj.weight.double().T + attn.proj.bias.double()
        m = layer.mlp
        z = torch.nn.functional.layer_norm(t, (c,), layer.norm2.weight.double(), layer.norm2.bias.double())
        z = torch.nn.functional.gelu(z @ m[0].weight.double().T + m[0].bias.double())
        t = t + z @ m[2].weight.double().T + m[2].bias.double()
    y = t.reshape(b, h, w, c)
    return x.double() + y if stage.residual else y


@pytest.mark.parametrize("size,window", [((10, 13), (4, 4)), ((8, 8), (4, 8)), ((7, 16), (4, 8)), ((3, 5), (4, 4))])
def test_swin_stage_matches_definition(size, window):
    torch.manual_seed(0)
    stage = SwinStage(8, 4, 2, window).eval()
    for p in stage.parameters():   # make every weight matter (default init leaves the bias table tiny)
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, *size, 8)
    with torch.no_grad():
        got = stage(x)
    assert got.shape == x.shape
    torch.testing.assert_close(got.double(), naive_stage(stage, x), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("factor,depth,h,w", [(5, 4, 16, 16), (2, 4, 20, 12), (3, 2, 9, 17), (4, 3, 8, 24)])
def test_output_shapes_any_factor_and_size(factor, depth, h, w):
    net = TVSRN(factor=factor, depth=depth, **TINY).eval()
    with torch.no_grad():
        y = net(torch.rand(2, 1, depth, h, w))
    assert y.shape == (2, 1, (depth - 1) * factor + 1, h, w)
    assert torch.isfinite(y).all()


def test_batch_items_are_independent():
    torch.manual_seed(1)
    net = TVSRN(**TINY).eval()
    x = torch.rand(3, 1, 4, 12, 20)
    with torch.no_grad():
        together = net(x)
        alone = torch.cat([net(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_default_network_is_the_papers():
    net = TVSRN()
    assert (net.factor, net.depth, net.channels, net.thin) == (5, 4, 8, 16)
    assert len(net.encoder.layers) == 4 and len(net.decoder) == 1
    fim = net.decoder[0]
    assert len(fim.tab.stage.layers) == 4 and len(fim.inplane.layers) == 4
    assert fim.tab.stage.window == (4, 8) and fim.inplane.window == (8, 8) and net.encoder.window == (8, 8)
    # the count this project reports next to the paper's 1.73M and the reference code's 2.39M
    assert sum(p.numel() for p in net.parameters()) == 1_061_929


def test_mask_token_is_a_learned_parameter():
    torch.manual_seed(0)
    net = TVSRN(**TINY)
    assert "mask_token" in net.state_dict()
    assert any(p is net.mask_token for p in net.parameters())
    before = net.mask_token.detach().clone()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    loss = (net(torch.rand(1, 1, 4, 8, 8)) - torch.rand(1, 1, 16, 8, 8)).abs().mean()
    loss.backward()
    assert net.mask_token.grad is not None and net.mask_token.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(before, net.mask_token.detach())


def test_mask_tokens_sit_between_thick_slices_and_the_head_is_per_slice():
    """Without decoder and encoder layers, a mask-token slice cannot depend on the image at all."""
    torch.manual_seed(0)
    net = TVSRN(**dict(TINY, enc_layers=0, fims=0)).eval()
    with torch.no_grad():
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.5)
        y = net(torch.rand(1, 1, 4, 8, 8))[0, 0]
    for t in range(16):
        spread = float(y[t].max() - y[t].min())
        if t % 5:
            assert spread < 1e-6, f"thin slice {t} (a mask token) varies in-plane"
        else:
            assert spread > 1e-2, f"thin slice {t} (a thick slice) does not see the image"


@pytest.mark.parametrize("options, margin", [({}, 0.6), ({"base": "bspline"}, 0.2),
                                             ({"base": "bspline", "init": "balanced", "final_norm": True}, 0.2)])
def test_tiny_model_overfits_one_crop_far_below_the_best_constant(options, margin):
    """Memorising one smooth crop must beat the best constant prediction (the target's median, L1's
    optimum) by a wide margin, not just lower the loss: a network that learns only the mean fails.
    The paper's network (no image skip) gets there slowest (README, TVSRN diagnosis)."""
    torch.manual_seed(0)
    net = TVSRN(**TINY, **options)
    z, y, x = torch.meshgrid(torch.linspace(0, 3, 16), torch.linspace(0, 3, 8), torch.linspace(0, 3, 8), indexing="ij")
    thin = (0.5 + 0.2 * torch.sin(2 * z + y) * torch.cos(x - z) + 0.1 * torch.sin(3 * y * x / 3))[None, None]
    thick = thin[:, :, ::5]
    best_constant = float((thin - thin.median()).abs().mean())
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.l1_loss(net(thick), thin)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = float(torch.nn.functional.l1_loss(net(thick), thin))
    assert final < margin * best_constant, (final, best_constant)


def test_training_after_inference_mode_on_the_same_size():
    """Window plans cached during inference (validation) must not break a later training step."""
    net = TVSRN(**TINY)
    x = torch.rand(1, 1, 4, 12, 12)
    with torch.inference_mode():
        net(x)
    net(x).mean().backward()
    assert net.mask_token.grad is not None


@pytest.mark.parametrize("base", ["linear", "bspline"])
def test_interpolation_base_untrained_is_that_interpolation_and_trains(base):
    """``base``: an untrained network returns the in-window interpolation of the thick slices
    (thick slices exactly); the interpolation matrix and the head both learn."""
    import numpy as np

    from volumetricsr.data.resampling import bspline_weights, linear_weights

    torch.manual_seed(0)
    net = TVSRN(**TINY, base=base)
    thick = torch.rand(2, 1, 4, 12, 10)
    weights = {"linear": linear_weights, "bspline": bspline_weights}[base](np.arange(16) / 5, 4)
    expected = np.einsum("td,bdhw->bthw", weights, thick[:, 0].numpy())
    out = net(thick)
    np.testing.assert_allclose(out[:, 0].detach().numpy(), expected, atol=1e-5)
    torch.testing.assert_close(out[:, :, ::5], thick, atol=1e-5, rtol=0)
    out.square().mean().backward()
    assert net.head[-1].weight.grad.abs().sum() > 0 and net.base_weights.grad.abs().sum() > 0
    assert "base_weights" in net.state_dict()
    with pytest.raises(ValueError, match="base"):
        TVSRN(**TINY, base="cubic")


def test_bf16_autocast_keeps_the_output_in_fp32():
    """Under bf16 autocast the body runs in bf16 (attention in fp32 on the CPU), the head and the
    base in fp32: the output is close to fp32's and not quantised to bf16's ~6 HU steps."""
    torch.manual_seed(2)
    net = TVSRN(base="bspline", **TINY).eval()
    torch.nn.init.normal_(net.head[-1].weight, std=0.1)
    x = torch.rand(2, 1, 4, 16, 16)
    with torch.inference_mode():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
    assert low.dtype == torch.float32
    assert (low.bfloat16().float() != low).float().mean() > 0.5
    torch.testing.assert_close(low, ref, atol=2e-2, rtol=0)
    assert (low - ref).abs().max() > 0      # bf16 did run
