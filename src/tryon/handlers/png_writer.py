"""Fast lossless PNGs for endpoint outputs, with what several images share compressed once.

Pillow's PNG encoder tries five filters on every row and runs zlib on one thread: about
0.9 s for one 12 MP photo on this project's CPU. The endpoints' outputs are written here
instead (docs/endpoint-outputs.md#encoding has the measurements):

- every row is **Up**-filtered (the difference to the row above, one numpy subtraction), and
  a row whose upper neighbour may differ between the images that share it is **Sub**-filtered
  (the difference to the pixel on its left), so its bytes depend on nothing outside it;
- the filtered rows are compressed by zlib with the **run-length strategy** (``Z_RLE``): on
  filtered photo rows it is 1.5-3x faster than level 1's string matching for a few percent
  more bytes;
- the image is cut into **fragments**, each compressed on its own into a byte-aligned piece of
  one zlib stream (a sync flush ends every piece; an empty final block and the combined
  Adler-32 end the stream), so fragments compress in parallel threads (zlib and numpy release
  the GIL) and a fragment several images share is compressed **once**: the inpainting
  endpoint's images differ from the photo only inside the crop window, so the rows above and
  below it, and in its rows the bytes left and right of it, are the photo's own
  (:class:`WindowEncoder`).

Every file is a standard 8-bit PNG (one IDAT chunk per fragment) that any decoder reads.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type per Pillow mode, and bytes per pixel.
COLOR_TYPES: dict[str, tuple[int, int]] = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}
#: PNG row filter types (the byte before every row).
FILTER_SUB, FILTER_UP = 1, 2
#: zlib settings of every fragment: level 1 with the run-length strategy (see the module doc).
ZLIB_LEVEL, ZLIB_STRATEGY, ZLIB_MEM_LEVEL = 1, zlib.Z_RLE, 9
#: Raw (filtered) bytes per fragment: enough for zlib to find its statistics, small enough that
#: a 12 MP image splits into several pieces for the threads.
FRAGMENT_BYTES = 4 * 1024 * 1024
#: zlib stream header (deflate, 32 KiB window, "fastest" level hint) and an empty final block.
_ZLIB_HEADER = b"\x78\x01"
_FINAL_EMPTY_BLOCK = b"\x03\x00"
_ADLER_BASE = 65521


@dataclass(frozen=True)
class Fragment:
    """A byte-aligned, non-final piece of a raw deflate stream and what it decompresses to."""

    deflated: bytes
    adler32: int  #: Adler-32 of the filtered bytes it holds
    length: int  #: how many filtered bytes it holds


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """Adler-32 of A + B from the checksums of A and B and B's length (zlib's ``adler32_combine``)."""
    rem = second_length % _ADLER_BASE
    sum1 = first & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 += (second & 0xFFFF) + _ADLER_BASE - 1
    sum2 += ((first >> 16) & 0xFFFF) + ((second >> 16) & 0xFFFF) + _ADLER_BASE - rem
    sum1 %= _ADLER_BASE
    sum2 %= _ADLER_BASE
    return sum1 | (sum2 << 16)


def array_of(image: Image.Image | np.ndarray) -> tuple[np.ndarray, str]:
    """(uint8 array, Pillow mode) of an L, RGB or RGBA image or array (other image modes become RGB[A])."""
    if isinstance(image, Image.Image):
        if image.mode not in COLOR_TYPES:
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        return np.asarray(image), image.mode
    array = np.asarray(image, dtype=np.uint8)
    channels = 1 if array.ndim == 2 else array.shape[-1] if array.ndim == 3 else 0
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise ValueError(f"cannot write an array of shape {array.shape} as PNG")
    return array, mode


def pixels_of(image: Image.Image | np.ndarray) -> tuple[np.ndarray, str]:
    """(height x row-bytes uint8 array, Pillow mode) of an image (see :func:`array_of`)."""
    array, mode = array_of(image)
    return array.reshape(array.shape[0], -1), mode


def filter_rows(rows: np.ndarray, above: np.ndarray | None, bpp: int) -> np.ndarray:
    """PNG scanlines of ``rows`` (n x row-bytes): Up-filtered, the first row against ``above``.

    With ``above`` None the first row is Sub-filtered instead: its bytes then depend on that
    row alone, whatever precedes it in the image.
    """
    count, width = rows.shape
    out = np.empty((count, width + 1), dtype=np.uint8)
    out[:, 0] = FILTER_UP
    if count > 1:
        np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
    if above is None:
        out[0, 0] = FILTER_SUB
        out[0, 1 : 1 + bpp] = rows[0, :bpp]
        np.subtract(rows[0, bpp:], rows[0, :-bpp], out=out[0, 1 + bpp :])
    else:
        np.subtract(rows[0], above, out=out[0, 1:])
    return out


def _deflate(data: memoryview) -> Fragment:
    """One fragment of filtered bytes: compressed on its own, ending on a byte boundary (sync flush)."""
    compressor = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, -15, ZLIB_MEM_LEVEL, ZLIB_STRATEGY)
    deflated = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return Fragment(deflated, zlib.adler32(data), len(data))


def deflate_rows(rows: np.ndarray, above: np.ndarray | None, bpp: int) -> Fragment:
    """Filter and compress rows into one fragment (see :func:`filter_rows` for ``above``)."""
    return _deflate(memoryview(filter_rows(rows, above, bpp)).cast("B"))


def row_spans(start: int, stop: int, row_bytes: int) -> list[tuple[int, int]]:
    """Rows [start, stop) cut into spans of about FRAGMENT_BYTES each."""
    per_span = max(1, FRAGMENT_BYTES // max(1, row_bytes))
    return [(a, min(a + per_span, stop)) for a in range(start, stop, per_span)]


def _chunk(kind: bytes, data: bytes | memoryview) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)))


def assemble(width: int, height: int, mode: str, fragments: Sequence[Fragment]) -> bytes:
    """A whole PNG file from the fragments of its filtered rows, in order."""
    color_type = COLOR_TYPES[mode][0]
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    checksum = 1
    for fragment in fragments:
        checksum = adler32_combine(checksum, fragment.adler32, fragment.length)
    parts = [PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", _ZLIB_HEADER)]
    parts += [_chunk(b"IDAT", fragment.deflated) for fragment in fragments]
    parts += [_chunk(b"IDAT", _FINAL_EMPTY_BLOCK + struct.pack(">I", checksum)), _chunk(b"IEND", b"")]
    return b"".join(parts)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def compression_pool() -> ThreadPoolExecutor:
    """The process's compression threads, one per core this worker may use (made on first use).

    Its tasks are leaves (filter and compress rows): none waits for another, so requests of
    every endpoint in the process share it without deadlock, and they share the cores with it.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            from tryon.handlers.threads import available_cores

            _pool = ThreadPoolExecutor(max_workers=max(2, available_cores()), thread_name_prefix="tryon-png")
        return _pool


class PendingPNG:
    """A PNG whose fragments are being compressed: :meth:`result` waits for them and writes the file.

    ``futures`` are the compression tasks (cancelled by :meth:`cancel`); ``fragments`` returns
    their results in stream order, waiting for them.
    """

    def __init__(
        self,
        width: int,
        height: int,
        mode: str,
        futures: Sequence[Future[Any]],
        fragments: Callable[[], Sequence[Fragment]] | None = None,
    ) -> None:
        self.width, self.height, self.mode = width, height, mode
        self._futures = list(futures)
        self._fragments = fragments or (lambda: [f.result() for f in self._futures])
        self._data: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def result(self) -> bytes:
        """The PNG file's bytes (the first call waits for the compression threads)."""
        if self._data is None:
            self._data = assemble(self.width, self.height, self.mode, self._fragments())
        return self._data

    def cancel(self) -> None:
        """Drop the compression not started yet (nobody will read the result)."""
        for future in self._futures:
            future.cancel()


def start_png(image: Image.Image | np.ndarray, executor: Executor | None = None) -> PendingPNG:
    """Start compressing one image in ``executor`` (default :func:`compression_pool`)."""
    rows, mode = pixels_of(image)
    bpp = COLOR_TYPES[mode][1]
    height, row_bytes = rows.shape
    pool = executor or compression_pool()

    def piece(a: int, b: int) -> Fragment:
        return deflate_rows(rows[a:b], rows[a - 1] if a else None, bpp)

    futures = [pool.submit(piece, a, b) for a, b in row_spans(0, height, row_bytes)]
    return PendingPNG(row_bytes // bpp, height, mode, futures)


def encode_png(image: Image.Image | np.ndarray, executor: Executor | None = None) -> bytes:
    """PNG bytes of one L, RGB or RGBA image, its fragments compressed in parallel."""
    return start_png(image, executor).result()


class WindowEncoder:
    """PNGs of images that equal one ``base`` image outside a window ``box`` (left, top, right, bottom).

    Everything the images share starts compressing, once, as soon as the encoder is made (the
    inpainting handler makes it before inference, so that work overlaps the model's): the rows
    above and below the window, and in the window's rows the columns left and right of it.
    :meth:`start` then compresses only an image's window. Every row of the window's band is
    Up-filtered, so a row's bytes outside the window are the base's in every image; the row
    below the band is Sub-filtered, so the rows below do not depend on any image's window.
    In the stream the band is pieces: (right part of the row above, filter byte, left part),
    the row's window, and so on; each piece a fragment of its own.
    """

    def __init__(
        self,
        base: Image.Image | np.ndarray,
        box: tuple[int, int, int, int],
        executor: Executor | None = None,
    ) -> None:
        self.pixels, self.mode = array_of(base)  #: the base as an array (height x width[ x channels])
        self.rows = self.pixels.reshape(self.pixels.shape[0], -1)
        self.bpp = COLOR_TYPES[self.mode][1]
        self.height, self.row_bytes = self.rows.shape
        left, top, right, bottom = box
        if not (0 <= left < right <= self.row_bytes // self.bpp and 0 <= top < bottom <= self.height):
            raise ValueError(
                f"box {box} is not a window of a {self.row_bytes // self.bpp}x{self.height} image"
            )
        self.box = box
        self.columns = (left * self.bpp, right * self.bpp)  #: the window's byte columns in a row
        self.executor = executor or compression_pool()
        self._above = [
            self.executor.submit(self._base_rows, a, b) for a, b in row_spans(0, top, self.row_bytes)
        ]
        self._below = [
            self.executor.submit(self._base_rows, a, b)
            for a, b in row_spans(bottom, self.height, self.row_bytes)
        ]
        self._sides = [self.executor.submit(self._side_pieces, a, b) for a, b in self._band_spans()]

    def _above_row(self, row: int) -> np.ndarray:
        """The row above ``row`` for the Up filter (zeros above the first row, as PNG defines)."""
        return self.rows[row - 1] if row else np.zeros(self.row_bytes, dtype=np.uint8)

    def _band_spans(self) -> list[tuple[int, int]]:
        _left, top, right, bottom = self.box
        return row_spans(top, bottom, (right - _left) * self.bpp)

    def _base_rows(self, a: int, b: int) -> Fragment:
        """Base rows above the window (Up-filtered, the first Sub) or below it (the first Sub)."""
        above = None if a in (0, self.box[3]) else self.rows[a - 1]
        return deflate_rows(self.rows[a:b], above, self.bpp)

    def _side_pieces(self, a: int, b: int) -> list[Fragment]:
        """The shared pieces of band rows [a, b): for each row, the right part of the row above
        (none for the band's first row), the filter byte and the left part; after the band's last
        row, its right part."""
        left, right = self.columns
        top, bottom = self.box[1], self.box[3]
        first = max(a - 1, top)
        scanlines = filter_rows(self.rows[first:b], self._above_row(first), self.bpp)
        flat = memoryview(scanlines).cast("B")
        stride = self.row_bytes + 1
        pieces = []
        for row in range(a, b):
            i = row - first
            start = (i - 1) * stride + 1 + right if row > top else i * stride
            pieces.append(_deflate(flat[start : i * stride + 1 + left]))
        if b == bottom:
            i = b - 1 - first
            pieces.append(_deflate(flat[i * stride + 1 + right : (i + 1) * stride]))
        return pieces

    def _window_pieces(self, window: np.ndarray, a: int, b: int) -> list[Fragment]:
        """One image's window in band rows [a, b), Up-filtered, one piece per row."""
        top = self.box[1]
        left, right = self.columns
        above = window[a - top - 1] if a > top else self._above_row(top)[left:right]
        scanlines = filter_rows(window[a - top : b - top], above, self.bpp)
        return [_deflate(memoryview(line[1:])) for line in scanlines]

    def start(self, window: np.ndarray | Image.Image) -> PendingPNG:
        """Start the PNG of the image whose window holds ``window`` (box-sized) and the base elsewhere."""
        left, top, right, bottom = self.box
        array, mode = pixels_of(window)
        if mode != self.mode or array.shape != (bottom - top, (right - left) * self.bpp):
            raise ValueError(
                f"window {mode} {array.shape} does not fit box {self.box} of a {self.mode} image"
            )
        own = [self.executor.submit(self._window_pieces, array, a, b) for a, b in self._band_spans()]

        def fragments() -> list[Fragment]:
            out = [f.result() for f in self._above]
            for sides, windows in zip(self._sides, own, strict=True):
                shared, mine = sides.result(), windows.result()
                for piece, row in zip(shared, mine, strict=False):
                    out += (piece, row)
                out += shared[len(mine) :]  # the band's last right part
            return out + [f.result() for f in self._below]

        width = self.row_bytes // self.bpp
        return PendingPNG(
            width, self.height, self.mode, [*self._above, *self._sides, *own, *self._below], fragments
        )

    def encode(self, window: np.ndarray | Image.Image) -> bytes:
        """:meth:`start`, waited for: the PNG's bytes."""
        return self.start(window).result()

    def cancel(self) -> None:
        """Drop the shared work not started yet (a request that fails before its images exist)."""
        for future in (*self._above, *self._sides, *self._below):
            future.cancel()
