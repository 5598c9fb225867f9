"""The public entry point: photo in, calibrated haemorrhage probability map out."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from inference.backends.base import Backend, create_backend
from inference.local_devices import check_cuda
from inference.model_choice import choose_model
from inference.model_file import ModelFile
from inference.photo_io import Photo, read_photo
from inference.pipeline import Run, local_lane
from inference.prediction import (
    PhotoFailure,
    PhotoSource,
    Prediction,
    ProgressCallback,
    Provenance,
)
from inference.preprocess import Geometry, Preprocessed, decode_min_side, preprocess

# the types a prediction is made of, defined in inference.prediction, are used from here too
__all__ = ["PhotoFailure", "PhotoSource", "Prediction", "Provenance", "Segmenter"]


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
        # the backend as asked: "local" still says why the GPU is not used
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

    @property
    def cache_key(self) -> str:
        """The model SHA-256 this segmenter's predictions are cached under: every put and
        every lookup of a prediction cache uses this, never the SHA-256 of the file that ran.

        It is the fp32 model this one stands for, so an INT8 result made here and an fp32
        result from a Triton server share one entry. They are one model at two precisions
        (inference.model_choice runs the INT8 file only when it was made from this very fp32
        file and passed its quality check), so either is the suggestion to show; keyed by
        the file that ran, every photo the server annotated would run again here when
        opened and be sent again at the next pre-annotation. Which file ran, and where,
        stays in the provenance (and so in the label record) that the entry keeps.
        """
        return self.source_model.sha256

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
            timings_ms={},
        )
        prediction = self._prediction(photo, prepared.geometry, working_probability, provenance)
        timings = {**timings, "postprocess": (time.perf_counter() - t0) * 1e3}
        prediction.provenance = replace(
            provenance, timings_ms={k: round(v, 2) for k, v in timings.items()}
        )
        return prediction

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
        provenance = replace(provenance, threshold=threshold)
        prediction = self._prediction(photo, geometry, working, provenance)
        timings = {**provenance.timings_ms, "rebuild": round((time.perf_counter() - t0) * 1e3, 2)}
        prediction.provenance = replace(provenance, timings_ms=timings)
        return prediction

    def _prediction(
        self, photo: Photo, geometry: Geometry, working: np.ndarray, provenance: Provenance
    ) -> Prediction:
        """The Prediction of a working-size map at the provenance's threshold, post-processed."""
        prediction = Prediction(
            working=working,
            geometry=geometry,
            threshold=provenance.threshold,
            min_area_px=self.contract.min_lesion_area_px,
            provenance=provenance,
            photo=photo,
        )
        _ = prediction.lesions  # the full-resolution map and the lesions
        return prediction

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
        model is rarely left waiting for the disk (inference.pipeline, with this backend
        alone; inference.dispatch adds a remote one). `cancel` stops it after the result
        being delivered; `force` as in `prepare`.
        """
        ahead = max(1, prefetch)
        run = Run(
            self,
            sources,
            threshold=threshold,
            force=force,
            cancel=cancel,
            progress=progress,
            prepare_workers=ahead,
        )
        batch = batch_size or self.backend.preferred_batch
        run.add_lane("local", lambda: local_lane(run, self.backend, batch=batch, prefetch=ahead))
        # closing this generator must end the run (and its threads) too
        with contextlib.closing(run.results()) as results:
            for result in results:
                yield result.source, result.result

    def close(self) -> None:
        self.backend.close()
