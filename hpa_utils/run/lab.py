"""JupyterLab's door: exploring the project's notebooks never dirties git.

Running a notebook in JupyterLab saves its outputs into the file (autosave is on by default). For the
sources in the project's ``notebooks/`` folder, :func:`strip_source_notebook`, a pre-save hook that
this module registers as a Jupyter server extension (enabled by
``jupyter-config/jupyter_server_config.d/hpa-utils.json``, which the install places under
``<env>/etc/jupyter/``), saves them as they are committed: without outputs,
execution counts, the kernel's version or papermill's metadata (nbstripout's rules, the same as the git
filter of ``make git-filter``), so a file whose only change is its outputs is saved byte for byte as it
was, and ``git status`` stays clean; an edit to a cell is saved. Every other notebook (a run's executed
copies in ``runs/<preset>/notebooks/``, a student's own) keeps its outputs.
"""

from __future__ import annotations

from pathlib import Path

from hpa_utils.config.run_config import NOTEBOOKS_DIR

#: Metadata an execution adds: what nbstripout's command line drops by default (its function does not), then
#: papermill's and the kernel's version (``make git-filter`` gives the git filter the same list).
EXTRA_KEYS = (
    "metadata.signature",
    "metadata.widgets",
    "cell.metadata.collapsed",
    "cell.metadata.ExecuteTime",
    "cell.metadata.execution",
    "cell.metadata.heading_collapsed",
    "cell.metadata.hidden",
    "cell.metadata.scrolled",
    "metadata.papermill",
    "cell.metadata.papermill",
    "metadata.language_info.version",
    "metadata.language_info.codemirror_mode",
    "metadata.language_info.file_extension",
    "metadata.language_info.mimetype",
    "metadata.language_info.nbconvert_exporter",
    "metadata.language_info.pygments_lexer",
)


def strip_notebook(content: dict) -> dict:
    """A notebook (nbformat's JSON model) as the sources are committed: no outputs or execution counts, cell
    ids kept, the keys of :data:`EXTRA_KEYS` dropped."""
    # deferred: nbformat and nbstripout (seconds to import), for the save hook only
    import nbformat
    from nbstripout import strip_output

    nb = nbformat.from_dict(content)
    nb = strip_output(nb, keep_output=False, keep_count=False, keep_id=True, extra_keys=list(EXTRA_KEYS))
    for cell in nb.cells:  # what a front end may leave that the committed sources never hold
        if cell.get("metadata", {}).get("tags") == []:
            del cell.metadata["tags"]
    return nb


def is_source_notebook(path: str | Path, notebooks_dir: str | Path | None = None) -> bool:
    """True for a notebook in the project's ``notebooks/`` folder (the committed sources)."""
    path = Path(path)
    return path.suffix == ".ipynb" and path.resolve().parent == Path(notebooks_dir or NOTEBOOKS_DIR).resolve()


def strip_source_notebook(model: dict, path: str, contents_manager, **kwargs) -> None:
    """Jupyter server ``pre_save_hook``: a source notebook is saved stripped (see the module docstring)."""
    if model.get("type") != "notebook" or not model.get("content"):
        return
    root = Path(getattr(contents_manager, "root_dir", "."))
    if is_source_notebook(root / path.lstrip("/")):
        model["content"] = strip_notebook(model["content"])


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "hpa_utils.run.lab"}]


def _load_jupyter_server_extension(serverapp) -> None:
    """Jupyter server extension: register :func:`strip_source_notebook` with the server's contents manager."""
    serverapp.contents_manager.register_pre_save_hook(strip_source_notebook)
    serverapp.log.info("hpa_utils: the project's source notebooks are saved without outputs")
