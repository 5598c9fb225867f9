"""MoCo pretraining on real unlabeled IDRiD photos: the MoCo mechanics, DDP, resume, hand-off.

Kept small for a 2-core machine: 4 photos preprocessed at 128 px, 64 px crops, batch 4.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import REPO
from torch import nn
from torch.nn import functional as F

from inference.contract import PreprocessRecipe
from training.augment import MOCO_AUGMENT, augment_pair, moco_views
from training.configs import PretrainConfig
from training.moco import MoCo, SplitBatchNorm2d, info_nce, knn_top1, top1
from training.model import HemaviewNet, ModelConfig
from training.pretrain import (
    CHECKPOINT,
    LOG_FILE,
    held_apart_knn,
    list_photos,
    load_pool,
    pretrain,
    queue_note,
)
from training.provenance import pretraining_note
from training.weights import WeightKeysError, load_encoder_weights, load_imagenet_weights

# Any folder of fundus photos pretrains; the tests' own IDRiD photos serve as the pool.
UNLABELED = REPO / "tests" / "data" / "idrid-hemorrhage" / "images"
WORKING = 128
CROP = 64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two threads that wait on each other
    made these tiny steps ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("moco-cache")


@pytest.fixture(scope="module")
def pool(cache_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    assert UNLABELED.is_dir(), f"the unlabeled IDRiD photos are missing at {UNLABELED}"
    photos = list_photos(UNLABELED, 4)
    return load_pool(photos, PreprocessRecipe(working_size=WORKING), cache_dir, workers=2)


def small_config(out_dir: Path, cache_dir: Path, **changes: object) -> PretrainConfig:
    config = PretrainConfig(
        data_dir=str(UNLABELED),
        out_dir=str(out_dir),
        cache_dir=str(cache_dir),
        recipe=PreprocessRecipe(working_size=WORKING),
        crop_size=CROP,
        batch_size=4,
        queue_size=12,
        epochs=1,
        repeats=2,
        max_photos=4,
        workers=2,
        device="cpu",
        log_every=1,
        seed=0,
    )
    return replace(config, **changes)  # type: ignore[arg-type]


def log_steps(out_dir: Path) -> list[int]:
    with (out_dir / LOG_FILE).open(newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def test_moco_steps_move_queue_and_key_encoder_by_the_rules(pool):
    images, fov = pool
    torch.manual_seed(0)
    m = 0.9
    model = MoCo("resnet18", dim=128, queue_size=8, momentum=m, temperature=0.2, bn_splits=2)
    assert model.chunks == 1  # resnet18's plain BN layers split by reshape
    assert any(isinstance(layer, SplitBatchNorm2d) for layer in model.encoder_k.modules())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    generator = torch.Generator().manual_seed(0)
    n = images.shape[0]
    for step in range(2):
        q_before = [p.detach().clone() for p in model.encoder_q.parameters()]
        k_before = [p.detach().clone() for p in model.encoder_k.parameters()]
        queue_before, ptr = model.queue.clone(), int(model.queue_ptr)
        im_q, im_k = moco_views(images, fov, generator, CROP)
        out = model(im_q, im_k, generator=generator)

        # The key encoder moved by exactly key = m * key + (1 - m) * query.
        for q0, k0, k1 in zip(q_before, k_before, model.encoder_k.parameters(), strict=True):
            torch.testing.assert_close(k1.detach(), m * k0 + (1 - m) * q0)
        if step == 1:  # after an optimizer step the encoders differ, so the check has teeth
            assert any(not torch.equal(q0, k0) for q0, k0 in zip(q_before, k_before, strict=True))
            moved = zip(k_before, model.encoder_k.parameters(), strict=True)
            assert any(not torch.equal(k0, k1) for k0, k1 in moved)

        # The pointer advanced by the batch and the oldest keys were replaced by these keys.
        assert int(model.queue_ptr) == (ptr + n) % 8
        assert torch.equal(model.queue[:, ptr : ptr + n], out.keys.T)
        assert not torch.equal(model.queue[:, ptr : ptr + n], queue_before[:, ptr : ptr + n])
        kept = torch.ones(8, dtype=torch.bool)
        kept[ptr : ptr + n] = False
        assert torch.equal(model.queue[:, kept], queue_before[:, kept])
        torch.testing.assert_close(out.keys.norm(dim=1), torch.ones(n))
        assert out.logits.shape == (n, 1 + 8) and out.labels.tolist() == [0] * n

        loss = info_nce(out)
        assert math.isfinite(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert all(p.grad is None and not p.requires_grad for p in model.encoder_k.parameters())
        assert all(p.grad is not None for p in model.encoder_q.parameters())
    assert int(model.queue_ptr) == 0  # two batches of 4 wrapped the queue of 8


def test_split_batchnorm_normalises_each_group_on_its_own():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    split = SplitBatchNorm2d(copy.deepcopy(bn), 2)
    assert split.state_dict().keys() == bn.state_dict().keys()
    x = torch.randn(4, 3, 5, 5) * torch.tensor([1.0, 5.0, 1.0, 5.0]).view(4, 1, 1, 1)
    out = split(x)
    even, odd = copy.deepcopy(bn), copy.deepcopy(bn)  # group i % 2 == 0 and == 1
    torch.testing.assert_close(out[0::2], even(x[0::2]))
    torch.testing.assert_close(out[1::2], odd(x[1::2]))
    torch.testing.assert_close(split.running_var, (even.running_var + odd.running_var) / 2)
    out.sum().backward()
    assert split.weight.grad is not None


def test_queue_must_hold_whole_batches():
    with pytest.raises(ValueError, match="multiple of batch size"):
        PretrainConfig(batch_size=4, queue_size=6).validate()


def test_a_queue_larger_than_the_photo_pool_is_called_out():
    # 4096 keys over IDRiD's 499 unlabeled photos: about 8 stale keys of each photo are negatives.
    note = queue_note(4096, 499)
    assert "about 8 keys of each of the 499 photos" in note
    assert "--queue-size below 499" in note
    assert queue_note(4096, 100_000) == ""


def test_moco_views_are_reproducible_and_stay_in_the_field_of_view(pool):
    images, fov = pool
    q1, k1 = moco_views(images, fov, 7, CROP)
    q2, k2 = moco_views(images, fov, 7, CROP)
    assert q1.shape == k1.shape == (images.shape[0], 3, CROP, CROP)
    assert torch.equal(q1, q2) and torch.equal(k1, k2)
    assert not torch.equal(q1, k1)
    # Outside the FOV the photo is black, which normalises to -mean/std: count such pixels.
    config = ModelConfig()
    black = torch.tensor(config.mean).view(1, 3, 1, 1) / torch.tensor(config.std).view(1, 3, 1, 1)
    outside = ((q1 + black).abs() < 1e-3).all(dim=1).float().mean()
    assert outside < 0.3


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, pool) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    pretrain(small_config(out, cache_dir, epochs=1))
    first = torch.load(out / CHECKPOINT, weights_only=True)
    assert (first["step"], first["epoch"]) == (2, 0)
    assert log_steps(out) == [1, 2]
    pretrain(small_config(out, cache_dir, epochs=2))  # the same out dir: resume
    return out


def test_rerun_resumes_from_the_checkpoint(resumed_run: Path, cache_dir: Path):
    last = torch.load(resumed_run / CHECKPOINT, weights_only=True)
    assert (last["step"], last["epoch"]) == (4, 1)
    assert log_steps(resumed_run) == [1, 2, 3, 4]
    # 4 steps of 4 keys in a queue of 12: the pointer is at 16 % 12 only if the queue resumed.
    assert int(last["model"]["queue_ptr"]) == 4
    assert last["config"]["epochs"] == 2 and "state" in last["optimizer"]
    with pytest.raises(ValueError, match="lr"):
        pretrain(small_config(resumed_run, cache_dir, epochs=3, lr=0.5))


def test_encoder_file_loads_into_the_unet_with_exact_keys(resumed_run: Path, tmp_path: Path):
    blob = torch.load(resumed_run / "encoder.pt", weights_only=True)
    assert blob["encoder_name"] == "resnet18" and blob["config"]["crop_size"] == CROP
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in blob["encoder"])
    net = HemaviewNet(ModelConfig())
    load_encoder_weights(net, resumed_run / "encoder.pt")
    for key, value in blob["encoder"].items():
        assert torch.equal(net.encoder.state_dict()[key], value)
    # the pool it learned from, as the model's records describe it
    assert blob["pool"]["photos"] == 4 and blob["pool"]["folder"] == str(UNLABELED.resolve())
    note = pretraining_note("moco", str(resumed_run / "encoder.pt"))
    assert note.startswith("MoCo v2 on 4 unlabeled photos of `idrid-hemorrhage` (")
    assert "test split" not in note  # said only of the pool whose making is known
    # an encoder file from before it recorded its pool: its configuration's folder as it stands
    del blob["pool"]
    torch.save(blob, tmp_path / "old.pt")
    assert pretraining_note("moco", str(tmp_path / "old.pt")) == note


def test_mismatched_encoder_weights_fail_loudly_and_change_nothing(
    resumed_run: Path, tmp_path: Path
):
    blob = torch.load(resumed_run / "encoder.pt", weights_only=True)
    state = dict(blob["encoder"])
    state["module.conv1.weight"] = state.pop("conv1.weight")  # a DDP-style prefix
    bad = tmp_path / "bad.pt"
    torch.save({**blob, "encoder": state}, bad)
    net = HemaviewNet(ModelConfig())
    before = net.encoder.conv1.weight.detach().clone()
    expected = r"missing \['conv1.weight'\].*unexpected \['module.conv1.weight'\]"
    with pytest.raises(WeightKeysError, match=expected):
        load_encoder_weights(net, bad)
    assert torch.equal(net.encoder.conv1.weight, before)
    torch.save({**blob, "encoder_name": "resnet34"}, bad)
    with pytest.raises(WeightKeysError, match="resnet34"):
        load_encoder_weights(net, bad)


def test_imagenet_weights_leave_only_the_classifier(tmp_path: Path):
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    net = HemaviewNet(ModelConfig())
    load_imagenet_weights(net, path)
    assert torch.equal(net.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    headless = {k: v for k, v in state.items() if not k.startswith("fc.")}
    torch.save(headless, path)  # not the torchvision file we expect: fc.* should be left over
    with pytest.raises(WeightKeysError, match="expected unexpected"):
        load_imagenet_weights(net, path)


def test_two_process_gloo_run_writes_the_encoder(tmp_path: Path, cache_dir: Path, pool):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        "-m",
        "training.pretrain",
        "--data-dir",
        str(UNLABELED),
        "--out-dir",
        str(out),
        "--cache-dir",
        str(cache_dir),
        "--working-size",
        str(WORKING),
        "--crop-size",
        str(CROP),
        "--batch-size",
        "4",
        "--queue-size",
        "8",
        "--epochs",
        "1",
        "--repeats",
        "2",
        "--max-photos",
        "4",
        "--workers",
        "1",
        "--device",
        "cpu",
        "--log-every",
        "1",
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "over 2 process(es)" in done.stdout
    assert log_steps(out) == [1, 2]  # 4 photos x 2 repeats, 2 per process per step
    checkpoint = torch.load(out / CHECKPOINT, weights_only=True)
    assert checkpoint["world_size"] == 2 and int(checkpoint["model"]["queue_ptr"]) == 0
    load_encoder_weights(HemaviewNet(ModelConfig()), out / "encoder.pt")


def _blobs(generator: torch.Generator, n: int, size: int, threshold: float) -> torch.Tensor:
    """Irregular, asymmetric 0/1 shapes (N, 1, size, size): a flip or turn shows."""
    noise = torch.rand((n, 1, 8, 8), generator=generator)
    return (F.interpolate(noise, size=size, mode="bilinear") > threshold).float()


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def test_augment_pair_keeps_image_mask_and_valid_aligned():
    g = torch.Generator().manual_seed(3)
    n, size = 6, 128
    lesions = _blobs(g, n, size, 0.6)  # (N, 1, H, W)
    valid = _blobs(g, n, size, 0.3)
    # Red carries the lesion and blue the valid area, so each can be found again in the image.
    images = torch.cat([60 + 150 * lesions, torch.full_like(lesions, 30), 40 + 150 * valid], dim=1)
    out_images, out_masks, out_valid = augment_pair(images, lesions, valid, g, CROP)
    assert out_images.shape == (n, 3, CROP, CROP)
    assert out_masks.shape == out_valid.shape == (n, 1, CROP, CROP)
    assert out_images.max() > 1.5 and out_images.min() >= 0 and out_images.max() <= 255  # 0-255
    assert set(out_valid.unique().tolist()) <= {0.0, 1.0}
    assert out_masks.min() >= 0 and out_masks.max() <= 1
    checked = 0
    for i in range(n):
        red, blue = out_images[i, 0], out_images[i, 2]
        lit = out_images[i].amax(dim=0) > 0  # inside the source photo
        lesion_mask, valid_mask = out_masks[i, 0] > 0.5, out_valid[i, 0] > 0.5
        if lesion_mask.sum() > 30 and (lit & ~lesion_mask).sum() > 30:
            cut = (red[lit].min() + red[lit].max()) / 2
            assert _iou((red > cut) & lit, lesion_mask) > 0.85
            checked += 1
        cut = (blue[lit].min() + blue[lit].max()) / 2
        assert _iou((blue > cut) & lit, valid_mask) > 0.85
    assert checked >= 3
    # Reproducible from the seed, and the geometry really varies.
    again = augment_pair(images, lesions, valid, torch.Generator().manual_seed(9), CROP)
    twice = augment_pair(images, lesions, valid, 9, CROP)
    assert all(torch.equal(a, b) for a, b in zip(again, twice, strict=True))
    assert not torch.equal(again[1], out_masks)


# ----------------------------------------------------------------------------------------------
# The pretraining a comparison asks for


def test_compare_builds_its_pretraining_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import argparse

    from training import cv_config as cv
    from training.configs import add_dataclass_args, dataclass_from_args

    folder = tmp_path / "pretrain"
    config = cv.CompareConfig(device="cpu", seed=3, pretrain_args="--epochs 2 --no-amp")
    built = cv.pretrain_config(config, cv.SCALES["reduced"], folder)
    assert isinstance(built, PretrainConfig)
    assert (built.recipe.working_size, built.crop_size, built.batch_size) == (512, 128, 32)
    assert (built.queue_size, built.lr, built.repeats, built.workers) == (1024, 0.00375, 1, 2)
    assert (built.out_dir, built.device, built.seed) == (str(folder), "cpu", 3)
    assert built.epochs == 2 and built.amp is False  # --pretrain-args come last and win
    assert built.temperature == PretrainConfig().temperature  # the rest keep their defaults
    built.validate()
    # what `hemaview-train pretrain` made of the argument list compare used to pass
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, PretrainConfig)
    old_argv = (
        "--working-size 512 --crop-size 128 --batch-size 32 --queue-size 1024 --lr 0.00375 "
        f"--repeats 1 --epochs 12 --workers 2 --out-dir {folder} --device cpu --seed 3 "
        "--epochs 2 --no-amp"
    ).split()
    assert built == dataclass_from_args(PretrainConfig, parser.parse_args(old_argv))
    full = cv.pretrain_config(cv.CompareConfig(), cv.SCALES["full"], folder)
    assert (full.recipe.working_size, full.epochs, full.batch_size, full.crop_size) == (
        1024,
        100,
        128,
        224,
    )
    with pytest.raises(ValueError, match=r"--pretrain-args: .*--no-such-option"):
        cv.pretrain_config(
            cv.CompareConfig(pretrain_args="--no-such-option 1"),
            cv.SCALES["reduced"],
            folder,
        )

    # ensure_moco_encoder hands that config to pretraining, once
    ran: list[PretrainConfig] = []

    def fake_pretrain(given: PretrainConfig) -> Path:
        ran.append(given)
        path = Path(given.out_dir) / "encoder.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"encoder")
        return path

    monkeypatch.setattr(cv, "pretrain", fake_pretrain)
    scale = cv.SCALES["reduced"]
    assert cv.ensure_moco_encoder(config, scale, folder) == folder / "encoder.pt"
    assert cv.ensure_moco_encoder(config, scale, folder) == folder / "encoder.pt"
    assert ran == [built]


# ----------------------------------------------------------------------------------------------
# Does MoCo learn? In-batch negatives on a tiny pool, checked on views training never drew


def test_in_batch_negatives_are_the_other_photos_keys_and_leave_the_queue(pool):
    images, fov = pool
    torch.manual_seed(0)
    model = MoCo("resnet18", dim=16, queue_size=8, bn_splits=2, negatives="batch")
    queue, ptr = model.queue.clone(), int(model.queue_ptr)
    im_q, im_k = moco_views(images, fov, 0, CROP)
    out = model(im_q, im_k, generator=torch.Generator().manual_seed(0))
    n = images.shape[0]
    assert out.logits.shape == (n, n) and out.labels.tolist() == list(range(n))
    # row i: query i against every key of the step, its own on the diagonal
    with torch.no_grad():
        q = F.normalize(model.encoder_q(im_q), dim=1)
    torch.testing.assert_close(out.logits, q @ out.keys.T / model.temperature, rtol=1e-4, atol=1e-4)
    assert torch.equal(model.queue, queue) and int(model.queue_ptr) == ptr
    assert top1(out).item() == (out.logits.argmax(dim=1) == torch.arange(n)).float().mean().item()
    with pytest.raises(ValueError, match="negatives must be one of queue, batch"):
        MoCo("resnet18", negatives="pool")


def test_knn_top1_counts_the_nearest_other_view_of_the_same_photo():
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.7, 0.7]])
    photo = torch.tensor([0, 0, 1, 1, 2])
    assert knn_top1(features, photo) == pytest.approx(4 / 5)  # photo 2's one view: no match


def test_moco_learns_to_tell_a_tiny_pool_apart(cache_dir: Path):
    """Eight photos, 40 steps (about 15 s on this CPU): the nearest neighbour of a held-apart
    view (a generator training never used) is another view of the same photo far more often
    than chance and than before training. The views differ by crop (half the field of view or
    more), rotation and mirroring; with colour jitter too, 40 steps are not enough to show it."""
    photos = list_photos(UNLABELED, 8)
    images, fov = load_pool(photos, PreprocessRecipe(working_size=WORKING), cache_dir, workers=2)
    augment = replace(MOCO_AUGMENT, scale=(0.5, 1.0), jitter_p=0.0, blur_p=0.0)
    config = PretrainConfig(data_dir=str(UNLABELED), crop_size=CROP, seed=0)
    torch.manual_seed(0)
    model = MoCo("resnet18", dim=128, momentum=0.9, temperature=0.2, bn_splits=2, negatives="batch")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=config.weight_decay)
    before, chance = held_apart_knn(model, images, fov, config, views=4, augment=augment)
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        im_q, im_k = moco_views(images, fov, generator, CROP, augment)
        loss = info_nce(model(im_q, im_k, generator=generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after, _ = held_apart_knn(model, images, fov, config, views=4, augment=augment)
    assert chance == pytest.approx(3 / 31)
    assert after >= 4 * chance and after >= before + 0.15, (before, after, chance)


def test_pretraining_with_in_batch_negatives_and_adamw_reports_its_knn_check(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "batch"
    config = small_config(out, cache_dir, negatives="batch", optimizer="adamw", knn_photos=4)
    pretrain(config)
    printed = capsys.readouterr().out
    assert "negatives from the batch, adamw" in printed
    assert "held-apart views of 4 photos: nearest-neighbour top-1" in printed
    assert "(chance 0.143)" in printed  # 2 views of 4 photos: 1 / 7
    state = torch.load(out / CHECKPOINT, weights_only=True)
    assert state["config"]["negatives"] == "batch" and "exp_avg" in str(state["optimizer"])
    with pytest.raises(ValueError, match="negatives must be one of queue, batch"):
        small_config(out, cache_dir, negatives="pool").validate()
    with pytest.raises(ValueError, match="optimizer must be sgd or adamw"):
        small_config(out, cache_dir, optimizer="lamb").validate()


def test_a_checkpoint_from_before_later_settings_resumes_as_it_ran(
    resumed_run: Path, tmp_path: Path, cache_dir: Path
):
    out = tmp_path / "old"
    shutil.copytree(resumed_run, out)
    state = torch.load(out / CHECKPOINT, weights_only=True)
    for key in ("negatives", "optimizer", "knn_photos"):
        del state["config"][key]  # as the code before these settings wrote it
    # before configurations held their recipe (commit a3ee92a, which the issue 27 run's
    # pretraining writes): the working size alone, run as PreprocessRecipe(working_size=...)
    del state["config"]["recipe"]
    state["config"]["working_size"] = WORKING
    torch.save(state, out / CHECKPOINT)
    with pytest.raises(ValueError, match="recipe"):
        other = PreprocessRecipe(working_size=WORKING * 2)
        pretrain(small_config(out, cache_dir, epochs=3, knn_photos=0, recipe=other))
    pretrain(small_config(out, cache_dir, epochs=3, knn_photos=0))
    assert torch.load(out / CHECKPOINT, weights_only=True)["epoch"] == 2
    with pytest.raises(ValueError, match="negatives"):
        pretrain(small_config(out, cache_dir, epochs=4, negatives="batch"))
