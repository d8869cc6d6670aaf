"""Submission files: format, Id order, atomic writing, validation errors and leaderboard scoring."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from hpa_utils.data.labels import NUM_CLASSES, targets_to_multihot
from hpa_utils.errors import DataError
from hpa_utils.evaluation.metrics import macro_f1
from hpa_utils.evaluation.submission import (
    format_score,
    make_submission,
    predictions_to_targets,
    read_solution,
    read_submission,
    score_submission,
    write_submission,
)


def _ids(n: int) -> list[str]:
    """Kaggle-like UUID Ids, deterministic."""
    return [str(uuid.uuid5(uuid.NAMESPACE_OID, f"hpa-{i}")) for i in range(n)]


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def sample_csv(tmp_path):
    ids = _ids(6)
    return _write(tmp_path / "sample_submission.csv", "Id,Predicted\n" + "".join(f"{i},0\n" for i in ids)), ids


def test_predictions_to_targets_lists_labels_ascending_and_leaves_empty_rows_empty():
    binary = np.zeros((2, NUM_CLASSES), dtype=np.uint8)
    binary[0, [16, 0, 25]] = 1
    assert predictions_to_targets(binary) == ["0 16 25", ""]


def test_predictions_to_targets_ensure_one_gives_empty_rows_their_most_probable_class():
    probabilities = np.full((2, NUM_CLASSES), 0.1)
    probabilities[0, 3] = 0.9
    probabilities[1, 7] = 0.4
    targets = predictions_to_targets(probabilities >= 0.5, probabilities, ensure_one=True)
    assert targets == ["3", "7"]
    with pytest.raises(ValueError, match="needs the probabilities"):
        predictions_to_targets(probabilities >= 0.5, ensure_one=True)


def test_make_submission_writes_the_sample_id_order_when_predictions_are_shuffled(sample_csv, tmp_path):
    sample_path, ids = sample_csv
    probabilities = np.zeros((len(ids), NUM_CLASSES))
    for row in range(len(ids)):
        probabilities[row, [row, 20 + row % 3]] = 0.8  # Id number `row` predicts classes row and 20+row%3
    order = np.random.default_rng(0).permutation(len(ids))
    out = tmp_path / "out" / "submission.csv"
    make_submission(sample_path, [ids[i] for i in order], probabilities[order], 0.5, out)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "Id,Predicted"
    assert [line.split(",")[0] for line in lines[1:]] == ids
    assert [line.split(",")[1] for line in lines[1:]] == [f"{row} {20 + row % 3}" for row in range(len(ids))]


def test_make_submission_raises_when_a_sample_id_has_no_prediction(sample_csv, tmp_path):
    sample_path, ids = sample_csv
    with pytest.raises(DataError, match=r"sample_submission\.csv: 1 Id\(s\) of the sample submission have no"):
        make_submission(sample_path, ids[:-1], np.zeros((5, NUM_CLASSES)), 0.5, tmp_path / "s.csv")


def test_write_submission_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "submission.csv"
    write_submission(path, ["a", "b"], ["0 1", "5"])
    write_submission(path, ["a", "b"], ["2", ""])  # replaces the first file whole
    assert path.read_text(encoding="utf-8") == "Id,Predicted\na,2\nb,\n"
    assert os.listdir(tmp_path) == ["submission.csv"]

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_submission(path, ["a", "b"], ["9", "9"])
    assert os.listdir(tmp_path) == ["submission.csv"]
    assert path.read_text(encoding="utf-8") == "Id,Predicted\na,2\nb,\n"


def test_written_submission_reads_back_with_expected_ids(tmp_path):
    ids = _ids(3)
    binary = np.zeros((3, NUM_CLASSES), dtype=np.uint8)
    binary[0, 27] = binary[2, [1, 0]] = 1
    path = write_submission(tmp_path / "s.csv", ids, binary)
    table = read_submission(path, expected_ids=ids)
    assert table["Id"].to_list() == ids
    assert table["Predicted"].to_list() == ["27", "", "0 1"]


def test_score_submission_equals_macro_f1_on_public_private_and_all(tmp_path):
    rng = np.random.default_rng(5)
    ids = _ids(40)
    y_true = (rng.random((40, NUM_CLASSES)) < 0.15).astype(np.uint8)
    y_true[np.arange(40), rng.integers(0, NUM_CLASSES, 40)] = 1
    y_pred = np.where(rng.random(y_true.shape) < 0.8, y_true, 1 - y_true).astype(np.uint8)
    usage = np.array(["Public"] * 12 + ["Private"] * 28)
    targets = predictions_to_targets(y_true)
    solution = "Id,Target,Usage\n" + "".join(f"{i},{t},{u}\n" for i, t, u in zip(ids, targets, usage, strict=True))
    _write(tmp_path / "solution.csv", solution)
    order = rng.permutation(40)  # the submission's row order does not matter for scoring
    write_submission(tmp_path / "sub.csv", [ids[i] for i in order], y_pred[order])
    scores = score_submission(tmp_path / "sub.csv", tmp_path / "solution.csv")
    public = usage == "Public"
    assert scores["public"] == pytest.approx(macro_f1(y_true[public], y_pred[public]))
    assert scores["private"] == pytest.approx(macro_f1(y_true[~public], y_pred[~public]))
    assert scores["all"] == pytest.approx(macro_f1(y_true, y_pred))
    assert (scores["n_public"], scores["n_private"], scores["n_all"]) == (12, 28, 40)
    text = format_score(scores)
    assert f"{scores['public']:.4f}" in text and "private" in text and "(40 Ids)" in text


def test_read_solution_parses_targets(tmp_path):
    path = _write(tmp_path / "solution.csv", "Id,Target,Usage\na,16 0,Public\nb,27,Private\n")
    table = read_solution(path)
    assert targets_to_multihot(list(table["Target"]))[0, [0, 16]].tolist() == [1, 1]


# ----- malformed files: each one raises DataError naming the file and what is wrong -----


def test_bad_header_raises_naming_file_and_expected_header(tmp_path):
    path = _write(tmp_path / "sub.csv", "id,predicted\na,1\n")
    with pytest.raises(DataError, match=r"sub\.csv: line 1: .*expected exactly Id,Predicted"):
        read_submission(path)


def test_unknown_id_raises_listing_it(tmp_path):
    path = _write(tmp_path / "sub.csv", "Id,Predicted\na,1\nb,2\nzzz,3\n")
    with pytest.raises(DataError, match=r"sub\.csv: 1 Id\(s\) are not among the expected Ids: zzz"):
        read_submission(path, expected_ids=["a", "b"])


def test_missing_ids_raise_with_count_and_a_few_examples(tmp_path):
    expected = [f"id{i}" for i in range(9)]
    path = _write(tmp_path / "sub.csv", "Id,Predicted\nid0,1\nid1,2\n")
    with pytest.raises(DataError) as info:
        read_submission(path, expected_ids=expected)
    message = str(info.value)
    assert "sub.csv: 7 expected Id(s) are missing: id2, id3, id4, id5, id6, ... (2 more)" in message


def test_duplicate_id_raises_naming_both_lines(tmp_path):
    path = _write(tmp_path / "sub.csv", "Id,Predicted\na,1\nb,2\na,3\n")
    with pytest.raises(DataError, match=r"sub\.csv: line 4: Id a is a duplicate of line 2"):
        read_submission(path)


def test_label_outside_0_to_27_raises(tmp_path):
    path = _write(tmp_path / "sub.csv", "Id,Predicted\na,1 28\n")
    with pytest.raises(DataError, match=r"sub\.csv: line 2: Id a: label 28 is outside the class ids 0\.\.27"):
        read_submission(path)


def test_non_integer_label_raises(tmp_path):
    path = _write(tmp_path / "sub.csv", "Id,Predicted\na,1\nb,0 x1\n")
    with pytest.raises(DataError, match=r"sub\.csv: line 3: Id b: label 'x1' is not an integer class id"):
        read_submission(path)


def test_empty_file_raises(tmp_path):
    path = _write(tmp_path / "sub.csv", "")
    with pytest.raises(DataError, match=r"sub\.csv: the file is empty; expected the header line Id,Predicted"):
        read_submission(path)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_submission(tmp_path / "nope.csv")


def test_every_problem_of_a_file_is_reported_at_once_one_per_line(tmp_path):
    path = _write(tmp_path / "sub.csv", "Id,Predicted\na,1\na,2\nb,-1\n,3\nc,1,2\n")
    with pytest.raises(DataError) as info:
        read_submission(path, expected_ids=["a", "b", "d"])
    problems = info.value.problems
    assert str(info.value).splitlines() == problems
    assert all(problem.startswith(f"{path}: ") for problem in problems)
    assert [p.split(": ", 2)[1] for p in problems[:4]] == ["line 3", "line 4", "line 5", "line 6"]
    assert problems[-1].endswith("1 expected Id(s) are missing: d")


def test_solution_with_bad_usage_or_empty_target_raises(tmp_path):
    path = _write(tmp_path / "solution.csv", "Id,Target,Usage\na,1,Public\nb,,Private\nc,2,Secret\n")
    with pytest.raises(DataError) as info:
        read_solution(path)
    assert len(info.value.problems) == 2
    assert "line 3: Id b: Target is empty" in info.value.problems[0]
    assert "line 4: Id c: Usage 'Secret' is not one of Public, Private" in info.value.problems[1]


def test_score_submission_rejects_a_submission_missing_solution_ids(tmp_path):
    _write(tmp_path / "solution.csv", "Id,Target,Usage\na,1,Public\nb,2,Private\n")
    _write(tmp_path / "sub.csv", "Id,Predicted\na,1\n")
    with pytest.raises(DataError, match="1 expected Id\\(s\\) are missing: b"):
        score_submission(tmp_path / "sub.csv", tmp_path / "solution.csv")
