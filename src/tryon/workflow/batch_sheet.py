"""The batch's contact sheet: input | result thumbnails per row, a grid per page (Pillow).

Thumbnails come from each job's ``preview.jpg`` (input | mask overlay | result, panels of one
size), so a row costs one small read whatever the photo's size. Pages are
``contact-sheet.jpg``, ``contact-sheet-2.jpg``, ...; rows without a result show their status.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, ImageDraw, ImageFont

from tryon.core import imaging
from tryon.core.s3uri import parse_s3_uri, s3_uri
from tryon.workflow import storage
from tryon.workflow.batch_types import BatchState, ReportRow

THUMB = 160
CAPTION = 18
CELLS_PER_LINE = 4
LINES_PER_PAGE = 6
ROWS_PER_PAGE = CELLS_PER_LINE * LINES_PER_PAGE
#: Rows drawn at most (84 pages): a summary Lambda has 15 minutes; report.csv lists every row.
MAX_SHEET_ROWS = 2_000
#: Largest preview read back.
MAX_PREVIEW_BYTES = 16 * 1024 * 1024
PAD = 6
_GREY, _WHITE, _INK = (200, 200, 200), (255, 255, 255), (20, 20, 20)


def page_name(page: int) -> str:
    """``contact-sheet.jpg`` for the first page, ``contact-sheet-<n>.jpg`` after it."""
    return "contact-sheet.jpg" if page == 1 else f"contact-sheet-{page}.jpg"


def _placeholder(text: str) -> Image.Image:
    tile = Image.new("RGB", (THUMB, THUMB), _GREY)
    ImageDraw.Draw(tile).text((8, THUMB // 2 - 6), text[:24], fill=_INK, font=ImageFont.load_default())
    return tile


def _fit(panel: Image.Image) -> Image.Image:
    panel.thumbnail((THUMB, THUMB))
    tile = Image.new("RGB", (THUMB, THUMB), _WHITE)
    tile.paste(panel, ((THUMB - panel.width) // 2, (THUMB - panel.height) // 2))
    return tile


def row_tiles(row: ReportRow) -> tuple[Image.Image, Image.Image]:
    """(input, result) thumbnails of a row: cut from its preview, or placeholders naming the status."""
    if not row["preview"]:
        return _placeholder("no input shown"), _placeholder(row["status"])
    bucket, key = parse_s3_uri(row["preview"], field="preview")
    data = storage.get_bytes(bucket, key, max_bytes=MAX_PREVIEW_BYTES, field="preview")
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        preview = imaging.to_rgb(opened).copy()
    # input | garment (if the row has one) | mask overlay | result; no result: no garment found
    panels = (3 if row["results"] else 2) + (1 if row.get("garment") else 0)
    width = preview.width // panels
    first = _fit(preview.crop((0, 0, width, preview.height)))
    last = _fit(preview.crop((preview.width - width, 0, preview.width, preview.height)))
    return first, last if row["results"] else _placeholder(row["status"])


def compose_page(rows: list[ReportRow], tiles: list[tuple[Image.Image, Image.Image]]) -> Image.Image:
    """One page: a grid of (input | result) pairs with "row N  status" under each."""
    cell_w, cell_h = 2 * THUMB + PAD, THUMB + CAPTION + PAD
    lines = (len(rows) + CELLS_PER_LINE - 1) // CELLS_PER_LINE
    page = Image.new("RGB", (CELLS_PER_LINE * cell_w + PAD, lines * cell_h + PAD), _WHITE)
    draw, font = ImageDraw.Draw(page), ImageFont.load_default()
    for i, (row, (left, right)) in enumerate(zip(rows, tiles, strict=True)):
        x, y = PAD + (i % CELLS_PER_LINE) * cell_w, PAD + (i // CELLS_PER_LINE) * cell_h
        page.paste(left, (x, y))
        page.paste(right, (x + THUMB, y))
        draw.text((x, y + THUMB + 3), f"row {row['row']}  {row['status']}", fill=_INK, font=font)
    return page


def write_contact_sheets(state: BatchState, rows: list[ReportRow]) -> list[str]:
    """Write the pages under the batch's report prefix; their URIs (first :data:`MAX_SHEET_ROWS` rows)."""
    shown = rows[:MAX_SHEET_ROWS]
    with ThreadPoolExecutor(max_workers=16) as pool:
        tiles = list(pool.map(row_tiles, shown))
    uris = []
    for start in range(0, len(shown), ROWS_PER_PAGE):
        page = compose_page(shown[start : start + ROWS_PER_PAGE], tiles[start : start + ROWS_PER_PAGE])
        key = state["report_prefix"] + page_name(start // ROWS_PER_PAGE + 1)
        storage.put_bytes(state["bucket"], key, imaging.encode_jpeg(page, quality=85), "image/jpeg")
        uris.append(s3_uri(state["bucket"], key))
    return uris
