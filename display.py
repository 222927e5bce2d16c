"""Pictures of training: the per-epoch grids, the progress GIF and the loss curves.

In a notebook, after `train(train_dataset, EPOCHS)`:

    from display import display_image
    display_image(EPOCHS - 1)   # the grid saved after the last epoch (epochs count from 0)
    display_image()             # the newest grid, whatever its epoch
"""

import glob
import os
import re

import imageio.v3 as iio
# The object-oriented API only: a Figure of its own draws to a file without pyplot, so
# importing this module leaves a notebook's plotting backend and settings as they were.
import matplotlib.figure
import matplotlib.ticker
import numpy as np
import PIL.Image

import storage

OUT_DIR = storage.OUT_DIR
GRID_COLUMNS = 8  # 8x8 = 64 samples: enough to see variety (or its absence) at a glance
GRID_PADDING = 2  # pixels of background between samples
GRID_SCALE = 2  # nearest-neighbour upscaling, so 28-pixel samples are visible on a screen
GIF_FRAME_SECONDS = 0.2  # per epoch frame; the last frame stays longer
GIF_LAST_FRAME_SECONDS = 2.0


def to_pixels(images):
    """Maps images in [-1, 1], the range of the generator's tanh, to uint8 pixels in [0, 255].

    Returns:
        A uint8 array of the same shape; values outside [-1, 1] are clipped.
    """
    return np.clip((np.asarray(images, dtype=np.float32) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)


def images_to_grid(images, columns=GRID_COLUMNS, scale=GRID_SCALE):
    """Tiles images in [-1, 1] into one uint8 picture.

    Args:
        images: array of shape (count, 28, 28, 1) or (count, 28, 28) with values in [-1, 1].
        columns: images per row.
        scale: nearest-neighbour upscaling of the whole picture.

    Returns:
        A uint8 array (height, width) with white padding between the samples.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        images = images[..., 0]
    count, height, width = images.shape
    rows = -(-count // columns)
    pixels = to_pixels(images)
    grid = np.full((rows * (height + GRID_PADDING) + GRID_PADDING,
                    columns * (width + GRID_PADDING) + GRID_PADDING), 255, dtype=np.uint8)
    for index, image in enumerate(pixels):
        top = GRID_PADDING + (index // columns) * (height + GRID_PADDING)
        left = GRID_PADDING + (index % columns) * (width + GRID_PADDING)
        grid[top:top + height, left:left + width] = image
    return np.kron(grid, np.ones((scale, scale), dtype=np.uint8))


def save_picture(picture, path):
    """Saves a uint8 picture (height, width), such as `images_to_grid` makes, as a PNG,
    atomically; returns the path.

    Raises:
        StorageError: the file could not be written.
    """
    with storage.atomic_path(path) as temporary_path:
        iio.imwrite(temporary_path, picture)
    return path


def save_image_grid(images, path):
    """Saves images in [-1, 1] as one PNG grid, atomically; returns the path."""
    return save_picture(images_to_grid(images), path)


def saved_epochs(out_dir=OUT_DIR):
    """Returns the sorted epoch numbers that have a saved grid in `out_dir`."""
    epochs = []
    for path in glob.glob(os.path.join(out_dir, storage.GRID_GLOB)):
        match = re.fullmatch(r"image_at_epoch_(\d+)\.png", os.path.basename(path))
        if match:
            epochs.append(int(match.group(1)))
    return sorted(epochs)


def display_image(epoch=None, out_dir=OUT_DIR):
    """Returns the grid saved after `epoch` as a PIL image, which a notebook displays.

    Args:
        epoch: epoch number, counted from 0, so the last of EPOCHS epochs is EPOCHS - 1;
            None for the newest grid.
        out_dir: the training output directory.

    Raises:
        FileNotFoundError: no grid has been saved in `out_dir`.
        ValueError: there is no grid for that epoch (the message lists the saved epochs),
            or its file is not a readable PNG (the message names the file).
    """
    epochs = saved_epochs(out_dir)
    if not epochs:
        raise FileNotFoundError(f"no epoch grids in {os.path.abspath(out_dir)}; has training run there?")
    if epoch is None:
        epoch = epochs[-1]
    if epoch not in epochs:
        raise ValueError(f"no grid for epoch {epoch} in {out_dir}; saved epochs: {_describe_epochs(epochs)}")
    path = os.path.join(out_dir, storage.GRID_PATTERN.format(epoch=epoch))
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        # The file went away after it was listed: it is missing, not corrupt.
        raise
    except (OSError, SyntaxError) as error:
        # PIL raises UnidentifiedImageError (an OSError) for a file that is not an image,
        # OSError for a truncated one and SyntaxError for a PNG with broken chunks.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} is not a readable PNG (truncated or corrupt?): {reason}") from None


def _describe_epochs(epochs):
    # Epochs are contiguous in a normal run: "0-19" reads better than twenty numbers.
    if epochs == list(range(epochs[0], epochs[-1] + 1)) and len(epochs) > 2:
        return f"{epochs[0]}-{epochs[-1]}"
    return ", ".join(str(epoch) for epoch in epochs)


def make_gif(out_dir=OUT_DIR, gif_path=None):
    """Builds the progress GIF from every saved epoch grid, in epoch order.

    Returns:
        The path of the GIF.

    Raises:
        FileNotFoundError: no grid has been saved in `out_dir`.
    """
    epochs = saved_epochs(out_dir)
    if not epochs:
        raise FileNotFoundError(f"no epoch grids in {out_dir} to build a GIF from")
    frames = np.stack([iio.imread(os.path.join(out_dir, storage.GRID_PATTERN.format(epoch=epoch)))
                       for epoch in epochs])
    return write_gif(frames, gif_path or os.path.join(out_dir, storage.PROGRESS_GIF),
                     GIF_FRAME_SECONDS, GIF_LAST_FRAME_SECONDS)


def write_gif(frames, path, frame_seconds=GIF_FRAME_SECONDS, last_frame_seconds=None):
    """Writes uint8 pictures (count, height, width) as a GIF that repeats forever, atomically.

    Args:
        frame_seconds: how long each frame shows.
        last_frame_seconds: how long the last one shows; None for as long as the others.

    Returns:
        `path`.

    Raises:
        StorageError: the file could not be written.
    """
    durations = [int(frame_seconds * 1000)] * len(frames)
    if last_frame_seconds is not None:
        durations[-1] = int(last_frame_seconds * 1000)
    with storage.atomic_path(path) as temporary_path:
        # imageio's pillow plugin takes GIF frame durations in milliseconds; loop=0 repeats forever.
        # Pillow wants a single number, not a list, for a one-frame GIF.
        iio.imwrite(temporary_path, np.asarray(frames), extension=".gif",
                    duration=durations if len(frames) > 1 else durations[0], loop=0)
    return path


def plot_history(rows, path):
    """Plots the per-epoch metrics (rows of metrics.csv) to a PNG; returns the path.

    Top: both losses. Middle: D's mean output on real and on generated images, which
    show who is winning more directly than the losses. Bottom, when any epoch was
    evaluated: FID (lower is better).
    """
    epochs = [int(row["epoch"]) for row in rows]

    def column(name):
        return [float(row[name]) if row.get(name) not in (None, "") else np.nan for row in rows]

    has_fid = any(row.get("fid") not in (None, "") for row in rows)
    # A Figure made directly, not through pyplot, belongs to no backend and no list of open
    # figures: savefig renders it to the file, and it is freed like any other object.
    figure = matplotlib.figure.Figure(figsize=(7, 8 if has_fid else 6))
    axes = figure.subplots(3 if has_fid else 2, 1, sharex=True)
    axes[0].plot(epochs, column("d_loss"), marker=".", label="discriminator")
    axes[0].plot(epochs, column("g_loss"), marker=".", label="generator")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[1].plot(epochs, column("d_real"), marker=".", label="D(x), real images")
    axes[1].plot(epochs, column("d_fake"), marker=".", label="D(G(z)), generated images")
    axes[1].set_ylabel("mean D output")
    axes[1].set_ylim(0, 1)
    axes[1].legend()
    if has_fid:
        fid = np.array(column("fid"))
        evaluated = ~np.isnan(fid)
        axes[2].plot(np.array(epochs)[evaluated], fid[evaluated], marker="o", color="tab:green")
        axes[2].set_ylabel("FID (lower is better)")
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    with storage.atomic_path(path) as temporary_path:
        figure.savefig(temporary_path, dpi=100)
    return path
