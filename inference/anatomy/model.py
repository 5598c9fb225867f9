"""Running the anatomy model: a photo the pipeline has read (and whose field of view it has
found) in, its `Anatomy` out.

The photo goes through the one preprocessing (inference.preprocess) with the anatomy
model's own recipe (256 px, from its contract) and the field of view the haemorrhage model's
preprocessing already found, so the two models look at the same circle and the search is
not repeated. The model is small: it runs on the CPU with one thread, beside whatever runs
the haemorrhage model, and is refused, with the reason, when its file is not an anatomy
model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from inference.anatomy.contract import AnatomyContract
from inference.anatomy.decode import decode
from inference.anatomy.types import Anatomy, Scale
from inference.errors import ModelContractError
from inference.fov import FieldOfView
from inference.model_file import ModelFile
from inference.onnx_file import read_summary
from inference.onnx_runtime import error_text, onnxruntime
from inference.photo_io import Photo
from inference.preprocess import Preprocessed, preprocess
from inference.resources import resource_root

SHIPPED_ANATOMY_MODEL = Path("models") / "anatomy.onnx"


def shipped_anatomy_model_path() -> Path:
    return resource_root() / SHIPPED_ANATOMY_MODEL


class AnatomyModel:
    """The anatomy model file, its contract and one ONNX Runtime session."""

    def __init__(self, model: ModelFile, contract: AnatomyContract, session: Any):
        self.model = model
        self.contract = contract
        self.session = session

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        threads: int = 1,
        session: Any = None,
    ) -> AnatomyModel:
        """The shipped anatomy model, or the one at `path`, checked as every model is."""
        model = ModelFile.open(path if path is not None else shipped_anatomy_model_path())
        meta = read_summary(model.data).metadata
        contract = AnatomyContract.from_model(
            model.contract, meta, source=f"model {model.path.name}"
        )
        if session is None:
            ort = onnxruntime()
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            try:
                session = ort.InferenceSession(
                    model.data, options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:
                raise ModelContractError(
                    f"model {model.path.name} could not be loaded ({error_text(exc)})"
                ) from None
        return cls(model, contract, session)

    @property
    def sha256(self) -> str:
        return self.contract.sha256

    def prepare(self, photo: Photo, fov: FieldOfView | None = None) -> Preprocessed:
        """The photo at the anatomy model's working size; `fov` as the pipeline found it
        (full-resolution pixels), else found here."""
        return preprocess(
            photo.rgb, self.contract.preprocess, fov=fov, full_size=(photo.width, photo.height)
        )

    def run(self, prepared: Preprocessed) -> tuple[np.ndarray, np.ndarray]:
        """(S, S) disc probability and (S, S) fovea distribution of one prepared photo."""
        disc, fovea = self.session.run(
            [self.contract.disc_output, self.contract.fovea_output],
            {self.contract.input_name: prepared.image[None]},
        )
        return np.asarray(disc, np.float32)[0, 0], np.asarray(fovea, np.float32)[0, 0]

    def locate(
        self, photo: Photo, fov: FieldOfView | None = None, *, scale: Scale | None = None
    ) -> Anatomy:
        """The photo's anatomy, in its full-resolution pixels, by `scale` (1.8 mm per DD
        unless given)."""
        prepared = self.prepare(photo, fov)
        disc, fovea = self.run(prepared)
        return decode(disc, fovea, prepared.geometry, self.contract.decode, scale)

    def close(self) -> None:
        self.session = None
