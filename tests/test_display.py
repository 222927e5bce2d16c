"""display.py: it leaves matplotlib's global state alone, plots the history, and names a
corrupt grid file instead of passing PIL's error through."""

import os
import subprocess
import sys
import textwrap

import imageio.v3 as iio
import numpy as np
import pytest

import display
import storage
from conftest import REPO_ROOT

ROWS = [
    {"epoch": "0", "d_loss": "1.30", "g_loss": "0.80", "d_real": "0.60", "d_fake": "0.40", "fid": ""},
    {"epoch": "1", "d_loss": "1.20", "g_loss": "0.90", "d_real": "0.55", "d_fake": "0.45", "fid": "80.5"},
    {"epoch": "2", "d_loss": "1.25", "g_loss": "0.85", "d_real": "0.52", "d_fake": "0.47", "fid": ""},
]


def test_import_and_plot_keep_the_backend_and_never_load_pyplot(tmp_path):
    # A new process: this one may already have pyplot loaded by another test or plugin.
    # Only display is imported, as a notebook does with `from display import display_image`.
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {REPO_ROOT!r})
        import matplotlib
        matplotlib.use("svg")
        settings = matplotlib.rcParams.copy()
        import display
        assert "matplotlib.pyplot" not in sys.modules, "importing display loaded pyplot"
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        display.plot_history({ROWS!r}, {str(tmp_path / "losses.png")!r})
        assert "matplotlib.pyplot" not in sys.modules, "plot_history loaded pyplot"
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        assert matplotlib.rcParams == settings, "display changed matplotlib's settings"
        print("ok")
    """)
    environment = dict(os.environ)
    environment.pop("MPLBACKEND", None)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=120, env=environment)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"


@pytest.mark.parametrize("with_fid", [True, False])
def test_plot_history_writes_a_png(tmp_path, with_fid):
    rows = ROWS if with_fid else [{key: value for key, value in row.items() if key != "fid"} for row in ROWS]
    path = str(tmp_path / storage.LOSS_PLOT)
    assert display.plot_history(rows, path) == path
    image = iio.imread(path)
    # 7 x 8 inches with the FID panel, 7 x 6 without, at 100 dots per inch.
    assert image.shape[:2] == ((800, 700) if with_fid else (600, 700))
    assert image.dtype == np.uint8 and image.min() < image.max()
    # The write is atomic: no temporary file is left beside the plot.
    assert os.listdir(tmp_path) == [storage.LOSS_PLOT]


@pytest.mark.parametrize("content", ["text", "truncated"])
def test_display_image_of_a_corrupt_grid_names_the_file(tmp_path, content):
    path = str(tmp_path / storage.GRID_PATTERN.format(epoch=3))
    if content == "text":
        with open(path, "w") as file:
            file.write("not a picture\n")
    else:
        display.save_image_grid(np.zeros((64, 28, 28, 1), dtype=np.float32), path)
        with open(path, "rb") as file:
            head = file.read()[:200]
        with open(path, "wb") as file:
            file.write(head)
    assert display.saved_epochs(str(tmp_path)) == [3]
    with pytest.raises(ValueError) as raised:
        display.display_image(3, out_dir=str(tmp_path))
    assert path in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1
    with pytest.raises(ValueError, match="not a readable PNG"):
        display.display_image(out_dir=str(tmp_path))


def test_display_image_of_a_good_grid(tmp_path):
    images = np.linspace(-1, 1, 64 * 28 * 28, dtype=np.float32).reshape(64, 28, 28, 1)
    display.save_image_grid(images, str(tmp_path / storage.GRID_PATTERN.format(epoch=0)))
    np.testing.assert_array_equal(np.asarray(display.display_image(0, out_dir=str(tmp_path))),
                                  display.images_to_grid(images))
