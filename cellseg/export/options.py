"""The options of ``python -m cellseg.export``, parsed and checked before any work."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path

from cellseg.errors import CellsegError
from cellseg.export.network import MULTIPLE

NAME_CHARS = set(string.ascii_letters + string.digits + "_+- ()")
DEFAULTS = {
    "ckpt": None, "output": None, "sample": None, "crop": "256", "name": None, "authors": "cellseg user",
    "description": None, "tags": "", "license": "MIT", "overwrite": "false", "test": "true",
}  # fmt: skip
REQUIRED = ("ckpt", "output", "sample")
USAGE = "python -m cellseg.export ckpt=PATH output=PATH.zip sample=IMAGE [crop=256 name=... authors=...]"


@dataclass
class Options:
    ckpt: Path
    output: Path
    sample: Path
    crop: int = 256
    name: str | None = None
    authors: list[str] = field(default_factory=lambda: ["cellseg user"])
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    license: str = "MIT"
    overwrite: bool = False
    test: bool = True


def _bool(key: str, value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise CellsegError(f"{key}={value}: use true or false")


def parse(argv: list[str]) -> Options:
    """The options of ``python -m cellseg.export``, or one line saying which one is wrong."""
    values = dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in DEFAULTS:
            raise CellsegError(f"{arg}: unknown option; use key=value with one of {', '.join(DEFAULTS)}")
        values[key] = value
    for key in REQUIRED:
        if not values[key]:
            raise CellsegError(f"{key}= is missing; usage: {USAGE}")
    try:
        crop = int(values["crop"])
    except ValueError:
        raise CellsegError(f"crop={values['crop']}: give a whole number of pixels, a multiple of {MULTIPLE}") from None
    if crop < MULTIPLE or crop % MULTIPLE:
        raise CellsegError(f"crop={crop}: use a multiple of {MULTIPLE} (e.g. 256)")
    name = values["name"]
    if name is not None and (not 5 <= len(name) <= 64 or set(name) - NAME_CHARS or not name.strip()):
        raise CellsegError(f"name={name!r}: use 5 to 64 letters, digits, spaces and _+-() (bioimage.io's rule)")
    authors = [a.strip() for a in values["authors"].split(";") if a.strip()]
    if not authors or any("/" in a for a in authors):
        raise CellsegError(
            f"authors={values['authors']}: give names separated by ';' (no '/'), e.g. authors=\"Jane Doe;John Roe\""
        )
    description = values["description"]
    if description is not None and not 1 <= len(description) <= 512:
        raise CellsegError(f"description=: {len(description)} characters; give 1 to 512")
    options = Options(
        ckpt=Path(values["ckpt"]).expanduser(),
        output=Path(values["output"]).expanduser(),
        sample=Path(values["sample"]).expanduser(),
        crop=crop,
        name=name,
        authors=authors,
        description=description,
        tags=[t.strip() for t in values["tags"].split(",") if t.strip()],
        license=values["license"],
        overwrite=_bool("overwrite", values["overwrite"]),
        test=_bool("test", values["test"]),
    )
    if not options.ckpt.is_file():
        raise CellsegError(f"ckpt={options.ckpt}: checkpoint not found; pass ckpt=PATH to a .ckpt from a training run")
    return options
