"""The quickstart notebook runs, the documentation site builds, and the code on its pages runs.

The notebook is executed with nbclient in a kernel that runs *this* interpreter (a kernel spec
written to a temporary directory), so the test works in a fresh virtual environment with only
``pip install -e .[test]``, whatever kernels are installed elsewhere.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_quickstart.ipynb"
DOCS = ROOT / "docs"
N_EVENTS_TEST = 2000
KERNEL_NAME = "diffgen-test-python"


def _parametrise(source: str) -> str:
    """Replace the ``N_EVENTS = ...`` assignment of the parameters cell."""
    new, count = re.subn(r"^N_EVENTS\s*=\s*[\d_]+\s*$", f"N_EVENTS = {N_EVENTS_TEST}", source, flags=re.M)
    assert count == 1, f"the first code cell must assign N_EVENTS once, got:\n{source}"
    return new


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code_cells), \
        "store the notebook without outputs"
    code_cells[0].source = _parametrise(code_cells[0].source)

    # Keep the kernel's files out of the user's home, and run it with this interpreter.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    write_kernel_spec(kernels / KERNEL_NAME)
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))

    client = nbclient.NotebookClient(nb, km=km, kernel_name=KERNEL_NAME, timeout=300,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    nbformat.write(nb, tmp_path / "executed.ipynb")  # kept for inspection when debugging

    outputs = [o for c in code_cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "sigma = " in text and "dsigma/dm_Z" in text and "largest |linear / rerun - 1|" in text
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) == 2, "the histogram and the linearisation figures"


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(site)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (site / "index.html").is_file()
    assert (site / "physics" / "ee_ffbar" / "index.html").is_file()


# Pages whose Python examples are meant to run top to bottom in one session.
_PAGES = ["quickstart.md", "design.md", "gradients.md", "physics/ee_ffbar.md"]


@pytest.mark.parametrize("page", _PAGES)
def test_documentation_code_runs(page, tmp_path):
    """Run the ```python blocks of a page in order, in one fresh interpreter, with fewer events."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    code = "\n".join(blocks).replace("N = 100_000", "N = 4_000")
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"), MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path, env=env)
    assert out.returncode == 0, f"{page}:\n{out.stderr[-4000:]}"
