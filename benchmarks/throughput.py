"""Training throughput of the project against the TensorFlow DCGAN tutorial, on this machine.

    python benchmarks/throughput.py --quick   # about two minutes
    python benchmarks/throughput.py           # several minutes, tighter medians

The configurations are built in one process and timed in alternation (a block of steps
of each in turn, repeated), so that a slow spell of a shared machine hits all alike:

  (a) tutorial: the tutorial's models and its train step, float32 and batch 256, as published.
  Then, in every precision this machine computes natively (precision_probe.py):
  (a) tutorial step: the tutorial's models, optimizers, step and batch, in that precision.
  (b) project step: the same tutorial models and optimizers (Adam 1e-4) and batch 256, but
      trained by the project's `train.train_step`; only the step differs from (a) in the
      same precision.
  (c) project: the project's default models, optimizers and batch size.
  (d) (c) + the averaged G's update after every step (averaging.py), as train.py runs it.
  (e) (c) + augmentation of every image D sees (--augment translation,cutout).

Every configuration reads real Fashion-MNIST batches from its own `tf.data` pipeline
(`data.make_dataset` over the first NUM_IMAGES training images, repeated), as training does.

The report gives images per second (median over rounds), an estimate of the arithmetic
rate achieved against a measured matrix-multiplication roof, and the process's peak
memory, with each configuration's rate against (a) as published ("vs (a)") and against
the tutorial's step in the same precision ("vs (a)p"); then the precision the project chooses here (measured by its probe, as
`python train.py` does) against the fastest (c). The last line is
`speedup_vs_tutorial R`: (b) in the precision the project chooses, over (a) as published.
"""

import os
import sys

# Hide TensorFlow's C++ start-up chatter; real errors still reach the user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# benchmarks/ is a plain folder: make the project's modules importable from the repository root.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, BENCHMARKS_DIR)

import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import cli  # noqa: E402

# ----------------------------------------------------------------------------------------
# Benchmark settings.
NUM_IMAGES = 4096  # a multiple of 256 and 128, so every batch is full (the tutorial's noise
# batch is always 256); enough images that batches differ, small enough to load in a second.
WARMUP_STEPS = 3  # the first calls trace and optimize the graph; they are not timed
ROUNDS = 9  # alternating rounds; the median over rounds ignores a few noisy ones
SECONDS_PER_BLOCK = 4.0  # each configuration runs about this long per round
QUICK_ROUNDS = 5  # --quick: about a minute in all, for CI and a first look
QUICK_SECONDS_PER_BLOCK = 1.5
MATMUL_SIZE = 2048  # the roof: a square matmul this large runs near the CPU's peak rate
MATMUL_REPETITIONS = 10
# ----------------------------------------------------------------------------------------


def forward_multiply_adds(model):
    """Counts the multiply-adds of one image's forward pass through `model`'s layers.

    Only Dense, Conv2D and Conv2DTranspose layers are counted: batch normalization,
    activations and dropout cost a few operations per value, against hundreds per value in
    the convolutions. Nested models are counted through.

    Returns:
        An int, the multiply-adds per image.
    """
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_multiply_adds(layer)
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            # Every input pixel is multiplied by the whole kernel: (kh, kw, out, in).
            kernel_height, kernel_width, out_channels, in_channels = layer.kernel.shape
            _, out_height, out_width, _ = layer.output.shape
            in_pixels = (out_height // layer.strides[0]) * (out_width // layer.strides[1])
            total += in_pixels * kernel_height * kernel_width * in_channels * out_channels
        elif isinstance(layer, keras.layers.Conv2D):
            # Every output pixel is a dot product with the kernel: (kh, kw, in, out).
            kernel_height, kernel_width, in_channels, out_channels = layer.kernel.shape
            _, out_height, out_width, _ = layer.output.shape
            total += out_height * out_width * kernel_height * kernel_width * in_channels * out_channels
        elif isinstance(layer, keras.layers.Dense):
            total += layer.kernel.shape[0] * layer.kernel.shape[1]
    return total


def training_flops_per_image(generator, discriminator):
    """Estimates the floating-point operations one training image costs, in both steps.

    A step runs G forward once and D forward twice (on a real and on a generated image).
    Training one pass costs about 3 forward passes: the forward itself, the gradient with
    respect to the layer inputs and the gradient with respect to the weights, each about as
    many multiply-adds as the forward. A multiply-add is 2 FLOPs. The estimate slightly
    over-counts (D's first layer needs no input gradient) and ignores element-wise work,
    so it measures useful arithmetic, the same way for all configurations.

    Returns:
        A float, FLOPs per image of one training step.
    """
    generator_macs = forward_multiply_adds(generator)
    discriminator_macs = forward_multiply_adds(discriminator)
    return 2.0 * 3.0 * (generator_macs + 2 * discriminator_macs)


def measure_matmul_roof(dtype, repetitions):
    """Times a MATMUL_SIZE square matmul in `dtype`; returns the median rate in GFLOP/s."""
    import tensorflow as tf

    a = tf.random.normal([MATMUL_SIZE, MATMUL_SIZE], dtype=tf.float32)
    b = tf.random.normal([MATMUL_SIZE, MATMUL_SIZE], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)

    @tf.function
    def matmul(a, b):
        # Reduce to a scalar so that reading the result back costs nothing.
        return tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), tf.float32))

    matmul(a, b).numpy()  # warm-up: tracing and the library's first-call set-up
    seconds = []
    for _ in range(repetitions):
        start = time.perf_counter()
        matmul(a, b).numpy()
        seconds.append(time.perf_counter() - start)
    return 2.0 * MATMUL_SIZE ** 3 / statistics.median(seconds) / 1e9


def peak_memory_mib():
    """Returns this process's peak resident memory so far in MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def build_configurations(images, data_module, precisions):
    """Builds the configurations of the module docstring, (b) and (c) in each of `precisions`.

    Returns:
        A list of dicts with "name", "batch_size", "precision", "flops_per_image", "run"
        (a function that does one step), "wait" (a function that blocks until it is done).
    """
    import devices
    import models
    import train
    import tutorial

    def pipeline(batch_size):
        return iter(data_module.make_dataset(images, batch_size, seed=0).repeat())

    def tutorial_configuration(name, precision):
        with devices.dtype_policy(precision):
            generator = tutorial.make_tutorial_generator_model()
            discriminator = tutorial.make_tutorial_discriminator_model()
        generator_optimizer, discriminator_optimizer = tutorial.make_tutorial_optimizers()
        step = tutorial.make_tutorial_train_step(generator, discriminator, generator_optimizer,
                                                 discriminator_optimizer)
        batches = pipeline(tutorial.BATCH_SIZE)
        return dict(name=name, batch_size=tutorial.BATCH_SIZE, precision=precision,
                    flops_per_image=training_flops_per_image(generator, discriminator),
                    run=lambda: step(next(batches)), wait=lambda: generator_optimizer.iterations.numpy())

    configurations = [tutorial_configuration("(a) tutorial as published", "float32")]
    for precision in precisions:
        if precision != "float32":
            configurations.append(tutorial_configuration("(a) tutorial step", precision))
        # The same models and optimizers as (a), trained by the project's step.
        with devices.dtype_policy(precision):
            generator = tutorial.make_tutorial_generator_model()
            discriminator = tutorial.make_tutorial_discriminator_model()
        configurations.append(_project_configuration(
            "(b) project step, tutorial models", generator, discriminator, tutorial.make_tutorial_optimizers(),
            tutorial.BATCH_SIZE, precision, pipeline, train))
        # Everything the project does by default.
        with devices.dtype_policy(precision):
            generator = models.make_generator_model()
            discriminator = models.make_discriminator_model()
        configurations.append(_project_configuration(
            "(c) project", generator, discriminator, models.make_optimizers(loss_scaling=(precision == "mixed_float16")),
            train.BATCH_SIZE, precision, pipeline, train))
        for name, options in (("(d) project + averaged G", dict(average=True)),
                              ("(e) project + augmentation", dict(augmentations=("translation", "cutout")))):
            with devices.dtype_policy(precision):
                generator = models.make_generator_model()
                discriminator = models.make_discriminator_model()
            configurations.append(_project_configuration(
                name, generator, discriminator, models.make_optimizers(loss_scaling=(precision == "mixed_float16")),
                train.BATCH_SIZE, precision, pipeline, train, **options))
    return configurations


def _project_configuration(name, generator, discriminator, optimizers, batch_size, precision, pipeline, train,
                           average=False, augmentations=()):
    import tensorflow as tf

    import averaging

    generator_optimizer, discriminator_optimizer = optimizers
    # As train.train() does: optimizer slots must exist before the step is traced, because
    # train_step is one tf.function shared by (b) and (c) and may only create variables on
    # its first trace.
    generator_optimizer.build(generator.trainable_variables)
    discriminator_optimizer.build(discriminator.trainable_variables)
    noise_seed = tf.Variable(0, dtype=tf.int64, trainable=False)
    batches = pipeline(batch_size)
    step_arguments = (generator, discriminator, generator_optimizer, discriminator_optimizer, noise_seed,
                      train.LABEL_SMOOTHING, augmentations)
    generator_average = averaging.GeneratorAverage(generator, train.EMA_HALF_LIFE_IMAGES if average else None)

    def run():
        results = train.train_step(next(batches), *step_arguments)
        generator_average.update(batch_size)
        return results

    return dict(
        name=name, batch_size=batch_size, precision=precision,
        flops_per_image=training_flops_per_image(generator, discriminator),
        run=run, wait=lambda: generator_optimizer.iterations.numpy())


def time_block(configuration, steps):
    """Runs `steps` steps of `configuration`; returns the images per second."""
    start = time.perf_counter()
    for _ in range(steps):
        configuration["run"]()
    configuration["wait"]()
    return steps * configuration["batch_size"] / (time.perf_counter() - start)


def make_argument_parser():
    """Returns the parser of the command line; `--help` shows every default."""
    parser = cli.make_parser(
        "throughput.py",
        "Training images/s of the TF DCGAN tutorial (a), the project's train step on the "
        "tutorial's models (b) and the project's defaults (c), timed in alternation. "
        "The last line is 'speedup_vs_tutorial R' with R = (b)/(a).")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_ROUNDS} rounds of ~{QUICK_SECONDS_PER_BLOCK}s blocks (about a minute) "
                             f"instead of {ROUNDS} rounds of ~{SECONDS_PER_BLOCK}s")
    parser.add_argument("--data-dir", default=None,
                        help="directory of the Fashion-MNIST .gz files (none: as data.py finds them)")
    return parser


def main(argv=None):
    """Runs the benchmark and prints the report; returns the process exit code."""
    args = make_argument_parser().parse_args(argv)
    rounds = QUICK_ROUNDS if args.quick else ROUNDS
    seconds_per_block = QUICK_SECONDS_PER_BLOCK if args.quick else SECONDS_PER_BLOCK

    import tensorflow as tf

    import data
    import devices
    import precision_probe
    import train

    precisions = devices.native_precisions()
    print(f"TensorFlow {tf.__version__}, {devices.device_name()}, bfloat16 instructions: "
          f"{devices.cpu_supports_bfloat16()}, GPUs: {len(tf.config.list_physical_devices('GPU'))}, "
          f"native precisions: {', '.join(precisions)}", flush=True)
    try:
        images, _ = data.load_fashion_mnist("train", args.data_dir)
    except (ValueError, FileNotFoundError) as error:
        return cli.report("throughput.py", error)
    images = images[:NUM_IMAGES]
    print(f"Data: the first {len(images)} Fashion-MNIST training images through tf.data (data.make_dataset)")

    roof_repetitions = max(3, MATMUL_REPETITIONS // 2) if args.quick else MATMUL_REPETITIONS
    roofs = {"float32": measure_matmul_roof(tf.float32, roof_repetitions),
             "bfloat16": measure_matmul_roof(tf.bfloat16, roof_repetitions)}
    print(f"Matmul roof ({MATMUL_SIZE}x{MATMUL_SIZE}): float32 {roofs['float32']:.0f} GFLOP/s, "
          f"bfloat16 {roofs['bfloat16']:.0f} GFLOP/s", flush=True)

    # What `python train.py` would choose here, measured afresh by its own probe.
    choice = precision_probe.decide(None, train.train_step, train.BATCH_SIZE, remeasure=True, log=None)
    print(f"The project's probe: {choice.describe()}", flush=True)

    configurations = build_configurations(images, data, precisions)
    for configuration in configurations:
        # Warm up each configuration in turn: trace, optimize, then time one step to size
        # its blocks so that every configuration runs about seconds_per_block per round.
        memory_before = peak_memory_mib()
        start = time.perf_counter()
        for _ in range(WARMUP_STEPS):
            configuration["run"]()
        configuration["wait"]()
        warmup_seconds = time.perf_counter() - start
        start = time.perf_counter()
        configuration["run"]()
        configuration["wait"]()
        step_seconds = time.perf_counter() - start
        configuration["steps_per_block"] = max(2, round(seconds_per_block / step_seconds))
        configuration["memory_growth"] = peak_memory_mib() - memory_before
        configuration["rates"] = []
        print(f"  warmed up {configuration['name']}: {warmup_seconds:.1f}s, "
              f"{configuration['steps_per_block']} steps a block", flush=True)

    for round_index in range(rounds):
        for configuration in configurations:
            configuration["rates"].append(time_block(configuration, configuration["steps_per_block"]))
        print(f"  round {round_index + 1}/{rounds}: "
              + ", ".join(f"{c['rates'][-1]:.0f}" for c in configurations) + " images/s", flush=True)

    print()
    print(f"{'configuration':36} {'precision':15} {'batch':>5} {'images/s':>9} {'range':>11} "
          f"{'vs (a)':>6} {'vs (a)p':>7} {'GFLOP/s':>8} {'% roof':>6} {'+peak MiB':>9}")
    tutorial_rates = configurations[0]["rates"]
    # Like with like: the tutorial's step in the same precision.
    tutorial_by_precision = {c["precision"]: c for c in configurations if c["name"].startswith("(a)")}
    for configuration in configurations:
        rate = statistics.median(configuration["rates"])
        # The ratio is the median of the per-round ratios: a slow spell of the machine
        # slows both blocks of a round, so their ratio is steadier than the rates.
        ratio = statistics.median(r / t for r, t in zip(configuration["rates"], tutorial_rates))
        configuration["ratio"] = ratio
        same_precision_rates = tutorial_by_precision[configuration["precision"]]["rates"]
        like_ratio = statistics.median(r / t for r, t in zip(configuration["rates"], same_precision_rates))
        gigaflops = rate * configuration["flops_per_image"] / 1e9
        roof = roofs["float32" if configuration["precision"] == "float32" else "bfloat16"]
        value_range = f"{min(configuration['rates']):.0f}-{max(configuration['rates']):.0f}"
        print(f"{configuration['name']:36} {configuration['precision']:15} {configuration['batch_size']:>5} "
              f"{rate:>9.0f} {value_range:>11} {ratio:>6.2f} {like_ratio:>7.2f} {gigaflops:>8.0f} "
              f"{100 * gigaflops / roof:>5.0f}% {configuration['memory_growth']:>9.0f}")
    print("FLOPs per training image (estimate, 6 x (G + 2 D) multiply-adds): "
          + ", ".join(f"{c['name'][:3]} {c['flops_per_image'] / 1e6:.0f} M" for c in configurations))
    print(f"Peak memory of the process (ru_maxrss): {peak_memory_mib():.0f} MiB; "
          "+peak MiB is the growth while a configuration warmed up")
    project = {c["precision"]: c for c in configurations if c["name"].startswith("(c)")}
    fastest = max(project.values(), key=lambda c: statistics.median(c["rates"]))
    chosen_ratio = statistics.median(r / f for r, f in zip(project[choice.precision]["rates"], fastest["rates"]))
    print(f"The project chooses {choice.precision}; the fastest (c) here is {fastest['precision']}; "
          f"the choice runs at {100 * chosen_ratio:.0f}% of the fastest")
    project_step = [c for c in configurations
                    if c["name"].startswith("(b)") and c["precision"] == choice.precision][0]
    print(f"speedup_vs_tutorial {project_step['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
