"""``sbrun.data`` declares problems and their ground truth; it never imports
``sbrun.metrics`` (the pipeline attaches scorers, :mod:`sbrun.metrics.truth`)."""

import ast
from pathlib import Path

import sbrun.data

DATA = Path(sbrun.data.__file__).parent


def metrics_imports(source: str, package: str = "sbrun.data") -> list[str]:
    """Every import of ``sbrun.metrics`` in ``source`` (module level or inside functions,
    absolute or relative to ``package``), as ``'line: module'``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found += [f"{node.lineno}: {n}" for n in names
                  if n == "sbrun.metrics" or n.startswith("sbrun.metrics.")]
    return found


def test_the_detector_sees_every_form():
    """Absolute, inside a function, relative (``..metrics``, ``.. import metrics``)."""
    for bad in ("import sbrun.metrics.oracle",
                "def f():\n    from sbrun.metrics.oracle import GaussianOracle",
                "from ..metrics import oracle", "from ..metrics.restoration import psnr",
                "from .. import metrics", "from sbrun import metrics"):
        assert len(metrics_imports(bad)) >= 1, bad
    for fine in ("from sbrun.data.truth import GaussianPair", "from . import truth",
                 "from ..errors import ConfigError", "import sbrun.metricsx"):
        assert metrics_imports(fine) == [], fine


def test_data_never_imports_metrics():
    files = sorted(DATA.rglob("*.py"))
    assert len(files) >= 10 and DATA / "problems.py" in files
    bad = {}
    for f in files:
        rel = f.relative_to(DATA).with_suffix("")
        package = ".".join(["sbrun", "data", *rel.parts[:-1]])  # also for __init__.py
        hits = metrics_imports(f.read_text(), package)
        if hits:
            bad[str(f.relative_to(DATA))] = hits
    assert bad == {}, f"sbrun.data imports sbrun.metrics: {bad}"
