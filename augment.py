"""Differentiable augmentation of every image D sees (Zhao et al. 2020, "DiffAugment").

A discriminator trained long enough on the same 60,000 images starts to remember them,
and its verdicts then stop teaching G about clothes in general. Showing D every image,
real and generated alike, randomly shifted or with a square erased makes remembering
harder. Because the augmentations are made of differentiable operations, G's gradient
flows back through them, and since real and generated images are transformed the same
way, G is not pushed to produce shifted or erased images: D never sees an unaugmented one.

    translation   shift by up to TRANSLATION_FRACTION of the side (4 pixels at 28), the
                  uncovered border filled with the background's -1
    cutout        set a square of CUTOUT_FRACTION of the side (14 pixels) at a random
                  place to 0

The randomness is stateless, drawn from the step's seed: a resumed run augments exactly
as an uninterrupted one.
"""

import tensorflow as tf

AUGMENTATIONS = ("translation", "cutout")
TRANSLATION_FRACTION = 0.125  # DiffAugment's 1/8 of the image side
CUTOUT_FRACTION = 0.5  # DiffAugment's half of the image side
BACKGROUND = -1.0  # Fashion-MNIST's black background, scaled to [-1, 1]


def parse(augmentations):
    """Returns the augmentation names as a tuple, from text ("translation,cutout" or
    "none") or a sequence of names (empty for none).

    Raises:
        ValueError: an unknown name, or one named twice.
    """
    if isinstance(augmentations, str):
        names = [name.strip() for name in augmentations.split(",") if name.strip()]
        if names == ["none"]:
            return ()
    else:
        names = list(augmentations)
        if not names:
            return ()
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown or not names:
        raise ValueError(f"unknown augmentation {', '.join(map(str, unknown)) or repr(augmentations)}: choose from "
                         f"{', '.join(AUGMENTATIONS)}, comma-separated, or none")
    if len(set(names)) != len(names):
        raise ValueError(f"an augmentation is named twice in {augmentations!r}")
    return tuple(names)


def augment(images, augmentations, seed):
    """Returns `images` (batch, height, width, channels) with `augmentations` applied, each
    image drawn its own shift and square; `images` itself when there are none.

    Args:
        augmentations: names from AUGMENTATIONS, applied in that order.
        seed: an int64 tensor of shape [2], the stateless seed of this call.
    """
    for index, name in enumerate(augmentations):
        call_seed = tf.random.experimental.stateless_fold_in(seed, index)
        if name == "translation":
            images = _translate(images, call_seed)
        elif name == "cutout":
            images = _cut_out(images, call_seed)
        else:
            raise ValueError(f"unknown augmentation {name!r}")
    return images


def _translate(images, seed):
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    shift = int(height * TRANSLATION_FRACTION + 0.5)
    padded = tf.pad(images, [[0, 0], [shift, shift], [shift, shift], [0, 0]], constant_values=BACKGROUND)
    # Each image's window into the padded one starts at a random offset in [0, 2 * shift].
    offsets = tf.random.stateless_uniform([batch, 2], seed, minval=0, maxval=2 * shift + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None, :]
    columns = offsets[:, 1:] + tf.range(width)[None, :]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, columns, axis=2, batch_dims=1)


def _cut_out(images, seed):
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    size = int(height * CUTOUT_FRACTION + 0.5)
    # The square's centre is anywhere in the image; the square may stick out of it.
    centres = tf.random.stateless_uniform([batch, 2], seed, minval=0, maxval=height, dtype=tf.int32)
    top = centres[:, :1] - size // 2
    left = centres[:, 1:] - size // 2
    row_inside = (tf.range(height)[None, :] >= top) & (tf.range(height)[None, :] < top + size)
    column_inside = (tf.range(width)[None, :] >= left) & (tf.range(width)[None, :] < left + size)
    erased = row_inside[:, :, None] & column_inside[:, None, :]
    return images * tf.cast(~erased, images.dtype)[..., None]
