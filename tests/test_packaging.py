"""The wheel ``pip wheel .`` builds from this checkout: every module of the package, the
requirements of requirements.txt as its dependencies, nothing imported left out."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import cellseg

ROOT = Path(__file__).resolve().parents[1]
DEV_TOOLS = {"pytest", "ruff", "pytest-qt"}  # the `dev` extra; the other lines of requirements.txt are runtime


def checkout_files() -> list[str]:
    """What git sees in the working tree: tracked and new files, not the ignored ones."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Iterator[zipfile.ZipFile]:
    """The wheel built from a copy of the checkout (the build's own folders stay out of it)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check"]
    subprocess.run([*pip, "-q", "-w", str(out), str(source)], check=True, capture_output=True)
    (built,) = out.glob("cellseg-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def metadata(wheel: zipfile.ZipFile) -> Message:
    """The wheel's METADATA."""
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(name).decode())


def requirement_lines() -> list[Requirement]:
    """The requirements of requirements.txt, comments dropped."""
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def test_wheel_holds_every_module_and_nothing_else(wheel):
    names = set(wheel.namelist())
    modules = {name for name in checkout_files() if name.startswith("cellseg/") and name.endswith(".py")}
    assert modules and not modules - names, f"missing from the wheel: {sorted(modules - names)}"
    assert {name.split("/")[0] for name in names} == {"cellseg", f"cellseg-{cellseg.__version__}.dist-info"}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_metadata_lists_requirements_txt(wheel):
    meta = metadata(wheel)
    assert meta["Version"] == cellseg.__version__
    runtime, dev = {}, {}
    for requirement in map(Requirement, meta.get_all("Requires-Dist")):
        target = runtime if requirement.marker is None else dev
        assert requirement.marker is None or requirement.marker.evaluate({"extra": "dev"}), str(requirement)
        target[canonicalize_name(requirement.name)] = requirement.specifier
    expected = {canonicalize_name(r.name): r.specifier for r in requirement_lines()}
    assert runtime == {name: spec for name, spec in expected.items() if name not in DEV_TOOLS}
    assert dev == {name: spec for name, spec in expected.items() if name in DEV_TOOLS}


def test_every_third_party_import_is_a_runtime_dependency(wheel):
    runtime = {
        canonicalize_name(r.name) for r in map(Requirement, metadata(wheel).get_all("Requires-Dist")) if not r.marker
    }
    imported = set()
    for path in (ROOT / "cellseg").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    distributions = importlib.metadata.packages_distributions()
    third_party = sorted(imported - set(sys.stdlib_module_names) - {"cellseg", "__future__"})
    assert "numpy" in third_party
    missing = [m for m in third_party if not {canonicalize_name(d) for d in distributions.get(m, [])} & runtime]
    assert not missing, f"imported by cellseg but not a dependency in pyproject.toml: {missing}"


def test_installed_wheel_is_importable_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    wheel.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import cellseg.outputs.rois as m; print(m.__file__)"
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_relative_to(site)


def test_napari_manifest_is_in_the_wheel_and_its_entry_point(wheel):
    names = set(wheel.namelist())
    assert "cellseg/napari/napari.yaml" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    lines = wheel.read(entry_points).decode().splitlines()
    assert lines[lines.index("[napari.manifest]") + 1] == "cellseg = cellseg.napari:napari.yaml"
