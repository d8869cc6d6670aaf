"""Headless Chromium (Debian's ``chromium`` package) on the rendered report.

:func:`render_pdf` prints the HTML report to PDF, :func:`screenshot` draws the top of the page to a PNG and
:func:`dump_dom` gives the page's DOM after load. :func:`find_chromium` says which executable they run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from hpa_utils.io import write_atomic

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)


def find_chromium() -> str | None:
    """``$CHROMIUM`` if set (a path or a command name), else the first of :data:`CHROMIUM_NAMES` on PATH."""
    override = os.environ.get("CHROMIUM")
    if override:
        return shutil.which(override) or (override if os.access(override, os.X_OK) else None)
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def _chromium(args: list[str], page: str | os.PathLike, timeout: float = 180) -> subprocess.CompletedProcess:
    executable = find_chromium()
    if executable is None:
        raise RuntimeError(
            "headless Chromium was not found (tried $CHROMIUM, then "
            + ", ".join(CHROMIUM_NAMES)
            + " on PATH): install Debian's `chromium` package (apt-get install chromium), or set CHROMIUM to"
            " a Chrome/Chromium executable."
        )
    page = Path(page).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"{page}: no such HTML file")
    with tempfile.TemporaryDirectory(prefix="hpa-chromium-") as profile:
        command = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{executable} exited with status {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done


def _chromium_to_file(args: list[str], page, target: Path, flag: str, magic: bytes) -> Path:
    def write(tmp: Path) -> None:
        _chromium([*args, f"{flag}={tmp}"], page)
        if not tmp.is_file() or tmp.read_bytes()[: len(magic)] != magic:
            raise RuntimeError(f"Chromium did not write a {target.suffix} file for {page}")

    return write_atomic(target, write)


def render_pdf(html_path: str | os.PathLike, pdf_path: str | os.PathLike | None = None) -> Path:
    """Print the HTML report to PDF with headless Chromium (default: beside it, ``.pdf``)."""
    target = Path(pdf_path) if pdf_path else Path(html_path).with_suffix(".pdf")
    return _chromium_to_file(
        ["--no-pdf-header-footer", "--virtual-time-budget=5000"], html_path, target, "--print-to-pdf", b"%PDF"
    )


def screenshot(
    html_path: str | os.PathLike, png_path: str | os.PathLike, width: int = 1280, height: int = 2400
) -> Path:
    """A PNG of the top ``width`` x ``height`` pixels of the page as headless Chromium draws it."""
    return _chromium_to_file(
        [f"--window-size={int(width)},{int(height)}", "--virtual-time-budget=5000"],
        html_path,
        Path(png_path),
        "--screenshot",
        b"\x89PNG",
    )


def dump_dom(html_path: str | os.PathLike) -> str:
    """The page's DOM after load (scripts run, images decoded), serialised by headless Chromium."""
    return _chromium(["--dump-dom", "--virtual-time-budget=5000"], html_path).stdout
