"""The public entry point: photo in, calibrated haemorrhage probability map out."""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inference.backends.base import Backend, create_backend
from inference.errors import HemaviewError
from inference.local_devices import check_cuda
from inference.model_choice import choose_model
from inference.model_file import ModelFile
from inference.photo_io import Photo, read_photo
from inference.postprocess import Lesion, find_lesions_guided, probability_to_full
from inference.preprocess import Geometry, Preprocessed, decode_min_side, preprocess
from inference.version import __version__

PhotoSource = str | os.PathLike[str] | np.ndarray
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Provenance:
    """Where a prediction came from: enough to reproduce it and to trust it."""

    model_name: str
    model_version: str
    model_sha256: str
    device: str  # "cuda", "cpu" or "triton"
    device_reason: str
    threshold: float
    photo_sha256: str
    photo_size: tuple[int, int]  # width, height
    photo_format: str
    conversions: tuple[str, ...]
    # cx, cy, radius, fill; method ("circle", or how it was estimated), note, forced
    fov: dict[str, Any]
    timings_ms: dict[str, float]
    app_version: str = __version__
    model_file: str = ""  # the file that ran (e.g. hemorrhage-int8.onnx); "" before it was kept

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Provenance:
        values = dict(raw)
        values["photo_size"] = tuple(values["photo_size"])
        values["conversions"] = tuple(values["conversions"])
        return cls(**values)


@dataclass
class Prediction:
    """A photo's probability map at full resolution, with its lesions at the threshold."""

    probability: np.ndarray  # float32 (H, W), calibrated, in [0, 1]
    threshold: float
    lesions: list[Lesion]
    provenance: Provenance
    geometry: Geometry
    photo: Photo  # as read: for a path, possibly at a reduced scale (photo.width is the full size)
    working: np.ndarray  # float16 (S, S): the model's own output, what caches keep
    _mask: np.ndarray | None = field(default=None, repr=False)
    _working32: np.ndarray | None = field(default=None, repr=False)

    @property
    def mask(self) -> np.ndarray:
        """bool (H, W): probability >= threshold."""
        if self._mask is None:
            self._mask = self.probability >= self.threshold
        return self._mask

    def at_threshold(self, threshold: float, min_area_px: int) -> list[Lesion]:
        """The lesions at another threshold, without running the model again."""
        if self._working32 is None:
            self._working32 = self.working.astype(np.float32)
        return find_lesions_guided(
            self.probability, self._working32, self.geometry, threshold, min_area_px
        )

    @functools.cached_property
    def uncertainty(self) -> float:
        """Share of the field of view whose probability is neither clearly in nor clearly out."""
        p = self.probability
        unsure = np.count_nonzero((p > 0.2) & (p < 0.8))
        fov_area = np.pi * self.geometry.fov.radius**2
        return float(unsure / max(fov_area, 1.0))


@dataclass(frozen=True)
class PhotoFailure:
    """A photo that could not be processed, and why (for lists and summaries)."""

    source: str
    message: str
    error: HemaviewError


class Segmenter:
    """A model and the backend that runs it."""

    def __init__(
        self,
        model: ModelFile,
        backend: Backend,
        *,
        source: ModelFile | None = None,
        model_reason: str = "",
    ):
        self.model = model
        # The fp32 model this one stands for: the same file, or the source of an INT8 one.
        # Remote servers serve it, and their results are checked against it.
        self.source_model = source or model
        self.model_reason = model_reason or model.path.name
        self.backend = backend
        self.contract = model.contract
        self.threshold = model.contract.default_threshold

    @classmethod
    def open(
        cls,
        model_path: str | os.PathLike[str] | None = None,
        *,
        backend: str = "local",
        **backend_options: Any,
    ) -> Segmenter:
        """`model_path` exactly as given; or the shipped model, as its INT8 file when running
        on a CPU (inference.model_choice), on the best local backend (or the named one)."""
        model = ModelFile.open(model_path)
        if model_path is not None or backend not in ("local", "cpu"):
            return cls(model, create_backend(backend, model, **backend_options))
        on_cpu = backend == "cpu" or not check_cuda().usable
        choice = choose_model(model, on_cpu)
        if on_cpu:
            # the CPU asked for outright: a failing CUDA provider cannot bind the fp32 file
            backend = "cpu"
        return cls(
            choice.model,
            create_backend(backend, choice.model, **backend_options),
            source=choice.source,
            model_reason=choice.reason,
        )

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def device_reason(self) -> str:
        return self.backend.reason

    def prepare(
        self, source: PhotoSource | Photo, *, force: bool = False
    ) -> tuple[Photo, Preprocessed, dict[str, float]]:
        """Read and preprocess one photo (CPU work, safe to run in worker threads). With
        `force`, a photo refused as not a fundus photograph runs on the whole frame."""
        t0 = time.perf_counter()
        recipe = self.contract.preprocess
        if isinstance(source, Photo):
            photo = source
        elif isinstance(source, np.ndarray):
            photo = read_photo(source)
        else:
            # A JPEG decoded at a reduced scale still has more pixels across the field of view
            # than the model takes, in a third of the time. This is read_for_model's recipe,
            # the one training uses, timed in two parts.
            photo = read_photo(source, min_side=decode_min_side(recipe))
        t1 = time.perf_counter()
        prepared = preprocess(photo.rgb, recipe, full_size=(photo.width, photo.height), force=force)
        t2 = time.perf_counter()
        return photo, prepared, {"read": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3}

    def finish(
        self,
        photo: Photo,
        prepared: Preprocessed,
        working_probability: np.ndarray,
        timings: dict[str, float],
        threshold: float | None = None,
        device: str | None = None,
        device_reason: str | None = None,
    ) -> Prediction:
        """Post-process one working-size map into a full-resolution Prediction."""
        t0 = time.perf_counter()
        threshold = self.threshold if threshold is None else float(threshold)
        # Caches keep float16; rounding here makes a fresh prediction equal a cached one.
        working_probability = working_probability.astype(np.float16).astype(np.float32)
        probability = probability_to_full(working_probability, prepared.geometry)
        lesions = find_lesions_guided(
            probability,
            working_probability,
            prepared.geometry,
            threshold,
            self.contract.min_lesion_area_px,
        )
        timings = {**timings, "postprocess": (time.perf_counter() - t0) * 1e3}
        fov = prepared.geometry.fov
        device = device or self.backend.device
        # a remote server runs the fp32 model this one stands for
        ran = self.source_model if device == "triton" else self.model
        provenance = Provenance(
            model_name=ran.contract.model_name,
            model_version=ran.contract.model_version,
            model_sha256=ran.contract.sha256,
            model_file=ran.path.name,
            device=device,
            device_reason=device_reason or self.backend.reason,
            threshold=threshold,
            photo_sha256=photo.sha256,
            photo_size=(photo.width, photo.height),
            photo_format=photo.format,
            conversions=photo.conversions,
            fov={
                "cx": fov.cx,
                "cy": fov.cy,
                "radius": fov.radius,
                "fill": fov.fill,
                "method": fov.method,
                "note": fov.note,
                "forced": fov.forced,
            },
            timings_ms={k: round(v, 2) for k, v in timings.items()},
        )
        return Prediction(
            probability,
            threshold,
            lesions,
            provenance,
            prepared.geometry,
            photo,
            working_probability.astype(np.float16),
        )

    def rebuild(
        self,
        photo: Photo,
        geometry: Geometry,
        working: np.ndarray,
        provenance: Provenance,
        threshold: float | None = None,
    ) -> Prediction:
        """A Prediction from a cached working-size map (no model run): what caches store."""
        t0 = time.perf_counter()
        threshold = provenance.threshold if threshold is None else float(threshold)
        w32 = working.astype(np.float32)
        probability = probability_to_full(w32, geometry)
        lesions = find_lesions_guided(
            probability, w32, geometry, threshold, self.contract.min_lesion_area_px
        )
        timings = {**provenance.timings_ms, "rebuild": round((time.perf_counter() - t0) * 1e3, 2)}
        provenance = replace(provenance, threshold=threshold, timings_ms=timings)
        return Prediction(
            probability, threshold, lesions, provenance, geometry, photo, working.astype(np.float16)
        )

    def predict(
        self,
        source: PhotoSource | Photo,
        *,
        threshold: float | None = None,
        force: bool = False,
    ) -> Prediction:
        """One photo (a path, an RGB uint8 array or a Photo) to its Prediction; `force` as in
        `prepare`."""
        photo, prepared, timings = self.prepare(source, force=force)
        t0 = time.perf_counter()
        working = self.backend.run(prepared.image[None])[0]
        timings["model"] = (time.perf_counter() - t0) * 1e3
        return self.finish(photo, prepared, working, timings, threshold)

    def predict_many(
        self,
        sources: Iterable[PhotoSource],
        *,
        threshold: float | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        batch_size: int | None = None,
        prefetch: int = 2,
        force: bool = False,
    ) -> Iterator[tuple[PhotoSource, Prediction | PhotoFailure]]:
        """Results in input order: a Prediction, or a PhotoFailure saying why not.

        Reading and preprocessing run ahead in worker threads while the model runs, so the
        model is rarely left waiting for the disk.
        """
        items = list(sources)
        total = len(items)
        batch = max(1, batch_size or self.backend.preferred_batch)
        done = 0
        with ThreadPoolExecutor(
            max_workers=max(1, prefetch), thread_name_prefix="hemaview-read"
        ) as pool:
            futures: list[Future[tuple[Photo, Preprocessed, dict[str, float]]]] = []
            ahead = batch + max(1, prefetch)
            next_submit = 0

            def top_up() -> None:
                nonlocal next_submit
                while next_submit < total and len(futures) < ahead:
                    futures.append(pool.submit(self.prepare, items[next_submit], force=force))
                    next_submit += 1

            position = 0
            top_up()
            while position < total:
                if cancel is not None and cancel.is_set():
                    for f in futures:
                        f.cancel()
                    return
                group: list[tuple[int, Any]] = []
                while futures and len(group) < batch:
                    future = futures.pop(0)
                    index = position + len(group)
                    try:
                        group.append((index, future.result()))
                    except Exception as exc:  # one bad photo must not stop the batch
                        error = (
                            exc
                            if isinstance(exc, HemaviewError)
                            else HemaviewError(
                                f"{_name(items[index])}: unexpected error "
                                f"({type(exc).__name__}: {exc})"
                            )
                        )
                        group.append((index, PhotoFailure(_name(items[index]), str(error), error)))
                top_up()
                ready = [(i, g) for i, g in group if not isinstance(g, PhotoFailure)]
                outputs: dict[int, Prediction | PhotoFailure] = {
                    i: g for i, g in group if isinstance(g, PhotoFailure)
                }
                if ready:
                    t0 = time.perf_counter()
                    try:
                        working = self.backend.run(np.stack([g[1].image for _, g in ready]))
                    except Exception as exc:
                        error = (
                            exc
                            if isinstance(exc, HemaviewError)
                            else HemaviewError(f"the model failed: {exc}")
                        )
                        for i, _ in ready:
                            outputs[i] = PhotoFailure(_name(items[i]), str(error), error)
                    else:
                        per_photo = (time.perf_counter() - t0) * 1e3 / len(ready)
                        for k, (i, (photo, prepared, timings)) in enumerate(ready):
                            timings["model"] = per_photo
                            outputs[i] = self.finish(
                                photo, prepared, working[k], timings, threshold
                            )
                for i, _ in group:
                    done += 1
                    if progress is not None:
                        progress(done, total)
                    yield items[i], outputs[i]
                position += len(group)

    def close(self) -> None:
        self.backend.close()


def _name(source: PhotoSource) -> str:
    return "<array>" if isinstance(source, np.ndarray) else str(Path(source))
