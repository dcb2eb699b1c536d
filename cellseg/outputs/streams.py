"""Writers that take one frame at a time, so that nothing of a movie is held in memory.

``TiffStream`` appends pages to one TIFF series (so Fiji, napari and tifffile read a
(T, Y, X) stack) without holding the movie: tifffile pulls the pages from a bounded queue.
``FileQueue`` writes small per-frame files (overlay PNGs, CTC masks) behind the network.
``CsvStream`` appends each frame's table rows to the CSV as they come.
zlib level 1 keeps label and probability pages small at a fraction of level 6's cost.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from cellseg.outputs.atomic import commit, remove, temp_name

_DONE = object()
COMPRESSION = {"compression": "zlib", "compressionargs": {"level": 1}}


class TiffStream:
    """One TIFF series of ``n_frames`` pages of ``shape`` and ``dtype``, written as pages come."""

    def __init__(self, final: Path, n_frames: int, shape: tuple[int, int], dtype: np.dtype, ahead: int = 4):
        self.final, self.tmp = final, temp_name(final)
        self.dtype = np.dtype(dtype)
        self.pages: queue.Queue = queue.Queue(maxsize=ahead)
        self.error: BaseException | None = None
        self.drained = False  # the writer has taken the end marker
        full = (n_frames, *shape) if n_frames > 1 else tuple(shape)
        self.axes = "TYX" if n_frames > 1 else "YX"  # in the file: tifffile and napari read a time series
        self.thread = threading.Thread(target=self._write, args=(full,), daemon=True)
        self.thread.start()

    def _pages(self):
        while (page := self.pages.get()) is not _DONE:
            yield page
        self.drained = True

    def _write(self, shape: tuple[int, ...]) -> None:
        try:
            with tifffile.TiffWriter(self.tmp) as tif:
                tif.write(
                    self._pages(),
                    shape=shape,
                    dtype=self.dtype,
                    photometric="minisblack",
                    metadata={"axes": self.axes},
                    **COMPRESSION,
                )
        except BaseException as err:  # re-raised in the caller's thread by close()
            self.error = err
            while not self.drained and self.pages.get() is not _DONE:  # unblock the producer
                pass

    def add(self, page: np.ndarray) -> None:
        """Queue the next page (blocks while ``ahead`` pages wait to be encoded)."""
        if self.error is None:
            self.pages.put(np.ascontiguousarray(page, dtype=self.dtype))

    def close(self, keep: bool = True) -> None:
        """Finish the file; commit it under its final name if ``keep``, else delete it."""
        self.pages.put(_DONE)
        self.thread.join()
        if self.error is not None or not keep:
            remove(self.tmp)
            if self.error is not None and keep:
                raise self.error
            return
        commit(self.tmp, self.final)


class FileQueue:
    """Run small writes in one background thread; ``wait`` re-raises the first failure."""

    def __init__(self, ahead: int = 8):
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: list[Future] = []
        self.ahead = ahead

    def submit(self, write: Callable[..., None], *args) -> None:
        """Queue ``write(*args)``; waits for the oldest write when ``ahead`` are pending."""
        self.pending = [f for f in self.pending if not f.done() or f.exception() is not None]
        if len(self.pending) >= self.ahead:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(write, *args))

    def wait(self) -> None:
        """Block until every queued write is done."""
        for future in self.pending:
            future.result()
        self.pending = []

    def shutdown(self) -> None:
        """Finish queued writes and stop the thread (failures already reported by ``wait``)."""
        self.pool.shutdown(wait=True)


# how measurements.csv is read back: image names such as "NA", "None" or "nan" are names,
# where pandas would read them as missing; only empty fields are missing values
NAMES_AS_TEXT = {"dtype": {"image": str}, "keep_default_na": False, "na_values": [""]}
# file names that are not valid UTF-8 (an old Latin-1 share) pass through as their bytes
ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}


def read_measurements(path: Path) -> pd.DataFrame:
    """A ``measurements.csv``, image names as text."""
    with open(path, newline="", **ENCODING) as file:
        return pd.read_csv(file, **NAMES_AS_TEXT)


class CsvStream:
    """A CSV table written a few rows at a time under a temporary name, committed by rename.

    Rows are not kept: a movie's per-frame tables, held until its end, were only a few MB, but
    as thousands of small blocks among the frames' large ones they fragmented glibc's heap,
    which then grew with the movie's length (0.25 GB in use, 2.4 GB free after 300 frames
    with one malloc arena). What a source wrote can be read back (``read_from``) or dropped
    (``truncate``) by the offset ``tell`` gave before it began.
    """

    def __init__(self, final: Path, columns: list[str]):
        self.final, self.tmp = final, temp_name(final)
        self.columns = list(columns)
        self.file = open(self.tmp, "w", newline="", **ENCODING)  # noqa: SIM115 (closed by commit or discard)
        pd.DataFrame(columns=self.columns).to_csv(self.file, index=False)

    def tell(self) -> int:
        """The byte offset where the next rows will start."""
        self.file.flush()
        return self.file.tell()

    def add(self, rows: pd.DataFrame) -> None:
        """Append ``rows`` (columns as given at creation)."""
        rows[self.columns].to_csv(self.file, header=False, index=False)

    def read_from(self, offset: int) -> pd.DataFrame:
        """Every row written since ``offset``, as a table (``image`` read as text)."""
        if self.tell() == offset:
            return pd.DataFrame(columns=self.columns)
        with open(self.tmp, newline="", **ENCODING) as file:
            file.seek(offset)
            return pd.read_csv(file, header=None, names=self.columns, **NAMES_AS_TEXT)

    def truncate(self, offset: int) -> None:
        """Drop every row written since ``offset``."""
        self.file.flush()
        self.file.truncate(offset)
        self.file.seek(offset)

    def commit(self) -> None:
        """Close the file and give it its final name."""
        self.file.close()
        commit(self.tmp, self.final)

    def discard(self) -> None:
        """Close and delete the unfinished file."""
        self.file.close()
        remove(self.tmp)
