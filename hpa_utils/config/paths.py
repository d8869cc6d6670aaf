"""Where the project's files are: in a checkout of the project, or in an installed ``hpa-course-report``.

Two situations, told apart once, at import:

**A checkout** (the folder two levels above this package holds ``pyproject.toml`` and ``presets/``: a clone,
used in place or through ``pip install -e .``). Everything lives in the checkout, as it always has: the presets
in ``presets/``, the source notebooks in ``notebooks/``, runs in ``runs/``, the generated synthetic datasets in
``data/``, the decoded-image caches in ``.cache/``, and the shipped report in ``report/`` and ``figures/``.
Wherever ``hpa`` is started from, it works on the checkout.

**An installed package** (``pip install hpa-course-report`` or ``pip install /path/to/checkout``, no checkout
around the package). The wheel ships the presets and the notebooks as data files, under
``<prefix>/share/hpa-utils/{presets,notebooks}`` of the environment it was installed into (a venv's or the
interpreter's prefix, ``~/.local`` for ``--user``, the target folder for ``--target``): read-only sources.
What ``hpa`` writes goes where a user expects of an installed command-line tool:

- a run's folder under ``./runs/`` of the directory ``hpa`` was started in (``--output-dir`` chooses another),
  since a run is the user's own work, to keep, open in JupyterLab and hand in;
- the generated synthetic datasets and the decoded-image caches under the user's cache
  (``$XDG_CACHE_HOME`` or ``~/.cache``)``/hpa-utils/{data,images}``: both are regenerated on demand from a
  seed or from the images, large, and shared by every run of the user wherever it was started, which is
  exactly what the XDG cache is for (and not what a working directory or a venv is for).

``$HPA_CACHE_DIR`` moves the decoded-image caches in both situations. The shipped report (``report/``,
``figures/``, ``README.md``) belongs to a checkout: ``hpa publish`` refuses to run without one
(:data:`CHECKOUT` is None).
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

#: The distribution the package is installed as, and the folder under ``<prefix>/share`` its data files go to
#: (``[tool.setuptools.data-files]`` in ``pyproject.toml``).
DISTRIBUTION = "hpa-course-report"
SHARE_NAME = "hpa-utils"
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def find_checkout(root: Path = _PACKAGE_PARENT) -> Path | None:
    """``root`` if it is a checkout of the project (``pyproject.toml`` and ``presets/`` in it), else None."""
    return root if (root / "pyproject.toml").is_file() and (root / "presets").is_dir() else None


def _is_share(folder: Path) -> bool:
    return (folder / "presets").is_dir() and (folder / "notebooks").is_dir()


def _share_candidates() -> Iterator[Path]:
    """Where an install may have put ``share/hpa-utils``, the most likely first."""
    # 1. beside the package: <prefix>/lib/pythonX.Y/site-packages/hpa_utils (a venv, --user, the system's
    # Python: the data files go to <prefix>/share), or <target>/hpa_utils (pip install --target: <target>/share)
    for folder in [_PACKAGE_PARENT, *list(_PACKAGE_PARENT.parents)[:3]]:
        yield folder / "share" / SHARE_NAME
    # 2. the installed distribution's own record of its files (any other scheme: --prefix, --root, ...)
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.parts[-4:-1] == ("share", SHARE_NAME, "presets"):
            yield Path(file.locate()).resolve().parents[1]
            break
    # 3. the data paths of this interpreter's default and user install schemes
    yield Path(sysconfig.get_path("data")) / "share" / SHARE_NAME
    if hasattr(sysconfig, "get_preferred_scheme"):  # Python 3.10+
        yield Path(sysconfig.get_path("data", sysconfig.get_preferred_scheme("user"))) / "share" / SHARE_NAME


def find_installed_share() -> Path | None:
    """The installed ``share/hpa-utils`` folder (holding ``presets/`` and ``notebooks/``), or None."""
    return next((folder for folder in _share_candidates() if _is_share(folder)), None)


def user_cache_dir() -> Path:
    """This tool's folder in the user's cache: ``$XDG_CACHE_HOME/hpa-utils`` (if absolute), else
    ``~/.cache/hpa-utils``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / SHARE_NAME


#: The checkout the package runs from, or None for an installed package.
CHECKOUT: Path | None = find_checkout()

if CHECKOUT is not None:
    #: The folder ``hpa`` works in: the checkout; installed, the directory it was started in.
    PROJ_ROOT = CHECKOUT
    PRESETS_DIR = CHECKOUT / "presets"
    NOTEBOOKS_DIR = CHECKOUT / "notebooks"
    DATA_ROOT = CHECKOUT / "data"
else:
    PROJ_ROOT = Path.cwd()
    # not found (a broken install): the usual place, so that errors name the folder that is missing
    _SHARE = find_installed_share() or Path(sysconfig.get_path("data")) / "share" / SHARE_NAME
    PRESETS_DIR = _SHARE / "presets"
    NOTEBOOKS_DIR = _SHARE / "notebooks"
    DATA_ROOT = user_cache_dir() / "data"
RUNS_DIR = PROJ_ROOT / "runs"
#: The shipped report's folders: a checkout's (installed, they are not used: ``hpa publish`` needs a checkout).
FIGURES_DIR = PROJ_ROOT / "figures"
REPORT_DIR = PROJ_ROOT / "report"


def cache_root() -> Path:
    """Root of the decoded-image caches: ``$HPA_CACHE_DIR``, else ``.cache/`` in the checkout, else (installed)
    the user's cache, ``~/.cache/hpa-utils/images``."""
    default = CHECKOUT / ".cache" if CHECKOUT is not None else user_cache_dir() / "images"
    return Path(os.environ.get("HPA_CACHE_DIR") or default)
