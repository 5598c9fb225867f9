"""Viewer benchmark: the canvas on 4288x2848 IDRiD photos, against the JPEG decode floor.

    .venv/bin/python bench/bench_viewer.py [--photos 4] [--repeats 7] [--size 1600x1000]
                                           [--model PATH] [--scale 2]

Runs the real ImageCanvas on the offscreen platform and forces every repaint, so painting
is in the figures. Prints medians in milliseconds and, in the same run (machines are
noisy), ratios against the two yardsticks of issue 4:

- next photo (decode + Document from the cached prediction + show + first paint) against
  decoding the JPEG alone (the floor); aim: within 1.5x;
- toggle the overlay, one brush dab, a threshold change, each applied and repainted,
  against one 60 Hz frame (16.7 ms); aim: within one frame. A 50-dab stroke is reported
  whole and per dab.

The cached prediction comes from the model (--model, else the shipped one) when there is
one; without a model, from a stand-in probability map (IDRiD's hand-drawn haemorrhage
mask, blurred into [0, 1]) wrapped in a real Prediction, so the threshold path runs the
same code with realistic lesion shapes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# the IDRiD photos inside the repository (tests/data); --data takes any IDRiD-style folder
DATA = REPO / "tests" / "data" / "idrid-hemorrhage"
FRAME_MS = 1000 / 60


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", default="1600x1000", help="canvas size, logical pixels")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--scale", type=float, default=1.0, help="device pixel ratio")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.scale != 1.0:
        os.environ["QT_SCALE_FACTOR"] = str(args.scale)

    import cv2
    import numpy as np
    from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from inference import Photo, Prediction, Provenance, read_photo
    from inference.labels import read_mask
    from inference.preprocess import preprocess
    from inference.resources import shipped_model_path
    from viewer.model.document import Document
    from viewer.qt.canvas import ImageCanvas

    paths = sorted((args.data / "images").glob("IDRiD_*.jpg"))[: max(args.photos, 2)]
    if len(paths) < 2:
        print(f"need at least two IDRiD photos in {args.data / 'images'}", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication([])
    w, h = (int(v) for v in args.size.split("x"))

    # -- the cached predictions ----------------------------------------------------------
    model_path = args.model or shipped_model_path()

    def stand_in(path: Path, photo: Photo) -> Prediction:
        mask = read_mask(args.data / "masks" / f"{path.stem}_HE.tif")
        probability = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 4.0)
        geometry = preprocess(photo.rgb).geometry
        provenance = Provenance(
            "ground-truth stand-in", "-", "0" * 64, "cpu", "no model", 0.5, photo.sha256,
            (photo.width, photo.height), photo.format, (), {}, {},
        )  # fmt: skip
        # the blurred mask taken to the working grid, as a model's map would come
        working = geometry.to_working(probability)
        return Prediction(working, geometry, 0.5, 30, provenance, photo)

    predictions: dict[Path, Prediction] = {}
    if model_path.exists():
        from inference import Segmenter

        seg = Segmenter.open(model_path)
        source = f"model {seg.contract.model_name} on {seg.device}"
        for p in paths:
            predictions[p] = seg.predict(p)
        seg.close()
    else:
        source = "stand-in probability (no model: blurred IDRiD ground truth)"
        for p in paths:
            predictions[p] = stand_in(p, read_photo(p))

    canvas = ImageCanvas()
    canvas.resize(w, h)
    canvas.show()
    app.processEvents()
    dpr = canvas.devicePixelRatioF()
    print(f"{len(paths)} photos, {paths[0].stem}.. at 4288x2848; canvas {w}x{h} at dpr {dpr:g}")
    print(f"cached prediction: {source}")
    print(f"{args.repeats} repeats, medians in ms; cv2 threads {cv2.getNumThreads()}\n")

    def repaint() -> None:
        canvas.repaint()

    def paint_pending() -> None:
        """Let Qt paint what update() asked for (only the dirty region), as a frame would."""
        app.processEvents()

    def new_document(path: Path, photo: Photo) -> Document:
        return Document(
            path, (photo.width, photo.height), photo.sha256, prediction=predictions[path]
        )

    rows: list[tuple[str, float, str]] = []

    # -- next photo against the decode floor -----------------------------------------------
    floor, show, after_decode = [], [], []
    for i in range(args.repeats * len(paths)):
        path = paths[i % len(paths)]

        def decode(path: Path = path) -> None:
            read_photo(path)

        floor.append(timed(decode))

        def next_photo(path: Path = path) -> None:
            photo = read_photo(path)
            t0 = time.perf_counter()
            canvas.set_document(new_document(path, photo), photo.rgb)
            repaint()
            after_decode.append(time.perf_counter() - t0)

        show.append(timed(next_photo))
    floor_ms = median_ms(floor)
    rows.append(("decode JPEG alone (floor)", floor_ms, "1.00x floor"))
    show_ms = median_ms(show)
    rows.append(("next photo, shown with overlay", show_ms, f"{show_ms / floor_ms:.2f}x floor"))
    rows.append(("  of which: document + show + paint", median_ms(after_decode), ""))

    # -- overlay toggle and opacity ----------------------------------------------------------
    path = paths[0]
    photo = read_photo(path)
    canvas.set_document(new_document(path, photo), photo.rgb)
    repaint()

    def frame_row(name: str, samples: list[float]) -> None:
        ms = median_ms(samples)
        rows.append((name, ms, f"{ms / FRAME_MS:.2f} frame"))

    reps = max(args.repeats, 3) * 3

    def frames(action: Callable[[], object]) -> list[float]:
        def frame() -> None:
            action()
            repaint()

        return [timed(frame) for _ in range(reps)]

    for visible in (True, False):
        samples = []
        for _ in range(reps):
            canvas.set_overlay_visible(not visible)
            repaint()
            t0 = time.perf_counter()
            canvas.set_overlay_visible(visible)
            repaint()
            samples.append(time.perf_counter() - t0)
        frame_row(f"toggle overlay {'on' if visible else 'off'} + repaint (fit)", samples)
    opacities = iter([0.3, 0.7] * reps)
    frame_row(
        "opacity change + repaint (fit)",
        frames(lambda: canvas.set_overlay_opacity(next(opacities))),
    )
    canvas.set_overlay_filled(False)
    frame_row("contour overlay repaint (fit)", frames(lambda: None))
    canvas.set_overlay_filled(True)
    frame_row("pan one step + repaint (fit)", frames(lambda: canvas.pan_by(7, 3)))
    canvas.centre_on(2100, 1400, zoom=1.0)
    repaint()
    frame_row("pan one step + repaint (100 %)", frames(lambda: canvas.pan_by(7, 3)))
    canvas.fit_to_window()
    repaint()

    # -- threshold change ------------------------------------------------------------------
    doc = canvas.document
    assert doc is not None
    t_doc, t_total = [], []
    for i in range(reps):
        t = (0.35, 0.55)[i % 2]

        def rethreshold(t: float = t) -> None:
            t0 = time.perf_counter()
            assert doc.set_threshold(t), "an unedited mask follows the threshold"
            t_doc.append(time.perf_counter() - t0)
            canvas.refresh_mask()
            repaint()

        t_total.append(timed(rethreshold))
    frame_row("threshold change, re-rendered (fit)", t_total)
    canvas_part = [a - b for a, b in zip(t_total, t_doc)]
    rows.append(("  of which: Document.set_threshold", median_ms(t_doc), ""))
    rows.append(("  of which: canvas re-render + paint", median_ms(canvas_part), ""))

    # -- brush: one dab, one 50-dab stroke ---------------------------------------------------
    def mouse(kind: QEvent.Type, at: QPoint, buttons: Qt.MouseButton) -> None:
        pos = QPointF(at)
        event = QMouseEvent(
            kind, pos, canvas.mapToGlobal(pos), Qt.MouseButton.LeftButton, buttons,
            Qt.KeyboardModifier.NoModifier,
        )  # fmt: skip
        QApplication.sendEvent(canvas, event)

    press, move, release = (
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseMove,
        QEvent.Type.MouseButtonRelease,
    )
    held, free = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    canvas.set_brush_radius(12)
    for label, zoom in (("fit", None), ("100 %", 1.0)):
        if zoom is None:
            canvas.fit_to_window()
        else:
            canvas.centre_on(2100, 1400, zoom=zoom)
        repaint()
        at = QPoint(w // 2, h // 2)
        dabs = []
        for i in range(reps):
            canvas.set_tool(("brush", "eraser")[i % 2])  # each dab changes the mask

            def dab(at: QPoint = at) -> None:
                before = canvas.paint_count
                mouse(press, at, held)
                mouse(release, at, free)
                paint_pending()
                assert canvas.paint_count > before, "the dab was repainted"

            dabs.append(timed(dab))
        frame_row(f"one brush dab + repaint ({label})", dabs)

        strokes = []
        for i in range(max(args.repeats // 2, 2)):
            canvas.set_tool(("brush", "eraser")[i % 2])

            def stroke() -> None:
                start = QPoint(w // 2 - 200, h // 2 - 100)
                mouse(press, start, held)
                for k in range(1, 50):
                    mouse(move, start + QPoint(8 * k, 4 * k), held)
                    paint_pending()
                mouse(release, start + QPoint(8 * 49, 4 * 49), free)
                paint_pending()

            strokes.append(timed(stroke))
        ms = median_ms(strokes)
        per_dab = f"{ms / 50 / FRAME_MS:.2f} frame/dab"
        rows.append((f"50-dab stroke + repaints ({label})", ms, per_dab))

    width = max(len(r[0]) for r in rows)
    for name, ms, ratio in rows:
        print(f"{name:<{width}}  {ms:8.2f}  {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
