"""The import layering of the package, checked on its source (arrows only point down).

kernels, clock, protocol, ring, source and status import no receiver and no consumer; the
receiver imports no consumer; only ``kernels`` and ``_poller`` import the compiled ``_core``;
consumers (live view, snapshots, archive) reach a stream through ``source``, never
``receiver``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sunspec

PACKAGE = Path(sunspec.__file__).parent

FOUNDATION = ["kernels", "_poller", "clock", "protocol", "ring", "source", "status", "memory",
              "_log", "_worker", "encodings", "curve"]
CONSUMERS = ["web", "snapshot", "archive", "detect"]
ABOVE_RECEIVER = [*CONSUMERS, "cli", "replay", "relay", "readers", "sim", "__main__"]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts) if parts else ""


def imports_of(path: Path) -> set[str]:
    """Top-level sunspec modules (first component) that ``path`` imports, at any depth."""
    name = module_name(path)
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    package = [p for p in package if p]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
                if target:
                    found.add(target[0])
                else:  # "from . import x" at the top package
                    found.update(a.name.split(".")[0] for a in node.names)
                if node.module is None and base:
                    found.add(base[0])
            elif node.module and node.module.split(".")[0] == "sunspec":
                rest = node.module.split(".")[1:]
                found.update([rest[0]] if rest else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "sunspec" and len(parts) > 1:
                    found.add(parts[1])
    found.discard(name.split(".")[0] if name else "")
    return found


def sources(top: str) -> list[Path]:
    single = PACKAGE / f"{top}.py"
    return [single] if single.exists() else sorted((PACKAGE / top).rglob("*.py"))


def test_the_checker_sees_relative_and_absolute_imports(tmp_path):
    probe = PACKAGE / "web" / "server.py"
    assert {"ring", "source"} <= imports_of(probe)
    assert "kernels" in imports_of(PACKAGE / "receiver.py")
    assert "_core" in imports_of(PACKAGE / "kernels.py")


@pytest.mark.parametrize("top", FOUNDATION)
def test_foundation_imports_no_receiver_and_no_consumer(top):
    for path in sources(top):
        bad = imports_of(path) & {"receiver", "sender", *ABOVE_RECEIVER}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_receiver_imports_no_consumer():
    bad = imports_of(PACKAGE / "receiver.py") & set(ABOVE_RECEIVER)
    assert not bad, sorted(bad)


def test_only_the_kernel_wrappers_import_the_compiled_core():
    users = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if "_core" in imports_of(p))
    assert users == ["_poller", "kernels"]


@pytest.mark.parametrize("top", CONSUMERS)
def test_consumers_take_the_source_interface_not_the_receiver(top):
    for path in sources(top):
        assert "receiver" not in imports_of(path), path


@pytest.mark.parametrize("top", ["relay", "readers", "sender"])
def test_the_relay_readers_and_sender_import_no_receiver_and_no_consumer(top):
    allowed = {"archive"} if top == "readers" else set()  # readers read the archive's files
    for path in sources(top):
        bad = imports_of(path) & ({"receiver", *CONSUMERS, "cli"} - allowed)
        assert not bad, f"{path.name} imports {sorted(bad)}"
