"""MoCo v2 (He et al. 2020; Chen et al. 2020), after facebookresearch/moco's moco/builder.py.

Two changes from the reference. Nothing assumes a GPU: tensors follow the inputs' device.
And one process works: batch norm must never compute a query and its own key from the same
statistics, or the encoder learns to match batch statistics instead of content (He et al.,
sec. 3.3). Across processes the keys are shuffled between processes before the key encoder
(shuffling BN, as in the reference); within a process the batch also runs in `bn_splits`
groups with separate BN statistics, the keys shuffled across groups (split BN, as in the
authors' CIFAR demo), which is what protects a single-process run. Plain BatchNorm2d layers
do the split by a reshape (one pass); other norm layers get the batch in chunks.

Negatives come from the queue (`negatives="queue"`, the paper's) or from the batch itself
(`negatives="batch"`: each query's positive is its own key and the other photos' keys of the
same step are its negatives, as in MoCo v3). The queue assumes far more photos than keys; with
a pool of a few hundred photos it holds earlier keys of the very photo being matched, counted
as negatives. In-batch negatives never hold a key of the query's photo (a batch draws each
photo once), at the price of fewer negatives (batch - 1).
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch import distributed as dist
from torch.nn import functional as F

from training.model import build_encoder


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@torch.no_grad()
def concat_all_gather(x: Tensor) -> Tensor:
    """(n, ...) from every process -> (world * n, ...), rank order; x itself in one process."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)  # (world * n, ...)


class SplitBatchNorm2d(nn.BatchNorm2d):
    """Training statistics per group of samples i % splits; state-dict keys as BatchNorm2d's."""

    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(self, bn: nn.BatchNorm2d, splits: int):
        super().__init__(bn.num_features, bn.eps, bn.momentum)
        self.load_state_dict(bn.state_dict())
        self.splits = splits

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape  # (n, C, h, w)
        s = self.splits
        if not self.training:
            return super().forward(x)
        if n % s:
            raise ValueError(f"batch of {n} does not split into {s} BN groups")
        mean, var = self.running_mean.repeat(s), self.running_var.repeat(s)  # (s*C,) each
        grouped = x.reshape(n // s, s * c, h, w)  # sample a*s + j -> channels j*C .. j*C + C-1
        weight, bias = self.weight.repeat(s), self.bias.repeat(s)  # (s*C,)
        out = F.batch_norm(grouped, mean, var, weight, bias, True, self.momentum or 0.1, self.eps)
        with torch.no_grad():  # the groups' running statistics, averaged
            self.running_mean.copy_(mean.view(s, c).mean(dim=0))  # (C,)
            self.running_var.copy_(var.view(s, c).mean(dim=0))  # (C,)
            self.num_batches_tracked.add_(1)
        return out.view(n, c, h, w)  # (n, C, h, w)


def split_batchnorm(module: nn.Module, splits: int) -> bool:
    """Swap plain BatchNorm2d layers for SplitBatchNorm2d in place; False (and no change) if
    the module holds another kind of BN (e.g. timm's BatchNormAct2d)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if any(type(m) is not nn.BatchNorm2d or not m.track_running_stats for m in norms):
        return False
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.BatchNorm2d:
                setattr(parent, name, SplitBatchNorm2d(child, splits))
    return True


class ProjectionNet(nn.Module):
    """smp encoder + global average pool + 2-layer MLP head (MoCo v2): (N, 3, H, W) -> (N, dim)."""

    def __init__(self, encoder_name: str, dim: int = 128):
        super().__init__()
        self.encoder = build_encoder(encoder_name)
        width = int(self.encoder.out_channels[-1])  # type: ignore[index]
        mlp = [nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, dim)]
        self.head = nn.Sequential(*mlp)

    def forward(self, x: Tensor) -> Tensor:
        deepest = self.encoder(x)[-1]  # (N, C, H/32, W/32)
        return self.head(deepest.mean(dim=(2, 3)))  # (N, C) -> (N, dim)


class MocoOutput(NamedTuple):
    logits: Tensor  # queue: (n, 1 + K), the positive first; batch: (n, N), every key; over T
    labels: Tensor  # (n,) the positive's column: 0 (queue), the query's place in N (batch)
    keys: Tensor  # (n, dim) this process's normalised keys, as enqueued


NEGATIVES = ("queue", "batch")


class MoCo(nn.Module):
    def __init__(
        self,
        encoder_name: str = "resnet18",
        dim: int = 128,
        queue_size: int = 4096,
        momentum: float = 0.999,
        temperature: float = 0.2,
        bn_splits: int = 1,
        negatives: str = "queue",
    ):
        super().__init__()
        if bn_splits < 1:
            raise ValueError(f"bn_splits must be at least 1, got {bn_splits}")
        if negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {', '.join(NEGATIVES)}, not {negatives!r}")
        self.negatives = negatives
        self.queue_size, self.momentum, self.temperature = queue_size, momentum, temperature
        self.bn_splits = bn_splits
        self.encoder_q = ProjectionNet(encoder_name, dim)
        reshaped = bn_splits == 1 or split_batchnorm(self.encoder_q, bn_splits)
        self.chunks = 1 if reshaped else bn_splits  # split BN by reshape, else by chunks
        self.encoder_k = copy.deepcopy(self.encoder_q)  # starts equal to the query encoder
        for param in self.encoder_k.parameters():
            param.requires_grad_(False)  # moved only by the momentum rule
        self.queue: Tensor
        self.queue_ptr: Tensor
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))  # (dim, K)
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))  # (1,)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key = m * key + (1 - m) * query per parameter (BN buffers stay the key encoder's own)."""
        pairs = zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True)
        for param_q, param_k in pairs:
            param_k.mul_(self.momentum).add_(param_q.detach(), alpha=1.0 - self.momentum)

    def _split_forward(self, net: nn.Module, x: Tensor) -> Tensor:
        """net(x), in BN groups by chunks when SplitBatchNorm2d could not be used."""
        if self.chunks == 1:
            return net(x)  # (n, dim)
        if x.shape[0] % self.chunks:
            raise ValueError(f"batch of {x.shape[0]} does not split into {self.chunks} BN groups")
        return torch.cat([net(part) for part in x.chunk(self.chunks)])  # (n, dim)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: Tensor) -> None:
        keys = concat_all_gather(keys)  # (N, dim), all processes
        batch = keys.shape[0]
        if self.queue_size % batch:
            raise ValueError(f"queue size {self.queue_size} is not a multiple of the batch {batch}")
        ptr = int(self.queue_ptr)
        self.queue[:, ptr : ptr + batch] = keys.T  # (dim, N) replaces the oldest keys
        self.queue_ptr[0] = (ptr + batch) % self.queue_size

    @torch.no_grad()
    def _keys(self, im_k: Tensor, generator: torch.Generator | None) -> Tensor:
        """Normalised keys (n, dim) in input order, computed in shuffled BN groups."""
        n, device = im_k.shape[0], im_k.device
        if not is_distributed():
            idx_shuffle = torch.randperm(n, generator=generator).to(device)  # (n,)
            k = self._split_forward(self.encoder_k, im_k[idx_shuffle])  # (n, dim) shuffled
            return F.normalize(k, dim=1)[torch.argsort(idx_shuffle)]  # (n, dim) unshuffled
        # Shuffling BN across processes, as the reference: gather, shuffle, run, unshuffle.
        world, rank = dist.get_world_size(), dist.get_rank()
        im_all = concat_all_gather(im_k)  # (N, 3, H, W)
        idx_shuffle = torch.randperm(im_all.shape[0], generator=generator).to(device)  # (N,)
        dist.broadcast(idx_shuffle, src=0)  # every process uses rank 0's permutation
        idx_unshuffle = torch.argsort(idx_shuffle)  # (N,)
        mine = im_all[idx_shuffle.view(world, -1)[rank]]  # (n, 3, H, W) someone else's images
        k = F.normalize(self._split_forward(self.encoder_k, mine), dim=1)  # (n, dim)
        k_all = concat_all_gather(k)  # (N, dim) in shuffled order
        return k_all[idx_unshuffle.view(world, -1)[rank]]  # (n, dim) own images' keys

    def forward(
        self, im_q: Tensor, im_k: Tensor, generator: torch.Generator | None = None
    ) -> MocoOutput:
        """Two views (n, 3, H, W) of the same n photos -> logits for InfoNCE (see MocoOutput)."""
        q = F.normalize(self._split_forward(self.encoder_q, im_q), dim=1)  # (n, dim)
        with torch.no_grad():
            self.momentum_update()
            k = self._keys(im_k, generator)  # (n, dim)
        # Logits in float32 even under autocast: bf16 would blur similarities divided by T.
        with torch.autocast(q.device.type, enabled=False):
            q32, k32 = q.float(), k.float()  # (n, dim)
            if self.negatives == "batch":
                k_all = concat_all_gather(k32)  # (N, dim), every process's keys in rank order
                logits = q32 @ k_all.T / self.temperature  # (n, N)
                offset = dist.get_rank() * q.shape[0] if is_distributed() else 0
                labels = torch.arange(q.shape[0], device=q.device) + offset  # (n,)
                return MocoOutput(logits, labels, k32)  # the queue is not used
            l_pos = (q32 * k32).sum(dim=1, keepdim=True)  # (n, 1)
            l_neg = q32 @ self.queue.clone().detach()  # (n, K); clone: the queue changes below
            logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature  # (n, 1 + K)
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)  # (n,)
        self._dequeue_and_enqueue(k32)
        return MocoOutput(logits, labels, k32)


def info_nce(output: MocoOutput) -> Tensor:
    """InfoNCE: cross-entropy with the positive key as the right class among 1 + K."""
    return F.cross_entropy(output.logits, output.labels)


def top1(output: MocoOutput) -> Tensor:
    """Fraction of queries whose own key beats every negative (a health signal, not a metric)."""
    return (output.logits.argmax(dim=1) == output.labels).float().mean()


@torch.no_grad()
def knn_top1(features: Tensor, photo: Tensor) -> float:
    """Leave-one-out nearest neighbour by cosine: the fraction of views (n, C) whose nearest
    other view shows the same photo (`photo`, (n,) ids). Chance, with v views of each of P
    photos: (v - 1) / (v * P - 1)."""
    f = F.normalize(features.float(), dim=1)  # (n, C)
    similarity = f @ f.T  # (n, n)
    similarity.fill_diagonal_(-math.inf)  # not itself
    nearest = similarity.argmax(dim=1)  # (n,)
    return float((photo[nearest] == photo).float().mean())
