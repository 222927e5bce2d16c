"""Image quality per minute of CPU: the project's default training, its earlier default
(the baseline) and the TF tutorial's.

Each configuration trains for the same budget of training time, one after the other (so
each has the whole machine), and is evaluated at fixed moments of its training time: FID,
precision and recall in the features of the project's Fashion-MNIST classifier
(evaluate.py). Evaluation time is not counted as training time. quality.json and
quality.png in --out-dir are rewritten after every mark, so a run stopped early keeps them.

    python benchmarks/quality.py                       # 20 minutes each, about 70 minutes
    python benchmarks/quality.py --minutes 5 --configs default
    python benchmarks/quality.py --configs default --batch-size 64 --d-learning-rate 1e-4
    python benchmarks/quality.py --configs default --ema-half-lives 10000,40000 --show-trained

"baseline" is the default before issue 11 (its "today's default"): G (128, 64) without
extra convolutions, D (64, 128) without the minibatch feature, batch 64, Adam 2e-4 / 0.5,
images from the trained G itself.
The flags after --configs change the default configuration only, for tuning experiments;
several --ema-half-lives, and --show-trained, evaluate several generators of one training
run, a comparison free of the run-to-run noise. benchmarks/RESULTS.md records what was tried.

On a shared machine, where other processes slow training down at random, --clock-rate R
measures training time as images / R instead of by the clock: R is the configuration's
images/s measured alone (benchmarks/throughput.py).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import matplotlib.figure  # noqa: E402
import tensorflow as tf  # noqa: E402

import augment  # noqa: E402
import averaging  # noqa: E402
import cli  # noqa: E402
import data  # noqa: E402
import devices  # noqa: E402
import evaluate  # noqa: E402
import models  # noqa: E402
import precision_probe  # noqa: E402
import storage  # noqa: E402
import train  # noqa: E402
import tutorial  # noqa: E402

MINUTES = 20.0  # long enough for the tutorial to get past its blurry start
EVALUATION_MINUTES = (1, 2, 5, 10, 20, 30, 40, 60, 90, 120)  # moments to measure, up to the budget
EVALUATION_SAMPLES = 10_000  # as many as the real test images the statistics come from
SEED = 0
OUT_DIR = "quality_output"


# Today's default before issue 11, kept runnable as the yardstick of its targets.
BASELINE = dict(batch_size=64, g_learning_rate=2e-4, d_learning_rate=2e-4, beta_1=0.5, beta_2=0.999,
                label_smoothing=0.0, augment=(), generator_filters=(128, 64), discriminator_filters=(64, 128),
                generator_upsampling="transposed", generator_extra_convolutions=0, discriminator_extra_convolutions=0,
                minibatch_stddev=False, minibatch_group_size=models.MINIBATCH_GROUP_SIZE, pack=1, spectral_norm=False,
                discriminator_head_convolutions=0, discriminator_head_filters=None, r1_weight=0.0,
                lr_half_life=cli.HalfLife(None), lr_min_half_life=None, ema_half_lives=(), show_trained=True,
                latent_dim=models.LATENT_DIM)


def make_default_run(images, args, **overrides):
    """Returns (step, generators, dataset) of the project's default configuration.

    `generators` maps a label ("" for the one train.py would save) to a function
    returning a generator to evaluate. `overrides` replace `args`' settings.
    """
    settings = argparse.Namespace(**{**vars(args), **overrides})
    generator_options = dict(filters=tuple(settings.generator_filters), upsampling=settings.generator_upsampling,
                             extra_convolutions=settings.generator_extra_convolutions)
    discriminator_options = dict(filters=tuple(settings.discriminator_filters),
                                 extra_convolutions=settings.discriminator_extra_convolutions,
                                 minibatch_stddev=settings.minibatch_stddev,
                                 minibatch_group_size=settings.minibatch_group_size,
                                 spectral_norm=settings.spectral_norm,
                                 head_convolutions=settings.discriminator_head_convolutions,
                                 head_filters=settings.discriminator_head_filters, pack=settings.pack)
    # The precision `python train.py` would use here for these models (measured, as it measures).
    precision = precision_probe.decide(settings.precision, train.train_step, settings.batch_size,
                                       settings.latent_dim, generator_options=generator_options,
                                       discriminator_options=discriminator_options).precision
    keras.utils.set_random_seed(settings.seed)
    with devices.dtype_policy(precision):
        generator = models.make_generator_model(settings.latent_dim, **generator_options)
        discriminator = models.make_discriminator_model(**discriminator_options)
    generator_optimizer, discriminator_optimizer = models.make_optimizers(
        settings.g_learning_rate, settings.d_learning_rate, settings.beta_1,
        loss_scaling=(precision == "mixed_float16"), beta_2=settings.beta_2)
    generator_optimizer.build(generator.trainable_variables)
    discriminator_optimizer.build(discriminator.trainable_variables)
    noise_seed = tf.Variable(settings.seed, dtype=tf.int64)
    # Every half-life with every warm-up, all averaging the one run's G: a paired comparison.
    averages = {}
    for half_life in settings.ema_half_lives:
        for warmup in settings.ema_warmup:
            label = f"ema {half_life:g}" + (f" warm-up {warmup:g}" if len(settings.ema_warmup) > 1 else "")
            averages[label] = averaging.GeneratorAverage(generator, half_life, warmup, seed=settings.seed)

    initial_learning_rates = (settings.g_learning_rate, settings.d_learning_rate)
    images_per_epoch = len(images)
    # Minutes of training as --clock-rate counts them (train.py takes its first epoch's speed
    # instead), rounded alike.
    lr_half_life_epochs = settings.lr_half_life.in_epochs(
        images_per_epoch / settings.clock_rate if settings.clock_rate else None)
    if settings.lr_half_life.minutes is not None and settings.lr_min_half_life is not None:
        lr_half_life_epochs = max(lr_half_life_epochs, settings.lr_min_half_life)

    def step(real_images):
        if lr_half_life_epochs is not None:  # as train.py does, epoch by epoch
            epoch = int(generator_optimizer.iterations) * settings.batch_size // images_per_epoch
            for optimizer, initial in zip((generator_optimizer, discriminator_optimizer), initial_learning_rates):
                optimizer.learning_rate = train.decayed_learning_rate(initial, epoch, lr_half_life_epochs)
        results = train.train_step(real_images, generator, discriminator, generator_optimizer,
                                   discriminator_optimizer, noise_seed, settings.label_smoothing, settings.augment,
                                   settings.r1_weight, settings.r1_interval)
        for average in averages.values():
            average.update(tf.shape(real_images)[0])
        return float(results["g_loss"])  # reading a value waits for the step to finish

    generators = {label: average.generator for label, average in averages.items()}
    if settings.show_trained or not generators:
        generators["trained G"] = lambda: generator
    # The generator train.py saves: the first average, or the trained G without one.
    first = next(iter(generators))
    generators = {("" if label == first else label): make for label, make in generators.items()}
    return step, generators, data.make_dataset(images, settings.batch_size, seed=settings.seed)


def make_baseline_run(images, args):
    """Returns (step, generators, dataset) of the default before issue 11 (BASELINE)."""
    return make_default_run(images, args, **BASELINE)


def make_tutorial_run(images, args):
    """Returns (step, generators, dataset) of the TF tutorial, as published (float32)."""
    keras.utils.set_random_seed(args.seed)
    generator = tutorial.make_tutorial_generator_model()
    discriminator = tutorial.make_tutorial_discriminator_model()
    generator_optimizer, discriminator_optimizer = tutorial.make_tutorial_optimizers()
    tutorial_step = tutorial.make_tutorial_train_step(generator, discriminator, generator_optimizer,
                                                      discriminator_optimizer)

    def step(real_images):
        tutorial_step(real_images)
        return int(generator_optimizer.iterations)  # waits for the step to finish

    return step, {"": lambda: generator}, tutorial.make_tutorial_dataset(images)


CONFIGURATIONS = {"default": make_default_run, "baseline": make_baseline_run, "tutorial": make_tutorial_run}


def measure(name, run, minutes, evaluator, num_samples, seed, clock_rate=None, save_dir=None, on_mark=None):
    """Trains one configuration for `minutes` of training time, evaluating on the way.

    Args:
        clock_rate: None measures training time by the clock; a number of images/s
            counts images_seen / clock_rate as the training time instead.
        save_dir: None, or a directory where each evaluated generator is saved as
            <config>_<M>min.keras (as "default_ema_100000_60min.keras"), for checks of
            its own, such as an Inception FID on another machine.
        on_mark: None, or a function called after each mark's evaluations with this
            configuration's records so far.

    Returns:
        A list of dicts: config (with the generator's label), minutes, seconds (by the
        clock), steps, epochs, and the evaluator's metrics.
    """
    step, generators, dataset = run
    marks = [mark * 60 for mark in EVALUATION_MINUTES if mark < minutes] + [minutes * 60]
    batches = iter(dataset.repeat())
    seconds, steps, images_seen, records = 0.0, 0, 0, []
    while marks:
        real_images = next(batches)
        start = time.perf_counter()
        step(real_images)
        seconds += time.perf_counter() - start
        steps += 1
        images_seen += int(tf.shape(real_images)[0])
        training_seconds = seconds if clock_rate is None else images_seen / clock_rate
        if training_seconds >= marks[0]:
            mark_minutes = marks.pop(0) / 60
            for label, make_generator in generators.items():
                generator = make_generator()
                results = evaluator.evaluate(generator, num_samples=num_samples, seed=seed)
                config = f"{name} ({label})" if label else name
                record = {"config": config, "minutes": training_seconds / 60, "seconds": seconds, "steps": steps,
                          "images_seen": images_seen, "images_per_second": images_seen / seconds}
                record.update({key: results[key] for key in ("fid", "precision", "recall", "inception_score")})
                records.append(record)
                if save_dir is not None:
                    slug = "_".join(config.replace("(", "").replace(")", "").split())
                    generator.save(os.path.join(save_dir, f"{slug}_{mark_minutes:g}min.keras"))
                print(f"{config:>22}  {training_seconds / 60:6.1f} min  {steps:6d} steps  "
                      f"{images_seen / 60000:5.2f} epochs  {record['images_per_second']:6.0f} img/s  "
                      f"FID {record['fid']:7.2f}  precision {record['precision']:.3f}  "
                      f"recall {record['recall']:.3f}  IS {record['inception_score']:.2f}", flush=True)
            if on_mark is not None:
                on_mark(records)
    return records


def plot(records, path):
    """Plots FID against training minutes, one line per configuration; returns the path."""
    # A Figure of its own, as in display.py: no pyplot, so no backend is chosen or changed.
    figure = matplotlib.figure.Figure(figsize=(7, 4.5))
    axis = figure.subplots()
    for name in dict.fromkeys(record["config"] for record in records):
        points = [record for record in records if record["config"] == name]
        axis.plot([p["minutes"] for p in points], [p["fid"] for p in points], marker="o", label=name)
    axis.set_xlabel("training minutes on this machine")
    axis.set_ylabel("FID, classifier features (lower is better)")
    axis.set_yscale("log")
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def make_argument_parser():
    """Returns the parser of the command line; `--help` shows every default."""
    parser = cli.make_parser("quality.py", __doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=cli.positive_float, default=MINUTES,
                        help="training budget of each configuration")
    parser.add_argument("--configs", default="default,baseline,tutorial",
                        help="configurations to run, comma-separated, from: " + ", ".join(CONFIGURATIONS))
    parser.add_argument("--samples", type=cli.bounded_int(100, 100_000), default=EVALUATION_SAMPLES,
                        help="generated images per evaluation")
    # A fixed default: configurations compared across runs should start alike.
    cli.add_seed_argument(parser, default=SEED, help_text="seed of the weights, the data order and the noise")
    parser.add_argument("--out-dir", default=OUT_DIR,
                        help="directory for quality.json, quality.png and the evaluated generators")
    parser.add_argument("--data-dir", default=None,
                        help="directory holding the Fashion-MNIST .gz files (none: as data.py finds them)")
    parser.add_argument("--clock-rate", type=cli.positive_float, default=None,
                        help="count training time as images / this many images/s (none: by the clock)")
    default_group = parser.add_argument_group("the default configuration (for tuning)")
    default_group.add_argument("--batch-size", type=cli.bounded_int(1, 60000), default=train.BATCH_SIZE,
                               help="images per training step")
    default_group.add_argument("--latent-dim", type=cli.bounded_int(1, train.MAX_LATENT_DIM),
                               default=train.LATENT_DIM, help="noise size of G")
    default_group.add_argument("--g-learning-rate", type=cli.positive_float, default=models.GENERATOR_LEARNING_RATE,
                               help="the generator's Adam learning rate")
    default_group.add_argument("--d-learning-rate", type=cli.positive_float,
                               default=models.DISCRIMINATOR_LEARNING_RATE,
                               help="the discriminator's Adam learning rate")
    default_group.add_argument("--beta-1", type=cli.fraction, default=models.BETA_1,
                               help="Adam's beta_1 for both optimizers")
    default_group.add_argument("--beta-2", type=cli.fraction, default=models.BETA_2,
                               help="Adam's beta_2 for both optimizers")
    default_group.add_argument("--label-smoothing", type=cli.fraction, default=models.LABEL_SMOOTHING,
                               help="one-sided label smoothing of the real images' targets")
    default_group.add_argument("--generator-filters", type=cli.positive_ints(2, 3),
                               default=models.GENERATOR_FILTERS,
                               help="the generator's channels at 7x7 and at 14x14, as A,B, or A,B,C with 28x28")
    default_group.add_argument("--discriminator-filters", type=cli.positive_int_pair,
                               default=models.DISCRIMINATOR_FILTERS,
                               help="the discriminator's channels at 14x14 and at 7x7, as A,B")
    default_group.add_argument("--generator-upsampling", choices=models.UPSAMPLINGS,
                               default=models.GENERATOR_UPSAMPLING, help="how G doubles the image size")
    default_group.add_argument("--generator-extra-convolutions", type=cli.bounded_int(0, 4),
                               default=models.GENERATOR_EXTRA_CONVOLUTIONS,
                               help="3x3 convolutions G adds at 7x7 and at 14x14 each")
    default_group.add_argument("--discriminator-extra-convolutions", type=cli.bounded_int(0, 4),
                               default=models.DISCRIMINATOR_EXTRA_CONVOLUTIONS,
                               help="3x3 convolutions D adds at 14x14 and at 7x7 each")
    default_group.add_argument("--minibatch-stddev", action=argparse.BooleanOptionalAction,
                               default=models.MINIBATCH_STDDEV, help="D sees the spread of its batch")
    default_group.add_argument("--minibatch-group-size", type=cli.bounded_int(1, 4096),
                               default=models.MINIBATCH_GROUP_SIZE, help="images per group of that feature")
    default_group.add_argument("--pack", type=cli.bounded_int(1, 64), default=models.PACK,
                               help="images D judges together as one (PacGAN); 1: one at a time")
    default_group.add_argument("--discriminator-head-convolutions", type=cli.bounded_int(0, 4),
                               default=models.DISCRIMINATOR_HEAD_CONVOLUTIONS,
                               help="3x3 convolutions D adds at 7x7 after the minibatch feature")
    default_group.add_argument("--discriminator-head-filters", type=cli.bounded_int(1, 4096),
                               default=models.DISCRIMINATOR_HEAD_FILTERS,
                               help="channels of those convolutions (none: as many as D's at 7x7)")
    default_group.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction,
                               default=models.SPECTRAL_NORM, help="spectral normalization of D's weights")
    default_group.add_argument("--lr-half-life", type=cli.half_life,
                               default=cli.HalfLife(train.LEARNING_RATE_HALF_LIFE, "epochs"),
                               help="epochs over which both learning rates halve, or minutes of training as 21min "
                                    "(with --clock-rate), or none: constant")
    default_group.add_argument("--lr-min-half-life", type=cli.none_or(cli.positive_float),
                               default=train.LEARNING_RATE_MIN_HALF_LIFE,
                               help="with --lr-half-life in minutes: halve no faster than every N epochs, or none")
    default_group.add_argument("--r1-weight", type=cli.non_negative_float, default=models.R1_WEIGHT,
                               help="weight gamma of the R1 penalty on D (0: off)")
    default_group.add_argument("--r1-interval", type=cli.bounded_int(1, 10_000), default=models.R1_INTERVAL,
                               help="apply the R1 penalty every this many steps")
    default_group.add_argument("--augment", type=cli.parsed_by(augment.parse), default=train.AUGMENTATIONS,
                               help="augmentations of every image D sees, comma-separated, or none")
    default_group.add_argument("--ema-half-lives", type=_half_lives, default=(train.EMA_HALF_LIFE_IMAGES,),
                               help="half-lives in images of averaged generators to evaluate, comma-separated; "
                                    "the first is the one train.py would save ('none': the trained G)")
    default_group.add_argument("--ema-warmup", type=_fractions, default=(train.EMA_WARMUP_FRACTION,),
                               help="the averages' warm-up fractions, comma-separated; every half-life is "
                                    "averaged with each")
    default_group.add_argument("--show-trained", action="store_true",
                               help="also evaluate the trained G itself, from the same run")
    default_group.add_argument("--precision", choices=devices.PRECISIONS, default=None,
                               help="dtype policy of the models (none: the fastest here, measured as train.py measures it)")
    return parser


def main(argv=None):
    """Runs the configurations, writes quality.json and quality.png; returns the exit code."""
    parser = make_argument_parser()
    args = parser.parse_args(argv)
    args.seed = cli.choose_seed(args.seed)
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGURATIONS]
    if unknown or not names:
        parser.error(f"--configs: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(CONFIGURATIONS)}")
    if args.lr_half_life.minutes is not None and args.clock_rate is None:
        parser.error("--lr-half-life in minutes needs --clock-rate, the images/s that turn minutes into epochs")

    try:
        images, _ = data.load_fashion_mnist("train", args.data_dir)
        evaluator = evaluate.Evaluator(data_dir=args.data_dir)
    except (ValueError, FileNotFoundError) as error:
        return cli.report("quality.py", error)
    os.makedirs(args.out_dir, exist_ok=True)
    print(f"{', '.join(names)}: {args.minutes:g} training minutes each, FID on {args.samples} samples", flush=True)
    records = []

    def write_results(config_records):
        # After every mark, not only at the end: an hour stopped early (Ctrl-C, a crash)
        # keeps quality.json and quality.png of everything it measured.
        measured = records + config_records
        with storage.atomic_path(os.path.join(args.out_dir, "quality.json")) as path, open(path, "w") as file:
            json.dump({"settings": vars(args), "records": measured}, file, indent=1, default=str)
        with storage.atomic_path(os.path.join(args.out_dir, "quality.png")) as path:
            plot(measured, path)

    for name in names:
        records += measure(name, CONFIGURATIONS[name](images, args), args.minutes, evaluator, args.samples, args.seed,
                           args.clock_rate, save_dir=args.out_dir, on_mark=write_results)
    print(f"results: {os.path.join(args.out_dir, 'quality.json')}, plot: {os.path.join(args.out_dir, 'quality.png')}")
    return 0


def _half_lives(text):
    if text.strip().lower() == "none":
        return ()
    values = tuple(cli.positive_float(part) for part in text.split(","))
    if not values:
        raise argparse.ArgumentTypeError(f"expected positive numbers separated by commas, got {text!r}")
    return values


def _fractions(text):
    return tuple(cli.fraction(part) for part in text.split(","))


if __name__ == "__main__":
    sys.exit(main())
