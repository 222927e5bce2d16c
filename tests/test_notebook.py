"""dcgan.ipynb: stored without outputs, and it runs to the end in a real Jupyter kernel, on
tiny data in a temporary directory, showing its pictures inline."""

import os

import pytest

import generate
import storage
from conftest import REPO_ROOT

# Test-only packages (requirements-dev.txt); without them these tests say why they skip.
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = os.path.join(REPO_ROOT, "dcgan.ipynb")


def _code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert _code_cells(notebook)
    for cell in _code_cells(notebook):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_notebook_runs_to_the_end_and_shows_images_inline(tiny_data_dir, tmp_path, monkeypatch):
    out_dir = tmp_path / "training_output"
    # The kernel is a new process: it inherits these, and finds the project's modules.
    monkeypatch.setenv("DCGAN_EPOCHS", "1")
    monkeypatch.setenv("DCGAN_MAX_IMAGES", "300")
    monkeypatch.setenv("DCGAN_OUT_DIR", str(out_dir))
    monkeypatch.setenv("DCGAN_EVALUATION_SAMPLES", "200")
    monkeypatch.setenv("FASHION_MNIST_DIR", tiny_data_dir)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, if one fails

    code_cells = _code_cells(notebook)
    assert all(cell.execution_count for cell in code_cells)  # every cell ran, the last one too
    outputs = [output for cell in code_cells for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    cells_with_png = [cell for cell in code_cells
                      if any("image/png" in output.get("data", {}) for output in cell.outputs)]
    # Real images, the untrained G's, the last epoch's grid, the loss plot, a generated
    # grid and the latent walk's strip.
    assert len(cells_with_png) == 6, [cell.source[:60] for cell in cells_with_png]
    assert any("image/gif" in output.get("data", {}) for output in outputs)  # the progress GIF
    text = "".join(output.get("text", "") for output in outputs)
    assert "FID (classifier features)" in text
    for name in (storage.GENERATOR_FILE, storage.PROGRESS_GIF, storage.LOSS_PLOT, "image_at_epoch_0000.png",
                 os.path.join("generated", generate.GRID_FILE), os.path.join("generated", generate.WALK_STRIP)):
        assert os.path.getsize(out_dir / name) > 0, name
