"""`hemaview-train anatomy --out DIR [--export MODEL.onnx]`: the anatomy model end to end.

Cross-validates (k folds by photo), chooses how the fovea's confidence is cut and whether
mirror averaging pays from the out-of-fold maps, fits on every photo and exports. Rerun the
same command to resume: finished folds and the final fit are read back, an interrupted one
goes on from its last checkpoint (every 100 steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.anatomy.decode import DecodeParams
from training.anatomy import (
    AnatomyConfig,
    AnatomySample,
    kfold_names,
    load_anatomy_set,
    net_from_checkpoint,
    predict_maps,
    save_json,
    train,
)
from training.anatomy_eval import figures_json, photo_figures, summarise_figures
from training.configs import add_dataclass_args, dataclass_from_args, to_jsonable
from training.data import default_cache_dir

#: fovea confidence cuts tried on the out-of-fold maps
CONFIDENCE_CUTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)


def oof_maps(
    config: AnatomyConfig, samples: list[AnatomySample], out: Path, folds: int
) -> dict[str, dict[str, np.ndarray]]:
    """Out-of-fold maps of every photo, with and without mirror averaging (trains as needed)."""
    split = kfold_names(samples, folds, config.seed)
    save_json(out / "folds.json", split)
    maps: dict[str, dict[str, np.ndarray]] = {}
    for k, held in enumerate(split):
        fold_dir = out / f"fold{k}"
        saved = fold_dir / "oof_maps.npz"
        if not saved.is_file():
            started = time.monotonic()
            train_set = [s for s in samples if s.name not in held]
            net = train(config, train_set, fold_dir)
            test = [s for s in samples if s.name in held]
            images = np.stack([s.image for s in test])
            arrays: dict[str, Any] = {}
            for mirror in (False, True):
                disc, fovea = predict_maps(net, config, images, mirror=mirror)
                tag = "mirror" if mirror else "plain"
                arrays[f"{tag}_disc"] = disc.astype(np.float16)
                arrays[f"{tag}_fovea"] = fovea.astype(np.float32)
            np.savez_compressed(saved, names=np.array([s.name for s in test]), **arrays)
            print(f"fold {k}: trained in {time.monotonic() - started:.0f} s", flush=True)
        with np.load(saved) as data:
            for i, name in enumerate(data["names"]):
                maps[str(name)] = {key: data[key][i] for key in data.files if key != "names"}
    return maps


def evaluate_oof(
    samples: list[AnatomySample],
    maps: dict[str, dict[str, np.ndarray]],
    tag: str,
    params: DecodeParams,
) -> tuple[dict[str, object], list[dict[str, object]]]:
    photos = [
        photo_figures(
            s,
            maps[s.name][f"{tag}_disc"].astype(np.float32),
            maps[s.name][f"{tag}_fovea"].astype(np.float32),
            params,
        )
        for s in samples
    ]
    return summarise_figures(photos), figures_json(photos)


def anatomy_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="hemaview-train anatomy", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="run folder (resumed)")
    parser.add_argument("--data-dir", type=Path, default=None, help="idrid-optic-disc folder")
    parser.add_argument("--photos-dir", type=Path, default=None, help="the photos' folder")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--folds", type=int, default=3, help="0: no cross-validation")
    parser.add_argument("--export", type=Path, default=None, help="write the model here")
    parser.add_argument("--model-version", default="dev")
    add_dataclass_args(parser, AnatomyConfig)
    args = parser.parse_args(argv)
    config = dataclass_from_args(AnatomyConfig, args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache_dir or default_cache_dir()
    samples = load_anatomy_set(args.data_dir, args.photos_dir, config.recipe(), cache)
    print(f"{len(samples)} photos at {config.working_size} px", flush=True)
    decode = DecodeParams()
    mirror = False
    metrics: dict[str, object] = {}
    if args.folds >= 2:
        maps = oof_maps(config, samples, out, args.folds)
        table = {}
        for tag in ("plain", "mirror"):
            for cut in CONFIDENCE_CUTS:
                params = dataclasses.replace(decode, fovea_min_confidence=cut)
                summary, _ = evaluate_oof(samples, maps, tag, params)
                table[f"{tag}@{cut:g}"] = summary
        save_json(out / "cv_table.json", table)

        # the highest cut that keeps the fovea bar's pass rate (a refusal is only worth it
        # when it refuses wrong answers), then mirror averaging only if it is better there
        def score(key: str) -> tuple[float, float, float]:
            s = table[key]
            return (
                float(s["fovea_within_0.5dd"]),  # type: ignore[arg-type]
                float(s["disc_centre_within_0.25dd"]),  # type: ignore[arg-type]
                float(s["disc_dice_mean"]),  # type: ignore[arg-type]
            )

        best: dict[str, str] = {}
        for tag in ("plain", "mirror"):
            keys = [f"{tag}@{cut:g}" for cut in CONFIDENCE_CUTS]
            top = max(score(k)[0] for k in keys)
            best[tag] = max(
                (k for k in keys if score(k)[0] >= top), key=lambda k: float(k.split("@")[1])
            )
        chosen = best["mirror"] if score(best["mirror"]) > score(best["plain"]) else best["plain"]
        tag, chosen_cut = chosen.split("@")
        mirror = tag == "mirror"
        decode = dataclasses.replace(decode, fovea_min_confidence=float(chosen_cut))
        summary, photos = evaluate_oof(samples, maps, tag, decode)
        save_json(out / "cv_photos.json", photos)
        metrics = {
            "cross_validation": {
                "folds": args.folds,
                "photos": len(samples),
                "mirror_average": mirror,
                "fovea_min_confidence": decode.fovea_min_confidence,
                **summary,
            }
        }
        save_json(out / "cv_summary.json", metrics)
        print(json.dumps(metrics, indent=1), flush=True)
    if args.export is None:
        return 0
    final = out / "final"
    if not (final / "done").is_file():
        train(config, samples, final)
        (final / "done").write_text("")
    net, _, _ = net_from_checkpoint(final / "checkpoint.pt")
    from training.anatomy_export import export_anatomy

    contract = export_anatomy(
        net,
        config,
        args.export,
        decode=decode,
        mirror=mirror,
        training_data={
            "dataset": "IDRiD segmentation, optic disc (OD) masks, official training split; "
            "approximate fovea centres (fovea_train.csv, +-0.2 DD, not IDRiD's)",
            "photos": len(samples),
            "names": [s.name for s in samples],
            "camera": "Kowa VX-10a, 50 degree field, 4288x2848 (IDRiD)",
            "working_size": config.working_size,
        },
        metrics=metrics,
        training_config={"anatomy": to_jsonable(config)},
        model_version=args.model_version,
    )
    print(f"wrote {args.export} (SHA-256 {contract.sha256})")
    return 0
