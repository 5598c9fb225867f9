"""Predictions kept on disk, so that reopening a folder never runs the model again. Qt-free.

An entry is keyed by the photo's SHA-256 (of its file bytes) and a model key, the
`Segmenter.cache_key` of the segmenter that made it (the fp32 model it stands for: an INT8
result here and an fp32 one from a Triton server share an entry; inference/segmenter.py says
why). It holds what `Segmenter.rebuild` needs: the model's working-size map (float16 .npy,
~2 MB) and the geometry and provenance (JSON, which says which model file ran, and where).
Rebuilding a full-resolution Prediction from it is resampling and lesion labelling, tens of
milliseconds, against seconds for a model run.

The .npy is written first and the JSON last, each atomically: the JSON, which carries the
.npy's SHA-256, is the commit marker. Anything that does not check out is removed and
counts as a miss: a cache may lose entries, it must never hand back a wrong map.

The folder is bounded: beyond `max_bytes` the least recently used entries (by the JSON's
modification time, touched on every hit) are deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from inference import Geometry, Prediction, Provenance, atomic_write_bytes, atomic_write_text

CACHE_SCHEMA = 1
DEFAULT_MAX_BYTES = 2 * 1024**3
_SHA256_CHARS = frozenset("0123456789abcdef")


class CachedPrediction(NamedTuple):
    """What `Segmenter.rebuild(photo, geometry, working, provenance)` needs."""

    working: np.ndarray  # float16 (S, S)
    geometry: Geometry
    provenance: Provenance


@dataclass(frozen=True)
class PredictionSummary:
    """What a photo list shows about a prediction, without loading or rebuilding its map."""

    photo_sha256: str
    model_sha256: str
    lesion_count: int
    uncertainty: float
    threshold: float
    device: str
    from_cache: bool = False

    @classmethod
    def of(cls, prediction: Prediction, *, from_cache: bool = False) -> PredictionSummary:
        prov = prediction.provenance
        return cls(
            photo_sha256=prov.photo_sha256,
            model_sha256=prov.model_sha256,
            lesion_count=len(prediction.lesions),
            uncertainty=float(prediction.uncertainty),
            threshold=float(prediction.threshold),
            device=prov.device,
            from_cache=from_cache,
        )


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _SHA256_CHARS


class PredictionCache:
    """A folder of cached predictions; safe to share between threads and between processes."""

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES):
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()

    # -- naming --------------------------------------------------------------------------

    def _stem(self, photo_sha: str, model_sha: str) -> str:
        if not (_is_sha256(photo_sha) and _is_sha256(model_sha)):
            raise ValueError("cache keys are SHA-256 digests: 64 lowercase hexadecimal digits")
        # Short enough for Windows paths; the JSON holds both digests in full and is checked.
        return f"{photo_sha[:40]}-{model_sha[:16]}"

    def _paths(self, photo_sha: str, model_sha: str) -> tuple[Path, Path]:
        stem = self._stem(photo_sha, model_sha)
        return self.folder / f"{stem}.npy", self.folder / f"{stem}.json"

    # -- reading -------------------------------------------------------------------------

    def _read_meta(self, photo_sha: str, model_sha: str) -> dict[str, Any] | None:
        npy, meta_path = self._paths(photo_sha, model_sha)
        try:
            meta = json.loads(meta_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self._remove(npy, meta_path)
            return None
        if (
            not isinstance(meta, dict)
            or meta.get("schema") != CACHE_SCHEMA
            or meta.get("photo_sha256") != photo_sha
            or meta.get("model_sha256") != model_sha
        ):
            self._remove(npy, meta_path)
            return None
        return meta

    def summary(self, photo_sha: str, model_sha: str) -> PredictionSummary | None:
        """The cached prediction's lesion count and uncertainty; reads only the small JSON."""
        meta = self._read_meta(photo_sha, model_sha)
        if meta is None:
            return None
        try:
            s = meta["summary"]
            return PredictionSummary(
                photo_sha256=photo_sha,
                # the file that ran, as PredictionSummary.of says for a fresh prediction
                model_sha256=str(meta["provenance"]["model_sha256"]),
                lesion_count=int(s["lesion_count"]),
                uncertainty=float(s["uncertainty"]),
                threshold=float(s["threshold"]),
                device=str(meta["provenance"]["device"]),
                from_cache=True,
            )
        except (KeyError, TypeError, ValueError):
            self._remove(*self._paths(photo_sha, model_sha))
            return None

    def __contains__(self, key: tuple[str, str]) -> bool:
        return self.summary(*key) is not None

    def _read_checked(self, photo_sha: str, model_sha: str) -> tuple[dict[str, Any], bytes] | None:
        """The JSON and the .npy bytes when the bytes match the JSON's digest."""
        meta = self._read_meta(photo_sha, model_sha)
        if meta is None:
            return None
        try:
            data = self._paths(photo_sha, model_sha)[0].read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != meta.get("working_sha256"):
            return None
        return meta, data

    def get(self, photo_sha: str, model_sha: str) -> CachedPrediction | None:
        """The cached map with its geometry and provenance, or None (a miss, or a bad entry)."""
        npy, meta_path = self._paths(photo_sha, model_sha)
        found = self._read_checked(photo_sha, model_sha)
        if found is None:
            # Another thread or process may be replacing this entry: look once more before
            # calling it corrupt.
            found = self._read_checked(photo_sha, model_sha)
        if found is None:
            if meta_path.exists():
                self._remove(npy, meta_path)
            return None
        meta, data = found
        try:
            working = np.load(io.BytesIO(data), allow_pickle=False)
            geometry = Geometry.from_dict(meta["geometry"])
            provenance = Provenance.from_dict(meta["provenance"])
        except (OSError, ValueError, KeyError, TypeError):
            self._remove(npy, meta_path)
            return None
        size = geometry.working_size
        if working.dtype != np.float16 or working.shape != (size, size):
            self._remove(npy, meta_path)
            return None
        with contextlib.suppress(OSError):
            os.utime(meta_path)  # most recently used
        return CachedPrediction(working, geometry, provenance)

    # -- writing -------------------------------------------------------------------------

    def put(self, prediction: Prediction, model_sha: str | None = None) -> bool:
        """Keep a prediction; returns False when it was already cached or could not be written.

        `model_sha` is the key to file it under: the `cache_key` of the Segmenter that made
        it, which its lookups use. Left out, it is the model file that ran (the
        provenance's): that is the key only for a segmenter that runs the very file it
        stands for, never for one whose INT8 file stands in for an fp32 model.

        A cache that cannot be written (a full disk, a read-only home) only makes the next
        opening slower, so write failures are swallowed.
        """
        prov = prediction.provenance
        photo_sha = prov.photo_sha256
        model_sha = prov.model_sha256 if model_sha is None else model_sha
        npy, meta_path = self._paths(photo_sha, model_sha)
        working = np.ascontiguousarray(prediction.working, dtype=np.float16)
        buffer = io.BytesIO()
        np.save(buffer, working, allow_pickle=False)
        data = buffer.getvalue()
        summary = PredictionSummary.of(prediction)
        meta = {
            "schema": CACHE_SCHEMA,
            "photo_sha256": photo_sha,
            "model_sha256": model_sha,
            "working_sha256": hashlib.sha256(data).hexdigest(),
            "geometry": prediction.geometry.to_dict(),
            "provenance": prov.to_dict(),
            "summary": {
                "lesion_count": summary.lesion_count,
                "uncertainty": summary.uncertainty,
                "threshold": summary.threshold,
            },
        }
        text = json.dumps(meta, allow_nan=False)
        with self._lock:
            if self.summary(photo_sha, model_sha) is not None:
                # Never rewrite a good entry: a reader may be between its JSON and its .npy.
                return False
            try:
                atomic_write_bytes(npy, data)
                atomic_write_text(meta_path, text)
            except OSError:
                self._remove(npy, meta_path)
                return False
            self._prune_locked()
        return True

    def remove(self, photo_sha: str, model_sha: str) -> None:
        self._remove(*self._paths(photo_sha, model_sha))

    def clear(self) -> None:
        with self._lock:
            for npy, meta_path, _, _ in self._entries():
                self._remove(npy, meta_path)

    @staticmethod
    def _remove(*paths: Path) -> None:
        for p in paths:
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)

    # -- size bound ----------------------------------------------------------------------

    def _entries(self) -> list[tuple[Path, Path, float, int]]:
        """(npy, json, last use, bytes) of every entry, oldest first."""
        found: dict[str, list[Any]] = {}
        try:
            scan = list(os.scandir(self.folder))
        except OSError:
            return []
        stale = time.time() - 3600
        for item in scan:
            name = item.name
            if name.startswith(".") and name.endswith(".tmp"):
                # the temporary file of a write that a crash interrupted
                with contextlib.suppress(OSError):
                    if item.stat().st_mtime < stale:
                        os.unlink(item.path)
                continue
            if name.startswith(".") or not name.endswith((".npy", ".json")):
                continue
            stem, suffix = name.rsplit(".", 1)
            try:
                st = item.stat()
            except OSError:
                continue
            slot = found.setdefault(stem, [None, None, 0.0, 0])
            slot[3] += st.st_size
            if suffix == "json":
                slot[1], slot[2] = Path(item.path), st.st_mtime
            else:
                slot[0] = Path(item.path)
        entries = [
            (
                s[0] or self.folder / f"{stem}.npy",
                s[1] or self.folder / f"{stem}.json",
                float(s[2]),
                int(s[3]),
            )
            for stem, s in found.items()
        ]
        entries.sort(key=lambda e: e[2])
        return entries

    def size_bytes(self) -> int:
        return sum(e[3] for e in self._entries())

    def prune(self, max_bytes: int | None = None) -> int:
        """Delete least recently used entries until the folder fits; returns bytes freed."""
        with self._lock:
            return self._prune_locked(max_bytes)

    def _prune_locked(self, max_bytes: int | None = None) -> int:
        limit = self.max_bytes if max_bytes is None else int(max_bytes)
        entries = self._entries()
        total = sum(e[3] for e in entries)
        freed = 0
        for npy, meta_path, _, size in entries:  # oldest first; an .npy without JSON is 0.0
            if total - freed <= limit:
                break
            self._remove(meta_path, npy)  # the JSON first: a half-removed entry is a miss
            freed += size
        return freed
