"""Optional static INT8 quantisation of an exported Hemaview model, calibrated on real photos.

The fp32 file that `training.export` writes is quantised with ONNX Runtime's static
quantiser in QDQ form (QuantizeLinear/DequantizeLinear pairs around int8 convolutions, which
ONNX Runtime fuses into integer kernels), with per-channel weights. Activation ranges are
calibrated on real fundus photos preprocessed exactly as the clinic preprocesses them
(`inference.preprocess.read_for_model` with the model's own recipe), fed as the model's
uint8 NHWC input.

Both ends of the graph stay in float (`float_ends`):
- the input side (uint8 -> Transpose, Cast, Sub, Div): the normalisation is a handful of
  element-wise operations; the first convolution quantises its input anyway, so nothing is
  gained by quantising earlier;
- the output side (the segmentation head's convolution, the calibration's Div/Add and the
  Sigmoid): int8 logits or probabilities would put every background pixel of a photo into
  a few dozen ties (256 levels over the whole logit range) and the ranking that AUPR
  measures would go with them, for a 16-to-1-channel convolution that costs almost nothing.

The quantised file keeps the fp32 model's contract (same recipe, threshold, attribution,
metrics), with name and version marked "-int8", the quantisation recorded in the training
configuration, and its own SHA-256. It is opened through `inference.Segmenter` as the last
check, as the clinic opens it.

Whether to ship it is decided by `evaluate_int8` on photos with masks, at the photo's full
resolution (pooled pixel AUPR, as the IDRiD challenge reports it) and at the contract's
working size for speed:

    ship = (fp32 AUPR - int8 AUPR) <= 0.01 and (fp32 time / int8 time) >= 1.2

A drop of 0.01 AUPR is about the spread between cross-validation folds and below the
differences the comparison reports between configurations; a speed-up under 1.2 is within
what a loaded clinic machine varies by, and not worth a second model file.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from inference.contract import ModelContract
from inference.errors import ModelContractError, NotFundusError
from inference.model_file import ModelFile
from inference.onnx_runtime import onnxruntime, quantization, shape_inference
from inference.preprocess import read_for_model
from inference.segmenter import Segmenter
from inference.system import physical_cores
from training.metrics import EvalPhoto, evaluate
from training.onnx_io import write_with_contract

# onnxruntime's quantisation tools, through inference.onnx_runtime (its telemetry off)
_ort_quantization: Any = quantization()
CalibrationMethod = _ort_quantization.CalibrationMethod
QuantFormat = _ort_quantization.QuantFormat
QuantType = _ort_quantization.QuantType
quantize_static = _ort_quantization.quantize_static

#: The ship rule (see the module docstring).
MAX_AUPR_DROP = 0.01
MIN_SPEEDUP = 1.2
SHIP_RULE = f"ship = aupr_drop <= {MAX_AUPR_DROP} and speedup >= {MIN_SPEEDUP}"
INT8_SUFFIX = "-int8"

# Element-wise operations that make the input normalisation and the output calibration.
_INPUT_OPS = frozenset({"Transpose", "Cast", "Sub", "Div", "Mul", "Add"})
_OUTPUT_OPS = frozenset({"Sigmoid", "Div", "Add", "Mul", "Sub"})
_METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
#: MinMax keeps two numbers per tensor and photo. Percentile keeps every activation of every
#: calibration photo until the end (onnxruntime's HistogramCalibrater): measured 2.6 GB peak
#: for 4 photos at 512 px, so about 2.5 GB per photo at 1024 px.
CALIBRATION_MEMORY = "percentile: ~0.6 GB per photo at 512 px, ~2.5 GB at 1024 px"
_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantizeOptions:
    """How the model is quantised; recorded in the quantised file's training configuration."""

    method: str = "minmax"  # calibration: minmax or percentile (see CALIBRATION_MEMORY)
    percentile: float = 99.999  # for method "percentile"
    per_channel: bool = True  # one weight scale per output channel
    # uint8 activations with int8 weights (U8S8) is the fast integer path on x86 CPUs without
    # VNNI: on this project's AVX2 machine int8 activations (S8S8) ran at x1.09 over fp32 and
    # uint8 at x1.4, with the same AUPR.
    activations: str = "uint8"  # uint8 or int8
    # 7-bit weights: AVX2's u8 x s8 multiply-add (VPMADDUBSW) saturates with 8-bit weights,
    # so without this the same file would give different maps on CPUs with and without VNNI.
    reduce_range: bool = True
    keep_float_ends: bool = True  # input normalisation, output calibration and sigmoid in float
    float_head: bool = True  # and the segmentation head's convolution (the logits) too
    pre_process: bool = True  # onnxruntime's quant_pre_process (shape inference, folding)

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"calibration method must be one of {sorted(_METHODS)}")
        if self.activations not in _TYPES:
            raise ValueError(f"activations must be one of {sorted(_TYPES)}")


class PhotoCalibrationReader(_ort_quantization.CalibrationDataReader):  # type: ignore[misc]
    """Feeds real photos, preprocessed as the clinic does, as the model's uint8 NHWC input.

    Photos are read once and kept (a working-size image is a few MB); a photo that is not a
    fundus photograph is skipped with a warning, as the clinic would refuse it.
    """

    def __init__(self, photos: Sequence[Path], contract: ModelContract):
        self.photos = [Path(p) for p in photos]
        self.contract = contract
        self.used: list[str] = []
        self._inputs: list[np.ndarray] | None = None
        self._position = 0

    def _load(self) -> list[np.ndarray]:
        if self._inputs is None:
            inputs = []
            for path in self.photos:
                try:
                    _, prepared = read_for_model(path, self.contract.preprocess)
                except NotFundusError as exc:
                    log.warning("calibration skips %s: %s", path.name, exc)
                    continue
                inputs.append(prepared.image[None])  # (1, S, S, 3) uint8
                self.used.append(path.name)
            if not inputs:
                raise ValueError("none of the calibration photos could be preprocessed")
            self._inputs = inputs
        return self._inputs

    def get_next(self) -> dict[str, np.ndarray] | None:
        inputs = self._load()
        if self._position >= len(inputs):
            return None
        self._position += 1
        return {self.contract.input_name: inputs[self._position - 1]}

    def rewind(self) -> None:
        self._position = 0


def float_ends(model: onnx.ModelProto, *, include_head: bool = True) -> list[str]:
    """Names of the nodes to keep in float: the input normalisation up to the first
    convolution, and the output calibration and sigmoid back to (and with `include_head`,
    including) the last convolution."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    keep: list[str] = []
    # forward from the input through element-wise nodes; Shape and the like are not followed
    frontier = [i.name for i in graph.input]
    seen: set[str] = set()
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.op_type in _INPUT_OPS and node.name not in seen:
                seen.add(node.name)
                keep.append(node.name)
                frontier.extend(node.output)
    # backward from the output through element-wise nodes, to the head convolution
    frontier = [o.name for o in graph.output]
    while frontier:
        node = producer.get(frontier.pop())
        if node is None or node.name in seen:
            continue
        if node.op_type in _OUTPUT_OPS:
            seen.add(node.name)
            keep.append(node.name)
            frontier.extend(node.input)
        elif node.op_type == "Conv" and include_head:
            seen.add(node.name)
            keep.append(node.name)
    return keep


def default_photo_dir() -> Path:
    from training.data import default_data_dir

    return default_data_dir() / "images"


def pick_photos(
    photo_dir: Path, count: int, *, skip: Sequence[Path] = (), with_masks: bool = False
) -> list[Path]:
    """`count` photos spread evenly over the sorted folder (deterministic), avoiding `skip`;
    with `with_masks`, only IDRiD photos with a haemorrhage mask beside them."""
    photo_dir = Path(photo_dir)
    if not photo_dir.is_dir():
        raise FileNotFoundError(f"no photo folder at {photo_dir}")
    skipped = {Path(p).resolve() for p in skip}
    photos = [
        p
        for p in sorted(photo_dir.iterdir())
        if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff")
        and p.resolve() not in skipped
        and (not with_masks or idrid_mask(p) is not None)
    ]
    if count <= 0 or not photos:
        return []
    if count >= len(photos):
        return photos
    step = len(photos) / count
    return [photos[int(i * step)] for i in range(count)]


def idrid_mask(photo: Path) -> Path | None:
    """IDRiD's layout: images/NAME.jpg with masks/NAME_HE.tif; None when not annotated."""
    mask = Path(photo).parent.parent / "masks" / f"{Path(photo).stem}_HE.tif"
    return mask if mask.is_file() else None


def quantize_model(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration_photos: Sequence[Path],
    options: QuantizeOptions | None = None,
) -> ModelContract:
    """Quantise a Hemaview model to INT8; returns the new file's contract.

    The fp32 model must carry a valid contract (a file without one is refused with
    ModelContractError); the result is checked by opening it through `inference.Segmenter`.
    """
    quant_pre_process = shape_inference().quant_pre_process
    options = options or QuantizeOptions()
    source = ModelFile.open(fp32_path)  # refuses a file without a valid contract
    contract = source.contract
    out_path = Path(out_path)
    if "quantisation" in contract.training_config:
        raise ValueError(f"{source.path.name} is already quantised; start from the fp32 model")
    if out_path.resolve() == source.path.resolve():
        raise ValueError("the INT8 model must not overwrite its fp32 source")
    reader = PhotoCalibrationReader(calibration_photos, contract)
    with tempfile.TemporaryDirectory(prefix="hemaview-quant-") as tmp:
        model_in = Path(tmp) / "fp32.onnx"
        if options.pre_process:
            quant_pre_process(str(source.path), str(model_in), skip_symbolic_shape=False)
        else:
            model_in.write_bytes(source.data)
        excluded = (
            float_ends(onnx.load(str(model_in)), include_head=options.float_head)
            if options.keep_float_ends
            else []
        )
        quantised = Path(tmp) / "int8.onnx"
        quantize_static(
            str(model_in),
            str(quantised),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=options.per_channel,
            reduce_range=options.reduce_range,
            activation_type=_TYPES[options.activations],
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=_METHODS[options.method],
            # No CalibMaxIntermediateOutputs: in onnxruntime 1.31 it discards the ranges it
            # should merge (calibrate.py clears without computing; ORT PR #20949's fix is
            # missing). MinMax keeps two numbers per tensor and photo anyway.
            extra_options={"CalibPercentile": options.percentile},
        )
        info = {
            **dataclasses.asdict(options),
            "format": "QDQ",
            "weights": "int8",
            "float_nodes": excluded,
            "calibration_photos": list(reader.used),
            "source_sha256": contract.sha256,
            "source_version": contract.model_version,
        }
        new_contract = dataclasses.replace(
            contract,
            model_name=_marked(contract.model_name),
            model_version=_marked(contract.model_version or "unversioned"),
            training_config={**contract.training_config, "quantisation": info},
        )
        return write_with_contract(
            onnx.load(str(quantised)), new_contract, out_path, check=_opens_in_the_clinic
        )


def _marked(text: str) -> str:
    return text if text.endswith(INT8_SUFFIX) else text + INT8_SUFFIX


def _opens_in_the_clinic(path: Path) -> None:
    """The last check before an INT8 file is written: it opens as the clinic opens it."""
    Segmenter.open(path, backend="cpu").close()


def record_evaluation(int8_path: Path, result: dict[str, Any]) -> ModelContract:
    """Write `evaluate_int8`'s figures into the INT8 file's metrics (and restamp it), so the
    file says on what evidence it was shipped."""
    model = ModelFile.open(int8_path)
    summary = {k: v for k, v in result.items() if k not in ("fp32_photos", "int8_photos")}
    contract = dataclasses.replace(
        model.contract, metrics={**model.contract.metrics, "int8_check": summary}
    )
    return write_with_contract(
        onnx.load_from_string(model.data), contract, int8_path, check=_opens_in_the_clinic
    )


def _session(model: ModelFile, threads: int) -> Any:
    ort = onnxruntime()

    options = ort.SessionOptions()  # the CPU backend's settings (inference.backends)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.data, options, providers=["CPUExecutionProvider"])


def evaluate_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    photos: Sequence[Path],
    masks: Sequence[Path | None],
    *,
    threads: int = 0,
    repeats: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compare the two models on `photos` (full-resolution truth in `masks`; None: time only).

    Returns pooled and per-photo-mean AUPR of both at the photo's full resolution, the drop
    (fp32 - int8), median per-photo model time of both at the contract's working size (the
    runs interleaved, after one warm-up each, with the same thread count), the speed-up
    (fp32 time / int8 time), how far the two probability maps are apart inside the field of
    view, and the decision `ship` by SHIP_RULE.
    """
    if len(photos) != len(masks):
        raise ValueError(f"{len(photos)} photos but {len(masks)} masks")
    if not photos:
        raise ValueError("no photos to evaluate on")
    fp32, int8 = ModelFile.open(fp32_path), ModelFile.open(int8_path)
    c32, c8 = fp32.contract, int8.contract
    source = c8.training_config.get("quantisation", {}).get("source_sha256")
    if source != c32.sha256:
        raise ModelContractError(
            f"{int8.path.name} was not quantised from {fp32.path.name} "
            f"(its source is {str(source)[:12]}..., not {c32.sha256[:12]}...)"
        )
    threads = threads or physical_cores()
    sessions = (_session(fp32, threads), _session(int8, threads))
    names = ((c32.input_name, c32.output_name), (c8.input_name, c8.output_name))
    times: tuple[list[float], list[float]] = ([], [])
    evals: tuple[list[EvalPhoto], list[EvalPhoto]] = ([], [])
    agreement = _Agreement()
    for index, (photo, mask) in enumerate(zip(photos, masks, strict=True)):
        _, prepared = read_for_model(photo, c32.preprocess)
        x = prepared.image[None]  # (1, S, S, 3) uint8
        if index == 0:
            for session, (i, o) in zip(sessions, names, strict=True):
                session.run([o], {i: x})  # warm-up: allocation, kernel selection
        outputs = _run_both(sessions, names, x, index, repeats, times)
        fov = prepared.geometry.fov_mask_working()
        agreement.add(outputs[0][fov].astype(np.float64), outputs[1][fov].astype(np.float64))
        if mask is not None:
            for k in (0, 1):
                evals[k].append(EvalPhoto(photo.stem, outputs[k], prepared.geometry, Path(mask)))
        if progress is not None:
            progress(f"{index + 1}/{len(photos)} {photo.name}")
    ms = [statistics.median(t) * 1e3 for t in times]
    result: dict[str, Any] = {
        "n_photos_timed": len(photos),
        "working_size": c32.preprocess.working_size,
        "threads": threads,
        "fp32_ms": ms[0],
        "int8_ms": ms[1],
        "speedup": ms[0] / ms[1],
        "fp32_mb": len(fp32.data) / 2**20,
        "int8_mb": len(int8.data) / 2**20,
        "max_abs_diff": agreement.max_diff,
        "correlation": agreement.correlation,
        "rule": SHIP_RULE,
    }
    if evals[0]:
        r32, r8 = evaluate(evals[0]), evaluate(evals[1])
        result.update(
            n_photos_evaluated=r32.n_photos,
            photos=[p.stem for p, m in zip(photos, masks, strict=True) if m is not None],
            fp32_aupr=r32.pooled_aupr,
            int8_aupr=r8.pooled_aupr,
            aupr_drop=r32.pooled_aupr - r8.pooled_aupr,
            fp32_mean_photo_aupr=r32.mean_photo_aupr,
            int8_mean_photo_aupr=r8.mean_photo_aupr,
            fp32_dice=r32.pooled_dice,
            int8_dice=r8.pooled_dice,
        )
    result["ship"] = ship_int8(result.get("aupr_drop"), result["speedup"])
    return result


def _run_both(
    sessions: tuple[Any, Any],
    names: tuple[tuple[str, str], tuple[str, str]],
    x: np.ndarray,
    index: int,
    repeats: int,
    times: tuple[list[float], list[float]],
) -> list[np.ndarray]:
    """Both models on one photo `repeats` times, alternating which runs first; each run's
    seconds onto `times`, and the (S, S) maps of the last runs."""
    outputs: list[np.ndarray] = [np.empty(0), np.empty(0)]
    for r in range(repeats):
        order = (0, 1) if (index + r) % 2 == 0 else (1, 0)  # alternate who runs first
        for k in order:
            i, o = names[k]
            t0 = time.perf_counter()
            (out,) = sessions[k].run([o], {i: x})
            times[k].append(time.perf_counter() - t0)
            outputs[k] = np.asarray(out, np.float32)[0, 0]  # (S, S)
    return outputs


class _Agreement:
    """How far two probability maps are apart over many photos: the largest difference and
    the correlation of every pixel pair, from running sums."""

    def __init__(self) -> None:
        self.max_diff, self.sum_xy, self.sum_x, self.sum_y = 0.0, 0.0, 0.0, 0.0
        self.sum_xx, self.sum_yy, self.count = 0.0, 0.0, 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.max_diff = max(self.max_diff, float(np.abs(a - b).max()))
        self.sum_x, self.sum_y = self.sum_x + a.sum(), self.sum_y + b.sum()
        self.sum_xy = self.sum_xy + (a * b).sum()
        self.sum_xx, self.sum_yy = self.sum_xx + (a * a).sum(), self.sum_yy + (b * b).sum()
        self.count += a.size

    @property
    def correlation(self) -> float:
        n = self.count
        cov = self.sum_xy / n - (self.sum_x / n) * (self.sum_y / n)
        var_x = self.sum_xx / n - (self.sum_x / n) ** 2
        var_y = self.sum_yy / n - (self.sum_y / n) ** 2
        return cov / math.sqrt(var_x * var_y) if var_x > 0 and var_y > 0 else math.nan


def ship_int8(aupr_drop: float | None, speedup: float) -> bool:
    """The rule (SHIP_RULE): at most MAX_AUPR_DROP of pooled AUPR lost, at least MIN_SPEEDUP
    gained. No quality evidence (no photo with a mask) never ships on speed alone."""
    if aupr_drop is None or aupr_drop != aupr_drop:  # None or NaN
        return False
    return bool(aupr_drop <= MAX_AUPR_DROP and speedup >= MIN_SPEEDUP)


def format_report(result: dict[str, Any]) -> str:
    """The figures a person decides on, as a few lines."""
    lines = []
    if "fp32_aupr" in result:
        lines += [
            f"pooled AUPR (full resolution, {result['n_photos_evaluated']} photos): "
            f"fp32 {result['fp32_aupr']:.4f}, int8 {result['int8_aupr']:.4f}, "
            f"change {-result['aupr_drop']:+.4f}",
            f"mean per-photo AUPR: fp32 {result['fp32_mean_photo_aupr']:.4f}, "
            f"int8 {result['int8_mean_photo_aupr']:.4f}",
        ]
    else:
        lines.append("no photo with a mask: AUPR not measured")
    lines += [
        f"model time at {result['working_size']} px, {result['threads']} threads (median of "
        f"{result['n_photos_timed']} photos): fp32 {result['fp32_ms']:.0f} ms, int8 "
        f"{result['int8_ms']:.0f} ms, speed-up x{result['speedup']:.2f}",
        f"file size: fp32 {result['fp32_mb']:.1f} MB, int8 {result['int8_mb']:.1f} MB",
        f"probability maps inside the field of view: max |difference| "
        f"{result['max_abs_diff']:.4f}, correlation {result['correlation']:.4f}",
        f"decision ({result['rule']}): {'SHIP int8' if result['ship'] else 'keep fp32'}",
    ]
    return "\n".join(lines)


def quantize_main(argv: Sequence[str]) -> int:
    """`hemaview-train quantize MODEL.onnx OUT.onnx`: quantise, compare, decide."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="hemaview-train quantize",
        description="Static INT8 quantisation calibrated on real fundus photos; prints the "
        f"AUPR and speed of both models and the decision ({SHIP_RULE}).",
    )
    parser.add_argument("model", type=Path, help="the fp32 Hemaview model")
    parser.add_argument("out", type=Path, help="where to write the INT8 model")
    parser.add_argument("--calibration-photos", type=int, default=8)
    parser.add_argument(
        "--eval-photos", type=int, default=8, help="photos with masks, none used to calibrate"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="IDRiD images folder")
    defaults = QuantizeOptions()
    parser.add_argument(
        "--method",
        choices=sorted(_METHODS),
        default=defaults.method,
        help=f"activation-range calibration (memory: {CALIBRATION_MEMORY})",
    )
    parser.add_argument(
        "--activations",
        choices=sorted(_TYPES),
        default=defaults.activations,
        help="activation type (uint8: the fast path on x86 CPUs without VNNI)",
    )
    parser.add_argument(
        "--full-range",
        action="store_true",
        help="8-bit weights instead of 7 (exact only on CPUs with VNNI)",
    )
    parser.add_argument("--threads", type=int, default=0, help="0: physical cores")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.calibration_photos < 1:
        parser.error("--calibration-photos must be at least 1")
    options = QuantizeOptions(
        method=args.method, activations=args.activations, reduce_range=not args.full_range
    )
    result = quantize_and_check(
        args.model,
        args.out,
        args.data_dir or default_photo_dir(),
        calibration_photos=args.calibration_photos,
        eval_photos=args.eval_photos,
        options=options,
        threads=args.threads,
    )
    if result is not None and args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def quantize_and_check(
    model: Path,
    out: Path,
    photo_dir: Path,
    *,
    calibration_photos: int = 8,
    eval_photos: int = 8,
    options: QuantizeOptions | None = None,
    threads: int = 0,
    log: Any = print,
) -> dict[str, Any] | None:
    """Quantise `model` into `out`, then measure both on photos with masks (none of them
    calibration photos) and record the figures and the decision in the INT8 file."""
    calibration = pick_photos(photo_dir, calibration_photos)
    if not calibration:
        raise FileNotFoundError(f"no photos in {photo_dir}")
    log(f"calibrating on {len(calibration)} photos: {', '.join(p.stem for p in calibration)}")
    contract = quantize_model(model, out, calibration, options or QuantizeOptions())
    log(f"wrote {out} ({contract.model_name} {contract.model_version}, SHA-256 {contract.sha256})")
    if eval_photos <= 0:
        return None
    evaluation = pick_photos(photo_dir, eval_photos, skip=calibration, with_masks=True)
    if not evaluation:
        log("no photos with masks to evaluate on; not recording a decision")
        return None
    log(f"evaluating on {len(evaluation)} photos: {', '.join(p.stem for p in evaluation)}")
    result = evaluate_int8(
        model,
        out,
        evaluation,
        [idrid_mask(p) for p in evaluation],
        threads=threads,
        progress=lambda text: log(f"  {text}"),
    )
    record_evaluation(out, result)
    log(format_report(result))
    return result
