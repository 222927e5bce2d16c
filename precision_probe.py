"""The fastest precision on this machine: measured, not guessed from the CPU's flags.

Whether bfloat16 pays depends on more than an instruction set: on CPUs with AMX it is about
4x float32, on an AMD Zen 4 about 1.8x, and on an Intel Xeon that lists avx512_bf16 but has
no AMX it is slower than float32. So when no precision is asked for, `decide` times a few
real training steps of the project's models at the run's batch size in every precision
the device computes natively, and keeps the fastest. A CPU without bfloat16 instructions
(most of them) has one such precision, float32; it is timed all the same, so that the run
can say how long it expects to take.

The answer is remembered per machine (device, TensorFlow version, models and batch size)
in a small JSON file in the user's cache directory, so later runs start at once; a
corrupt or unwritable cache is ignored with a warning. `remeasure=True` (the flag
`--remeasure-precision`) measures again.

The probe never touches the run: it builds models and optimizers of its own, of the run's
architecture (a wider G or D is slower, and may gain more or less from bfloat16), traces its
own copy of the step, and runs before the run seeds and builds its models.
"""

import inspect
import json
import os
import statistics
import sys
import time

import tensorflow as tf

import devices
import models
import storage

CACHE_DIR_VARIABLE = "DCGAN_CACHE_DIR"  # overrides where the measurements are remembered
CACHE_FILE = "precision.json"
WARMUP_STEPS = 2  # the first calls trace and optimize the graph; they are not timed
ROUNDS = 5  # the precisions are timed in alternation, so a slow spell hits each alike
SECONDS_PER_BLOCK = 0.3  # each precision runs about this long per round


class Choice:
    """A precision and the evidence for it.

    Attributes:
        precision: the name, one of devices.PRECISIONS.
        images_per_second: {precision: training images per second} as measured (for an
            asked precision, as remembered from an earlier run's measurement; empty when
            there is none).
        how: "measured", "remembered" (from an earlier measurement on this machine) or
            "asked".
    """

    def __init__(self, precision, images_per_second, how):
        self.precision = precision
        self.images_per_second = dict(images_per_second)
        self.how = how

    def describe(self):
        """Returns the one log line, e.g. "precision float32 (measured: float32 905 img/s, ...)"."""
        rates = ", ".join(f"{name} {rate:.0f} img/s" for name, rate in self.images_per_second.items())
        reason = {
            "measured": f"measured: {rates}",
            "remembered": f"measured earlier on this machine: {rates}; --remeasure-precision measures again",
            "asked": "as asked" + (f"; measured earlier on this machine: {rates}" if rates else ""),
        }[self.how]
        if self.how != "asked" and len(self.images_per_second) == 1:
            reason = f"the only one this device computes natively; {reason}"
        return f"precision {self.precision} ({reason})"


def cache_path():
    """Returns the path of the file that remembers measurements: $DCGAN_CACHE_DIR, else
    $XDG_CACHE_HOME/dcgan-fashion-mnist, else ~/.cache/dcgan-fashion-mnist."""
    directory = os.environ.get(CACHE_DIR_VARIABLE)
    if not directory:
        cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        directory = os.path.join(cache_home, "dcgan-fashion-mnist")
    return os.path.join(directory, CACHE_FILE)


def _warn(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _load_cache(path, warn=True):
    """Returns the remembered measurements, {} for a missing file or, after a warning unless
    `warn` is False, for one that cannot be read."""
    try:
        with open(path) as file:
            cache = json.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        if warn:
            _warn(f"ignoring the precision cache {path} ({error}); measuring again")
        return {}
    if not isinstance(cache, dict):
        if warn:
            _warn(f"ignoring the precision cache {path} (not a JSON object); measuring again")
        return {}
    return cache


def _save_cache(path, cache):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with storage.atomic_path(path) as temporary_path:
            with open(temporary_path, "w") as file:
                json.dump(cache, file, indent=2, sort_keys=True)
    except OSError as error:  # StorageError included
        _warn(f"could not remember the measured precision in {path} ({error}); the next run measures again")


def machine_key(batch_size, latent_dim, candidates, generator_options=None, discriminator_options=None):
    """Returns the cache key: what the fastest precision depends on."""
    return json.dumps({
        "device": devices.device_name(), "tensorflow": tf.__version__, "candidates": list(candidates),
        "generator": _spelled_out(models.make_generator_model, generator_options),
        "discriminator": _spelled_out(models.make_discriminator_model, discriminator_options),
        "latent_dim": latent_dim, "batch_size": batch_size,
    }, sort_keys=True)


def _spelled_out(make_model, options):
    """`options` of `make_model` with its defaults filled in, so that a run asking for the
    defaults by name and one asking for nothing share a key."""
    defaults = {name: parameter.default for name, parameter in inspect.signature(make_model).parameters.items()
                if name != "latent_dim"}
    return {**defaults, **(options or {})}


def measure(candidates, step_function, batch_size, latent_dim, generator_options=None, discriminator_options=None):
    """Times `step_function` on fresh models in each precision of `candidates`.

    The models are the project's, built with `generator_options` and
    `discriminator_options` (keyword arguments of models.make_generator_model and
    make_discriminator_model; None: the defaults).

    Each precision gets its own models, optimizers and a tf.function of its own around
    the step's Python function (so the run's step keeps its single trace); after warm-up,
    the precisions are timed in alternating blocks of steps on one fixed batch, and the
    median block counts.

    Returns:
        {precision: training images per second}, in the order of `candidates`.
    """
    python_step = getattr(step_function, "python_function", step_function)
    real_images = tf.random.stateless_uniform([batch_size] + list(models.IMAGE_SHAPE), seed=[0, 0],
                                              minval=-1.0, maxval=1.0)
    probes = {}
    for precision in candidates:
        with devices.dtype_policy(precision):
            generator = models.make_generator_model(latent_dim, **(generator_options or {}))
            discriminator = models.make_discriminator_model(**(discriminator_options or {}))
        generator_optimizer, discriminator_optimizer = models.make_optimizers(
            loss_scaling=(precision == "mixed_float16"))
        generator_optimizer.build(generator.trainable_variables)
        discriminator_optimizer.build(discriminator.trainable_variables)
        arguments = (real_images, generator, discriminator, generator_optimizer, discriminator_optimizer,
                     tf.Variable(0, dtype=tf.int64, trainable=False))
        step = tf.function(python_step)
        start = time.perf_counter()
        for _ in range(WARMUP_STEPS + 1):
            results = step(*arguments)
        float(results["d_loss"])  # wait for the step to finish
        step_seconds = (time.perf_counter() - start) / (WARMUP_STEPS + 1)
        probes[precision] = dict(step=step, arguments=arguments, rates=[],
                                 steps=max(2, min(50, round(SECONDS_PER_BLOCK / max(step_seconds, 1e-4)))))
    for _ in range(ROUNDS):
        for probe in probes.values():
            start = time.perf_counter()
            for _ in range(probe["steps"]):
                results = probe["step"](*probe["arguments"])
            float(results["d_loss"])
            probe["rates"].append(probe["steps"] * batch_size / (time.perf_counter() - start))
    return {precision: statistics.median(probe["rates"]) for precision, probe in probes.items()}


def decide(requested, step_function, batch_size, latent_dim=models.LATENT_DIM, remeasure=False,
           measure_function=measure, log=print, generator_options=None, discriminator_options=None):
    """Returns the `Choice` of precision for a run, and logs it in one line.

    Args:
        requested: the precision asked for, or None to use the fastest one here.
        step_function: the train step to time (train.train_step).
        batch_size, latent_dim: the run's.
        generator_options, discriminator_options: the run's model options (see `measure`).
        remeasure: measure even when an earlier measurement is remembered.
        measure_function: `measure`, or a stand-in with its signature (tests).
        log: where the line goes (None: nowhere).

    Raises:
        ValueError: `requested` is not one of devices.PRECISIONS.
    """
    if requested is not None:
        devices.check_precision(requested)
        warning = devices.emulation_warning(requested)
        if warning:
            _warn(warning)
        # Nothing is timed, but a speed an earlier run measured here still tells how long
        # this one should take.
        key = machine_key(batch_size, latent_dim, devices.native_precisions(), generator_options,
                          discriminator_options)
        remembered = _remembered_rates(_load_cache(cache_path(), warn=False).get(key))
        choice = Choice(requested, {requested: remembered[requested]} if requested in remembered else {}, "asked")
    else:
        choice = _fastest(step_function, batch_size, latent_dim, remeasure, measure_function,
                          generator_options, discriminator_options)
    if log is not None:
        log(choice.describe(), flush=True)
    return choice


def _fastest(step_function, batch_size, latent_dim, remeasure, measure_function, generator_options,
             discriminator_options):
    # With one candidate there is no choice to make, but its speed is still measured (a
    # few seconds, once per machine): it is what the run's expected duration comes from.
    candidates = devices.native_precisions()
    path = cache_path()
    key = machine_key(batch_size, latent_dim, candidates, generator_options, discriminator_options)
    cache = _load_cache(path)
    remembered = cache.get(key)
    remembered_rates = _remembered_rates(remembered)
    if not remeasure and set(remembered_rates) == set(candidates) and remembered.get("precision") in candidates:
        return Choice(remembered["precision"], remembered_rates, "remembered")
    rates = measure_function(candidates, step_function, batch_size, latent_dim, generator_options,
                             discriminator_options)
    precision = max(rates, key=rates.get)
    cache[key] = {"precision": precision, "images_per_second": {name: round(rate, 1) for name, rate in rates.items()}}
    _save_cache(path, cache)
    return Choice(precision, rates, "measured")


def _remembered_rates(entry):
    """Returns {precision: images/s} of a cache entry, or {} for a missing or malformed one."""
    rates = entry.get("images_per_second") if isinstance(entry, dict) else None
    if not isinstance(rates, dict):
        return {}
    return {name: rate for name, rate in rates.items()
            if name in devices.PRECISIONS and isinstance(rate, (int, float)) and rate > 0}
