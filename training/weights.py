"""Weight hand-offs into the U-Net, every one asserted key by key, and the initial network.

An encoder file that fits only partly would load silently with `strict=False` and train from
half-random weights; so the exact sets of missing and unexpected keys are asserted (as MoCo's
`main_lincls.py` does), and a mismatch leaves the network untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from training.model import HemaviewNet

if TYPE_CHECKING:  # finetune imports this module; the config is only a type here
    from training.finetune import FinetuneConfig


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
    """Load a local torchvision ResNet state dict (e.g. resnet18-f37072fd.pth) into net.encoder.

    The classifier (fc.*) is the only thing left over; nothing is ever downloaded.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    _load_into_encoder(
        net.encoder, state, expected_unexpected={"fc.weight", "fc.bias"}, source=path
    )
