"""Write under a temporary name, rename when complete: a crash never leaves a partial output
under a final name, and never destroys what was there before the write began."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temp_name(final: Path) -> Path:
    """The hidden name an output is written under before it is complete."""
    return final.parent / f".{final.name}.tmp"


@contextmanager
def committed(final: Path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``final`` if the block succeeds, else remove it."""
    tmp = temp_name(final)
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        raise
    commit(tmp, final)


def commit(tmp: Path, final: Path) -> None:
    """Move a finished temporary file or folder to its final name (replacing an older one)."""
    if tmp.is_dir() and final.is_dir():
        shutil.rmtree(final)
    os.replace(tmp, final)


def remove(path: Path) -> None:
    """Delete a temporary file or folder if it exists."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_with(final: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` and commit the result to ``final``."""
    with committed(final) as tmp:
        write(tmp)


def write_json(final: Path, data: Any) -> None:
    """``json.dumps(data)`` to ``final``, committed by rename."""
    write_with(final, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))
