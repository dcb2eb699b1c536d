"""Networks, encoder weights and the edge-weighted loss."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn
from torchvision.models import googlenet

from cellseg.errors import CellsegError
from cellseg.models.losses import EdgeWeightedBCE, soft_dice_loss
from cellseg.models.module import CellSegModule
from cellseg.models.nets.encoder import GoogLeNetEncoder
from cellseg.models.nets.googlenet_fcn import GoogLeNetFCN
from cellseg.models.nets.googlenet_skip import GoogLeNetSkip
from cellseg.models.nets.transposed_conv import MatmulConvTranspose2d
from cellseg.models.schedules import warmup


@pytest.mark.parametrize("net_class", [GoogLeNetFCN, GoogLeNetSkip, partial(GoogLeNetSkip, full_res=8)])
@pytest.mark.parametrize("size", [(64, 64), (70, 45), (96, 160)])
def test_any_input_size_gives_full_resolution(net_class, size):
    net = net_class().eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, *size)).shape == (2, 2, *size)


def test_encoder_reaches_stride_32_with_1024_channels():
    features = GoogLeNetEncoder().eval()(torch.zeros(1, 1, 128, 96))
    assert features["s32"].shape == (1, 1024, 4, 3)
    assert features["stem"].shape == (1, 64, 64, 48)


def test_encoder_loads_local_weights_and_sums_rgb(tmp_path):
    reference = googlenet(weights=None, aux_logits=False, init_weights=True)
    torch.save(reference.state_dict(), tmp_path / "googlenet.pth")
    encoder = GoogLeNetEncoder(in_channels=1, weights=str(tmp_path / "googlenet.pth"))
    expected = reference.conv1.conv.weight.sum(1, keepdim=True)
    assert torch.allclose(encoder.stages["stem"][0].conv.weight, expected)
    assert torch.equal(encoder.stages["s32"][2].branch1.conv.weight, reference.inception5b.branch1.conv.weight)


def test_encoder_weights_errors(tmp_path):
    with pytest.raises(CellsegError, match="encoder weights not found"):
        GoogLeNetEncoder(weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CellsegError, match="not a readable torch state dict"):
        GoogLeNetEncoder(weights=str(tmp_path / "junk.pth"))


def test_encoder_weights_report_what_did_not_match(tmp_path, caplog):
    state = googlenet(weights=None, aux_logits=False, init_weights=True).state_dict()
    dropped = [k for k in state if k.startswith("inception5b.")]
    state = {k: v for k, v in state.items() if k not in dropped}
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "partial.pth")
    with caplog.at_level("WARNING"):
        GoogLeNetEncoder(weights=str(tmp_path / "partial.pth"))
    expected = len([k for k in dropped if not k.endswith("num_batches_tracked")])
    assert f"{expected} missing" in caplog.text and "1 unexpected" in caplog.text
    assert "extra.weight" in caplog.text


def test_encoder_weights_that_load_almost_nothing_are_refused(tmp_path):
    state = googlenet(weights=None, aux_logits=False, init_weights=True).state_dict()
    torch.save({f"net.encoder.{k}": v for k, v in state.items()}, tmp_path / "prefixed.pth")
    with pytest.raises(CellsegError, match="only 0 of"):
        GoogLeNetEncoder(weights=str(tmp_path / "prefixed.pth"))
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CellsegError, match="not a state dict"):
        GoogLeNetEncoder(weights=str(tmp_path / "tensor.pth"))


def test_validation_skips_padding_frames():
    module = CellSegModule(
        net={"_target_": "cellseg.models.nets.googlenet_fcn.GoogLeNetFCN"},
        loss={},
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.1},
        scheduler={"_target_": "cellseg.models.schedules.Cosine"},
        postprocess={},
        data={},
    ).eval()
    labels = torch.zeros(1, 64, 64, dtype=torch.int32)
    labels[:, 10:30, 10:30] = 1
    target = torch.stack([(labels > 0).float(), torch.zeros(1, 64, 64)], 1)
    batch = {"name": ["a"], "image": torch.randn(1, 1, 64, 64), "target": target, "border": torch.zeros(1, 64, 64),
             "valid": torch.ones(1, 64, 64), "labels": labels}  # fmt: skip
    module.on_validation_epoch_start()
    with torch.no_grad():
        module.validation_step({**batch, "counted": torch.tensor([False])}, 0)
        assert module._val_sums.sum() == 0 and not module._val_outputs
        module.validation_step({**batch, "counted": torch.tensor([True])}, 1)
    loss, frames, positives, negatives = module._val_sums.tolist()
    assert (frames, positives, negatives) == (1, 400, 64 * 64 - 400) and loss > 0
    assert len(module._val_outputs) == 1


def test_warmup_ramps_a_scaled_rate_from_the_single_process_one():
    assert warmup(0.0, 0.1, 4) == pytest.approx(0.25)  # 4x scaled LR starts at the 1-process LR
    assert warmup(0.05, 0.1, 4) == pytest.approx(0.625)
    assert warmup(0.1, 0.1, 4) == warmup(0.5, 0.1, 4) == 1.0
    assert warmup(0.0, 0.1, 1) == warmup(0.0, 0.0, 4) == 1.0


def test_edge_errors_cost_edge_weight_times_more():
    target = torch.zeros(1, 2, 4, 4)
    target[0, 1, 0, 0] = 1  # one edge pixel
    logits = torch.zeros(1, 2, 4, 4)
    border, valid = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    plain = EdgeWeightedBCE(edge_weight=1)(logits, target, border, valid)
    weighted = EdgeWeightedBCE(edge_weight=10)(logits, target, border, valid)
    # 16 pixels x 2 channels all at log(2); the edge pixel's two terms count 10x
    assert weighted / plain == pytest.approx((30 + 2 * 10) / 32)


def test_invalid_pixels_are_ignored():
    target = torch.zeros(1, 2, 4, 4)
    logits = torch.full((1, 2, 4, 4), -5.0)
    logits[..., 0, :] = 5.0  # wrong, but only on the ignored row
    valid = torch.ones(1, 4, 4)
    valid[:, 0] = 0
    loss = EdgeWeightedBCE()(logits, target, torch.zeros(1, 4, 4), valid)
    assert loss < 0.01


def test_dice_term_scores_each_channel_by_overlap_over_valid_pixels():
    target = torch.zeros(1, 2, 4, 4)
    target[0, 0, 1:3, 1:3] = 1  # a 4-pixel interior
    target[0, 1, 0, :] = 1  # a 4-pixel edge line, on a row the loss must ignore
    valid = torch.ones(1, 4, 4)
    valid[:, 0] = 0
    border = torch.zeros(1, 4, 4)
    logits = torch.zeros(1, 2, 4, 4)  # p = 0.5 everywhere
    plain = EdgeWeightedBCE(dice_weight=0)(logits, target, border, valid)
    with_dice = EdgeWeightedBCE(dice_weight=2)(logits, target, border, valid)
    # 12 valid pixels: interior 1 - (2 * 0.5 * 4 + 1) / (6 + 4 + 1); edge has no valid target: 1 - 1 / (6 + 1)
    expected = ((1 - 5 / 11) + (1 - 1 / 7)) / 2
    assert with_dice - plain == pytest.approx(2 * expected)
    sure = torch.where(target > 0, 20.0, -20.0)
    sure[:, 1, 0] = -20.0  # the ignored row may say anything
    assert soft_dice_loss(torch.sigmoid(sure), target, valid).item() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize(
    ("cin", "cout", "kernel", "stride", "padding", "size"),
    [(64, 2, 64, 32, 16, (3, 2)), (16, 2, 4, 2, 1, (9, 7)), (8, 3, 6, 2, 0, (4, 5)), (4, 1, 3, 3, 1, (2, 6))],
)
def test_matmul_transposed_conv_matches_conv_transpose2d(cin, cout, kernel, stride, padding, size):
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=padding).double()
    fast = MatmulConvTranspose2d(cin, cout, kernel, stride=stride, padding=padding).double()
    fast.load_state_dict(plain.state_dict())  # same parameters, same names: old checkpoints load
    x = torch.randn(2, cin, *size, dtype=torch.float64, requires_grad=True)
    expected, got = plain(x), fast(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected)
    grad_out = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, (x, plain.weight, plain.bias), grad_out)
    got_grads = torch.autograd.grad(got, (x, fast.weight, fast.bias), grad_out)
    for a, b in zip(got_grads, expected_grads):
        assert torch.allclose(a, b)


def test_matmul_transposed_conv_under_bf16_autocast_stays_close():
    torch.manual_seed(0)
    fast = MatmulConvTranspose2d(256, 2, 64, stride=32, padding=16)
    x = torch.randn(1, 256, 4, 4).relu()
    with torch.no_grad():
        expected = nn.functional.conv_transpose2d(x, fast.weight, fast.bias, stride=32, padding=16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fast(x)
    assert got.dtype == torch.float32  # the overlapping patches add up in fp32
    assert (got - expected).abs().max() < 0.02 * expected.abs().max()


def test_matmul_transposed_conv_weight_stays_contiguous_in_a_channels_last_model():
    torch.manual_seed(0)
    net = GoogLeNetFCN().eval()
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        expected = net(x)
        net.to(memory_format=torch.channels_last)
        got = net(x.contiguous(memory_format=torch.channels_last))
    assert net.encoder.stages["stem"][0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert net.head.weight.is_contiguous()  # read as a (C_in, C_out*k*k) matrix without a copy
    assert torch.allclose(got, expected, atol=1e-5 * expected.abs().max().item())


def test_kernel_must_be_a_multiple_of_the_stride():
    with pytest.raises(ValueError, match="multiple of stride"):
        MatmulConvTranspose2d(4, 2, 5, stride=2)
