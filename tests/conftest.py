"""Shared test set-up: import the scripts from the repository root, and tiny data sets."""

import gzip
import os
import struct
import sys
import tempfile

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The scripts are flat modules at the repository root; make them importable.
sys.path.insert(0, REPO_ROOT)
# Quiet TensorFlow's C++ logging in the tests and in the processes they start.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Remember measured precisions in a directory of the test session's own, never in the
# user's cache (the processes the tests start inherit it).
os.environ["DCGAN_CACHE_DIR"] = tempfile.mkdtemp(prefix="dcgan-test-cache-")

import data  # noqa: E402

TINY_TRAIN_IMAGES = 300
TINY_TEST_IMAGES = 100


def write_idx(path, array, magic=None):
    """Writes a uint8 array as a gzip-compressed IDX file, as the Fashion-MNIST files are."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x00000800 | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.tobytes())


def _tiny_split(split, count):
    # Real Fashion-MNIST images when the Debian package is installed (CI installs it),
    # otherwise random pixels: the tests check mechanics, not image quality.
    if os.path.isdir(data.SYSTEM_DATA_DIR):
        images, labels = data.load_fashion_mnist(split, data.SYSTEM_DATA_DIR)
        return images[:count], labels[:count]
    generator = np.random.default_rng(0)
    return (generator.integers(0, 256, (count, 28, 28), dtype=np.uint8),
            generator.integers(0, 10, count, dtype=np.uint8))


def write_fashion_mnist(directory, train_count=TINY_TRAIN_IMAGES, test_count=TINY_TEST_IMAGES):
    """Writes the four Fashion-MNIST files with few images into `directory`; returns it."""
    os.makedirs(directory, exist_ok=True)
    for split, count in (("train", train_count), ("test", test_count)):
        images, labels = _tiny_split(split, count)
        images_name, labels_name = data.FILE_NAMES[split]
        write_idx(os.path.join(directory, images_name), images)
        write_idx(os.path.join(directory, labels_name), labels)
    return str(directory)


@pytest.fixture
def tiny_data_dir(tmp_path):
    """A directory holding the four Fashion-MNIST files with a few hundred images."""
    return write_fashion_mnist(tmp_path / "fashion-mnist")
