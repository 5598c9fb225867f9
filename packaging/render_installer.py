"""The Windows installer script (Inno Setup), filled from pyproject.toml for one flavour.

It cannot be compiled here (Inno Setup is a Windows program), so `packaging/build` renders
it into dist/ and checks that every file it names exists in a one-folder build; on Windows,
`iscc dist\\<folder>.iss` makes the installer.

    python packaging/render_installer.py FLAVOUR BUILD_DIR OUT.iss [--check LOCAL_BUILD]

BUILD_DIR is the build folder as Windows will see it (written into the script); --check
looks for every named file in LOCAL_BUILD, a build of this machine's platform, where the
programs have no `.exe`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import project_info as info

TEMPLATE = Path(__file__).resolve().parent / "windows" / "hemaview.iss.in"

# Stable per flavour: Windows identifies an installed program by it, so an update replaces the
# old version and the two flavours can be told apart. Never change these.
APP_IDS = {
    "cpu": "{{6F0D2C1E-4C7B-4E49-9B0E-2B7F4C1A9D31}",
    "gpu": "{{B3A1E8D4-7F52-4C0A-8E61-5D9C2F7B4A10}",
}
# the settings and entry parameters of an Inno script whose value is a file
FILE_REFERENCE = re.compile(
    r"\b(?:Source|Filename|IconFilename|SetupIconFile|LicenseFile|InfoBeforeFile"
    r"|UninstallDisplayIcon)\s*[:=]\s*\"?\{(?:#BuildDir|app)\}\\([^\"\s;]+)"
)
FLAVOUR_LABELS = {"cpu": "CPU", "gpu": "NVIDIA GPU"}


def render(flavour: str, build_dir: str, template: str | None = None) -> str:
    """The script for `flavour`, reading the build from `build_dir` (a Windows path)."""
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    authors = info.pyproject()["project"].get("authors", [{}])
    values = {
        "NAME": info.name(),
        "DISPLAY_NAME": info.name().capitalize(),
        "VERSION": info.version(),
        "DESCRIPTION": info.description(),
        "PUBLISHER": authors[0].get("name", info.name()) if authors else info.name(),
        "FLAVOUR": flavour,
        "FLAVOUR_LABEL": FLAVOUR_LABELS[flavour],
        "APP_ID": APP_IDS[flavour],
        "FOLDER": info.folder_name(flavour).replace(info.platform_tag(), "windows-x86_64"),
        "BUILD_DIR": build_dir,
    }
    out = re.sub(r"@([A-Z_]+)@", lambda m: values.get(m.group(1), m.group(0)), text)
    left = re.findall(r"@[A-Z_]+@", out)
    if left:
        raise ValueError(f"unfilled placeholders in the installer template: {sorted(set(left))}")
    return out


def named_files(script: str) -> list[str]:
    """Every file of the build the script names, relative to the build folder, with `\\`
    turned into `/`: sources ({#BuildDir}\\...) and the installed files that shortcuts,
    icons and the uninstaller point at ({app}\\...)."""
    found: list[str] = []
    for match in FILE_REFERENCE.finditer(script):
        rel = match.group(1).replace("\\", "/")
        if rel not in found:
            found.append(rel)
    return found


def missing_files(script: str, build: Path, exe_suffix: str = "") -> list[str]:
    """Files the script names that `build` lacks. A wildcard needs a non-empty folder;
    `.exe` is replaced by `exe_suffix` to check a build of another platform."""
    missing = []
    for rel in named_files(script):
        if rel.endswith("*"):
            folder = build / rel.rstrip("*").rstrip("/")
            if not folder.is_dir() or not any(folder.iterdir()):
                missing.append(rel)
            continue
        local = rel[: -len(".exe")] + exe_suffix if rel.endswith(".exe") else rel
        if not (build / local).is_file():
            missing.append(rel)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("flavour", choices=info.FLAVOURS)
    parser.add_argument("build_dir", help="the build folder, as the Windows machine sees it")
    parser.add_argument("out", type=Path)
    parser.add_argument("--check", type=Path, default=None, help="a local build to check")
    args = parser.parse_args(argv)
    script = render(args.flavour, args.build_dir)
    if args.check is not None:
        missing = missing_files(
            script, args.check, exe_suffix="" if sys.platform != "win32" else ".exe"
        )
        if missing:
            print(
                f"installer script names files the build lacks: {', '.join(missing)}",
                file=sys.stderr,
            )
            return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    # Inno Setup reads UTF-8 with a byte-order mark
    tmp.write_text(script, encoding="utf-8-sig", newline="\r\n")
    tmp.replace(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
