"""regswitch refuses a compiled build whose sources changed (regswitch/__init__.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from regswitch import refuse_stale_build


def _built_package(root: Path) -> Path:
    package = root / "pkg"
    (package / "sub").mkdir(parents=True)
    source = package / "sub" / "mod.py"
    source.write_text("x = 1\n")
    (package / "sub" / "mod.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    (package / ".compiled").write_text(f"{digest}  pkg/sub/mod.py\n")
    return package


def test_plain_python_and_a_fresh_build_import(tmp_path: Path) -> None:
    refuse_stale_build(tmp_path)  # no extension at all
    package = _built_package(tmp_path)
    refuse_stale_build(package)
    (package / "sub" / "mod.py").touch()  # a newer time alone is no change
    refuse_stale_build(package)


def test_an_edited_source_is_refused(tmp_path: Path) -> None:
    package = _built_package(tmp_path)
    (package / "sub" / "mod.py").write_text("x = 2\n")
    with pytest.raises(ImportError, match=r"mod\.py changed after it was compiled.*make build"):
        refuse_stale_build(package)


def test_a_deleted_source_or_a_missing_list_is_refused(tmp_path: Path) -> None:
    package = _built_package(tmp_path)
    (package / "sub" / "mod.py").unlink()
    with pytest.raises(ImportError, match="changed after it was compiled"):
        refuse_stale_build(package)
    (package / ".compiled").unlink()
    with pytest.raises(ImportError, match="without their build list"):
        refuse_stale_build(package)
