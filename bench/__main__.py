"""``python -m bench``: list the benchmarks (each is ``python -m bench.<name>``)."""

from __future__ import annotations

import pkgutil
from pathlib import Path

if __name__ == "__main__":
    names = sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
    )
    print("Benchmarks (run each with `.venv/bin/python -m bench.<name> --help`):")
    for name in names:
        print(f"  bench.{name}")
