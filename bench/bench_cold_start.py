"""Cold start of the frozen app against `python -m viewer`: launch to a shown photo with its
overlay, on the same photo, in the same run (machines are noisy; only the ratio travels).

    .venv/bin/python bench/bench_cold_start.py [--frozen dist/hemaview-...-cpu] [--photo P]
                                               [--repeats 3]

Each launch is `--screenshot`: start the program, open the photo, run the shipped model,
render the window with the overlay, save it, exit. The figure is the time from launch to the
moment the app reports the photo shown with its overlay (HEMAVIEW_REPORT_SHOWN; the
screenshot's settling wait after it is not startup). Every launch gets a fresh home (no
settings, no prediction cache), so the model really runs each time, as on a first start.
The two programs alternate. When this process may drop the kernel's file cache (root on
Linux), it does before each launch, so the files are read from disk: a real cold start;
otherwise the figures are for a warm file cache, and the output says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "packaging"))
import project_info  # noqa: E402


def drop_file_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def launch(command: list[str], photo: Path, cold: bool) -> tuple[float, float]:
    """Seconds from launch to the photo shown with its overlay, and to the process's end."""
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEMAVIEW_")}
        env.update(
            HOME=home,
            XDG_CONFIG_HOME=f"{home}/.config",
            XDG_CACHE_HOME=f"{home}/.cache",
            XDG_DATA_HOME=f"{home}/.local/share",
            QT_QPA_PLATFORM="offscreen",
            HEMAVIEW_REPORT_SHOWN="1",
        )
        if cold:
            drop_file_cache()
        t0 = time.monotonic()
        done = subprocess.run(
            [*command, "--screenshot", f"{home}/shot.png", str(photo)],
            env=env,
            capture_output=True,
            text=True,
        )
        total = time.monotonic() - t0
        shown = [ln for ln in done.stdout.splitlines() if "shown at monotonic" in ln]
        if done.returncode != 0 or not Path(home, "shot.png").is_file() or not shown:
            raise SystemExit(f"{command[0]} failed:\n{done.stdout}\n{done.stderr}")
        return float(shown[0].rsplit(" ", 1)[1]) - t0, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--frozen", type=Path, default=REPO / "dist" / project_info.folder_name("cpu")
    )
    parser.add_argument(
        "--photo", type=Path, default=sorted((REPO / "resources" / "samples").glob("*.jpg"))[0]
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    frozen = args.frozen / "hemaview"
    if not frozen.is_file():
        raise SystemExit(f"no frozen app at {frozen}: run packaging/freeze cpu first")
    programs = {
        "frozen": [str(frozen)],
        "python -m viewer": [str(REPO / ".venv" / "bin" / "python"), "-m", "viewer"],
    }
    cold = drop_file_cache()
    print(
        f"photo {args.photo.name}; {args.repeats} launches each, alternating; "
        + ("file cache dropped before each launch" if cold else "warm file cache (not root)")
    )
    times: dict[str, list[float]] = {name: [] for name in programs}
    totals: dict[str, list[float]] = {name: [] for name in programs}
    for i in range(args.repeats):
        order = list(programs) if i % 2 == 0 else list(reversed(programs))
        for name in order:
            shown, total = launch(programs[name], args.photo, cold)
            times[name].append(shown)
            totals[name].append(total)
            print(f"  {name}: shown after {shown:.2f} s (process {total:.2f} s with settling)")
    frozen_s = statistics.median(times["frozen"])
    python_s = statistics.median(times["python -m viewer"])
    print(f"median launch to photo with overlay: frozen {frozen_s:.2f} s, python {python_s:.2f} s")
    print(f"ratio frozen / python -m viewer: {frozen_s / python_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
