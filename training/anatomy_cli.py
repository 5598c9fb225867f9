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
from inference.contract import IDRID_ATTRIBUTION
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
#: the lowest cut shipped: about five times what a flat distribution holds within 0.5 DD
MIN_CUT = 0.1


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


def other_camera_maps(
    config: AnatomyConfig, samples: list[AnatomySample], out: Path, split: list[list[str]]
) -> dict[str, dict[str, Any]]:
    """Each held-out photo as another camera would take it (training.camera_variants.
    random_camera, seeded by the photo's name: white balance, gamma, a darker side,
    vignetting, flare, grey surround, lower resolution, blur, JPEG; pixels stay where they
    are, so the truths hold), preprocessed anew as in the clinic (its own field of view) and
    predicted by its fold's net."""
    from inference.photo_io import read_photo
    from inference.preprocess import Geometry, preprocess
    from training.camera_variants import Circle, random_camera

    by_name = {s.name: s for s in samples}
    maps: dict[str, dict[str, Any]] = {}
    for k, held in enumerate(split):
        saved = out / f"fold{k}" / "other_camera_maps.npz"
        if not saved.is_file():
            net, _, _ = net_from_checkpoint(out / f"fold{k}" / "checkpoint.pt")
            arrays: dict[str, list[Any]] = {"names": [], "described": [], "geometry": []}
            images = []
            for name in held:
                sample = by_name[name]
                photo = read_photo(sample.image_path)
                fov = sample.geometry.fov
                rng = np.random.default_rng([config.seed, int(name.split("_")[-1])])
                described, variant = random_camera(rng)
                rgb, _ = variant(photo.rgb, Circle(fov.cx, fov.cy, fov.radius))
                prepared = preprocess(np.ascontiguousarray(rgb), config.recipe())
                images.append(prepared.image)
                arrays["names"].append(name)
                arrays["described"].append(described)
                arrays["geometry"].append(json.dumps(prepared.geometry.to_dict()))
            stacked = np.stack(images)
            result: dict[str, Any] = {key: np.array(v) for key, v in arrays.items()}
            for mirror in (False, True):
                disc, fovea = predict_maps(net, config, stacked, mirror=mirror)
                tag = "mirror" if mirror else "plain"
                result[f"{tag}_disc"] = disc.astype(np.float16)
                result[f"{tag}_fovea"] = fovea.astype(np.float32)
            np.savez_compressed(saved, **result)
        with np.load(saved) as data:
            for i, name in enumerate(data["names"]):
                entry: dict[str, Any] = {
                    key: data[key][i] for key in data.files if key.endswith(("_disc", "_fovea"))
                }
                entry["geometry"] = Geometry.from_dict(json.loads(str(data["geometry"][i])))
                entry["described"] = str(data["described"][i])
                maps[str(name)] = entry
    return maps


def hidden_disc_maps(
    config: AnatomyConfig, samples: list[AnatomySample], out: Path, split: list[list[str]]
) -> dict[str, dict[str, Any]]:
    """Each held-out photo with its disc blacked out (everything past a vertical line 0.8 DD
    from the disc's centre towards the fovea), as a photo whose disc lies outside the field:
    read and preprocessed as in the clinic (with the photo's own field of view) and
    predicted by its fold's net. A disc placed on such a photo is a disc invented."""
    from inference.photo_io import read_photo
    from inference.preprocess import Geometry, decode_min_side, preprocess

    by_name = {s.name: s for s in samples}
    maps: dict[str, dict[str, Any]] = {}
    for k, held in enumerate(split):
        saved = out / f"fold{k}" / "hidden_disc_maps.npz"
        if not saved.is_file():
            net, _, _ = net_from_checkpoint(out / f"fold{k}" / "checkpoint.pt")
            images, geometries = [], []
            for name in held:
                sample = by_name[name]
                photo = read_photo(sample.image_path, min_side=decode_min_side(config.recipe()))
                rgb = photo.rgb.copy()
                scale = rgb.shape[1] / photo.width
                x, dd = sample.disc_center[0], sample.disc_diameter
                if x > sample.fovea[0]:
                    rgb[:, round((x - 0.8 * dd) * scale) :] = 0
                else:
                    rgb[:, : round((x + 0.8 * dd) * scale)] = 0
                prepared = preprocess(
                    rgb, config.recipe(), fov=sample.geometry.fov, full_size=photo.full_size
                )
                images.append(prepared.image)
                geometries.append(json.dumps(prepared.geometry.to_dict()))
            disc, fovea = predict_maps(net, config, np.stack(images), mirror=False)
            np.savez_compressed(
                saved,
                names=np.array(held),
                geometry=np.array(geometries),
                plain_disc=disc.astype(np.float16),
                plain_fovea=fovea.astype(np.float32),
            )
        with np.load(saved) as data:
            for i, name in enumerate(data["names"]):
                maps[str(name)] = {
                    "plain_disc": data["plain_disc"][i],
                    "plain_fovea": data["plain_fovea"][i],
                    "geometry": Geometry.from_dict(json.loads(str(data["geometry"][i]))),
                }
    return maps


def evaluate_oof(
    samples: list[AnatomySample],
    maps: dict[str, dict[str, Any]],
    tag: str,
    params: DecodeParams,
) -> tuple[dict[str, object], list[dict[str, object]]]:
    photos = [
        photo_figures(
            s,
            maps[s.name][f"{tag}_disc"].astype(np.float32),
            maps[s.name][f"{tag}_fovea"].astype(np.float32),
            params,
            maps[s.name].get("geometry"),
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

        # A fovea placed wrong misleads a grader more than one left to place: score each cut
        # by the photos within 0.5 DD minus twice those placed beyond it; on a tie the lowest
        # cut, never below MIN_CUT, so a model with no idea (a flat distribution holds about
        # 2% within 0.5 DD) never answers.
        def score(key: str) -> tuple[float, float, float]:
            s = table[key]
            n = float(s["photos"])  # type: ignore[arg-type]
            right = float(s["fovea_within_0.5dd"]) * n  # type: ignore[arg-type]
            wrong = float(s["fovea_found_beyond_0.5dd"])  # type: ignore[arg-type]
            return (
                right - 2 * wrong,
                float(s["disc_centre_within_0.25dd"]),  # type: ignore[arg-type]
                float(s["disc_dice_mean"]),  # type: ignore[arg-type]
            )

        best: dict[str, str] = {}
        for tag in ("plain", "mirror"):
            keys = [f"{tag}@{cut:g}" for cut in CONFIDENCE_CUTS if cut >= MIN_CUT]
            top = max(score(k)[0] for k in keys)
            best[tag] = next(k for k in keys if score(k)[0] >= top)

        # Mirror averaging doubles the model's time, and the issue allows the anatomy 15% more
        # time per photo (this CPU measured 25-34% with it, against the INT8 haemorrhage
        # model): only when it meets a bar that the plain model misses.
        def bars(key: str) -> int:
            return sum(bool(v) for v in table[key]["bar"].values())  # type: ignore[attr-defined]

        mirror_pays = bars(best["mirror"]) > bars(best["plain"])
        chosen = best["mirror"] if mirror_pays else best["plain"]
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
        split = kfold_names(samples, args.folds, config.seed)
        others = other_camera_maps(config, samples, out, split)
        other_summary, other_photos = evaluate_oof(samples, others, tag, decode)
        save_json(out / "cv_other_cameras.json", other_photos)
        metrics["other_cameras"] = {
            "what": "each photo once as a random other camera would take it "
            "(training.camera_variants.random_camera), out of fold",
            **other_summary,
        }
        if not mirror:
            hidden = hidden_disc_maps(config, samples, out, split)
            hidden_summary, hidden_photos = evaluate_oof(samples, hidden, "plain", decode)
            save_json(out / "cv_hidden_disc.json", hidden_photos)
            metrics["disc_hidden"] = {
                "what": "each photo with its disc blacked out (past a line 0.8 DD from its "
                "centre towards the fovea), out of fold: a disc found is a disc invented",
                "disc_invented": hidden_summary["disc_found"],
                "fovea_found": hidden_summary["fovea_found"],
                "fovea_within_0.5dd": hidden_summary["fovea_within_0.5dd"],
                "fovea_found_beyond_0.5dd": hidden_summary["fovea_found_beyond_0.5dd"],
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
    card = args.export.with_suffix(".md")
    card.write_text(
        model_card(
            contract.sha256,
            args.export.name,
            config,
            decode,
            mirror,
            metrics,
            out,
            command=" ".join(["hemaview-train", "anatomy", *argv]),
        )
    )
    print(f"wrote {args.export} (SHA-256 {contract.sha256}) and {card}")
    return 0


def _training_minutes(out: Path) -> dict[str, float]:
    """Minutes each training took, from the last line of its train_log.csv (whose last
    column is the seconds since it started; a resumed run counts from its resumption)."""
    spent = {}
    for log in sorted(out.glob("*/train_log.csv")):
        rows = [r for r in log.read_text().splitlines() if r.strip()]
        if rows:
            spent[log.parent.name] = float(rows[-1].split(",")[-1]) / 60
    return spent


def _pct(value: object) -> str:
    return f"{100 * float(value):.0f}%"  # type: ignore[arg-type]


def model_card(
    sha256: str,
    file_name: str,
    config: AnatomyConfig,
    decode: DecodeParams,
    mirror: bool,
    metrics: dict[str, object],
    out: Path,
    *,
    command: str,
) -> str:
    """The anatomy model's card, written from the run it describes."""
    from training.runtime import cpu_name

    cv = metrics.get("cross_validation")
    lines = [
        "# Hemaview anatomy model (optic disc and fovea)",
        "",
        f"`{file_name}`, SHA-256 `{sha256}`, made by `{command}` on {cpu_name()} "
        f"({config.threads} thread) "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        "## Intended use",
        "",
        "Placing the optic disc and the fovea on a colour fundus photograph, so that "
        "haemorrhages can be counted per quadrant, measured in disc diameters (DD) and mm, "
        "and checked against the fovea's neighbourhood. Hemaview assists grading; it does not "
        "grade. Every position is a suggestion the reviewer can move; a position the model "
        "could not find is left empty with the reason, never guessed.",
        "",
        "## Data and attribution",
        "",
        f"- {IDRID_ATTRIBUTION}",
        "- Optic disc: IDRiD's own disc masks (segmentation part, optic disc), official "
        "training split, 54 photos (Kowa VX-10a, 50 degree field, 4288x2848); the same photos "
        "as the haemorrhage model's.",
        "- Fovea: approximate centres of the same 54 photos (`fovea_train.csv`), marked on "
        "screen with the disc as a guide, about +-0.2 DD; they are not IDRiD's localisation "
        "labels. Errors below 0.2 DD mean little against them.",
        "- The official IDRiD test split was not used for anything.",
        "",
        "## Method",
        "",
        f"- Preprocessing: `inference.preprocess`, the one copy, at {config.working_size} px "
        "(field of view found, cropped to a square, outside blacked, CLAHE on L of Lab). In "
        "the clinic the field of view is the one the haemorrhage model's preprocessing found.",
        f"- Network: U-Net (segmentation-models-pytorch), {config.encoder} encoder from random "
        f"initialisation (nothing downloaded), decoder {list(config.decoder_channels)}; two "
        "output channels: disc (sigmoid) and fovea (softmax over all pixels: one "
        "distribution of where the fovea is).",
        f"- Loss: disc BCE + soft Dice against the mask's per-pixel fraction; fovea "
        f"cross-entropy against a Gaussian of {config.fovea_sigma_dd} DD on the marked centre "
        f"(weight {config.fovea_weight}). AdamW, lr {config.lr}, cosine, {config.steps} steps "
        f"x batch {config.batch_size}, float32 on the CPU.",
        f"- Augmentation: mirror (a mirrored fundus is the other eye), +-{config.rotate_deg:g} "
        f"degrees, zoom {config.zoom[0]}-{config.zoom[-1]}, shift +-{config.shift}, "
        f"brightness and contrast +-{config.brightness}/{config.contrast}.",
        f"- Decoding (`inference.anatomy.decode`, the same code in CV and in the clinic): the "
        f"disc is the region of probability >= {decode.disc_threshold} with the most mass, "
        f"{decode.disc_min_fov_frac:.0%}-{decode.disc_max_fov_frac:.0%} of the field's "
        "diameter; its centre is the full-resolution mask's centroid, its diameter the "
        "equivalent circle's. The fovea is the point whose "
        f"{decode.fovea_radius_dd:g}-DD neighbourhood holds the most of the distribution; "
        f"that mass is its confidence, and below {decode.fovea_min_confidence:g} the fovea is "
        f"not given. With a disc, a fovea outside {decode.fovea_min_dd:g}-"
        f"{decode.fovea_max_dd:g} DD from it is refused (the best place inside that ring is "
        "taken only if it clears the confidence by itself). Mirror averaging in the graph: "
        f"{'on' if mirror else 'off'}.",
        "- Selection: the fovea confidence cut and mirror averaging (which doubles the model's "
        "time, so only if it meets a bar the plain model misses) were chosen on the "
        "out-of-fold maps: photos within 0.5 DD minus twice the photos whose fovea was placed "
        f"beyond it, the lowest such cut, never below {MIN_CUT:g} (a flat distribution, a model "
        "with no idea, holds about 2% within 0.5 DD). The network's settings were not tuned "
        "on them.",
        "",
    ]
    if isinstance(cv, dict):
        bar = cv["bar"]
        lines += [
            "## Cross-validated figures",
            "",
            f"{cv['folds']}-fold cross-validation by photo (seeded, right and left eyes in "
            f"every fold), {cv['photos']} photos, out-of-fold, measured at full resolution "
            "against the truths above; a landmark not found counts as a miss.",
            "",
            "| figure | value | issue's bar |",
            "| --- | --- | --- |",
            f"| disc Dice, mean (median, min) | {cv['disc_dice_mean']:.3f} "
            f"({cv['disc_dice_median']:.3f}, {cv['disc_dice_min']:.3f}) | >= 0.85: "
            f"{'met' if bar['disc_dice_mean>=0.85'] else 'NOT met'} |",
            f"| disc centre within 0.25 DD | {_pct(cv['disc_centre_within_0.25dd'])} of photos "
            f"(median error {cv['disc_centre_error_dd_median']:.3f} DD) | >= 95%: "
            f"{'met' if bar['centre<=0.25dd_on>=95%'] else 'NOT met'} |",
            f"| fovea within 0.5 DD | {_pct(cv['fovea_within_0.5dd'])} of photos (within 1 DD: "
            f"{_pct(cv['fovea_within_1dd'])}) | >= 90%: "
            f"{'met' if bar['fovea<=0.5dd_on>=90%'] else 'NOT met'} |",
            f"| disc found / fovea found | {cv['disc_found']} / {cv['fovea_found']} of "
            f"{cv['photos']} | |",
            f"| laterality correct / wrong / unknown | {cv['laterality_correct']} / "
            f"{cv['laterality_wrong']} / {cv['laterality_unknown']} | |",
            "",
        ]
        other = metrics.get("other_cameras")
        if isinstance(other, dict):
            lines += [
                "Other cameras (simulated): each photo once more, out of fold, as a random "
                "other camera would take it (`training.camera_variants.random_camera`: white "
                "balance, gamma, a darker side, vignetting, flare, grey surround, lower "
                "resolution, blur, JPEG), preprocessed anew with its own field of view: disc "
                f"Dice {other['disc_dice_mean']:.3f}, disc centre within 0.25 DD on "
                f"{_pct(other['disc_centre_within_0.25dd'])}, fovea within 0.5 DD on "
                f"{_pct(other['fovea_within_0.5dd'])} (disc found {other['disc_found']}, fovea "
                f"found {other['fovea_found']}, fovea placed beyond 0.5 DD "
                f"{other['fovea_found_beyond_0.5dd']}). The training never saw such versions.",
                "",
            ]
        hidden = metrics.get("disc_hidden")
        if isinstance(hidden, dict):
            lines += [
                "Disc hidden: each photo once more, out of fold, with its disc blacked out "
                "(past a line 0.8 DD from its centre towards the fovea), as a photo whose disc "
                f"lies outside the field: a disc placed (invented) on {hidden['disc_invented']} "
                f"of {cv['photos']}; fovea within 0.5 DD on {_pct(hidden['fovea_within_0.5dd'])}"
                f" (placed beyond 0.5 DD on {hidden['fovea_found_beyond_0.5dd']}).",
                "",
            ]
        table = json.loads((out / "cv_table.json").read_text())
        lines += [
            "The fovea's confidence cut and mirror averaging, out of fold (photos with the "
            "fovea within 0.5 DD / placed beyond 0.5 DD / not placed):",
            "",
            "| cut | plain | mirror averaged |",
            "| --- | --- | --- |",
        ]
        for cut in CONFIDENCE_CUTS:
            cells = []
            for tag in ("plain", "mirror"):
                s = table[f"{tag}@{cut:g}"]
                right = round(float(s["fovea_within_0.5dd"]) * float(s["photos"]))
                wrong = s["fovea_found_beyond_0.5dd"]
                cells.append(f"{right} / {wrong} / {s['photos'] - s['fovea_found']}")
            lines.append(f"| {cut:g} | {cells[0]} | {cells[1]} |")
        photos = json.loads((out / "cv_photos.json").read_text())
        misses = [
            p
            for p in photos
            if p["centre_error_dd"] is None
            or p["centre_error_dd"] > 0.25
            or p["fovea_error_dd"] is None
            or p["fovea_error_dd"] > 0.5
        ]
        lines += ["", "Photos outside the bar (out of fold):", ""]
        for p in misses:
            centre = (
                "not found" if p["centre_error_dd"] is None else f"{p['centre_error_dd']:.2f} DD"
            )
            fovea = "not found" if p["fovea_error_dd"] is None else f"{p['fovea_error_dd']:.2f} DD"
            lines.append(
                f"- {p['name']}: Dice {p['dice']:.2f}, centre {centre}, fovea {fovea} "
                f"(fovea label confidence {p['fovea_label_confidence']})"
            )
        if not misses:
            lines.append("- none")
        minutes = _training_minutes(out)
        if minutes:
            spent = ", ".join(f"{k} {v:.0f} min" for k, v in minutes.items())
            lines += ["", f"Training time on this CPU (train_log.csv): {spent}."]
        lines.append("")
    lines += [
        "## Limits",
        "",
        "- One camera (Kowa VX-10a, 50 degrees, macula-centred photos, every disc inside the "
        "field). Other cameras are only simulated above; disc-centred photos are untested.",
        "- The model never saw a photo without its disc. Where the disc is hidden or outside "
        "the photo, it can take a round cluster of bright exudates for one: the decoder "
        "refuses small or streaky candidates (a disc must be round and at least 6% of the "
        "field's diameter), but IDRiD_02 with its disc blacked out still got a disc placed "
        "on its exudates. Training with the disc cut out of some photos is the next step; "
        "until then a reviewer must check the disc on photos whose disc is not plainly in "
        "view.",
        "- mm come from the stated convention (1 DD = 1.8 mm unless a clinic sets another), "
        "not from the camera; mm2 are flat-image figures.",
        "- The fovea truths are approximate (+-0.2 DD).",
        "",
    ]
    return "\n".join(lines)
