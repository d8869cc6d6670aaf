"""Nothing lost, nothing silent (the run's doors): a notebook's overrides make a new run, outputs never go into
a data directory, a preset path works, every expected failure is one line, every value is checked, JupyterLab
neither dirties git nor shows a second kernel. Each test names the item of the review it answers."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hpa_utils.config.resolve import resolve_config
from hpa_utils.config.run_config import NOTEBOOKS_DIR, PRESETS_DIR, PROJ_ROOT
from hpa_utils.run import open_run
from hpa_utils.run.cli import main

QUIET = {"log": lambda line: None}


def _opened_notebook(tmp_path: Path, name: str, parameters: str | None = None) -> Path:
    """A copy of a shipped notebook cut after its `open_run` cell (what overrides decide), the parameters cell
    replaced by ``parameters`` as a user edits it."""
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    nb.cells = nb.cells[: code[1] + 1]
    if parameters is not None:
        nb.cells[code[0]].source = parameters
    path = tmp_path / f"{name}-opened.ipynb"
    nbformat.write(nb, path)
    return path


# ----------------------------------------------------------------------------- item 1: overrides make a new run


def test_item01_overrides_open_a_run_of_their_own_and_never_rewrite_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HPA_CACHE_DIR", str(tmp_path / "cache"))
    base = resolve_config("smoke", output_dir=tmp_path / "runs" / "smoke")
    base.paths.make()
    written = base.save().read_bytes()

    first = open_run("smoke", base.output_dir, {"train.base.epochs": 1}, **QUIET)
    assert (tmp_path / "runs" / "smoke" / "config.json").read_bytes() == written, "the finished run is untouched"
    assert Path(first.config.output_dir).parent == tmp_path / "runs"
    assert Path(first.config.output_dir).name.startswith("smoke-") and first.config.train.base.epochs == 1
    assert first.config.data == base.data, "the stored data directory and cache are kept"
    shown = first._repr_markdown_()
    assert "train.base.epochs=1" in shown and first.config.output_dir in shown and str(base.output_dir) in shown

    again = open_run("smoke", base.output_dir, {"train.base.epochs": 1}, **QUIET)
    assert again.config.output_dir == first.config.output_dir, "the same overrides find the same directory"
    other = open_run("smoke", base.output_dir, {"train.base.epochs": 2}, **QUIET)
    assert other.config.output_dir != first.config.output_dir
    assert open_run("smoke", base.output_dir, **QUIET).config == base, "no overrides: the run as it was made"


def test_item01_an_override_on_a_real_data_run_keeps_the_real_data(real_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("HPA_CACHE_DIR", str(tmp_path / "cache"))
    made = resolve_config("smoke", data_dir=real_sample, output_dir=tmp_path / "real")
    made.paths.make()
    made.save()
    opened = open_run("smoke", tmp_path / "real", {"seed": 1}, **QUIET)
    assert not opened.config.synthetic and opened.config.data_dir == real_sample.resolve()
    assert opened.config.seed == 1 and json.loads((tmp_path / "real" / "config.json").read_text())["seed"] == 0


def test_item01_papermill_with_overrides_and_an_edited_parameters_cell_leave_the_run_as_it_was(tmp_path):
    import papermill

    env_cache = {"HPA_CACHE_DIR": str(tmp_path / "cache")}
    os.environ.update(env_cache)
    try:
        base = resolve_config("smoke", output_dir=tmp_path / "smoke")
        base.paths.make()
        written = base.save().read_bytes()
        # papermill -p overrides '{"train.base.epochs": 1}' passes the text
        papermill.execute_notebook(
            str(_opened_notebook(tmp_path, "02_baseline")),
            str(tmp_path / "by-papermill.ipynb"),
            parameters={
                "preset": "smoke",
                "output_dir": str(tmp_path / "smoke"),
                "overrides": '{"train.base.epochs": 1}',
            },
            progress_bar=False,
            cwd=str(tmp_path),
        )
        # JupyterLab: the parameters cell edited as its comment suggests, the notebook run as it is
        edited = (
            'preset = "smoke"\noutput_dir = ' + repr(str(tmp_path / "smoke")) + '\noverrides = {"train.base.epochs": 1}'
        )
        nb_path = _opened_notebook(tmp_path, "02_baseline", edited)
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("jupyter")),
                "nbconvert",
                "--to",
                "notebook",
                "--execute",
                "--inplace",
                str(nb_path),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, **env_cache},
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        for key in env_cache:
            os.environ.pop(key, None)
    assert (tmp_path / "smoke" / "config.json").read_bytes() == written
    derived = [p for p in tmp_path.iterdir() if p.name.startswith("smoke-")]
    assert len(derived) == 1, "both ways open the one run these overrides make"
    assert json.loads((derived[0] / "config.json").read_text())["train"]["base"]["epochs"] == 1
    shown = nbformat.read(nb_path, as_version=4).cells[2].outputs[0]["data"]["text/markdown"]
    assert "train.base.epochs=1" in shown and str(derived[0]) in shown


def test_item01_a_run_of_another_preset_is_named_not_rewritten(tmp_path, monkeypatch):
    monkeypatch.setenv("HPA_CACHE_DIR", str(tmp_path / "cache"))
    quick = resolve_config("quick", output_dir=tmp_path / "run")
    quick.paths.make()
    written = quick.save().read_bytes()
    with pytest.raises(ValueError, match="holds a run of preset 'quick', not 'smoke'"):
        open_run("smoke", tmp_path / "run", **QUIET)
    assert (tmp_path / "run" / "config.json").read_bytes() == written


# ----------------------------------------------------------------------------- item 3: outputs never in the data


def test_item03_an_output_or_cache_directory_inside_the_data_directory_is_refused_before_writing(
    tiny_dataset, tmp_path, capsys
):
    before = sorted(p.relative_to(tiny_dataset) for p in tiny_dataset.rglob("*"))
    with pytest.raises(ValueError, match="inside the data directory"):
        resolve_config("smoke", data_dir=tiny_dataset, output_dir=tiny_dataset / "out")
    with pytest.raises(ValueError, match="the cache directory .* is inside the data directory"):
        resolve_config("smoke", [f"data.cache_dir={tiny_dataset / 'cache'}"], data_dir=tiny_dataset)
    assert main(["run", "--preset", "smoke", "--data-dir", str(tiny_dataset), "--output-dir", str(tiny_dataset)]) == 1
    assert main(["cache", str(tiny_dataset), "--cache-dir", str(tiny_dataset / "c"), "--size", "32"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all("is inside the data directory" in line for line in errors), errors
    assert sorted(p.relative_to(tiny_dataset) for p in tiny_dataset.rglob("*")) == before, "nothing written"


# ----------------------------------------------------------------------------- item 6: --preset PATH


def test_item06_a_preset_file_opens_in_every_notebook_as_hpa_run_passes_it(tmp_path, monkeypatch):
    """`hpa run --preset my.yaml` hands the notebooks its name and run folder: they open the stored run."""
    monkeypatch.setenv("HPA_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copy(PRESETS_DIR / "smoke.yaml", tmp_path / "my-preset.yaml")
    config = resolve_config(tmp_path / "my-preset.yaml", output_dir=tmp_path / "out")
    config.paths.make()
    config.save()
    assert config.preset == "my-preset"
    assert open_run(config.preset, config.output_dir, **QUIET).config == config
    assert open_run(str(tmp_path / "my-preset.yaml"), config.output_dir, **QUIET).config == config
    # a notebook opened on the file alone (papermill -p preset path/to/my-preset.yaml) resolves it
    monkeypatch.setattr("hpa_utils.run.session.RUNS_DIR", tmp_path / "runs")
    alone = open_run(str(tmp_path / "my-preset.yaml"), **QUIET)
    assert alone.config.preset == "my-preset" and Path(alone.config.output_dir) == tmp_path / "runs" / "my-preset"


# ----------------------------------------------------------------------------- item 7: one line, exit 1


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"hpa {command}: "), err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("command", ["synth", "cache", "report"])
def test_item07_disk_full_is_one_line_naming_the_file(command, tiny_dataset, tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "file.tmp"))

    argv = {
        "synth": ["synth", "--out", str(tmp_path / "out"), "--n-train", "4", "--n-test", "0", "--size", "64"],
        "cache": ["cache", str(tiny_dataset), "--cache-dir", str(tmp_path / "out"), "--size", "32"],
        "report": ["report", "--output-dir", str(tmp_path / "out")],
    }[command]
    target = {
        "synth": "hpa_utils.data.synth.generate_dataset",
        "cache": "hpa_utils.data.cache.open_cache",
        "report": "hpa_utils.reporting.render.render_report",
    }[command]
    monkeypatch.setattr(target, full)
    assert main(argv) == 1
    line = _one_line(capsys, command)
    assert "No space left on device" in line and "file.tmp" in line


def test_item07_the_traceback_is_shown_when_asked_for(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "hpa_utils.data.synth.generate_dataset", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))
    )
    with pytest.raises(OSError):
        main(["--debug", "synth", "--out", str(tmp_path / "out"), "--n-train", "4"])
    monkeypatch.setenv("HPA_DEBUG", "1")
    with pytest.raises(OSError):
        main(["synth", "--out", str(tmp_path / "out"), "--n-train", "4"])


def test_item07_a_preset_with_a_yaml_error_names_the_file_and_line(tmp_path, capsys):
    text = "# a preset of my own\ndescription: mine\nsynth:\n  n_train: 160\n  n_test: [40\n  size: 128\n"
    (tmp_path / "broken.yaml").write_text(text)
    line_number = text.splitlines().index("  n_test: [40") + 1
    assert main(["run", "--preset", str(tmp_path / "broken.yaml"), "--output-dir", str(tmp_path / "out")]) == 1
    line = _one_line(capsys, "run")
    assert f"broken.yaml:{line_number}" in line or f"broken.yaml:{line_number + 1}" in line, line
    assert not (tmp_path / "out").exists()


def test_item07_a_cache_size_of_zero_is_refused_by_the_command_line(tiny_dataset, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpa_utils",
            "cache",
            str(tiny_dataset),
            "--cache-dir",
            str(tmp_path / "c"),
            "--size",
            "0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "--size: 0 is not from 8 to" in done.stderr and "Traceback" not in done.stderr


def test_item07_scoring_dev_zero_is_refused_without_reading_it(tmp_path):
    solution = tmp_path / "solution.csv"
    solution.write_text("Id,Target,Usage\na,0,Public\nb,1,Private\n")
    done = subprocess.run(
        [sys.executable, "-m", "hpa_utils", "score", "/dev/zero", str(solution)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "/dev/zero: larger than" in done.stderr


# ----------------------------------------------------------------------------- item 8: every value checked


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.base.learning_rate=-1", r"train.base.learning_rate must be in \(0, 1.0\], got -1"),
        ("train.base.learning_rate=.nan", "train.base.learning_rate must be a finite number"),
        ("train.stages.learning_rate=.inf", "train.stages.learning_rate must be a finite number"),
        ("ensemble.threshold=5", r"ensemble.threshold must be in \(0, 1\), got 5"),
        ("ensemble.shift=.nan", "ensemble.shift must be a finite number or 'fit'"),
        ("seed=-1", r"seed must be in \[0, 4294967295\], got -1"),
        ("train.stages.epochs.B=-2", "train.stages.epochs.B must be an integer from 1 to"),
        ("data.image_size=8", "data.image_size must be from 76 .* to 128 .synth.size., got 8"),
        ("data.image_size=100000", "data.image_size must be from 76"),
        ("train.batch_size=1000000000", "train.batch_size must be an integer from 1 to"),
        ("data.workers=100000", "data.workers must be an integer from 1 to"),
        ("train.processes=100000", "train.processes must be an integer from 1 to"),
        ("report.stage_figure_variant=7", r"report.stage_figure_variant must be one of train.variants \(0, 1\)"),
        ("train.variants=[0, 9]", "train.variants must be distinct base variants from 0 to 7"),
    ],
)
def test_item08_every_value_is_checked_when_the_run_is_resolved(override, message):
    with pytest.raises(ValueError, match=f"preset 'smoke': {message}"):
        resolve_config("smoke", [override])


def test_item08_a_key_given_twice_in_a_preset_is_refused_with_both_lines(tmp_path):
    text = "# a preset of my own\ndescription: mine\nsynth:\n  n_train: 160\n  n_test: 40\n  n_train: 99\n"
    (tmp_path / "twice.yaml").write_text(text)
    lines = text.splitlines()
    first, second = lines.index("  n_train: 160") + 1, lines.index("  n_train: 99") + 1
    with pytest.raises(ValueError, match=f"key 'n_train' is given twice \\(lines {first} and {second}\\)"):
        resolve_config(tmp_path / "twice.yaml")


def test_item08_a_batch_or_an_input_larger_than_the_dataset_is_refused_before_any_notebook(tiny_dataset, tmp_path):
    from conftest import write_tiny_dataset

    from hpa_utils.run.runner import run

    with pytest.raises(ValueError, match="data.image_size 96 is larger than the images of .* .64 px a side."):
        run("smoke", data_dir=tiny_dataset, output_dir=tmp_path / "out", **QUIET)
    larger = write_tiny_dataset(tmp_path / "larger", n=6, size=96)
    with pytest.raises(ValueError, match="train.batch_size 16 is more than the 4 training images"):
        run("smoke", data_dir=larger, output_dir=tmp_path / "out", **QUIET)
    assert not list((tmp_path / "out" / "notebooks").glob("*.ipynb"))


# ----------------------------------------------------------------------------- items 11 and 12: JupyterLab


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lab_request(port: int, token: str, method: str, path: str, body: dict | None = None) -> dict:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def test_item11_saving_a_run_notebook_in_jupyterlab_leaves_git_status_clean(smoke_run):
    """The project's JupyterLab (`make lab`: `jupyter lab` from .venv, the project as its root) is sent what its
    front end sends on save: the source notebook with the outputs of a run. The file stays byte for byte as
    committed, so `git status` is clean; an edit to a cell is saved; a notebook elsewhere keeps its outputs."""
    import time
    import urllib.error

    if not (PROJ_ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    source = NOTEBOOKS_DIR / "01_eda.ipynb"
    committed = source.read_bytes()
    executed = nbformat.read(smoke_run[0] / "notebooks" / "01_eda.ipynb", as_version=4)
    executed.cells = [c for c in executed.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    assert sum(len(c.get("outputs", [])) for c in executed.cells) > 5
    port, token = _free_port(), "hpa-test-token"
    scratch = PROJ_ROOT / "runs" / f"lab-test-{os.getpid()}"  # not hidden: Jupyter refuses hidden paths
    lab = subprocess.Popen(
        [str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser", f"--port={port}", "--allow-root"]
        + [f"--ServerApp.root_dir={PROJ_ROOT}", f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):
            try:
                _lab_request(port, token, "GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        model = {"type": "notebook", "format": "json", "content": executed}
        _lab_request(port, token, "PUT", "/api/contents/notebooks/01_eda.ipynb", model)
        assert source.read_bytes() == committed, "a run's outputs are not saved into the source"
        status = subprocess.run(["git", "status", "--porcelain", str(source)], cwd=PROJ_ROOT, capture_output=True)
        assert status.stdout == b""
        executed.cells[1].source += "\n# a student's note"
        _lab_request(port, token, "PUT", "/api/contents/notebooks/01_eda.ipynb", model)
        saved = nbformat.read(source, as_version=4)
        assert saved.cells[1].source.endswith("# a student's note"), "an edit is saved"
        assert not any(c.get("outputs") for c in saved.cells if c.cell_type == "code")
        scratch.mkdir(parents=True)
        _lab_request(port, token, "PUT", f"/api/contents/runs/{scratch.name}/01_eda.ipynb", model)
        elsewhere = nbformat.read(scratch / "01_eda.ipynb", as_version=4)
        assert sum(len(c.get("outputs", [])) for c in elsewhere.cells) > 5, "other notebooks keep their outputs"
    finally:
        source.write_bytes(committed)
        shutil.rmtree(scratch, ignore_errors=True)
        lab.terminate()
        lab.wait(timeout=30)


def test_item11_outputs_never_reach_a_commit(smoke_run, tmp_path):
    """The git filter of `make git-filter`: a notebook executed in place (papermill, nbconvert) is committed as
    its source, without outputs; an edited cell still is."""
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("git and make are needed")
    repo = tmp_path / "repo"
    shutil.copytree(NOTEBOOKS_DIR, repo / "notebooks")
    shutil.copy(PROJ_ROOT / ".gitattributes", repo / ".gitattributes")

    def git(*args):
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "notebooks")
    subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(repo),
            "-f",
            str(PROJ_ROOT / "Makefile"),
            "git-filter",
            f"BIN={Path(sys.executable).parent}",
        ],
        check=True,
        capture_output=True,
    )
    executed = nbformat.read(smoke_run[0] / "notebooks" / "01_eda.ipynb", as_version=4)
    executed.cells = [c for c in executed.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for cell in executed.cells:  # papermill's own mark; JupyterLab and nbconvert leave none
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
    nbformat.write(executed, repo / "notebooks" / "01_eda.ipynb")
    git("add", ".")
    assert git("status", "--porcelain") == "", "nothing to commit: the outputs never reach git"
    executed.cells[1].source += "\n# a student's note"
    nbformat.write(executed, repo / "notebooks" / "01_eda.ipynb")
    git("add", ".")
    assert git("status", "--porcelain").split() == ["M", "notebooks/01_eda.ipynb"], "an edit still does"


def test_item11_the_findings_table_shows_every_claim_in_full(smoke_run):
    import html

    findings = json.loads((smoke_run[0] / "results" / "findings.json").read_text())["findings"]
    executed = nbformat.read(smoke_run[0] / "notebooks" / "04_ensemble.ipynb", as_version=4)
    cell = next(c for c in executed.cells if c.cell_type == "code" and "findings_shown" in c.source)
    shown = html.unescape("".join(o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})))
    assert max(len(f["claim"]) for f in findings) > 50, "claims longer than a DataFrame's display shows"
    assert all(f["claim"] in shown for f in findings)


def test_item12_hpa_runs_kernel_is_not_listed_beside_python3(tmp_path, monkeypatch):
    """JupyterLab's launcher lists Jupyter's kernel folders: `hpa run`'s kernel is not in them."""
    from hpa_utils.run.runner import install_kernel

    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    name = install_kernel()
    from jupyter_client.kernelspec import KernelSpecManager

    assert name in KernelSpecManager().find_kernel_specs(), "hpa run itself finds its kernel"
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_PATH"}
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("jupyter")), "kernelspec", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    kernels = json.loads(listed.stdout)["kernelspecs"]
    assert not [k for k in kernels if k.startswith("hpa-")], kernels
    assert "python3" in kernels
