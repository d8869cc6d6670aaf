"""Kaggle submission files: write them in the sample's Id order, validate them, score them.

A submission is a CSV with the header ``Id,Predicted``; Predicted holds the predicted class ids
(0..27), space-separated and ascending. Kaggle wants the rows in the order of
``sample_submission.csv``. The solution file (``Id,Target,Usage``, Usage Public or Private) scores a
submission as the leaderboard did: macro F1 on the public part, the private part and both.

Every problem with an input file raises :class:`~hpa_utils.errors.DataError` naming the file and the
line (1-based, the header is line 1); a file with several problems raises one DataError listing all.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hpa_utils.data.labels import NUM_CLASSES, multihot_to_target, parse_target, targets_to_multihot
from hpa_utils.errors import DataError
from hpa_utils.evaluation.metrics import binarize, macro_f1
from hpa_utils.io import write_atomic

SUBMISSION_HEADER = ("Id", "Predicted")
SOLUTION_HEADER = ("Id", "Target", "Usage")
USAGES = ("Public", "Private")
#: How many Ids an "unknown/missing Ids" problem lists, and how many row problems are listed in full.
MAX_LISTED_IDS = 5
MAX_ROW_PROBLEMS = 20


def predictions_to_targets(
    binary: np.ndarray, probabilities: np.ndarray | None = None, ensure_one: bool = False
) -> list[str]:
    """(N, 28) 0/1 predictions -> one Predicted string per image, class ids ascending ("0 16").

    Kaggle scores every image and the true labels always hold at least one class, so an empty
    prediction can only lose. With ``ensure_one=True`` an image with no class above its threshold
    gets its single most probable class from ``probabilities``; otherwise it gets "" (no labels).
    """
    binary = np.asarray(binary)
    if binary.ndim != 2 or binary.shape[1] != NUM_CLASSES:
        raise ValueError(f"predictions must have shape (images, {NUM_CLASSES}), got {binary.shape}")
    binary = binary.astype(bool)
    if ensure_one:
        if probabilities is None:
            raise ValueError("ensure_one=True needs the probabilities, to pick each empty row's most probable class")
        probabilities = np.asarray(probabilities)
        if probabilities.shape != binary.shape:
            raise ValueError(f"probabilities have shape {probabilities.shape}; predictions have {binary.shape}")
        empty = ~binary.any(axis=1)
        binary = binary.copy()
        binary[np.flatnonzero(empty), probabilities[empty].argmax(axis=1)] = True
    return [multihot_to_target(row) for row in binary]


def _label_problem(text: str) -> str | None:
    """Why a Predicted string is invalid, or None; "" (no labels) is valid."""
    for token in text.split():
        if not (token.isascii() and token.isdigit()):
            return f"label {token!r} is not an integer class id in 0..{NUM_CLASSES - 1}"
        if int(token) >= NUM_CLASSES:
            return f"label {token} is outside the class ids 0..{NUM_CLASSES - 1}"
    return None


def write_submission(path: str | os.PathLike, ids: Iterable[str], targets_or_binary) -> Path:
    """Write an ``Id,Predicted`` CSV atomically (a temp file in the same folder, then os.replace).

    Args:
        path: the CSV to write; its folder is created if needed. An existing file is replaced whole,
            or left as it was if writing fails.
        ids: image Ids, in the order to write (use :func:`make_submission` for the sample's order).
        targets_or_binary: one Predicted string per Id, or an (N, 28) 0/1 array (written as is:
            rows without labels stay empty).
    """
    path = Path(path)
    ids = [str(i) for i in ids]
    values = np.asarray(targets_or_binary)
    targets = predictions_to_targets(values) if values.ndim == 2 else [str(t).strip() for t in targets_or_binary]
    if len(targets) != len(ids):
        raise ValueError(f"got {len(ids)} Ids but {len(targets)} predictions")
    if len(set(ids)) != len(ids) or any(not i.strip() for i in ids):
        raise ValueError("Ids must be non-empty and unique")
    for id_, target in zip(ids, targets, strict=True):
        problem = _label_problem(target)
        if problem:
            raise ValueError(f"prediction for Id {id_}: {problem}")

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(SUBMISSION_HEADER)
            writer.writerows(zip(ids, targets, strict=True))

    return write_atomic(path, write)


def make_submission(
    sample_submission_csv: str | os.PathLike,
    ids: Sequence[str],
    probabilities: np.ndarray,
    thresholds: float | np.ndarray,
    path: str | os.PathLike,
    ensure_one: bool = True,
) -> pd.DataFrame:
    """Threshold the probabilities and write the submission in ``sample_submission.csv``'s Id order.

    Args:
        sample_submission_csv: Kaggle's sample submission; only its Ids and their order are used.
        ids: the Id of each row of ``probabilities`` (any order).
        probabilities: (N, 28) predicted probabilities.
        thresholds: one threshold or one per class.
        path: where to write the submission.
        ensure_one: give an image with no class above threshold its most probable class
            (see :func:`predictions_to_targets`).

    Returns:
        The written ``Id,Predicted`` table.

    Raises:
        DataError: the sample file is invalid, or an Id of the sample has no prediction.
    """
    sample = read_submission(sample_submission_csv)
    ids = [str(i) for i in ids]
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (len(ids), NUM_CLASSES):
        raise ValueError(f"probabilities must have shape ({len(ids)}, {NUM_CLASSES}), got {probabilities.shape}")
    position = {id_: row for row, id_ in enumerate(ids)}
    if len(position) != len(ids):
        raise ValueError("the prediction Ids contain duplicates")
    missing = [id_ for id_ in sample["Id"] if id_ not in position]
    if missing:
        raise DataError(
            f"{sample_submission_csv}: {len(missing)} Id(s) of the sample submission have no prediction: "
            f"{_some(missing)}"
        )
    if len(ids) > len(sample):
        warnings.warn(
            f"{len(ids) - len(sample)} predicted Id(s) are not in {sample_submission_csv} and are left out",
            UserWarning,
            stacklevel=2,
        )
    ordered = probabilities[[position[id_] for id_ in sample["Id"]]]
    targets = predictions_to_targets(binarize(ordered, thresholds), ordered, ensure_one=ensure_one)
    write_submission(path, sample["Id"], targets)
    return pd.DataFrame({"Id": list(sample["Id"]), "Predicted": targets})


def _some(ids: Sequence[str]) -> str:
    listed = ", ".join(ids[:MAX_LISTED_IDS])
    return listed + (f", ... ({len(ids) - MAX_LISTED_IDS} more)" if len(ids) > MAX_LISTED_IDS else "")


#: Inputs are read whole, so their size is bounded: a solution (Kaggle's is 1 MB) at most this many bytes, a
#: submission at most :data:`SUBMISSION_SLACK` times the bytes of its expected rows at their longest.
MAX_CSV_BYTES = 256 * 2**20
SUBMISSION_SLACK = 100
#: The longest row of a submission: a 36-character Id, a comma, the 28 classes and their spaces, CR LF.
_LONGEST_ROW = 36 + 1 + 28 * 3 + 2


def _read_rows(
    path: str | os.PathLike, header: tuple[str, ...], max_bytes: int = MAX_CSV_BYTES
) -> list[tuple[int, list[str]]]:
    """The data rows of a CSV as (line number, fields), after checking the file's size and its header.

    At most ``max_bytes`` are read (a larger file, or a device such as /dev/zero, is refused unread).
    """
    expected = ",".join(header)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise DataError(f"{path}: larger than {max_bytes:,} bytes, far more than expected here; not read")
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        first = next(reader, None)
        if first is None:
            raise DataError(f"{path}: the file is empty; expected the header line {expected}")
        if first != list(header):
            raise DataError(f"{path}: line 1: the header is {','.join(first)!r}; expected exactly {expected}")
        return [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a CSV file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from error
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: is not UTF-8 text ({error.reason} at byte {error.start})") from error
    except csv.Error as error:
        raise DataError(f"{path}: malformed CSV ({error})") from error


class _Problems:
    """Collects a file's problems; row problems past MAX_ROW_PROBLEMS are counted, not listed."""

    def __init__(self, path):
        self.path, self.items, self.unlisted = path, [], 0

    def row(self, line: int, text: str) -> None:
        if len(self.items) < MAX_ROW_PROBLEMS:
            self.items.append(f"{self.path}: line {line}: {text}")
        else:
            self.unlisted += 1

    def file(self, text: str) -> None:
        self.items.append(f"{self.path}: {text}")

    def raise_if_any(self) -> None:
        if self.unlisted:
            self.file(f"... and {self.unlisted} more row problem(s) not listed")
        if self.items:
            raise DataError(problems=self.items)


def _parse_rows(path, header, check, max_bytes: int = MAX_CSV_BYTES) -> tuple[list[list[str]], _Problems]:
    """Rows with the right field count, a non-empty unique Id and no problem from ``check``."""
    problems, seen, records = _Problems(path), {}, []
    rows = _read_rows(path, header, max_bytes)
    for line, row in rows:
        if not any(field.strip() for field in row):
            continue  # a blank line
        if len(row) != len(header):
            problems.row(line, f"{len(row)} field(s); expected {len(header)} ({','.join(header)})")
            continue
        fields = [field.strip() for field in row]
        if not fields[0]:
            problems.row(line, "the Id is empty")
            continue
        if fields[0] in seen:
            problems.row(line, f"Id {fields[0]} is a duplicate of line {seen[fields[0]]}")
            continue
        seen[fields[0]] = line
        problem = check(fields)
        if problem:
            problems.row(line, f"Id {fields[0]}: {problem}")
        records.append(fields)
    if not seen and not problems.items:
        problems.file(f"has no data rows after the header {','.join(header)}")
    return records, problems


def read_submission(path: str | os.PathLike, expected_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Read and validate an ``Id,Predicted`` submission.

    Checks: the file exists and is readable; the header is exactly ``Id,Predicted``; every Id is
    non-empty and unique; every Predicted token is an integer in 0..27 (an empty Predicted means no
    labels, which Kaggle accepted); with ``expected_ids``, no Id is unknown and none is missing.

    Returns:
        DataFrame with string columns ``Id`` and ``Predicted``, in file order.

    Raises:
        DataError: listing every problem, one per line, each naming the file (and line).
    """
    expected = None if expected_ids is None else list(dict.fromkeys(str(i) for i in expected_ids))
    limit = MAX_CSV_BYTES if expected is None else SUBMISSION_SLACK * _LONGEST_ROW * (len(expected) + 1)
    records, problems = _parse_rows(path, SUBMISSION_HEADER, lambda fields: _label_problem(fields[1]), limit)
    if expected is not None:
        expected_set, found = set(expected), {r[0] for r in records}
        unknown = [r[0] for r in records if r[0] not in expected_set]
        missing = [i for i in expected if i not in found]
        if unknown:
            problems.file(f"{len(unknown)} Id(s) are not among the expected Ids: {_some(unknown)}")
        if missing:
            problems.file(f"{len(missing)} expected Id(s) are missing: {_some(missing)}")
    problems.raise_if_any()
    return pd.DataFrame(records, columns=list(SUBMISSION_HEADER), dtype=str)


def _solution_problem(fields: list[str]) -> str | None:
    try:
        parse_target(fields[1])
    except ValueError as error:
        return str(error)
    if fields[2] not in USAGES:
        return f"Usage {fields[2]!r} is not one of {', '.join(USAGES)}"
    return None


def read_solution(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate an ``Id,Target,Usage`` solution (Target non-empty, Usage Public or Private).

    Raises:
        DataError: listing every problem, one per line, each naming the file (and line).
    """
    records, problems = _parse_rows(path, SOLUTION_HEADER, _solution_problem)
    problems.raise_if_any()
    return pd.DataFrame(records, columns=list(SOLUTION_HEADER), dtype=str)


def score_submission(submission_path: str | os.PathLike, solution_path: str | os.PathLike) -> dict:
    """Score a submission as Kaggle's leaderboard did: macro F1 on the public, private and all Ids.

    The submission must hold exactly the solution's Ids (any order).

    Returns:
        ``{"public": f1, "private": f1, "all": f1, "n_public": int, "n_private": int, "n_all": int}``;
        a part with no Ids scores NaN.
    """
    solution = read_solution(solution_path)
    submission = read_submission(submission_path, expected_ids=solution["Id"])
    predicted = submission.set_index("Id")["Predicted"].reindex(solution["Id"])
    y_pred = np.zeros((len(solution), NUM_CLASSES), dtype=np.uint8)
    for row, text in enumerate(predicted):
        y_pred[row, [int(token) for token in text.split()]] = 1
    y_true = targets_to_multihot(list(solution["Target"]))
    parts = {
        "public": (solution["Usage"] == "Public").to_numpy(),
        "private": (solution["Usage"] == "Private").to_numpy(),
        "all": np.ones(len(solution), dtype=bool),
    }
    scores: dict = {}
    for name, mask in parts.items():
        scores[name] = macro_f1(y_true[mask], y_pred[mask]) if mask.any() else float("nan")
    for name, mask in parts.items():
        scores[f"n_{name}"] = int(mask.sum())
    return scores


def format_score(scores: dict) -> str:
    """The scores of :func:`score_submission` as three lines for the terminal."""
    lines = []
    for name in ("public", "private", "all"):
        count = scores.get(f"n_{name}")
        suffix = f"  ({count:,} Ids)" if count is not None else ""
        lines.append(f"{name:<8} macro F1 {scores[name]:.4f}{suffix}")
    return "\n".join(lines)


def solution_labels(solution_path: str | os.PathLike, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The solution's labels and Usage for ``ids`` (in that order): ((N, 28) multi-hot, (N,) usage strings).

    Raises:
        DataError: the solution is malformed or lacks one of ``ids``.
    """
    solution = read_solution(solution_path).set_index("Id")
    missing = [i for i in ids if i not in solution.index]
    if missing:
        raise DataError(f"{solution_path}: {len(missing)} test Id(s) have no solution row, e.g. {_some(missing)}")
    rows = solution.loc[list(ids)]
    return targets_to_multihot(list(rows["Target"])), rows["Usage"].to_numpy()
