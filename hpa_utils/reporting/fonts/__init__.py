"""The one font the report embeds: the glyphs of the original's Chinese author names, cut from Noto Serif CJK TC
(SIL Open Font License 1.1, ``OFL.txt`` beside it), so that the names render in any browser and in the PDF
without a CJK font installed.

``names-subset.woff`` is made by :func:`make_subset` from a Noto Serif CJK font collection (Debian's
``fonts-noto-cjk``): ``python -m hpa_utils.reporting.fonts /usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc``.
The report's template embeds it as a data URI for text marked ``lang="zh-Hant"``.
"""

from __future__ import annotations

import base64
from pathlib import Path

#: The characters the report sets in the embedded font (the original's authors, SPEC.md).
CJK_TEXT = "陳譽仁趙浩雅"
SUBSET = Path(__file__).with_name("names-subset.woff")
FAMILY = "HPA Report CJK"
#: Noto Serif CJK's face for Traditional Chinese, by its family name in the collection.
SOURCE_FAMILY = "Noto Serif CJK TC"


def make_subset(collection: str | Path, out: str | Path = SUBSET, text: str = CJK_TEXT) -> Path:
    """Cut ``text``'s glyphs from the Traditional Chinese face of a Noto Serif CJK collection (.ttc) into a
    WOFF file, written atomically."""
    from fontTools import subset  # deferred: only to make the file
    from fontTools.ttLib import TTCollection

    collection = Path(collection)
    faces = TTCollection(str(collection)).fonts
    names = [face["name"].getDebugName(1) for face in faces]
    if SOURCE_FAMILY not in names:
        raise ValueError(f"{collection}: no {SOURCE_FAMILY!r} face (faces: {', '.join(map(str, names))})")
    options = subset.Options()
    options.font_number = names.index(SOURCE_FAMILY)
    options.flavor = "woff"
    options.name_IDs = ["*"]  # keep the copyright and licence records
    options.layout_features = []
    font = subset.load_font(str(collection), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(font)
    out = Path(out)
    tmp = out.with_suffix(".tmp")
    subset.save_font(font, str(tmp), options)
    tmp.replace(out)
    return out


def font_face_css() -> str:
    """The ``@font-face`` rule that embeds the subset as a data URI ("" when the file is missing)."""
    if not SUBSET.is_file():
        return ""
    data = base64.b64encode(SUBSET.read_bytes()).decode("ascii")
    return f'@font-face {{ font-family: "{FAMILY}"; src: url(data:font/woff;base64,{data}) format("woff"); }}'
