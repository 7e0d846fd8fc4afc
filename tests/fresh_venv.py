"""A fresh virtualenv without leadscore, whose third-party packages come from the test environment.

The packages are reached through a ``.pth`` path entry (standing in for ``pip install -r
requirements.txt``, which needs an index): a plain path, so the test environment's editable
leadscore finder is not loaded and ``import leadscore`` fails until something installs it.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def fresh_venv(where: Path) -> tuple[Path, str]:
    """Create the virtualenv at ``where``; return its Python interpreter and its site-packages."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "test-environment-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python, site
