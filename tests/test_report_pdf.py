"""The report printed to PDF by headless Chromium: no page break cuts a figure or a table in two, and the
shipped run's report is a report's length.

The fake run is tests/test_report.py's, with figures of the real runs' sizes (two taller than a printed
page at full width) and one table far longer than a page. Each figure has its own pixel size, so its
image XObject in the PDF says which figure it is. An image cut by a page break is drawn, clipped, on both
pages; a figure cut between image and caption has its caption on another page than its image. Every page
but the first starts with the running head (the title, the data, the page number), taken off before the
checks that read where a page starts.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw
from test_report import EXTRA_FIGURE, make_fake_run

from hpa_utils.reporting import browser
from hpa_utils.reporting.render import FIGURES, render_report
from hpa_utils.run import publish

pypdf = pytest.importorskip("pypdf", reason="pypdf is a dev dependency: pip install -e '.[dev]'")

pytestmark = pytest.mark.skipif(
    browser.find_chromium() is None,
    reason="headless Chromium not found: apt-get install chromium (or set $CHROMIUM)",
)

#: Pixel sizes like the real runs' figures (runs/*/figures); two taller than a printed A4 page at full width.
TALL = {"ensemble_comparison": (1213, 2393), "per_class_f1": (1000, 2600)}
SIZES = [(1453, 1057), (974, 695), (1213, 1117), (1453, 695), (1460, 1346), (1213, 1430), (1800, 500)]
LONG_TABLE_ROWS = 101  # shift_sweep: about three printed pages
SHORT_TABLE_ROWS = 30  # a table this short fits one page with its caption
#: The running head Chromium prints at the top of every page but the first (the @page rule of the template);
#: the page count is the PDF's.
RUNNING_HEAD = r"^Human Protein Atlas Image Classification, rebuilt [^\n]*? · page \d+ of {pages}\s*"
#: The issue's limits for the shipped run's report: the body (up to the appendix), and all of it.
MAX_BODY_PAGES, MAX_PAGES = 20, 24


def _figure_sizes() -> dict[str, tuple[int, int]]:
    """One distinct (width, height) per figure, so the PDF's image XObjects name their figure."""
    stems = [*FIGURES, EXTRA_FIGURE]
    sizes = {stem: TALL.get(stem, SIZES[i % len(SIZES)]) for i, stem in enumerate(stems)}
    return {stem: (w + i, h) for i, (stem, (w, h)) in enumerate(sizes.items())}


def _figure_png(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, size[0] - 1, size[1] - 1], outline=(40, 40, 40), width=6)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, size[0] - 120)), int(rng.integers(0, size[1] - 90))
        draw.rectangle([x0, y0, x0 + 120, y0 + 90], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    image.save(path)


def _norm(text: str) -> str:
    """NFKC (the PDF's ligatures), whitespace collapsed."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def _loose(text: str) -> str:
    """A regex for text as extracted from the PDF: any whitespace, or none, where the HTML had a space, and after
    a hyphen (a narrow header cell wraps there)."""
    return r"\s*".join(re.escape(word).replace(r"\-", r"\-\s*") for word in _norm(text).split(" "))


def _cells(row_html: str) -> list[str]:
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row_html, flags=re.S)
    return [_norm(html_lib.unescape(re.sub(r"<[^>]+>", " ", cell))) for cell in cells]


def _row_pattern(cells: list[str]) -> str:
    return r"\s*".join(_loose(cell) for cell in cells if cell)


def _caption_pattern(label: str, caption_html: str) -> str:
    """`Figure 3.` / `Table 2.` and the first words of its caption (prose may say "Figure 3." too)."""
    words = _norm(html_lib.unescape(re.sub(r"<[^>]+>", " ", caption_html))).split(" ")[:4]
    return _loose(label) + r"\s*" + _loose(" ".join(words))


def _page_texts(reader) -> tuple[list[str], list[str | None]]:
    """Each page's text without its running head, and the running head (None on a page without one)."""
    texts, heads = [], []
    running_head = re.compile(RUNNING_HEAD.format(pages=len(reader.pages)))
    for page in reader.pages:
        raw = unicodedata.normalize("NFKC", page.extract_text() or "")  # the ligatures, as in _norm
        head = running_head.match(raw)
        heads.append(head.group(0).strip() if head else None)
        texts.append(_norm(raw[head.end() :] if head else raw))
    return texts, heads


def _printed_size(reader, word: str = "Deep") -> float | None:
    """The size, in points, at which the PDF draws ``word`` (default: the Introduction's first word) where it
    first does: the font size times the text and the page matrices' scale."""
    for page in reader.pages:
        sizes = []

        def visit(text, cm, tm, font, size, sizes=sizes):
            if word in text:
                sizes.append(size * tm[3] * cm[3])

        page.extract_text(visitor_text=visit)
        if sizes:
            return sizes[0]
    return None


def _css_print_size(html: str) -> float:
    """The body's font size in print, in points, as the template's print style sets it."""
    return float(re.search(r"@media print \{\s*html \{ font-size: ([\d.]+)pt; \}", html).group(1))


def _images(resources, seen: set | None = None) -> list:
    """The image XObjects a page (or a form XObject it draws) uses: (width, height, sha1 of the data)."""
    seen = set() if seen is None else seen
    out = []
    xobjects = (resources or {}).get("/XObject") or {}
    for ref in xobjects.values():
        obj = ref.get_object()
        key = getattr(ref, "idnum", id(obj))
        if key in seen:
            continue
        seen.add(key)
        if obj.get("/Subtype") == "/Image":
            out.append((int(obj["/Width"]), int(obj["/Height"]), hashlib.sha1(obj.get_data()).hexdigest()))
        elif obj.get("/Subtype") == "/Form":
            out += _images(obj.get("/Resources"), seen)
    return out


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> dict:
    """The fake run's report as HTML and as PDF, each PDF page's images and text."""
    run = make_fake_run(tmp_path_factory.mktemp("pdf") / "run")
    sizes = _figure_sizes()
    for seed, (stem, size) in enumerate(sizes.items()):
        _figure_png(run / "figures" / f"{stem}.png", size, seed)
    shifts = np.round(np.linspace(0.0, 1.0, LONG_TABLE_ROWS), 3)
    sweep = pd.DataFrame({"shift": shifts, "n_models": 3, "val_f1": 0.30 + 0.05 * np.sin(7 * shifts)})
    sweep.assign(public_f1=sweep.val_f1 - 0.02, private_f1=sweep.val_f1 - 0.03).to_csv(
        run / "results" / "shift_sweep.csv", index=False
    )
    html_path = render_report(run)
    pdf = browser.render_pdf(html_path)
    reader = pypdf.PdfReader(pdf)
    texts, heads = _page_texts(reader)
    return {
        "pdf": pdf,
        "size": _printed_size(reader),
        "html": html_path.read_text(),
        "sizes": sizes,
        "images": [_images(page.get("/Resources")) for page in reader.pages],
        "text": texts,
        "heads": heads,
    }


def test_the_pdf_has_a_plausible_number_of_pages(printed):
    pages = len(printed["text"])
    assert 8 < pages < 60, pages  # 14 figures (most a third of a page or more), 16 tables and the prose
    assert "Human Protein Atlas Image Classification" in printed["text"][0]


def test_the_chinese_names_are_printed_in_the_embedded_font(printed):
    """The authors' names need a CJK font, which CI's machine does not have: the report's embedded subset
    (hpa_utils/reporting/fonts) is the one the PDF uses for them."""
    assert b"NotoSerifCJKtc" in printed["pdf"].read_bytes()


def test_nothing_is_wider_than_the_page(printed):
    """Chromium shrinks every page of a document that has anything wider than the page: the text is then printed
    smaller than the print style says. The widest tables (the ablation, the pointing game per class) fit."""
    assert printed["size"] == pytest.approx(_css_print_size(printed["html"]), abs=0.05)


def test_every_page_but_the_first_names_the_synthetic_data_and_its_number(printed):
    heads = printed["heads"]
    assert heads[0] is None
    for number, head in enumerate(heads[1:], start=2):
        assert head and "synthetic data" in head and head.endswith(f"page {number} of {len(heads)}"), (number, head)


def test_no_figure_is_cut_by_a_page_break(printed):
    pages_of: dict[tuple[int, int], set[int]] = {}
    pages_of_data: dict[str, set[int]] = {}
    for page, images in enumerate(printed["images"], start=1):
        for width, height, digest in images:
            pages_of.setdefault((width, height), set()).add(page)
            pages_of_data.setdefault(digest, set()).add(page)
    split = {digest[:8]: sorted(pages) for digest, pages in pages_of_data.items() if len(pages) > 1}
    assert not split, f"images drawn on more than one page (cut by a page break): {split}"

    figures = re.findall(
        r'<figure id="fig-([^"]+)"><img[^>]*><figcaption>(<span class="label">Figure A?\d+\.</span>.*?)</figcaption>',
        printed["html"],
        flags=re.S,
    )
    assert len(figures) == len(printed["sizes"]) == len(FIGURES) + 1
    for stem, caption in figures:
        size = printed["sizes"][stem]
        pages = pages_of.get(size)
        assert pages and len(pages) == 1, f"figure {stem} ({size[0]}x{size[1]} px) on pages {pages}"
        (page,) = pages
        label = re.match(r'<span class="label">(Figure A?\d+\.)</span>', caption).group(1)
        pattern = _caption_pattern(label, caption.split("</span>", 1)[1])
        assert re.search(pattern, printed["text"][page - 1]), f"{label} ({stem}): caption not on page {page}"


def _tables(html: str) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(label, caption, header cells, body rows) of each table of the report."""
    found = re.findall(
        r'<div class="table"[^>]*><p class="caption"><span class="label">(Table A?\d+\.)</span>(.*?)</p>'
        r'<div class="table-wrap">(.*?)</div></div>',
        html,
        flags=re.S,
    )
    tables = []
    for label, caption, table in found:
        head = re.search(r"<thead>(.*?)</thead>", table, flags=re.S).group(1)
        body = re.search(r"<tbody>(.*?)</tbody>", table, flags=re.S).group(1)
        rows = [_cells(row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)]
        tables.append((label, caption, _cells(head), rows))
    return tables


def test_no_short_table_is_cut_and_a_long_one_repeats_its_header(printed):
    texts = printed["text"]
    tables = _tables(printed["html"])
    assert len(tables) >= 8
    spans = {}
    for label, caption, header, rows in tables:
        pattern = _caption_pattern(label, caption)
        pages = [i for i, text in enumerate(texts) if re.search(pattern, text)]
        assert len(pages) == 1, f"{label}: caption found on pages {[p + 1 for p in pages]}"
        first = pages[0]
        head, last = _row_pattern(header), _row_pattern(rows[-1])
        # the caption is on the page of the table's header, the caption before it
        assert re.search(pattern + r".*?" + head, texts[first]), f"{label}: header not on page {first + 1}"
        end = next((i for i in range(first, len(texts)) if re.search(last, texts[i])), None)
        assert end is not None, f"{label}: last row not found after page {first + 1}"
        if len(rows) <= SHORT_TABLE_ROWS:  # caption, header and last row on one page, in that order
            assert re.search(pattern + r".*?" + head + r".*?" + last, texts[first]), (
                f"{label} ({len(rows)} rows) is cut by a page break: it ends on page {end + 1}, not {first + 1}"
            )
        for i in range(first + 1, end + 1):  # a table longer than a page repeats its header on each page
            assert re.match(head, texts[i]), f"{label}: page {i + 1} does not start with the repeated header"
        spans[len(rows)] = end - first + 1
    assert spans.get(LONG_TABLE_ROWS, 0) >= 2, f"the {LONG_TABLE_ROWS}-row table should span pages: {spans}"


@pytest.mark.skipif(not (publish.SHIPPED_RUN / "results").is_dir(), reason="no shipped run in this checkout")
def test_the_shipped_report_is_a_reports_length(tmp_path):
    """The issue's "a report, not a log": the body at most 20 A4 pages, the whole at most 24 with the appendix."""
    html = render_report(publish.SHIPPED_RUN, tmp_path / "report.html", figures_dir=publish.FIGURES_DIR)
    reader = pypdf.PdfReader(browser.render_pdf(html))
    texts, _ = _page_texts(reader)
    appendix = next(i for i, text in enumerate(texts) if text.startswith("Appendix A: the full tables"))
    assert appendix <= MAX_BODY_PAGES and len(texts) <= MAX_PAGES, (appendix, len(texts))
    assert _printed_size(reader) == pytest.approx(_css_print_size(html.read_text()), abs=0.05)  # not shrunk to fit
