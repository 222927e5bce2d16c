"""The command line, the same for every script: argument types, one-line errors, the seed.

Every script of the project (train.py, fit.py, evaluate.py, classifier.py, the benchmarks)
builds its parser with `make_parser`, so that `--help` shows every default and a bad value
ends with one line and exit code 2, and picks its seed with `choose_seed`, so that a run
without `--seed` still logs the seed that repeats it.

    parser = cli.make_parser("train.py", "Train a DCGAN on Fashion-MNIST.")
    parser.add_argument("--epochs", type=cli.bounded_int(1, 100_000), default=20, help="...")
    args = parser.parse_args()
    seed = cli.choose_seed(args.seed)
"""

import argparse
import math
import sys
import typing

import numpy as np

MAX_SEED = 2**31 - 1  # the largest seed every TensorFlow and NumPy seed argument accepts


class ArgumentParser(argparse.ArgumentParser):
    """argparse with every default in `--help` and each error on one line.

    A bad value prints `PROG: error: MESSAGE` and exits with code 2, without the usage
    block: the message says what is wrong, `--help` says the rest.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")


def make_parser(program, description):
    """Returns an `ArgumentParser` named `program` whose `--help` appends each default."""
    return ArgumentParser(prog=program, description=description,
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def bounded_int(low, high):
    """Returns an argparse type: a whole number in [low, high]."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value
    return parse


def parsed_by(parse):
    """Returns an argparse type calling `parse(text)`, its ValueError a one-line error."""
    def argparse_type(text):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    argparse_type.__name__ = getattr(parse, "__name__", "value")
    return argparse_type


def _finite_number(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def positive_float(text):
    """argparse type: a finite number above 0."""
    value = _finite_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def none_or(parse):
    """Returns an argparse type: "none" for None, anything else as `parse` reads it."""
    def argparse_type(text):
        return None if text.strip().lower() == "none" else parse(text)
    argparse_type.__name__ = getattr(parse, "__name__", "value")
    return argparse_type


class HalfLife(typing.NamedTuple):
    """A half-life as a flag gives it: `value` epochs, or `value` minutes of training.

    A `value` of None is no half-life at all (a setting turned off). The minutes are of
    training, as the --max-minutes budget counts them.
    """
    value: typing.Optional[float]
    unit: str = "epochs"  # or "minutes"

    @property
    def epochs(self):
        """The value if it is in epochs, else None."""
        return self.value if self.unit == "epochs" else None

    @property
    def minutes(self):
        """The value if it is in minutes of training, else None."""
        return self.value if self.unit == "minutes" else None

    def in_epochs(self, epoch_seconds):
        """Returns the half-life in epochs: the value itself if in epochs, or, if in minutes,
        as many epochs as those minutes train at `epoch_seconds` training seconds an epoch,
        rounded to 0.01 (and at least 0.01, so a schedule never halves more than once a
        hundredth of an epoch); None if there is no half-life."""
        if self.value is None or self.unit == "epochs":
            return self.value
        return max(round(self.value * 60 / epoch_seconds * 100), 1) / 100

    def __str__(self):  # as --help shows a default, and as the flag is typed
        if self.value is None:
            return "none"
        return f"{self.value:g}" + ("min" if self.unit == "minutes" else "")


def half_life(text):
    """argparse type: "12" for 12 epochs, "21min" for 21 minutes of training, "none" for a
    `HalfLife` of value None."""
    spelled = text.strip().lower()
    if spelled == "none":
        return HalfLife(None)
    number, unit = (spelled[:-len("min")], "minutes") if spelled.endswith("min") else (spelled, "epochs")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs (as 12), minutes of training (as 21min) or none, "
                                         f"got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of {unit}, got {text}")
    return HalfLife(value, unit)


def non_negative_float(text):
    """argparse type: a finite number, 0 or above."""
    value = _finite_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def fraction(text):
    """argparse type: a number in [0, 1)."""
    value = _finite_number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def positive_ints(*counts):
    """argparse type: `counts` (say 2, or 2 or 3) positive whole numbers separated by commas, as a tuple."""
    expected = " or ".join(("", "one", "two", "three", "four")[count] for count in counts)

    def parse(text):
        try:
            values = tuple(int(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected} comma-separated whole numbers, "
                                             f"got {text!r}") from None
        if len(values) not in counts or min(values) <= 0:
            raise argparse.ArgumentTypeError(f"expected {expected} positive whole numbers, got {text!r}")
        return values

    return parse


positive_int_pair = positive_ints(2)  # "128,64" -> (128, 64)


seed_type = bounded_int(0, MAX_SEED)


def add_seed_argument(parser, default=None, help_text="random seed; the same seed repeats a run"):
    """Adds `--seed` to `parser`; a default of None means "draw one and log it"."""
    parser.add_argument("--seed", type=seed_type, default=default,
                        help=help_text + ("" if default is not None else " (none: drawn and logged)"))


def choose_seed(seed=None, stored_seed=None, log=print):
    """The seed decision of every script.

    Args:
        seed: the seed asked for (`--seed`), or None.
        stored_seed: the seed of the run being resumed, or None for a new run.
        log: where to say that a seed was drawn (None: say nothing).

    Returns:
        `seed` if given, else `stored_seed`, else a new random seed in [0, MAX_SEED],
        which is logged so that the run can be repeated.

    Raises:
        ValueError: `seed` and `stored_seed` are both given and differ: a resumed run must
            keep the seed it started with, or its noise and data order would change.
    """
    if seed is not None and stored_seed is not None and seed != stored_seed:
        raise ValueError(f"this run was started with seed {stored_seed}, not {seed}: pass --seed {stored_seed} "
                         "(or no --seed) to resume it, or --fresh or another --out-dir to start over")
    if seed is not None:
        return int(seed)
    if stored_seed is not None:
        return int(stored_seed)
    drawn = int(np.random.SeedSequence().entropy % (MAX_SEED + 1))
    if log is not None:
        log(f"seed {drawn} (drawn; pass --seed {drawn} to repeat this run)", flush=True)
    return drawn


def exit_code(error):
    """The exit code for an error that ends a script: the error's own `exit_code` if it has
    one (an interruption by a signal: 128 + its number), 2 for bad input (ValueError,
    FileNotFoundError), and 1 for anything else."""
    if hasattr(error, "exit_code"):
        return error.exit_code
    if isinstance(error, (ValueError, FileNotFoundError)):
        return 2
    return 1


def report(program, error):
    """Prints `error` as one line on stderr and returns its exit code (see `exit_code`).

    An interruption's message is printed as it is; anything else as `PROG: error: ...`.
    """
    message = " ".join(str(error).split())
    if hasattr(error, "exit_code"):
        print(message, file=sys.stderr, flush=True)
    else:
        print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    return exit_code(error)
