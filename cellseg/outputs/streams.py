"""Writers that take one frame at a time and do their encoding in a background thread.

``TiffStream`` appends pages to one TIFF series (so Fiji, napari and tifffile read a
(T, Y, X) stack) without holding the movie: tifffile pulls the pages from a bounded queue.
``FileQueue`` writes small per-frame files (overlay PNGs, CTC masks) behind the network.
zlib level 1 keeps label and probability pages small at a fraction of level 6's cost.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
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
        self.thread = threading.Thread(target=self._write, args=(full,), daemon=True)
        self.thread.start()

    def _pages(self):
        while (page := self.pages.get()) is not _DONE:
            yield page
        self.drained = True

    def _write(self, shape: tuple[int, ...]) -> None:
        try:
            with tifffile.TiffWriter(self.tmp) as tif:
                tif.write(self._pages(), shape=shape, dtype=self.dtype, photometric="minisblack", **COMPRESSION)
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
