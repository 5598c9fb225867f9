"""What a model's records say about how it was made, each sentence derived from what made it.

The model contract and the model card describe the preprocessing, the pretraining pool and the
training data; written as literals they stay true only while nobody changes the recipe or the
pool. So every such sentence here is built from the object it describes: the recipe a run
trained with, the pool its encoder file records (`pool_record`, written by pretraining), the
photos its checkpoint names. The data's attribution is one constant, in `inference.contract`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from inference.contract import IDRID_ATTRIBUTION, PreprocessRecipe
from training.configs import FinetuneConfig
from training.data import list_photos

#: What a pool folder's photos cannot say about themselves: how the folder was made (the shared
#: data's README), keyed by the folder's name. A pool from any other folder is described by its
#: count and sizes alone.
KNOWN_POOLS = {
    "idrid-unlabeled": (
        "IDRiD's disease-grading part, downscaled by 2; photos of IDRiD's segmentation test "
        "split were removed from that pool"
    ),
}

_CLAHE_SPACES = {
    "lab-l": "CLAHE on the L channel of Lab",
    "rgb": "CLAHE on each RGB channel",
}


def preprocessing_sentence(recipe: PreprocessRecipe) -> str:
    """The preprocessing as a clause ("field of view found ..., CLAHE on ..."), from `recipe`."""
    parts = [
        "field of view found and cropped to a square",
        f"resized to {recipe.working_size} px",
    ]
    if recipe.mask_outside_fov:
        parts.append("outside blacked")
    clahe = recipe.clahe
    if clahe.space == "none":
        parts.append("no CLAHE")
    else:
        what = _CLAHE_SPACES.get(clahe.space, f"CLAHE in {clahe.space}")
        tiles = f"{clahe.tile_grid}x{clahe.tile_grid}"
        parts.append(f"{what} (clip limit {clahe.clip_limit:g}, {tiles} tiles)")
    return ", ".join(parts)


def pool_record(folder: Path, photos: Sequence[Path], used: int) -> dict[str, Any]:
    """What pretraining records of its pool in encoder.pt: the folder, how many photos it
    trained on (`used`: those with a usable field of view), and the listed photos' sizes."""
    return {"folder": str(folder), "photos": used, "listed": len(photos), "sizes": _sizes(photos)}


def _sizes(photos: Sequence[Path]) -> dict[str, int]:
    from PIL import Image

    sizes: Counter[str] = Counter()
    for path in photos:
        with Image.open(path) as image:  # reads the header only
            sizes[f"{image.width}x{image.height}"] += 1
    return dict(sizes.most_common())


def pool_sentence(pool: Mapping[str, Any]) -> str:
    """MoCo's pool as a clause: "MoCo v2 on 499 unlabeled photos of `idrid-unlabeled` (...)"."""
    folder = Path(str(pool["folder"]))
    name = folder.parent.name if folder.name == "images" else folder.name  # DIR or DIR/images
    sizes: dict[str, int] = dict(pool.get("sizes") or {})
    size = f" ({next(iter(sizes))} px)" if len(sizes) == 1 else ""
    text = f"MoCo v2 on {pool['photos']} unlabeled photos of `{name}`{size}"
    known = KNOWN_POOLS.get(name)
    return f"{text}: {known}" if known else text


def encoder_pool(encoder_file: Path) -> dict[str, Any] | None:
    """The pool an encoder.pt was pretrained on: as it records it, or, for a file from before
    it did, its configuration's folder as it stands now; None when neither can be read."""
    import torch

    if not encoder_file.is_file():
        return None
    blob = torch.load(encoder_file, map_location="cpu", weights_only=True)
    if blob.get("pool"):
        return dict(blob["pool"])
    config = blob.get("config") or {}
    folder = Path(str(config.get("data_dir", "")))
    try:
        photos = list_photos(folder, int(config.get("max_photos", 0)))
    except FileNotFoundError:
        return None
    return pool_record(folder, photos, len(photos))


def pretraining_note(init: str, init_weights: str) -> str:
    """How the encoder started, for the contract's training data and the card: "none", the
    ImageNet file's name, or MoCo's pool as its encoder file records it."""
    if init == "random":
        return "none"
    if init == "imagenet":
        return f"ImageNet weights ({Path(init_weights).name})"
    pool = encoder_pool(Path(init_weights))
    if pool is None:
        return f"MoCo v2 ({Path(init_weights).name}; its pool of photos could not be read)"
    return pool_sentence(pool)


def training_data(
    train_names: Sequence[str],
    config: FinetuneConfig,
    data_summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The contract's training data: the photos the checkpoint was fitted on, the data's summary
    when known (`LabelledSet.summary`), its attribution, and how the encoder started."""
    return {
        "summary": f"fine-tuned on {len(train_names)} photos",
        "photos": list(train_names),
        **(data_summary or {}),
        "attribution": IDRID_ATTRIBUTION,
        "pretraining": pretraining_note(config.init, config.init_weights),
    }
