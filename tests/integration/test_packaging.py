"""What sam build ships carries its bytecode: Lambda mounts the code read-only, so Python cannot cache it there."""

from __future__ import annotations

import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.coldstart import python312, runtime_bytecode, uncompiled
from bench.lambda_env import ROOT, TEMPLATE

MAKEFILE = ROOT / "packaging" / "Makefile"
THIS_PYTHON = (importlib.util.MAGIC_NUMBER, sys.implementation.cache_tag)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _built_resources() -> dict[str, dict[str, object]]:
    resources = yaml.load(TEMPLATE.read_text(), Loader=_Loader)["Resources"]  # noqa: S506 - a SafeLoader
    kinds = ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion")
    return {name: resource for name, resource in resources.items() if resource["Type"] in kinds}


def test_every_function_and_layer_is_built_by_the_packaging_makefile() -> None:
    # Given the functions and layers of the template
    resources = _built_resources()
    assert "CommonLayer" in resources
    assert len(resources) == 7
    for name, resource in resources.items():
        # Then sam builds each with packaging/Makefile, which compiles what it ships
        metadata = resource.get("Metadata") or {}
        assert metadata.get("BuildMethod") == "makefile", name
        assert metadata.get("ContextPath") == "packaging", name


def test_uncompiled_finds_modules_whose_bytecode_depends_on_mtimes_or_is_missing(tmp_path: Path) -> None:
    # Given one module compiled unchecked-hash, one by timestamp, one not at all
    for name in ("hashed", "stamped", "bare"):
        (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    unchecked = py_compile.PycInvalidationMode.UNCHECKED_HASH
    py_compile.compile(str(tmp_path / "hashed.py"), doraise=True, invalidation_mode=unchecked)
    timestamp = py_compile.PycInvalidationMode.TIMESTAMP
    py_compile.compile(str(tmp_path / "stamped.py"), doraise=True, invalidation_mode=timestamp)
    # When we look for modules without bytecode the runtime loads as is
    missing = uncompiled(tmp_path, *THIS_PYTHON)
    # Then the stamped and the bare module are found, the hashed one is not
    assert sorted(p.name for p in missing) == ["bare.py", "stamped.py"]
    # And bytecode of another interpreter does not count
    assert len(uncompiled(tmp_path, b"\x00\x00\r\n", sys.implementation.cache_tag)) == 3


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_function_recipe_ships_the_code_with_its_runtime_bytecode(tmp_path: Path) -> None:
    try:
        python = python312()
    except RuntimeError:
        pytest.skip("python3.12 (the Lambda runtime's version, which sam build needs) is not installed")
    # Given a function's code as sam copies it to scratch, with a stale cache from a developer's run
    scratch, artifacts = tmp_path / "scratch", tmp_path / "artifacts"
    shutil.copytree(ROOT / "functions" / "on_contact", scratch, ignore=shutil.ignore_patterns("__pycache__"))
    (scratch / "__pycache__").mkdir()
    (scratch / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"stale")
    artifacts.mkdir()
    # When sam's make step runs the function's target
    subprocess.run(  # noqa: S603
        ["make", "--makefile", str(MAKEFILE), "build-ContactWebhookFunction", f"PYTHON={python}"],  # noqa: S607
        cwd=scratch,
        env={**os.environ, "ARTIFACTS_DIR": str(artifacts)},
        check=True,
        capture_output=True,
    )
    # Then the artifact holds the code and python3.12's unchecked-hash bytecode for it, and nothing stale
    assert (artifacts / "app.py").read_bytes() == (ROOT / "functions" / "on_contact" / "app.py").read_bytes()
    assert uncompiled(artifacts, *runtime_bytecode()) == []
    assert [p.name for p in (artifacts / "__pycache__").iterdir()] == ["app.cpython-312.pyc"]
