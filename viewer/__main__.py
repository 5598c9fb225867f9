"""`hemaview`: the viewer. `hemaview [PHOTOS_OR_FOLDERS...]`, `hemaview --screenshot OUT.png
[PHOTO]` (render the window with the shipped model's overlay and exit) and `hemaview
--selftest` (check the installation and exit non-zero on any failure)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hemaview", description="Haemorrhage annotation assistant for fundus photos."
    )
    parser.add_argument("paths", nargs="*", help="photos or folders to open")
    parser.add_argument("--model", default=None, help="ONNX model (default: the shipped model)")
    parser.add_argument(
        "--lang", choices=["auto", "en", "ko"], default=None, help="user interface language"
    )
    parser.add_argument(
        "--screenshot",
        metavar="OUT.png",
        default=None,
        help="render the main window with the overlay on PATH (or a sample photo) and exit",
    )
    parser.add_argument(
        "--selftest", action="store_true", help="check the installation and the model, then exit"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.selftest:
        from viewer.selftest import run_selftest

        return run_selftest(args.model)
    if args.screenshot and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # no screen needed for a screenshot
    if not args.screenshot:
        from viewer.display_check import display_problem

        problem = display_problem()
        if problem is not None:
            print(f"hemaview: {problem}", file=sys.stderr)
            return 2
    from viewer.qt.app import HemaviewApp

    app = HemaviewApp(sys.argv[:1], language=args.lang)
    if args.screenshot:
        from viewer.qt.screenshot import take_screenshot

        return take_screenshot(
            app, Path(args.screenshot), [Path(p) for p in args.paths], args.model
        )
    app.start(args.paths, model_path=args.model)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
