"""`hemaview-train [--data DIR] COMMAND ...`: pretrain, finetune, compare, ship, export.

--data DIR names the folder holding idrid-hemorrhage/ (images/, masks/) and idrid-unlabeled/
(the same as HEMAVIEW_DATA=DIR); a command's --data-dir names one folder instead. IDRiD is not
shipped with the repository: the README's training section says where to get it.

hemaview-train pretrain [...]      MoCo v2 pretraining of the encoder (training.pretrain)
hemaview-train finetune --out DIR  fine-tune on the labelled photos (resumes DIR)
hemaview-train compare [--scale reduced|full]
                                   random/MoCo/ImageNet x with/without reconstruction, k-fold CV
hemaview-train ship [--scale reduced|full]
                                   the shipped model end to end (resumable)
hemaview-train export CHECKPOINT OUT.onnx
                                   a fine-tuning checkpoint to a self-describing ONNX model
hemaview-train quantize MODEL.onnx OUT.onnx [--calibration-photos N] [--eval-photos N]
                                   static INT8 quantisation calibrated on real photos, with
                                   the AUPR and speed of both and whether to ship it
hemaview-train fp-analysis RUN     where a compared configuration's out-of-fold false
                                   positives sit (rim, disc, macula, vessels), their sizes and
                                   the lesion-level operating curve (training.fp_analysis)
hemaview-train anatomy --out DIR [--export MODEL.onnx]
                                   the optic disc and fovea model: k-fold CV, final fit and
                                   export (resumable; training.anatomy_cli)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from inference.errors import HemaviewError

COMMANDS = (
    "pretrain",
    "finetune",
    "compare",
    "ship",
    "export",
    "quantize",
    "fp-analysis",
    "anatomy",
)


def finetune_main(argv: Sequence[str]) -> int:
    from training.configs import FinetuneConfig, add_dataclass_args, dataclass_from_args
    from training.cross_validation import calibrate_and_evaluate
    from training.data import Sample, kfold_split, load_labelled_set, split_for_fold
    from training.finetune import finetune, predict_logits
    from training.runtime import resolve_device

    parser = argparse.ArgumentParser(
        prog="hemaview-train finetune",
        description="Fine-tune the U-Net on the labelled photos; rerun with the same --out "
        "to resume.",
    )
    parser.add_argument(
        "--out", required=True, help="run folder (checkpoint.pt, train_log.csv, loss.png)"
    )
    parser.add_argument("--data-dir", default=None, help="IDRiD haemorrhage folder")
    parser.add_argument("--cache-dir", default=None, help="preprocessed-photo cache")
    parser.add_argument(
        "--labels", nargs="*", default=[], help="Hemaview label folders (accepted labels)"
    )
    parser.add_argument("--label-photos", default=None, help="folder of the labelled photos")
    parser.add_argument(
        "--folds", type=int, default=0, help="with --fold: split into this many folds"
    )
    parser.add_argument(
        "--fold",
        type=int,
        default=-1,
        help="hold out this fold and evaluate on it at full resolution (0-based)",
    )
    add_dataclass_args(parser, FinetuneConfig)
    args = parser.parse_args(argv)
    config = dataclass_from_args(FinetuneConfig, args)
    data = load_labelled_set(
        Path(args.data_dir) if args.data_dir else None,
        config.recipe,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        label_dirs=[Path(p) for p in args.labels],
        label_photo_dir=Path(args.label_photos) if args.label_photos else None,
    )
    train: list[Sample] = data.samples
    test: list[Sample] = []
    if args.fold >= 0:
        if args.folds < 2 or args.fold >= args.folds:
            parser.error("--fold K needs --folds N with 0 <= K < N")
        folds = kfold_split(data.samples, args.folds, config.seed)
        train, test = split_for_fold(data.samples, folds, args.fold)
    result = finetune(config, train, Path(args.out), val=test if config.eval_every else ())
    print(f"checkpoint: {Path(args.out) / 'checkpoint.pt'}")
    if test:
        device = resolve_device(config.device)
        logits = {
            s.name: predict_logits(result.net, s.image, device, window=config.eval_window)
            for s in test
        }
        evaluable = [s for s in test if s.evaluable]
        calibration, evaluation = calibrate_and_evaluate(evaluable, logits)
        summary = {**evaluation.summary(), "calibration": calibration.__dict__}
        (Path(args.out) / "evaluation.json").write_text(json.dumps(summary, indent=1) + "\n")
        print(json.dumps(summary, indent=1))
    return 0


def export_main(argv: Sequence[str]) -> int:
    from training.export import export_checkpoint

    parser = argparse.ArgumentParser(
        prog="hemaview-train export",
        description="Export a fine-tuning checkpoint to ONNX with its contract.",
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="default threshold in the contract"
    )
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="Platt calibration temperature"
    )
    parser.add_argument("--bias", type=float, default=0.0, help="Platt calibration bias")
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="a compare result.json: take temperature, bias, threshold and metrics from it",
    )
    parser.add_argument(
        "--mirror-average",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average the photo's mirror images in the graph (default: as the --calibration "
        "run predicted, else off)",
    )
    parser.add_argument("--model-version", default="dev")
    args = parser.parse_args(argv)
    from training.metrics import Calibration
    from training.out_of_fold import PREDICTION_FILE

    calibration = Calibration(args.temperature, args.bias)
    threshold, mirror, metrics, data_summary = args.threshold, False, None, None
    if args.calibration is not None:
        raw = json.loads(args.calibration.read_text())
        calibration = Calibration(**raw["calibration"])
        threshold = float(raw["metrics"]["threshold"])
        metrics = {"cross_validation": raw["metrics"]}
        # the calibration was fitted on predictions made one way; the graph must make them so
        predicted = args.calibration.parent / PREDICTION_FILE
        mirror = bool(
            predicted.is_file() and json.loads(predicted.read_text()).get("mirror_average")
        )
        # the comparison's record of its data, beside the configurations' folders
        compared = args.calibration.parent.parent / "compare_config.json"
        if compared.is_file():
            data_summary = json.loads(compared.read_text()).get("data")
    contract = export_checkpoint(
        args.checkpoint,
        args.out,
        model_version=args.model_version,
        calibration=calibration,
        threshold=threshold,
        mirror_average=mirror if args.mirror_average is None else args.mirror_average,
        metrics=metrics,
        data_summary=data_summary,
    )
    print(f"wrote {args.out} (SHA-256 {contract.sha256})")
    return 0


def _take_data_option(argv: list[str]) -> list[str]:
    """Strip `--data DIR` (or `--data=DIR`) from anywhere in argv into HEMAVIEW_DATA, which
    every command's default data folders are read from."""
    rest: list[str] = []
    items = iter(argv)
    for arg in items:
        if arg == "--data":
            value = next(items, None)
            if value is None:
                raise ValueError("--data needs a folder")
            os.environ["HEMAVIEW_DATA"] = str(Path(value).resolve())
        elif arg.startswith("--data="):
            os.environ["HEMAVIEW_DATA"] = str(Path(arg.partition("=")[2]).resolve())
        else:
            rest.append(arg)
    return rest


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = _take_data_option(argv)
    except ValueError as exc:
        print(f"hemaview-train: {exc}", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        if argv and argv[0] not in ("-h", "--help"):
            print(
                f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr
            )
            return 2
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "pretrain":
            from training.pretrain import pretrain_main

            return pretrain_main(rest)
        if command == "finetune":
            return finetune_main(rest)
        if command == "compare":
            from training.cross_validation import compare_main

            return compare_main(rest)
        if command == "ship":
            from training.ship import ship_main

            return ship_main(rest)
        if command == "quantize":
            from training.quantize import quantize_main

            return quantize_main(rest)
        if command == "fp-analysis":
            from training.fp_analysis import fp_analysis_main

            return fp_analysis_main(rest)
        if command == "anatomy":
            from training.anatomy_cli import anatomy_main

            return anatomy_main(rest)
        return export_main(rest)
    except (HemaviewError, FileNotFoundError, ValueError) as exc:
        # errors meant for the person running the command: the message, not a traceback
        print(f"hemaview-train {command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"\nhemaview-train {command}: interrupted; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
