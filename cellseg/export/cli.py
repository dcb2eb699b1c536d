"""The command: options in, package out, one line said."""

from __future__ import annotations

from cellseg.export.options import parse
from cellseg.export.package import export


def main(argv: list[str]) -> None:
    options = parse(argv)
    output = export(options)
    tested = "; it passes bioimageio.core's model test (torchscript and onnx)" if options.test else ""
    print(f"bioimage.io model package in {output}{tested}")
