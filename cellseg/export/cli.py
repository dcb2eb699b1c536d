"""The command: options in, package out, one line said."""

from __future__ import annotations

from cellseg.export.options import parse
from cellseg.export.package import export
from cellseg.utils.subnormals import flush_subnormals_to_zero


def main(argv: list[str]) -> None:
    options = parse(argv)
    flush_subnormals_to_zero()  # for the package's model test, as train.py and predict.py do
    output = export(options)
    tested = "; it passes bioimageio.core's model test (torchscript and onnx)" if options.test else ""
    print(f"bioimage.io model package in {output}{tested}")
