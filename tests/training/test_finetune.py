"""Fine-tuning on real IDRiD photos, small and on the CPU: the data, the loop, resume,
checkpoint errors, export through to inference.Segmenter, and a tiny comparison."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IDRID, IDRID_NUMBERS, REPO, idrid_photo

from inference.contract import IDRID_ATTRIBUTION, PreprocessRecipe
from inference.model_file import ModelFile
from training.configs import (
    FinetuneConfig,
    add_dataclass_args,
    dataclass_from_args,
    to_jsonable,
)
from training.data import (
    DatasetError,
    DataWarning,
    LabelledSet,
    PhotoRecord,
    Sample,
    kfold_split,
    load_labelled_set,
    load_sample,
    scan_idrid,
    split_for_fold,
)
from training.finetune import (
    CheckpointError,
    finetune,
    load_checkpoint,
    net_from_checkpoint,
    predict_logits,
)
from training.losses import LossWeights, total_loss
from training.patches import PatchSampler
from training.weights import build_net

NAMES = ["IDRiD_01", "IDRiD_02", "IDRiD_05", "IDRiD_43"]
SIZE = 256


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def data(cache_dir: Path) -> LabelledSet:
    return load_labelled_set(
        IDRID, PreprocessRecipe(working_size=SIZE), cache_dir=cache_dir, names=NAMES
    )


def small_config(**changes: object) -> FinetuneConfig:
    base = FinetuneConfig(
        recipe=PreprocessRecipe(working_size=SIZE),
        crop_size=128,
        epochs=1,
        steps_per_epoch=3,
        batch_size=4,
        warmup_steps=1,
        device="cpu",
        seed=0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Data


def test_idrid_43_is_not_annotated_never_an_empty_mask(data: LabelledSet) -> None:
    records = {r.name: r for r in scan_idrid(IDRID)}
    assert len(records) == len(IDRID_NUMBERS)
    assert records["IDRiD_43"].mask_path is None
    assert all(r.mask_path is not None for name, r in records.items() if name != "IDRiD_43")
    sample = data.by_name()["IDRiD_43"]
    assert sample.mask is None and not sample.annotated and not sample.evaluable
    assert math.isnan(sample.lesion_fraction)
    assert data.summary()["not_annotated"] == ["IDRiD_43"]
    assert [s.name for s in data.evaluable()] == ["IDRiD_01", "IDRiD_02", "IDRiD_05"]
    for s in data.evaluable():
        assert s.image.shape == (SIZE, SIZE, 3) and s.image.dtype == np.uint8
        assert s.mask is not None and s.mask.dtype == np.float32 and 0 < s.mask.max() <= 1
        assert s.fov.dtype == bool and 0.5 < s.fov.mean() < 0.9
        # lesions read through the palette, not through the greyscale trap that erases them
        assert 0.0005 < s.lesion_fraction < 0.05
    folds = kfold_split(data.samples, 3, seed=0)
    assert sorted(n for fold in folds for n in fold) == ["IDRiD_01", "IDRiD_02", "IDRiD_05"]


def test_unannotated_photos_train_only_the_reconstruction(data: LabelledSet) -> None:
    seg_only = PatchSampler(data.samples, small_config(reconstruction=False), torch.device("cpu"))
    assert "IDRiD_43" not in [s.name for s in seg_only.samples]
    both = PatchSampler(data.samples, small_config(), torch.device("cpu"))
    annotated = {s.name: float(a) for s, a in zip(both.samples, both.annotated)}
    assert annotated["IDRiD_43"] == 0.0 and annotated["IDRiD_01"] == 1.0
    # a photo without annotation adds nothing to the segmentation loss, whatever its logits
    logits = torch.randn(2, 1, 32, 32, requires_grad=True)
    image = torch.randn(2, 3, 32, 32)
    recon = torch.randn(2, 3, 32, 32, requires_grad=True)
    fov = torch.ones(2, 1, 32, 32)
    loss, parts = total_loss(
        logits,
        recon,
        image,
        torch.zeros(2, 1, 32, 32),
        fov,
        torch.tensor([1.0, 0.0]),
        LossWeights(reconstruction=0.5),
    )
    loss.backward()
    assert logits.grad is not None and recon.grad is not None
    assert torch.all(logits.grad[1] == 0) and torch.any(logits.grad[0] != 0)
    assert torch.any(recon.grad[1] != 0)  # but it does train the reconstruction
    assert set(parts) == {"bce", "dice", "recon", "loss"}


def test_patches_lean_towards_lesions(data: LabelledSet) -> None:
    sampler = PatchSampler(data.evaluable(), small_config(lesion_bias=0.9), torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    images, masks, valid, annotated = sampler.batch(16, np.random.default_rng(0), generator)
    assert images.shape == (16, 3, 128, 128) and masks.shape == valid.shape == (16, 1, 128, 128)
    assert float(images.min()) >= 0 and float(images.max()) <= 255
    with_lesion = (masks.flatten(1).amax(dim=1) > 0).float().mean()
    assert with_lesion >= 0.6  # lesions cover ~0.3% of these photos
    assert torch.all(annotated == 1)


def test_hard_negative_patches_cover_the_mined_points(data: LabelledSet, tmp_path: Path) -> None:
    """Each photo gets one mined point, marked as the only "lesion" pixel of a stand-in mask (so
    a patch's mask shows whether the point is inside it); lesion-centred patches are off."""
    points = {"IDRiD_01": (40, 200), "IDRiD_02": (128, 128), "IDRiD_05": (210, 60)}
    samples = []
    for s in data.evaluable():
        marker = np.zeros((SIZE, SIZE), np.float32)
        marker[points[s.name]] = 0.1  # under the 0.25 that makes a pixel a lesion centre
        samples.append(dataclasses.replace(s, mask=marker))
    path = tmp_path / "hard_negatives.json"
    mined = {name: [list(yx)] for name, yx in points.items()}
    path.write_text(json.dumps({"working_size": SIZE, "points": mined}))

    def coverage(**changes: object) -> tuple[float, torch.Tensor]:
        config = small_config(lesion_bias=0.0, augment=False, crop_size=64, **changes)
        sampler = PatchSampler(samples, config, torch.device("cpu"))
        generator = torch.Generator().manual_seed(0)
        images, masks, _, _ = sampler.batch(200, np.random.default_rng(0), generator)
        return float((masks.flatten(1).amax(dim=1) > 0).float().mean()), images

    everywhere, plain = coverage()
    assert everywhere < 0.15  # 64-px patches anywhere in a 256-px field rarely hold the point
    always, _ = coverage(hard_negatives=str(path), hard_negative_p=1.0)
    assert always == 1.0  # centred within a quarter patch of it: always inside
    half, _ = coverage(hard_negatives=str(path), hard_negative_p=0.5)
    assert 0.4 < half < 0.65
    # off, the file changes nothing: the same draws, the same patches as without it
    _, off = coverage(hard_negatives=str(path), hard_negative_p=0.0)
    assert torch.equal(off, plain)
    path.write_text(json.dumps({"working_size": 512, "points": mined}))
    with pytest.raises(ValueError, match="working size 512"):
        coverage(hard_negatives=str(path), hard_negative_p=0.5)
    with pytest.raises(ValueError, match="needs --hard-negatives"):
        coverage(hard_negative_p=0.5)


def test_shadows_darken_patches_smoothly_and_leave_the_target(data: LabelledSet) -> None:
    from training.augment import PAIR_AUGMENT, augment_pair

    sample = data.evaluable()[0]
    assert sample.mask is not None
    n = 8
    img = torch.from_numpy(sample.image).permute(2, 0, 1)[None].float().repeat(n, 1, 1, 1)
    msk = torch.from_numpy(sample.mask)[None, None].repeat(n, 1, 1, 1)
    val = torch.from_numpy(sample.fov)[None, None].float().repeat(n, 1, 1, 1)
    plain = augment_pair(img, msk, val, 0, 128, PAIR_AUGMENT)
    off = augment_pair(img, msk, val, 0, 128, dataclasses.replace(PAIR_AUGMENT, shadow_p=0.0))
    assert all(torch.equal(a, b) for a, b in zip(plain, off, strict=True))  # no extra draws
    shaded = augment_pair(img, msk, val, 0, 128, dataclasses.replace(PAIR_AUGMENT, shadow_p=1.0))
    # the shadow comes after every other draw: the same crops, the same target
    assert torch.equal(plain[1], shaded[1]) and torch.equal(plain[2], shaded[2])
    lit = plain[0].amin(dim=1, keepdim=True) > 10  # (n, 1, c, c) where a ratio is well defined
    multiplier = (shaded[0] / plain[0].clamp_min(1e-3))[:, :1]  # (n, 1, c, c), as applied
    assert (multiplier[lit] <= 1 + 1e-5).all()
    darkest = torch.where(lit, multiplier, torch.ones_like(multiplier)).flatten(1).amin(dim=1)
    assert (darkest <= 0.9).all()  # every patch loses at least 10% somewhere
    # smooth: a Gaussian at least half a patch wide changes by well under 1% per pixel
    both = lit[:, :, 1:, :] & lit[:, :, :-1, :]
    step = (multiplier[:, :, 1:, :] - multiplier[:, :, :-1, :]).abs()
    assert float(step[both].max()) < 0.01


def test_data_errors_are_clear(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_labelled_set(tmp_path / "nowhere", cache_dir=cache_dir)
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetError, match=r"images/IDRiD_NN\.jpg"):
        load_labelled_set(tmp_path / "flat", cache_dir=cache_dir)
    recipe = PreprocessRecipe(working_size=SIZE)
    # a mask of the wrong size for its photo
    from PIL import Image

    wrong = tmp_path / "wrong_HE.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(wrong)
    record = PhotoRecord("IDRiD_01", idrid_photo(1), wrong, "idrid")
    with pytest.raises(DatasetError, match="4288x2848"):
        load_sample(record, recipe, cache_dir)
    # an empty mask is kept as a photo without haemorrhage, with a warning for IDRiD data
    empty = tmp_path / "empty_HE.png"
    Image.fromarray(np.zeros((2848, 4288), np.uint8)).save(empty)
    with pytest.warns(DataWarning, match="empty"):
        sample = load_sample(
            PhotoRecord("IDRiD_01", idrid_photo(1), empty, "idrid"), recipe, cache_dir
        )
    assert sample.annotated and sample.mask is not None and sample.mask.max() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a reviewer's "no haemorrhage" is not suspicious
        load_sample(
            PhotoRecord("X", idrid_photo(1), empty, "labels", empty_mask_ok=True), recipe, cache_dir
        )
    # an unreadable photo
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DatasetError, match=r"broken\.jpg"):
        load_sample(PhotoRecord("broken", broken, None, "idrid"), recipe, cache_dir)


def test_training_without_its_data_says_where_to_get_idrid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.cli import main as train_main

    monkeypatch.delenv("HEMAVIEW_DATA", raising=False)
    empty = tmp_path / "no-data"
    empty.mkdir()
    commands = (
        ["finetune", "--out", str(tmp_path / "run")],
        ["pretrain", "--out-dir", str(tmp_path / "pretrain")],
    )
    for command in commands:
        code = train_main(["--data", str(empty), *command])  # HEMAVIEW_DATA=DIR, as a flag
        err = capsys.readouterr().err
        assert code == 1, err
        # where the data was looked for, where to get it, and how to lay it out
        assert str(empty) in err and "idrid.grand-challenge.org" in err
        assert "3. Haemorrhages" in err and "HEMAVIEW_DATA" in err
        assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_idrids_own_archive_layout_is_read_as_it_comes(tmp_path: Path) -> None:
    """The unpacked 'A. Segmentation' folder, with IDRiD's own sub-folder names."""
    root = tmp_path / "A. Segmentation"
    images = root / "1. Original Images" / "a. Training Set"
    masks = root / "2. All Segmentation Groundtruths" / "a. Training Set" / "3. Haemorrhages"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for name in ("IDRiD_01", "IDRiD_43"):
        (images / f"{name}.jpg").symlink_to(IDRID / "images" / f"{name}.jpg")
    (masks / "IDRiD_01_HE.tif").symlink_to(IDRID / "masks" / "IDRiD_01_HE.tif")
    for given in (root, tmp_path):
        records = {r.name: r for r in scan_idrid(given)}
        assert sorted(records) == ["IDRiD_01", "IDRiD_43"]
        assert records["IDRiD_01"].mask_path == masks / "IDRiD_01_HE.tif"
        assert records["IDRiD_43"].mask_path is None


def test_folds_are_by_photo_seeded_and_stratified() -> None:
    samples = [
        Sample(
            name=f"P{i:02d}",
            image=np.zeros((1, 1, 3), np.uint8),
            mask=np.zeros((1, 1), np.float32),
            fov=np.ones((1, 1), bool),
            geometry=None,  # type: ignore[arg-type]  # folds never look at it
            image_path=Path("x"),
            mask_path=Path("y"),
            source="idrid",
            lesion_fraction=0.001 * (i + 1),
        )
        for i in range(53)
    ]
    samples.append(dataclasses.replace(samples[0], name="P99", mask=None, lesion_fraction=math.nan))
    folds = kfold_split(samples, 5, seed=3)
    assert folds == kfold_split(samples, 5, seed=3)
    assert folds != kfold_split(samples, 5, seed=4)
    names = [n for fold in folds for n in fold]
    assert sorted(names) == sorted(f"P{i:02d}" for i in range(53))  # P99 is never evaluated
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    burden = {s.name: s.lesion_fraction for s in samples}
    means = [np.mean([burden[n] for n in fold]) for fold in folds]
    assert max(means) - min(means) < 0.01  # every fold gets small and large lesions alike
    train, test = split_for_fold(samples, folds, 0)
    assert {s.name for s in test} == set(folds[0])
    assert "P99" in {s.name for s in train} and not {s.name for s in train} & set(folds[0])


# ----------------------------------------------------------------------------------------------
# Training


def test_a_few_steps_with_both_decoders(data: LabelledSet, tmp_path: Path) -> None:
    config = small_config()
    before = build_net(config)
    result = finetune(config, data.samples, tmp_path / "run", log=lambda _: None)
    assert len(result.history) == 1
    row = result.history[0]
    for key in ("loss", "bce", "dice", "recon"):
        assert math.isfinite(row[key]), key
    assert result.net.reconstruction is not None and before.reconstruction is not None
    changed = [
        not torch.equal(a, b)
        for a, b in zip(before.reconstruction.parameters(), result.net.reconstruction.parameters())
    ]
    assert all(changed)  # every reconstruction weight was trained
    assert not torch.equal(
        before.segmentation_head[0].weight, result.net.segmentation_head[0].weight
    )
    assert (tmp_path / "run" / "train_log.csv").read_text().startswith("epoch,step")
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["config"]["reconstruction"] is True and state["config"]["crop_size"] == 128
    assert state["train_names"] == NAMES
    # the segmentation-only network has no reconstruction decoder at all
    seg = finetune(
        small_config(reconstruction=False, steps_per_epoch=1),
        data.samples,
        tmp_path / "seg",
        log=lambda _: None,
    )
    assert seg.net.reconstruction is None and "recon" not in seg.history[0]


def test_moco_and_imagenet_initialisations_load_the_encoder(tmp_path: Path) -> None:
    import torchvision

    from training.model import HemaviewNet, ModelConfig

    torch.manual_seed(1)
    donor = HemaviewNet(ModelConfig())
    encoder_pt = tmp_path / "encoder.pt"
    torch.save({"encoder": donor.encoder.state_dict(), "encoder_name": "resnet18"}, encoder_pt)
    net = build_net(small_config(init="moco", init_weights=str(encoder_pt)))
    for key, value in donor.encoder.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[key], value), key
    imagenet = torchvision.models.resnet18(weights=None).state_dict()  # a stand-in local file
    imagenet_pt = tmp_path / "resnet18.pth"
    torch.save(imagenet, imagenet_pt)
    net = build_net(small_config(init="imagenet", init_weights=str(imagenet_pt)))
    assert torch.equal(net.encoder.state_dict()["conv1.weight"], imagenet["conv1.weight"])
    with pytest.raises(ValueError, match="needs --init-weights"):
        small_config(init="imagenet")
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_net(small_config(init="moco", init_weights=str(tmp_path / "missing.pt")))


class Interrupted(Exception):
    pass


def test_resume_continues_where_it_stopped(data: LabelledSet, tmp_path: Path) -> None:
    config = small_config(epochs=2, steps_per_epoch=2, reconstruction=False)
    train = data.evaluable()

    def stop_after_first(epoch: int, _net: object) -> None:
        if epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        finetune(config, train, tmp_path / "run", log=lambda _: None, on_epoch=stop_after_first)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (1, 2)
    # a checkpoint from before a setting existed resumes as that setting's default
    del state["config"]["ema_decay"]
    # and one from before configurations held their recipe (commit a3ee92a's, which the
    # issue 27 run writes) saved only the working size: it resumes as the recipe it ran
    assert state["config"]["recipe"] == to_jsonable(PreprocessRecipe(working_size=SIZE))
    del state["config"]["recipe"]
    state["config"]["working_size"] = SIZE
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"recipe: .*'working_size': 256\b.* then"):
        other_size = PreprocessRecipe(working_size=SIZE + 32)
        finetune(dataclasses.replace(config, recipe=other_size), train, tmp_path / "run")
    messages: list[str] = []
    resumed = finetune(config, train, tmp_path / "run", log=messages.append)
    assert any("resuming" in m and "epoch 1" in m for m in messages)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["recipe"] == (
        to_jsonable(config.recipe)
    )
    assert [row["step"] for row in resumed.history] == [2, 4]
    assert resumed.history[0] == state["history"][0]
    # per-epoch seeds: the resumed run ends where an uninterrupted one does
    straight = finetune(config, train, tmp_path / "straight", log=lambda _: None)
    for a, b in zip(straight.net.state_dict().values(), resumed.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # a finished run is loaded, not retrained
    again = finetune(config, train, tmp_path / "run", log=lambda _: None)
    assert [row["step"] for row in again.history] == [2, 4]
    # another configuration in the same folder is refused with the difference named
    with pytest.raises(CheckpointError, match="lr"):
        finetune(dataclasses.replace(config, lr=0.5), train, tmp_path / "run", log=lambda _: None)


def test_a_config_saved_before_the_recipe_reads_as_the_recipe_it_ran() -> None:
    # compare's result.json and the fold checkpoints of runs before the recipe was saved
    saved = to_jsonable(small_config(crop_size=96))
    del saved["recipe"]
    saved["working_size"] = 512
    config = FinetuneConfig.from_dict(saved)
    assert config.recipe == PreprocessRecipe(working_size=512) and config.crop_size == 96
    assert FinetuneConfig.from_dict(to_jsonable(config)) == config
    # the command line keeps its --working-size, and sets the recipe's
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, FinetuneConfig)
    parsed = dataclass_from_args(FinetuneConfig, parser.parse_args(["--working-size", "512"]))
    assert parsed.recipe == PreprocessRecipe(working_size=512)
    with pytest.raises(ValueError, match="--working-size must be a positive multiple of 32"):
        FinetuneConfig(recipe=PreprocessRecipe(working_size=500))


def test_the_weight_average_follows_its_formula_and_ramps_up() -> None:
    from training.ema import WeightAverage

    net = build_net(small_config(reconstruction=False))
    average = WeightAverage(net, decay=0.9)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for value in net.state_dict().values():
            value.add_(1)  # every weight, batch-norm statistic and batch count moves by one
    average.update(net, step=1000)
    after = average.net.state_dict()
    for key, value in start.items():
        if value.is_floating_point():
            torch.testing.assert_close(after[key], value + 0.1)  # 0.9 * old + 0.1 * (old + 1)
        else:
            assert torch.equal(after[key], value + 1), key  # counts are copied, not averaged
    # early on the decay is (1 + step) / (10 + step): the first step's weights weigh 0.8
    assert average.decay_at(1) == pytest.approx(2 / 11) and average.decay_at(10**6) == 0.9
    with pytest.raises(ValueError, match="--ema-decay"):
        small_config(ema_decay=1.0)


def test_an_averaged_run_resumes_exactly_and_ships_the_average(
    data: LabelledSet, tmp_path: Path
) -> None:
    config = small_config(epochs=2, steps_per_epoch=2, reconstruction=False, ema_decay=0.7)
    train = data.evaluable()
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def stop_after_first(epoch: int, net: torch.nn.Module) -> None:
        snapshots[epoch] = {k: v.clone() for k, v in net.state_dict().items()}
        if epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        finetune(config, train, tmp_path / "run", log=lambda _: None, on_epoch=stop_after_first)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    # mid-run the checkpoint keeps both: the live weights train on, the average is evaluated
    assert state["ema"] is not None
    key = "segmentation_head.0.weight"
    assert not torch.equal(state["ema"][key], state["model"][key])
    torch.testing.assert_close(snapshots[1][key], state["ema"][key])  # on_epoch saw the average
    messages: list[str] = []
    resumed = finetune(config, train, tmp_path / "run", log=messages.append)
    assert any("averaged" in m for m in messages)
    straight = finetune(config, train, tmp_path / "straight", log=lambda _: None)
    for a, b in zip(straight.net.state_dict().values(), resumed.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # the finished checkpoint holds the average as its model, and no second copy
    final = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert final["ema"] is None
    torch.testing.assert_close(final["model"][key], resumed.net.state_dict()[key])
    plain = finetune(
        dataclasses.replace(config, ema_decay=0.0), train, tmp_path / "plain", log=lambda _: None
    )
    assert not torch.allclose(plain.net.state_dict()[key], resumed.net.state_dict()[key])


def test_a_corrupt_checkpoint_gives_a_clear_error(data: LabelledSet, tmp_path: Path) -> None:
    config = small_config(steps_per_epoch=1, reconstruction=False)
    finetune(config, data.evaluable(), tmp_path / "run", log=lambda _: None)
    path = tmp_path / "run" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut off, as by a full disk
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        finetune(config, data.evaluable(), tmp_path / "run", log=lambda _: None)
    assert str(path) in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        net_from_checkpoint(path)
    torch.save({"something": "else"}, path)
    with pytest.raises(CheckpointError, match="not a Hemaview fine-tuning checkpoint"):
        net_from_checkpoint(path)


# The child of the crash test: it starts writing a checkpoint over PATH, gets half of it onto
# the disk, says so, and waits to be killed (SIGKILL: no clean-up runs, as in a power cut).
_CRASHING_WRITER = """
import io, sys, threading
import torch
from training import checkpoint

real_save = torch.save

def half_then_hang(obj, handle):
    data = io.BytesIO()
    real_save(obj, data)
    handle.write(data.getvalue()[: len(data.getvalue()) // 2])
    handle.flush()
    print("half written", flush=True)
    threading.Event().wait()

torch.save = half_then_hang
checkpoint.save(sys.argv[1], {"epoch": 2, "weights": torch.ones(50_000)})
"""


def test_a_crash_mid_write_leaves_the_previous_checkpoint_loadable(tmp_path: Path) -> None:
    import subprocess
    import sys

    from training import checkpoint

    path = tmp_path / "checkpoint.pt"
    previous = {
        **checkpoint.FINETUNE.stamp(),
        "config": {"lr": 0.001},
        "model": {"w": torch.arange(4.0)},
        "epoch": 1,
        "step": 3,
    }
    checkpoint.save(path, previous)
    repo = REPO
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_WRITER, str(path)],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "half written"  # waits for it, no sleep
    finally:
        child.kill()
        child.wait()
    # the new checkpoint was half on the disk, beside the old one, when the process died
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 1000
    state = checkpoint.load(path, checkpoint.FINETUNE)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.arange(4.0))
    # a write that fails in this process cleans up after itself and changes nothing either
    with pytest.raises(Exception, match="pickle"):
        checkpoint.save(path, {**previous, "epoch": 2, "hook": lambda: None})
    assert [p for p in tmp_path.iterdir() if p != path] == leftovers
    assert checkpoint.load(path, checkpoint.FINETUNE)["epoch"] == 1


def test_a_checkpoint_of_another_run_is_refused_naming_the_difference(
    data: LabelledSet, tmp_path: Path
) -> None:
    from inference.errors import HemaviewError
    from training import checkpoint
    from training.configs import to_jsonable

    config = small_config(reconstruction=False)
    train = data.evaluable()
    names = sorted(s.name for s in train)
    run = tmp_path / "run"
    run.mkdir()
    other = small_config(reconstruction=False, lr=0.5, crop_size=96, device="auto", threads=1)
    state = {
        **checkpoint.FINETUNE.stamp(),
        "config": to_jsonable(other),
        "model": {},
        "epoch": 1,
        "step": 3,
        "train_names": names,
    }
    checkpoint.save(run / "checkpoint.pt", state)
    with pytest.raises(CheckpointError) as info:
        finetune(config, train, run, log=lambda _: None)
    message = str(info.value)
    assert str(run / "checkpoint.pt") in message
    assert "lr: 0.5 then, 0.001 now" in message and "crop_size: 96 then, 128 now" in message
    # where it runs and on how many threads does not change what a run computes
    assert "device" not in message and "threads" not in message
    assert isinstance(info.value, HemaviewError) and isinstance(info.value, ValueError)
    # the same settings on other photos: which photos differ
    state["config"] = to_jsonable(config)
    state["train_names"] = ["IDRiD_01", "IDRiD_02", "IDRiD_17"]
    with pytest.raises(CheckpointError, match=r"only then: IDRiD_17; only now: IDRiD_05"):
        checkpoint.refuse_other_run(
            run / "checkpoint.pt",
            state,
            to_jsonable(config),
            checkpoint.FINETUNE,
            train_names=names,
        )
    # the run that wrote it resumes
    checkpoint.refuse_other_run(
        run / "checkpoint.pt",
        {**state, "train_names": names},
        to_jsonable(dataclasses.replace(config, device="auto", threads=2)),
        checkpoint.FINETUNE,
        train_names=names,
    )


def test_progress_off_a_terminal_is_one_line_per_update() -> None:
    import io

    from training.runtime import progress, reporter

    stream = io.StringIO()
    with progress(None, "photos", "preprocessing", stream=stream) as bar:
        report = reporter(bar)
        for done in range(1, 4):
            report(done, 3)
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines and all(line.startswith("preprocessing") for line in lines)
    assert "3/3" in lines[-1]


def test_evaluation_during_training_and_early_stop(data: LabelledSet, tmp_path: Path) -> None:
    train = [s for s in data.evaluable() if s.name != "IDRiD_05"]
    val = [data.by_name()["IDRiD_05"]]
    config = small_config(
        epochs=4, steps_per_epoch=1, eval_every=1, early_stop=1, reconstruction=False
    )
    result = finetune(config, train, tmp_path / "run", val=val, log=lambda _: None)
    scores = [row["val_aupr"] for row in result.history]
    assert all(0.0 <= s <= 1.0 for s in scores)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["optimizer"] is None  # a finished run keeps its weights only
    if len(scores) < 4:
        assert state["stopped_early"] and scores[-1] <= max(scores[:-1])
    with pytest.raises(ValueError, match="--early-stop needs --eval-every"):
        small_config(early_stop=2)


def test_export_of_the_fine_tuned_net_runs_in_the_clinic(data: LabelledSet, tmp_path: Path) -> None:
    from inference import Segmenter
    from training.cli import main

    config = small_config(steps_per_epoch=2)
    result = finetune(config, data.samples, tmp_path / "run", log=lambda _: None)
    out = tmp_path / "model.onnx"
    # through the command line: checkpoint -> ONNX (export_model checks ONNX Runtime against torch)
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    calibration = ["--temperature", "1.5", "--bias", "-0.5"]
    assert main(["export", checkpoint, str(out), "--threshold", "0.3", *calibration]) == 0
    segmenter = Segmenter.open(out)
    try:
        assert segmenter.contract.preprocess.working_size == SIZE
        assert segmenter.contract.default_threshold == 0.3
        assert segmenter.contract.training_config["finetune"]["crop_size"] == 128
        # the records ship writes too, in the same shape (training.export.export_checkpoint)
        written = segmenter.contract.training_data
        assert written["photos"] == sorted(s.name for s in data.samples)
        assert written["pretraining"] == "none" and written["attribution"] == IDRID_ATTRIBUTION
        assert segmenter.contract.attribution == IDRID_ATTRIBUTION
        # read from its path, as training's cache reads it (inference.preprocess.read_for_model)
        from_path = segmenter.predict(idrid_photo(1))
    finally:
        segmenter.close()
    assert from_path.probability.shape == (2848, 4288)
    assert float(from_path.probability.min()) >= 0.0 and float(from_path.probability.max()) <= 1.0
    # the exported graph applies the calibration to the logits torch gives on the training input
    sample = data.by_name()["IDRiD_01"]
    logits = predict_logits(result.net, sample.image)
    expected = 1 / (1 + np.exp(-(logits / 1.5 - 0.5)))
    assert np.abs(from_path.working.astype(np.float32) - expected).max() < 2e-3
    # one rule for the default threshold on both export paths: a fitted edge goes a hair
    # inside (0, 1), a value outside [0, 1] is refused
    assert main(["export", checkpoint, str(out), "--threshold", "1.0", *calibration]) == 0
    assert ModelFile.open(out).contract.default_threshold == pytest.approx(0.999)
    assert main(["export", checkpoint, str(out), "--threshold", "1.5"]) == 1


def test_the_records_are_derived_from_the_recipe_and_the_pool(tmp_path: Path) -> None:
    from inference.contract import ClaheParams
    from training.provenance import pool_sentence, preprocessing_sentence

    sentence = preprocessing_sentence(PreprocessRecipe(working_size=512))
    assert "resized to 512 px" in sentence and "CLAHE on the L channel of Lab" in sentence
    other = PreprocessRecipe(working_size=256, clahe=ClaheParams(space="rgb", clip_limit=3.0))
    sentence = preprocessing_sentence(other)
    assert "256 px" in sentence and "each RGB channel (clip limit 3" in sentence
    assert "L channel" not in sentence
    pool = {"folder": "/data/idrid-unlabeled", "photos": 12, "sizes": {"2144x1424": 12}}
    assert pool_sentence(pool).startswith("MoCo v2 on 12 unlabeled photos of `idrid-unlabeled`")
    assert "2144x1424" in pool_sentence(pool) and "test split were removed" in pool_sentence(pool)
    elsewhere = pool_sentence({**pool, "folder": "/clinic/pool", "sizes": {"1x1": 1, "2x2": 11}})
    assert elsewhere == "MoCo v2 on 12 unlabeled photos of `pool`"


def test_a_tiny_comparison_writes_its_tables_and_curves(cache_dir: Path, tmp_path: Path) -> None:
    from training.cross_validation import run_compare
    from training.cv_config import CompareConfig
    from training.out_of_fold import load_out_of_fold

    config = CompareConfig(
        out=str(tmp_path / "compare"),
        data_dir=str(IDRID),
        cache_dir=str(cache_dir),
        inits=("random", "imagenet"),
        modes=("seg",),
        folds=3,
        epochs=1,
        steps_per_epoch=1,
        batch_size=2,
        working_size=SIZE,
        crop_size=128,
        photos=3,
        device="cpu",
    )
    outcome = run_compare(config)
    assert [r.spec.name for r in outcome.results] == ["random-seg"]
    assert (
        "imagenet-seg" in outcome.skipped
        and "nothing is downloaded" in outcome.skipped["imagenet-seg"]
    )
    metrics = outcome.results[0].metrics
    assert 0 <= metrics["pooled_aupr"] <= 1 and metrics["n_photos"] == 3
    table = (tmp_path / "compare" / "results.md").read_text()
    assert "reduced scale" in table and "working size 256" in table and "random-seg" in table
    assert (
        (tmp_path / "compare" / "results.csv").read_text().startswith("configuration,pooled_aupr")
    )
    assert (tmp_path / "compare" / "pr_curves.png").stat().st_size > 1000
    assert (tmp_path / "compare" / "random-seg" / "pr_curve.png").is_file()
    folds = json.loads((tmp_path / "compare" / "folds.json").read_text())["folds"]
    assert sorted(n for fold in folds for n in fold) == ["IDRiD_01", "IDRiD_02", "IDRiD_03"]
    # every held-out photo's logits come back with the geometry that maps them to its pixels
    for sample in outcome.data.evaluable():
        logits, geometry = load_out_of_fold(tmp_path / "compare" / "random-seg", sample.name)
        assert logits.shape == (SIZE, SIZE) and logits.dtype == np.float32
        assert geometry == sample.geometry
        assert geometry.to_full(logits).shape == (geometry.full_height, geometry.full_width)
    # rerunning finds everything done and changes nothing
    again = run_compare(config)
    assert again.results[0].metrics == metrics


# ----------------------------------------------------------------------------------------------
# Precision and other cameras


def test_bf16_on_this_cpu_gives_finite_losses_and_gradients_close_to_fp32(
    data: LabelledSet,
) -> None:
    from training.losses import total_loss as loss_of
    from training.model import normalise
    from training.runtime import autocast, cpu_bf16, memory_format, uses_bf16

    device = torch.device("cpu")
    native, why = cpu_bf16()
    assert uses_bf16(device, True) == native and why  # detected, and said
    assert not uses_bf16(device, False)
    config = small_config(reconstruction=True)
    sampler = PatchSampler(data.samples, config, device)
    images, masks, valid, annotated = sampler.batch(
        8, np.random.default_rng(0), torch.Generator().manual_seed(0)
    )
    grads, losses = [], []
    for bf16 in (False, True):
        net = build_net(config).to(memory_format=memory_format(device, bf16)).train()
        x = normalise(images, net.config).contiguous(memory_format=memory_format(device, bf16))
        with autocast(device, bf16):
            logits, recon = net(x)
        loss, _ = loss_of(
            logits.float(), recon.float(), x, masks, valid, annotated, config.loss_weights()
        )
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    assert all(math.isfinite(v) for v in losses) and torch.isfinite(grads[1]).all()
    assert abs(losses[1] - losses[0]) < 0.02 * abs(losses[0])
    # The same direction of descent and size of step, within what bfloat16's 8-bit mantissa
    # allows on a freshly initialised network, whose Dice gradients are small and noisy
    # (measured here: cosine 0.92, norms within 4%). Whether bfloat16 costs quality over a
    # whole run is the A/B run's question (the model card).
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    ratio = float(grads[1].norm() / grads[0].norm())
    assert cosine > 0.85 and 0.9 < ratio < 1.1, (float(cosine), ratio)


def test_other_camera_versions_go_through_the_clinic_pipeline_and_train(
    data: LabelledSet, cache_dir: Path
) -> None:
    from training.camera_data import add_camera_versions

    evaluable = data.evaluable()
    cameras = add_camera_versions(evaluable, data.recipe, 2, cache_dir, seed=0)
    assert sorted(cameras) == sorted(s.name for s in evaluable)
    sample = evaluable[0]
    version = cameras[sample.name][0]
    assert version.image.shape == sample.image.shape and version.description
    assert not np.array_equal(version.image, sample.image)  # another camera's photo
    # the lesions stay where they are: the field of view was found again, the same circle
    assert version.mask is not None and sample.mask is not None
    overlap = np.minimum(version.mask, sample.mask).sum() / sample.mask.sum()
    assert overlap > 0.9
    again = add_camera_versions(evaluable, data.recipe, 2, cache_dir, seed=0)  # from the cache
    assert np.array_equal(again[sample.name][1].image, cameras[sample.name][1].image)
    # patches come from the versions at camera_p, from the photo as taken otherwise
    config = small_config(camera_versions=2, camera_p=1.0)
    sampler = PatchSampler(evaluable, config, torch.device("cpu"), cameras)
    assert sampler.images.shape[0] == 3 * len(evaluable)
    rng = np.random.default_rng(0)
    drawn = {sampler.row(0, rng) for _ in range(20)}
    assert drawn == set(sampler.rows[0][1:])  # both versions, never the photo as taken
    plain = PatchSampler(evaluable, small_config(camera_p=0.0), torch.device("cpu"), cameras)
    assert {plain.row(0, rng) for _ in range(20)} == {plain.rows[0][0]}
    images, *_ = sampler.batch(4, rng, torch.Generator().manual_seed(0))
    assert images.shape == (4, 3, 128, 128) and torch.isfinite(images).all()


def test_compare_hands_its_patch_settings_to_every_fold() -> None:
    from training.cv_config import SCALES, CompareConfig, RunSpec, finetune_config

    config = CompareConfig(hard_negatives="hard.json", hard_negative_p=0.3, shadow_p=0.2)
    ft = finetune_config(RunSpec("random", "seg"), SCALES["reduced"], config, "", 1)
    assert (ft.hard_negatives, ft.hard_negative_p, ft.shadow_p, ft.seed) == (
        "hard.json",
        0.3,
        0.2,
        1,
    )
    with pytest.raises(ValueError, match="--shadow-p must be in"):
        small_config(shadow_p=1.5)
