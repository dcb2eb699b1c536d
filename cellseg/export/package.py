"""The package written under a temporary name, tested with bioimageio.core and renamed."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from cellseg.errors import CellsegError
from cellseg.export.description import check_license, describe
from cellseg.export.network import load_model
from cellseg.export.options import Options
from cellseg.export.sample import read_frame
from cellseg.export.weights import quiet


def _temporary(final: Path) -> Path:
    """A hidden name beside ``final`` that keeps its suffix (bioimageio recognizes a zip by it)."""
    return final.parent / f".{final.stem}.tmp{final.suffix}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_bioimageio(work: Path) -> None:
    """Refuse early where bioimageio.spec cannot write a package: 0.5.12 (the release
    bioimageio.core 0.11 requires) hands its serialization info to pydantic's wrap handler
    where pydantic-core 2.50 (pydantic 2.14) takes an index, so no weights entry serializes."""
    import pydantic
    from bioimageio.spec import __version__ as spec_version
    from bioimageio.spec.model import v0_5

    probe = work / "probe.txt"
    probe.write_text("probe")
    try:
        v0_5.TorchscriptWeightsDescr(source=probe, pytorch_version=v0_5.Version("2.0")).model_dump(mode="json")
    except Exception as err:
        raise CellsegError(
            f"bioimageio.spec {spec_version} cannot write packages with pydantic {pydantic.VERSION} "
            f"({str(err).splitlines()[0][:80]}...); install pydantic<2.14: pip install 'pydantic>=2.10.3,<2.14'"
        ) from None
    finally:
        probe.unlink()


def failures(summary: Any) -> list[str]:
    """``name: first error`` of every failed detail of a bioimageio ValidationSummary."""
    lines = []
    for detail in summary.details:
        if detail.status == "failed":
            message = detail.errors[0].msg if detail.errors else ""
            lines.append(f"{detail.name}: {message.splitlines()[0] if message else 'failed'}")
    return lines


def model_test(package: Path) -> Any:
    """bioimageio.core's model test of a package (zip or folder) with every weight format in it:
    the test output reproduced from the test input, and inference at 32, 64 and 96 px with
    batches of 1 and 2. Returns the ValidationSummary; a failure is a CellsegError."""
    from bioimageio.core import test_model

    with quiet():
        summary = test_model(package / "rdf.yaml" if package.is_dir() else package)
    if summary.status != "passed":
        problems = failures(summary) or [f"status {summary.status}"]
        raise CellsegError(f"{package}: bioimageio.core's model test failed ({problems[0]})")
    return summary


def is_package(path: Path) -> bool:
    """Whether ``path`` is a bioimage.io package (a folder or zip with ``rdf.yaml``/``bioimageio.yaml``)."""
    names = {"rdf.yaml", "bioimageio.yaml"}
    if path.is_dir():
        return any((path / name).is_file() for name in names)
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(names & set(archive.namelist()))
    except (OSError, zipfile.BadZipFile):
        return False


def check_replaceable(output: Path, options: Options) -> None:
    """``overwrite=true`` replaces an earlier package, never another folder or file, nor one that
    holds the working folder, the checkpoint or the sample."""
    where = output.resolve()
    held = [("the working folder", Path.cwd()), ("ckpt=", options.ckpt), ("sample=", options.sample)]
    for what, path in held:
        if path.resolve().is_relative_to(where):
            raise CellsegError(f"output={output}: holds {what}; overwrite=true would delete it, choose another output=")
    if not is_package(output):
        raise CellsegError(
            f"output={output}: exists and is not a bioimage.io package (no rdf.yaml); overwrite=true replaces "
            "only an earlier package: choose another output= or remove it yourself"
        )


def export(options: Options) -> Path:
    """Write the package for ``options`` under a temporary name, test it, rename it; return the name."""
    output = options.output
    if (output.exists() or output.is_symlink()) and not options.overwrite:
        raise CellsegError(f"output={output}: already exists; choose another output= or pass overwrite=true")
    if output.exists():
        check_replaceable(output, options)
    output = output.resolve() if output.exists() else output  # output=. names its folder, not ''

    image = read_frame(options.sample)
    check_license(options.license)
    checkpoint, model = load_model(options.ckpt)
    from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder

    tmp = _temporary(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
        with tempfile.TemporaryDirectory(prefix="cellseg_export_") as work:
            check_bioimageio(Path(work))
            descr = describe(options, checkpoint, model, image, Path(work))
            with quiet():
                if output.suffix.lower() == ".zip":  # stored: float weights barely compress, and deflating takes long
                    save_bioimageio_package(descr, output_path=tmp, compression=zipfile.ZIP_STORED)
                else:
                    save_bioimageio_package_as_folder(descr, output_path=tmp)
        if options.test:
            model_test(tmp)
        if output.exists() or output.is_symlink():
            _remove(output)
        os.replace(tmp, output)
    except OSError as err:
        _remove(tmp)
        raise CellsegError(f"output={output}: cannot write the package ({err})") from err
    except BaseException:
        _remove(tmp)
        raise
    return output
