"""One seed, one result: a second `hpa run` of the smoke preset into another folder writes the same results as the
first, byte for byte (timings aside: a model's file is named relative to its run's folder). The plan of training
jobs is the same in both runs: the number of threads a job trains with changes a model's last bits (see
``training.executor.plan_processes``)."""

from __future__ import annotations

import json

import pandas as pd
from conftest import FIRST_RESULTS

#: Columns that hold how long something took.
NOT_RESULTS = {"train_seconds"}
#: The run's record (when it started, the notebooks' timings, where it ran), not its results.
RECORDS = {"run.json"}


def _results(folder):
    """Every results file of notebooks 01-04 as comparable text (CSV without timing or path columns)."""
    out = {}
    for path in sorted((folder / "results").glob("*")):
        if path.name in RECORDS or path.name.startswith("beyond") or not path.is_file():
            continue
        if path.suffix == ".csv":
            table = pd.read_csv(path)
            out[path.name] = table.drop(columns=[c for c in NOT_RESULTS if c in table.columns]).to_csv(index=False)
        elif path.suffix == ".json":
            out[path.name] = json.dumps(json.loads(path.read_text()), sort_keys=True)
    return out


def test_the_same_seed_gives_the_same_results_in_another_folder(smoke_run, tmp_path):
    from hpa_utils.run.runner import run

    out, _, _, data = smoke_run
    first = out.parent / FIRST_RESULTS  # as the first run wrote them (other tests re-run it with other settings)
    overrides = ["beyond.run=false"]  # the results of 01-04 do not depend on it
    run("smoke", data_dir=data, output_dir=tmp_path / "again", overrides=overrides, log=lambda line: None, echo=False)
    again = tmp_path / "again"
    a, b = _results(first), _results(again)
    assert set(a) == set(b) and "models.csv" in a and "findings.json" in a
    for name in a:
        assert a[name] == b[name], f"{name} differs between two runs of one seed"
    for path in sorted((first / "predictions").glob("*.npy")):
        twin = again / "predictions" / path.name
        if twin.is_file():  # 05's predictions are only in the first run
            assert path.read_bytes() == twin.read_bytes(), f"{path.name} differs"
    assert (again / "submission.csv").read_bytes() == (first / "submission.csv").read_bytes()
