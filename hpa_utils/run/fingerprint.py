"""What a notebook's result depends on, as one hash: its source, the configuration sections it uses,
the library modules it imports (directly or through other modules, function-local imports included)
and its upstream notebooks' fingerprints. A notebook whose fingerprint matches the stamp of its last
successful execution is up to date.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import nbformat

PACKAGE = "hpa_utils"
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _module_file(name: str) -> Path | None:
    """The source file of a module of the package (``hpa_utils.a.b`` -> ``a/b.py`` or ``a/b/__init__.py``)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(source: str) -> set[str]:
    """Every ``hpa_utils`` module a piece of source imports (``from a import b`` counts ``a`` and ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == PACKAGE}


def module_closure(sources: Iterable[str]) -> list[Path]:
    """The package's source files that ``sources`` import, transitively, with their parent packages."""
    pending = set().union(*(_imported_modules(source) for source in sources))
    seen: dict[str, Path] = {}
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            prefix = ".".join(parts[:depth])
            path = _module_file(prefix)
            if path is None or prefix in seen:
                continue
            seen[prefix] = path
            pending |= _imported_modules(path.read_text())
    return sorted(set(seen.values()))


def notebook_code(notebook: Path) -> list[str]:
    """The code cells' sources of a notebook."""
    nb = nbformat.read(notebook, as_version=4)
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def notebook_fingerprint(notebook: Path, config_parts: dict, upstream: Iterable[str] = ()) -> str:
    """The fingerprint of ``notebook`` run on ``config_parts`` (dotted section -> value) after ``upstream``."""
    digest = hashlib.sha256()

    def add(part: bytes) -> None:
        digest.update(part)
        digest.update(b"\0")

    add(notebook.read_bytes())
    add(json.dumps(config_parts, sort_keys=True, default=str).encode())
    for path in module_closure(notebook_code(notebook)):
        add(path.relative_to(PACKAGE_DIR).as_posix().encode())
        add(path.read_bytes())
    for fingerprint in upstream:
        add(fingerprint.encode())
    return digest.hexdigest()
