"""The Kaggle HPA layout: read and validate its files, load one sample or several.

Layout (as Kaggle ships it)::

    DATA_DIR/
      train.csv                 Id,Target   (Target: space-separated class ids)
      train/{Id}_{red,green,blue,yellow}.png
      test/{Id}_{red,green,blue,yellow}.png          (optional)
      sample_submission.csv     Id,Predicted          (optional, lists the test Ids)

Every problem with these files raises :class:`~hpa_utils.errors.DataError`,
whose message names the file and the CSV row. The data directory is only ever
read; the decoded-image cache lives elsewhere (see :mod:`hpa_utils.data.cache`).
"""

from __future__ import annotations

import os
import re
import struct
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from hpa_utils.config.checks import MAX_IMAGE_SIDE
from hpa_utils.data.labels import CHANNELS, CLASS_NAMES, parse_target, targets_to_multihot
from hpa_utils.errors import DataError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: An Id: Kaggle's characters and nothing else (matched with ``fullmatch``: no trailing newline or space).
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PNG_COLOUR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
#: The largest channel file read, in bytes: a PNG of an 8192-px 8-bit channel holds at most 64 MiB of pixels
#: (plus a byte a row and deflate's few bytes a block), so a larger file is refused before it is read.
MAX_PNG_BYTES = 80 * 2**20


def csv_line(row_index: int) -> int:
    """The 1-based line number in a CSV file of DataFrame row ``row_index`` (header is line 1)."""
    return int(row_index) + 2


def row_source(split: str, index: int) -> str:
    """Where Id number ``index`` of ``split`` comes from: ``train.csv line N`` or ``sample_submission.csv line N``."""
    return f"{'train.csv' if split == 'train' else 'sample_submission.csv'} line {csv_line(index)}"


def check_id(sample_id: object) -> str | None:
    """Return a problem sentence if ``sample_id`` is not a plain file-name stem, else None."""
    if not isinstance(sample_id, str) or not sample_id.strip():
        return "Id is empty"
    if "/" in sample_id or "\\" in sample_id or ".." in sample_id or not _PLAIN_ID.fullmatch(sample_id):
        return f"Id {sample_id!r} is not a plain name (letters, digits, '-', '_', '.'; no path separators or '..')"
    return None


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV file ({str(error).strip()})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; expected header "
            f"{','.join(columns)}, found {','.join(map(str, frame.columns)) or 'nothing'}"
        )
    return frame


def read_labels(csv_path: str | Path) -> pd.DataFrame:
    """Read and check a ``train.csv`` (``Id,Target``).

    Returns:
        DataFrame with columns ``Id``, ``Target`` (normalised: ids ascending) and
        ``labels`` (list of int), in file order.

    Raises:
        DataError: one message listing every problem, each naming the file and line.
    """
    path = Path(csv_path)
    frame = _read_csv(path, ("Id", "Target"))
    problems: list[str] = []
    labels: list[list[int]] = []
    seen: dict[str, int] = {}
    for row, (sample_id, target) in enumerate(zip(frame["Id"], frame["Target"])):
        where = f"{path}, line {csv_line(row)}"
        id_problem = check_id(sample_id)
        if id_problem:
            problems.append(f"{where}: {id_problem}")
        elif sample_id in seen:
            problems.append(f"{where}: duplicate Id {sample_id!r} (first on line {seen[sample_id]})")
        else:
            seen[sample_id] = csv_line(row)
        try:
            labels.append(parse_target(target))
        except ValueError as error:
            problems.append(f"{where}: {error}")
            labels.append([])
    if not len(frame):
        problems.append(f"{path}: no rows")
    if problems:
        raise DataError(problems=problems)
    out = pd.DataFrame({"Id": frame["Id"], "labels": labels})
    out["Target"] = [" ".join(map(str, ids)) for ids in labels]
    return out[["Id", "Target", "labels"]]


def _parse_png_header(path: Path, head: bytes) -> tuple[int, int, int, int]:
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise DataError(f"{path}: not a PNG file")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    return width, height, depth, colour


def _read_png(path: Path, whole: bool) -> bytes:
    """The first 26 bytes of ``path`` (the signature and the IHDR chunk), or (``whole``) all of it.

    Raises:
        DataError: the file is missing, unreadable, or larger than :data:`MAX_PNG_BYTES` (``whole``).
    """
    try:
        with open(path, "rb") as handle:
            length = os.fstat(handle.fileno()).st_size if whole else 0
            if length > MAX_PNG_BYTES:
                raise DataError(
                    f"{path}: file of {length / 2**20:.0f} MiB, larger than any PNG of an image within "
                    f"MAX_IMAGE_SIDE = {MAX_IMAGE_SIDE} px ({MAX_PNG_BYTES // 2**20} MiB)"
                )
            return handle.read() if whole else handle.read(26)
    except FileNotFoundError:
        raise DataError(f"{path}: channel file is missing") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a PNG file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror})") from None


def read_png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk.

    Raises:
        DataError: the file is missing, or not a PNG.
    """
    head = _read_png(path, whole=False)
    return _parse_png_header(path, head)


def _check_header(path: Path, head: bytes | None = None) -> tuple[int, int]:
    """(width, height) of an 8-bit single-channel PNG no larger than :data:`MAX_IMAGE_SIDE` a side.

    Args:
        path: the file (named in errors; read when ``head`` is None).
        head: the file's first 26 bytes (or all of it), when they have been read already.
    """
    width, height, depth, colour = read_png_header(path) if head is None else _parse_png_header(path, head)
    if depth != 8 or colour != 0:
        kind = _PNG_COLOUR_TYPES.get(colour, f"colour type {colour}")
        raise DataError(f"{path}: expected an 8-bit single-channel PNG, found {depth}-bit {kind}")
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise DataError(
            f"{path}: image of {width}x{height} px (PNG header), outside 1..{MAX_IMAGE_SIDE} px a side "
            "(MAX_IMAGE_SIDE); refused before decoding"
        )
    return width, height


def read_channel(path: Path) -> np.ndarray:
    """Decode one channel PNG as a 2-D uint8 array, checking it fully.

    The file's bytes are read here and decoded by ``cv2.imdecode``: no path reaches OpenCV, whose
    ``imread`` crashes on a path that is not UTF-8. The header is checked (type, and
    :data:`MAX_IMAGE_SIDE`) before anything is decoded.

    Raises:
        DataError: missing, not a PNG, not 8-bit single-channel, too large, or unreadable/truncated.
    """
    data = _read_png(path, whole=True)
    width, height = _check_header(path, data)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: unreadable or truncated PNG")
    if image.dtype != np.uint8 or image.ndim != 2 or image.shape != (height, width):
        raise DataError(f"{path}: expected an 8-bit single-channel PNG, decoded {image.dtype} {image.shape}")
    return image


def channel_paths(image_dir: str | Path, sample_id: str) -> list[Path]:
    """The four channel files of ``sample_id``, in R, G, B, Y order."""
    problem = check_id(sample_id)
    if problem:
        raise DataError(f"{image_dir}: {problem}")
    return [Path(image_dir) / f"{sample_id}_{channel}.png" for channel in CHANNELS]


def load_sample(image_dir: str | Path, sample_id: str, size: int | None = None) -> np.ndarray:
    """Load one sample as a (size, size, 4) uint8 array, channels R, G, B, Y.

    Args:
        image_dir: the folder holding the PNGs (``train/`` or ``test/``).
        sample_id: the Id.
        size: output side in pixels (cv2 area interpolation); None keeps the native size.

    Raises:
        DataError: any channel is missing, unreadable or of another size.
    """
    channels = [read_channel(path) for path in channel_paths(image_dir, sample_id)]
    shapes = {c.shape for c in channels}
    if len(shapes) > 1:
        sizes = ", ".join(f"{name} {c.shape[1]}x{c.shape[0]}" for name, c in zip(CHANNELS, channels))
        raise DataError(f"{Path(image_dir) / sample_id}_*.png: channels have different sizes ({sizes})")
    if size is not None and channels[0].shape != (size, size):
        interpolation = cv2.INTER_AREA if channels[0].shape[0] >= size else cv2.INTER_LINEAR
        channels = [cv2.resize(c, (size, size), interpolation=interpolation) for c in channels]
    return np.stack(channels, axis=-1)


def load_samples(
    image_dir: str | Path, ids: list[str], size: int | None = None, workers: int | None = None
) -> np.ndarray:
    """Load many samples in parallel threads into one (N, size, size, 4) uint8 array."""
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        return np.stack(list(pool.map(lambda i: load_sample(image_dir, i, size), ids)))


def default_workers() -> int:
    """Threads for decoding: one per core (cv2 releases the GIL while decoding)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass
class HPADataset:
    """A dataset in Kaggle's layout, read and checked.

    Attributes:
        root: the data directory.
        train: ``read_labels`` of ``train.csv``.
        test_ids: Ids of ``sample_submission.csv`` (empty if there is none).
    """

    root: Path
    train: pd.DataFrame
    test_ids: list[str] = field(default_factory=list)

    @property
    def train_dir(self) -> Path:
        """``train/``; a flat folder (PNGs beside ``train.csv``, as the 40-Id sample ships) also works."""
        nested = self.root / "train"
        return nested if nested.is_dir() or not self.flat else self.root

    @property
    def flat(self) -> bool:
        return not (self.root / "train").is_dir() and any(self.root.glob("*_green.png"))

    @property
    def test_dir(self) -> Path:
        return self.root / "test"

    @property
    def sample_submission(self) -> Path:
        return self.root / "sample_submission.csv"

    @property
    def solution(self) -> Path:
        return self.root / "solution.csv"

    @property
    def train_ids(self) -> list[str]:
        return self.train["Id"].tolist()

    @property
    def y(self) -> np.ndarray:
        """(N, 28) uint8 multi-hot labels of the training Ids."""
        return targets_to_multihot(self.train["Target"].tolist())

    def image_dir(self, split: str) -> Path:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return self.train_dir if split == "train" else self.test_dir

    def ids(self, split: str) -> list[str]:
        self.image_dir(split)
        return self.train_ids if split == "train" else list(self.test_ids)

    def load(self, split: str, sample_id: str, size: int | None = None) -> np.ndarray:
        return load_sample(self.image_dir(split), sample_id, size)


def open_dataset(data_dir: str | Path) -> HPADataset:
    """Read ``train.csv`` (and ``sample_submission.csv`` if present) of a Kaggle-layout folder.

    Raises:
        DataError: the folder, ``train.csv``, ``train/`` are missing or a CSV is malformed.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: data directory not found")
    train = read_labels(root / "train.csv")
    if not (root / "train").is_dir() and not any(root.glob("*_green.png")):
        raise DataError(f"{root / 'train'}: image folder not found")
    test_ids: list[str] = []
    sample = root / "sample_submission.csv"
    if sample.is_file():
        frame = _read_csv(sample, ("Id", "Predicted"))
        problems = []
        for row, sample_id in enumerate(frame["Id"]):
            problem = check_id(sample_id)
            if problem:
                problems.append(f"{sample}, line {csv_line(row)}: {problem}")
        duplicated = frame["Id"][frame["Id"].duplicated()]
        for row, sample_id in duplicated.items():
            problems.append(f"{sample}, line {csv_line(row)}: duplicate Id {sample_id!r}")
        if problems:
            raise DataError(problems=problems)
        test_ids = frame["Id"].tolist()
    return HPADataset(root=root, train=train, test_ids=test_ids)


# --------------------------------------------------------------------------- validation


@dataclass
class ValidationReport:
    """What ``validate_dataset`` found: problems (one line each) and a summary."""

    data_dir: Path
    problems: list[str]
    n_train: int = 0
    n_test: int = 0
    class_counts: np.ndarray | None = None
    labels_per_image: dict[int, int] = field(default_factory=dict)
    image_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """A one-screen text summary: counts per class, labels per image, image sizes."""
        lines = [f"{self.data_dir}: {self.n_train} training Ids, {self.n_test} test Ids"]
        if self.class_counts is not None:
            lines.append("images per class:")
            cells = [f"{i:>2} {CLASS_NAMES[i][:24]:<24} {int(n):>6}" for i, n in enumerate(self.class_counts)]
            half = (len(cells) + 1) // 2
            for left, right in zip(cells[:half], cells[half:] + [""]):
                lines.append(f"  {left}   {right}")
        if self.labels_per_image:
            parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.labels_per_image.items()))
            lines.append(f"labels per image: {parts}")
        if self.image_sizes:
            parts = ", ".join(f"{k} ({v} files)" for k, v in sorted(self.image_sizes.items()))
            lines.append(f"image sizes: {parts}")
        lines.append("OK" if self.ok else f"{len(self.problems)} problem(s)")
        return "\n".join(lines)


def _check_sample_files(image_dir: Path, sample_id: str, decode: bool, where: str = "") -> tuple[list[str], list[str]]:
    """Problems of one sample's four files (each ending with ``(where)``, the CSV line), and their sizes as
    'WxH' strings."""
    problems, sizes = [], []
    shapes = {}
    for channel, path in zip(CHANNELS, channel_paths(image_dir, sample_id)):
        try:
            if decode:
                height, width = read_channel(path).shape
            else:
                width, height = _check_header(path)
        except DataError as error:
            problems.append(f"{error} ({where})" if where else str(error))
            continue
        shapes[channel] = (width, height)
        sizes.append(f"{width}x{height}")
    if len(set(shapes.values())) > 1:
        detail = ", ".join(f"{c} {w}x{h}" for c, (w, h) in shapes.items())
        suffix = f" ({where})" if where else ""
        problems.append(f"{image_dir / sample_id}_*.png: channels have different sizes ({detail}){suffix}")
    return problems, sizes


def validate_dataset(
    data_dir: str | Path, decode: bool = True, workers: int | None = None, max_problems: int = 200
) -> ValidationReport:
    """Check a Kaggle-layout dataset completely; never raises for bad data.

    Args:
        data_dir: folder holding ``train.csv`` and ``train/`` (and optionally the test part).
        decode: decode every PNG (finds truncated files); False checks headers only.
        workers: decoding threads.
        max_problems: stop listing problems after this many (the count stays right).

    Returns:
        A :class:`ValidationReport`; ``report.ok`` is True when nothing is wrong.
    """
    root = Path(data_dir)
    report = ValidationReport(data_dir=root, problems=[])
    try:
        dataset = open_dataset(root)
    except DataError as error:
        report.problems.extend(error.problems)
        return report
    report.n_train, report.n_test = len(dataset.train), len(dataset.test_ids)
    report.class_counts = dataset.y.sum(axis=0)
    report.labels_per_image = dict(Counter(len(labels) for labels in dataset.train["labels"]))
    jobs = [(dataset.train_dir, i, row_source("train", n)) for n, i in enumerate(dataset.train_ids)]
    if dataset.test_ids:
        if not dataset.test_dir.is_dir():
            report.problems.append(f"{dataset.test_dir}: image folder not found (sample_submission.csv lists test Ids)")
        else:
            jobs += [(dataset.test_dir, i, row_source("test", n)) for n, i in enumerate(dataset.test_ids)]
    sizes: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        for problems, found in pool.map(lambda job: _check_sample_files(job[0], job[1], decode, job[2]), jobs):
            report.problems.extend(problems)
            sizes.update(found)
    report.image_sizes = dict(sizes)
    if len(report.problems) > max_problems:
        extra = len(report.problems) - max_problems
        report.problems = report.problems[:max_problems] + [f"... and {extra} more problem(s)"]
    return report
