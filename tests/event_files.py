"""Reads TensorBoard event files back, for the tests of train.py's and fit.py's logs."""

import collections
import glob
import os

import tensorflow as tf


def read_summaries(log_dir):
    """Reads every event file under `log_dir`, in the order TensorBoard reads them.

    Returns:
        (scalars, images): dicts from tag to a list of (step, value), in the order
        written; a scalar's value is a float, an image's the PNG bytes.
    """
    scalars, images = collections.defaultdict(list), collections.defaultdict(list)
    paths = sorted(glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True))
    assert paths, f"no event files under {log_dir}"
    for path in paths:
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                if tensor.dtype == object:
                    # An image summary holds strings: width, height and the encoded pictures.
                    # (Its plugin name may be written with the first value of a tag only.)
                    images[value.tag].append((event.step, tensor[2]))
                elif tensor.ndim == 0:
                    scalars[value.tag].append((event.step, float(tensor)))
    return dict(scalars), dict(images)


def steps(entries):
    """Returns the steps of a tag's (step, value) entries, in the order written."""
    return [step for step, _ in entries]
