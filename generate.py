"""New images from a trained generator: single PNGs, a grid, an array file, a latent walk.

    python generate.py                       # 64 PNGs from the shipped pretrained generator
    python generate.py training_output/generator.keras --num-images 64 --grid
    python generate.py --num-images 10000 --npz --out-dir samples   # images.npz, for other tools
    python generate.py --interpolate 8       # a walk through 8 random points: a GIF and a strip

Without a GENERATOR it uses pretrained/generator.keras, the generator of the default
training run (pretrained/README.md says how it was made). The same generator and --seed
give the same pictures: the noise is that of evaluate.py, so `--num-images 10000 --seed 0`
are the very images that `evaluate.py GENERATOR --seed 0` measures.

From Python:

    import evaluate, generate
    generator = generate.load_generator()    # or load_generator("training_output/generator.keras")
    images = evaluate.generate_images(generator, 16, seed=0)   # float32 in [-1, 1]
    generate.save_grid(generator, 64, "samples")                # samples/grid.png
    frames = generate.latent_walk(generator, num_points=4)     # float32 in [-1, 1]
"""

import os

# Hide TensorFlow's C++ start-up chatter when run as a script; real errors still show.
if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

import cli  # noqa: E402
import display  # noqa: E402
import evaluate  # noqa: E402
import storage  # noqa: E402

PRETRAINED_NAME = os.path.join("pretrained", "generator.keras")  # in the project, beside this file
PRETRAINED_GENERATOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), PRETRAINED_NAME)
OUT_DIR = "generated"
NUM_IMAGES = 64  # one 8x8 grid
MAX_NUM_IMAGES = 1_000_000  # catches typos; only one batch is in memory (but all of an .npz)
MAX_GRID_IMAGES = 10_000  # a 100x100 grid is 6,000 pixels wide; more are better as files
INTERPOLATION_STEPS = 16  # frames from one point of a walk to the next
MAX_INTERPOLATION_POINTS = 1_000
MAX_INTERPOLATION_STEPS = 1_000
WALK_FRAME_SECONDS = 0.1
WALK_SCALE = 4  # the GIF shows one image: 128 pixels wide instead of 28

IMAGE_PATTERN = "image_{index:06d}.png"  # six digits: up to MAX_NUM_IMAGES
GRID_FILE = "grid.png"
NPZ_FILE = "images.npz"
WALK_GIF = "interpolation.gif"
WALK_STRIP = "interpolation.png"


def load_generator(path=None):
    """Loads a generator saved by this project (any precision, trained on any device).

    Args:
        path: a `.keras` file; None for the shipped pretrained generator.

    Returns:
        The `keras.Model`.

    Raises:
        FileNotFoundError: there is no file at `path` (for the pretrained generator, the
            message says how to make it).
        ValueError: the file is not a Keras model, or the model is not a generator of
            28x28x1 images (a discriminator, say).
    """
    if path is None:
        if not os.path.exists(PRETRAINED_GENERATOR):
            raise FileNotFoundError(
                f"the pretrained generator {PRETRAINED_NAME} is not in this copy of the project: make it with "
                "`python train.py --seed 0 --out-dir pretrained_run` and copy pretrained_run/generator.keras to "
                f"{PRETRAINED_NAME} (pretrained/README.md), or name a generator: python generate.py "
                "training_output/generator.keras")
        path = PRETRAINED_GENERATOR
    return evaluate.load_generator(path)


def _check_count(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number between {low} and {high}, got {value!r}")


def save_images(generator, num_images, out_dir=OUT_DIR, seed=0, batch_size=evaluate.BATCH_SIZE):
    """Writes `num_images` images as single 28x28 grayscale PNGs, image_000000.png on.

    One batch is generated and written at a time, so any number of images fits in memory.

    Returns:
        The list of the paths written.

    Raises:
        ValueError: a bad count, an `out_dir` that is a file or cannot be written, or a
            model that is not a generator; nothing is written then.
        StorageError: a file could not be written (the disk is full, say).
    """
    _check_count("num_images", num_images, 1, MAX_NUM_IMAGES)
    batches = evaluate.generate_batches(generator, num_images, seed, batch_size)
    out_dir = storage.prepare_out_dir(out_dir)
    paths = []
    for batch in batches:
        for pixels in display.to_pixels(batch[..., 0]):
            paths.append(display.save_picture(pixels, os.path.join(out_dir, IMAGE_PATTERN.format(index=len(paths)))))
    return paths


def save_grid(generator, num_images=NUM_IMAGES, out_dir=OUT_DIR, seed=0, batch_size=evaluate.BATCH_SIZE):
    """Writes `num_images` images as one square-ish grid, grid.png, as the epoch grids look.

    Returns:
        The path of the grid.

    Raises:
        ValueError: a count outside 1..MAX_GRID_IMAGES, a bad `out_dir` or a model that is
            not a generator; nothing is written then.
        StorageError: the file could not be written.
    """
    _check_count("num_images of a grid", num_images, 1, MAX_GRID_IMAGES)
    images = evaluate.generate_images(generator, num_images, seed, batch_size)
    out_dir = storage.prepare_out_dir(out_dir)
    return display.save_picture(display.images_to_grid(images, columns=math.ceil(math.sqrt(num_images))),
                                os.path.join(out_dir, GRID_FILE))


def save_npz(generator, num_images, out_dir=OUT_DIR, seed=0, batch_size=evaluate.BATCH_SIZE):
    """Writes `num_images` images to images.npz, for other tools.

    The file holds "images", uint8 pixels of shape (num_images, 28, 28) as in the
    Fashion-MNIST files (0 is black; the generator's [-1, 1] maps to [0, 255]), and "seed".
    Read it with `numpy.load(path)["images"]`.

    Returns:
        The path of the file.

    Raises:
        ValueError: a bad count, a bad `out_dir` or a model that is not a generator;
            nothing is written then.
        StorageError: the file could not be written.
    """
    _check_count("num_images", num_images, 1, MAX_NUM_IMAGES)
    batches = evaluate.generate_batches(generator, num_images, seed, batch_size)
    out_dir = storage.prepare_out_dir(out_dir)
    # Filled batch by batch: a quarter of the memory of the float32 images.
    pixels = np.empty((num_images, 28, 28), dtype=np.uint8)
    start = 0
    for batch in batches:
        pixels[start:start + len(batch)] = display.to_pixels(batch[..., 0])
        start += len(batch)
    path = os.path.join(out_dir, NPZ_FILE)
    with storage.atomic_path(path) as temporary_path:
        np.savez_compressed(temporary_path, images=pixels, seed=np.int64(seed))
    return path


def slerp(start, end, fractions):
    """Spherical interpolation between two noise vectors (Shoemake 1985; White 2016 for GANs).

    A straight line between two Gaussian vectors passes close to the origin, where the
    generator never saw noise during training (such vectors have a norm near
    sqrt(latent_dim)); the arc keeps the norm, and so the images, typical all the way.

    Args:
        start, end: vectors of shape (latent_dim,).
        fractions: numbers in [0, 1]: 0 gives `start`, 1 gives `end`.

    Returns:
        A float32 array of shape (len(fractions), latent_dim).
    """
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    fractions = np.asarray(fractions, dtype=np.float64)[:, np.newaxis]
    cosine = np.dot(start, end) / (np.linalg.norm(start) * np.linalg.norm(end))
    angle = np.arccos(np.clip(cosine, -1.0, 1.0))
    if np.sin(angle) < 1e-6:
        # (Nearly) parallel vectors: the arc is a line, and the formula below divides by 0.
        return ((1.0 - fractions) * start + fractions * end).astype(np.float32)
    return ((np.sin((1.0 - fractions) * angle) * start + np.sin(fractions * angle) * end)
            / np.sin(angle)).astype(np.float32)


def latent_walk(generator, num_points, steps=INTERPOLATION_STEPS, seed=0, batch_size=evaluate.BATCH_SIZE):
    """Walks through `num_points` random noise vectors and back to the first, on arcs.

    The points are the first `num_points` noise vectors of `evaluate.generate_images`
    with the same seed, so the walk passes through those images.

    Returns:
        A float32 array of num_points * steps images (..., 28, 28, 1) in [-1, 1]: `steps`
        frames from each point towards the next, the last point leading back to the first,
        so that the frames loop without a jump.

    Raises:
        ValueError: num_points below 2, steps below 1, either too large, or a model that
            is not a generator.
    """
    _check_count("num_points", num_points, 2, MAX_INTERPOLATION_POINTS)
    _check_count("steps", steps, 1, MAX_INTERPOLATION_STEPS)
    latent_dim = evaluate.check_generator(generator)
    points = np.random.default_rng(seed).standard_normal((num_points, latent_dim), dtype=np.float32)
    fractions = np.arange(steps) / steps  # 0 to just before 1: the next segment starts at 1
    noise = np.concatenate([slerp(points[index], points[(index + 1) % num_points], fractions)
                            for index in range(num_points)])
    return evaluate.images_from_noise(generator, noise, batch_size)


def save_latent_walk(generator, num_points, out_dir=OUT_DIR, steps=INTERPOLATION_STEPS, seed=0,
                     batch_size=evaluate.BATCH_SIZE):
    """Writes a latent walk (see `latent_walk`) as interpolation.gif, one image per frame,
    and interpolation.png, the strip of all frames with one row from each point to the next.

    Returns:
        (gif_path, strip_path).

    Raises:
        ValueError: bad counts, a bad `out_dir` or a model that is not a generator;
            nothing is written then.
        StorageError: a file could not be written.
    """
    frames = latent_walk(generator, num_points, steps, seed, batch_size)
    out_dir = storage.prepare_out_dir(out_dir)
    gif_frames = [display.images_to_grid(frame[np.newaxis], columns=1, scale=WALK_SCALE) for frame in frames]
    gif_path = display.write_gif(gif_frames, os.path.join(out_dir, WALK_GIF), WALK_FRAME_SECONDS)
    strip_path = display.save_picture(display.images_to_grid(frames, columns=steps), os.path.join(out_dir, WALK_STRIP))
    return gif_path, strip_path


def make_argument_parser():
    """Returns the command-line parser; `--help` shows every default."""
    parser = cli.make_parser(
        "generate.py", "Generate images with a trained generator: PNGs, a grid, an .npz array file, or a "
                       "latent walk (GIF and strip).")
    parser.add_argument("generator", nargs="?", default=None,
                        help=f"the generator's .keras file (none: the shipped {PRETRAINED_NAME})")
    parser.add_argument("--num-images", type=cli.bounded_int(1, MAX_NUM_IMAGES), default=NUM_IMAGES,
                        help=f"images to generate (a --grid holds at most {MAX_GRID_IMAGES})")
    # A fixed default, as evaluate.py's: the same command gives the same pictures.
    cli.add_seed_argument(parser, default=0, help_text="seed of the noise; the same seed gives the same pictures")
    parser.add_argument("--out-dir", default=OUT_DIR, help="where the files go (created if needed)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--grid", action="store_true", help=f"write one grid, {GRID_FILE}, instead of single PNGs")
    what.add_argument("--npz", action="store_true",
                      help=f"write one {NPZ_FILE} (uint8 images, N x 28 x 28) instead of PNGs")
    what.add_argument("--interpolate", type=cli.bounded_int(2, MAX_INTERPOLATION_POINTS), default=None,
                      metavar="K", help=f"walk through K random points on arcs: {WALK_GIF} and {WALK_STRIP} "
                                        "(--num-images is not used)")
    parser.add_argument("--steps", type=cli.bounded_int(1, MAX_INTERPOLATION_STEPS), default=INTERPOLATION_STEPS,
                        help="frames from one point of --interpolate to the next")
    parser.add_argument("--batch-size", type=cli.bounded_int(1, evaluate.MAX_BATCH_SIZE),
                        default=evaluate.BATCH_SIZE, help="images per forward pass")
    return parser


def main(argv=None):
    """Generates what the command line asks for; returns the exit code.

    Bad arguments or files end with one line and exit code 2, before anything is written.
    """
    parser = make_argument_parser()
    args = parser.parse_args(argv)
    if args.grid and args.num_images > MAX_GRID_IMAGES:
        parser.error(f"--grid holds at most {MAX_GRID_IMAGES} images, got --num-images {args.num_images}; "
                     "use single PNGs or --npz for more")
    seed = cli.choose_seed(args.seed)
    try:
        generator = load_generator(args.generator)
        if args.interpolate:
            paths = save_latent_walk(generator, args.interpolate, args.out_dir, args.steps, seed, args.batch_size)
            print(f"Wrote a walk through {args.interpolate} points ({args.interpolate * args.steps} frames): "
                  f"{paths[0]} and {paths[1]}")
        elif args.grid:
            print(f"Wrote {save_grid(generator, args.num_images, args.out_dir, seed, args.batch_size)}")
        elif args.npz:
            path = save_npz(generator, args.num_images, args.out_dir, seed, args.batch_size)
            print(f"Wrote {args.num_images} images to {path}")
        else:
            paths = save_images(generator, args.num_images, args.out_dir, seed, args.batch_size)
            print(f"Wrote {len(paths)} images to {os.path.dirname(paths[0])}: "
                  f"{os.path.basename(paths[0])} to {os.path.basename(paths[-1])}")
    except (ValueError, FileNotFoundError, storage.StorageError) as error:
        return cli.report("generate.py", error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
