"""cli.py and the command lines built with it: every default shown, bad values on one line."""

import argparse

import pytest

import classifier
import cli
import evaluate

PARSER_BUILDERS = {"evaluate.py": evaluate.make_argument_parser, "classifier.py": classifier.make_argument_parser}
MAINS = {"evaluate.py": evaluate.main, "classifier.py": classifier.main}


# ----------------------------------------------------------------------------------------
# The scripts' parsers.

@pytest.mark.parametrize("program", sorted(PARSER_BUILDERS))
def test_help_shows_every_default_once(program):
    parser = PARSER_BUILDERS[program]()
    assert parser.prog == program
    options = [action for action in parser._actions
               if action.option_strings and not isinstance(action, argparse._HelpAction)]
    assert options
    for action in options:
        # ArgumentDefaultsHelpFormatter shows a default only for an option with help text,
        # and a help text that shows its own default would show it twice.
        assert action.help, f"{action.option_strings[0]} has no help text"
        assert "%(default)" not in action.help, f"{action.option_strings[0]} shows its default itself"
    help_text = " ".join(parser.format_help().split())
    assert help_text.count("(default:") == len(options), help_text
    for action in options:
        assert action.option_strings[-1] in help_text


@pytest.mark.parametrize("program", sorted(MAINS))
def test_help_exits_0(program, capsys):
    with pytest.raises(SystemExit) as raised:
        MAINS[program](["--help"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {program}")


@pytest.mark.parametrize("program, arguments, expected_text", [
    ("evaluate.py", ["generator.keras", "--num-samples", "0"], "--num-samples"),
    ("evaluate.py", ["generator.keras", "--batch-size", "many"], "expected a whole number"),
    ("evaluate.py", ["generator.keras", "--seed", "-1"], "--seed"),
    ("evaluate.py", ["generator.keras", "--inception-weights", "w.h5"], "needs --inception"),
    ("classifier.py", ["--epochs", "0"], "--epochs"),
    ("classifier.py", ["--batch-size", "0"], "--batch-size"),
    ("classifier.py", ["--learning-rate", "-1"], "must be a positive number"),
    ("classifier.py", ["--learning-rate", "nan"], "finite"),
    ("classifier.py", ["--out", "classifier.h5"], ".weights.h5"),
])
def test_bad_values_end_with_one_line_and_exit_2(program, arguments, expected_text, capsys):
    # Every case fails while parsing, before any data is read or any model is built.
    with pytest.raises(SystemExit) as raised:
        MAINS[program](arguments)
    assert raised.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{program}: error:") and expected_text in lines[0]


def test_classifier_and_evaluate_keep_their_fixed_default_seeds():
    # Fixed, not drawn: the same command gives the same weights and the same numbers.
    assert classifier.make_argument_parser().parse_args([]).seed == classifier.SEED
    assert evaluate.make_argument_parser().parse_args(["generator.keras"]).seed == 0


# ----------------------------------------------------------------------------------------
# cli's parser and argument types.

def test_parser_error_is_one_line_without_usage(capsys):
    parser = cli.make_parser("program.py", "A test program.")
    parser.add_argument("--count", type=cli.bounded_int(1, 10), default=1, help="how many")
    with pytest.raises(SystemExit) as raised:
        parser.parse_args(["--count", "11"])
    assert raised.value.code == 2
    assert capsys.readouterr().err == "program.py: error: argument --count: must be between 1 and 10, got 11\n"


@pytest.mark.parametrize("argument_type, good", [
    (cli.bounded_int(1, 10), {"1": 1, "10": 10, "7": 7, " 3 ": 3}),
    (cli.seed_type, {"0": 0, str(cli.MAX_SEED): cli.MAX_SEED}),
    (cli.positive_float, {"0.5": 0.5, "1e-4": 1e-4, "3": 3.0}),
    (cli.none_or(cli.positive_float), {"none": None, " None ": None, "NONE": None, "30": 30.0, "0.25": 0.25}),
    (cli.non_negative_float, {"0": 0.0, "2.5": 2.5}),
    (cli.fraction, {"0": 0.0, "0.5": 0.5, "0.99": 0.99}),
    (cli.positive_int_pair, {"128,64": (128, 64), "1, 2": (1, 2)}),
    (cli.positive_ints(2, 3), {"128,64": (128, 64), "128,64,32": (128, 64, 32)}),
    (cli.half_life, {"12": cli.HalfLife(12.0, "epochs"), "0.5": cli.HalfLife(0.5), "none": cli.HalfLife(None),
                     "None": cli.HalfLife(None), "21min": cli.HalfLife(21.0, "minutes"),
                     " 2.5MIN ": cli.HalfLife(2.5, "minutes")}),
])
def test_argument_types_accept_good_values(argument_type, good):
    for text, value in good.items():
        assert argument_type(text) == value


@pytest.mark.parametrize("argument_type, bad", [
    (cli.bounded_int(1, 10), ["0", "11", "-1", "1.5", "ten", ""]),
    (cli.seed_type, ["-1", str(cli.MAX_SEED + 1), "0.5"]),
    (cli.positive_float, ["0", "-1", "nan", "inf", "-inf", "fast"]),
    (cli.none_or(cli.positive_float), ["0", "-1", "nan", "inf", "never", "nothing", ""]),
    (cli.non_negative_float, ["-0.1", "nan", "inf", "none"]),
    (cli.fraction, ["1", "1.5", "-0.1", "nan", "half"]),
    (cli.positive_int_pair, ["128", "128,64,32", "0,64", "-1,2", "1.5,2", "a,b", ""]),
    (cli.positive_ints(2, 3), ["128", "128,64,32,16", "128,64,0", "128,,32"]),
    (cli.half_life, ["0", "-12", "nan", "inf", "never", "0min", "-5min", "21m", "min", "21 minutes", ""]),
])
def test_argument_types_reject_bad_values(argument_type, bad):
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            argument_type(text)


def test_a_half_life_says_its_unit_and_reads_back_as_typed():
    for text in ("12", "0.5", "21min", "none"):
        half_life = cli.half_life(text)
        assert str(half_life) == text and cli.half_life(str(half_life)) == half_life
    assert (cli.half_life("12").epochs, cli.half_life("12").minutes) == (12.0, None)
    assert (cli.half_life("21min").epochs, cli.half_life("21min").minutes) == (None, 21.0)
    assert (cli.half_life("none").epochs, cli.half_life("none").minutes) == (None, None)


def test_a_half_life_in_minutes_becomes_epochs_at_a_speed():
    # 21 minutes at 157.1 s an epoch (382 img/s on 60,000 images) are 8.02 epochs.
    assert cli.half_life("21min").in_epochs(60_000 / 382) == 8.02
    assert cli.half_life("1min").in_epochs(7.0) == 8.57  # rounded to 0.01, not cut
    assert cli.half_life("0.001min").in_epochs(600.0) == 0.01  # never below 0.01 epochs
    # In epochs, or none: the speed does not matter.
    assert cli.half_life("12").in_epochs(1.0) == 12.0 and cli.half_life("12").in_epochs(None) == 12.0
    assert cli.half_life("none").in_epochs(1.0) is None


def test_seed_argument_default_and_help():
    parser = cli.make_parser("program.py", "A test program.")
    cli.add_seed_argument(parser)
    assert parser.parse_args([]).seed is None
    assert parser.parse_args(["--seed", "42"]).seed == 42
    assert "drawn and logged" in " ".join(parser.format_help().split())


# ----------------------------------------------------------------------------------------
# The seed decision.

def test_given_seed_wins():
    assert cli.choose_seed(5) == 5
    assert cli.choose_seed(5, stored_seed=5) == 5
    assert cli.choose_seed(0) == 0


def test_stored_seed_is_used_when_none_is_given():
    assert cli.choose_seed(None, stored_seed=7) == 7
    assert cli.choose_seed(stored_seed=0) == 0


def test_conflicting_seeds_are_an_error_naming_both():
    with pytest.raises(ValueError) as raised:
        cli.choose_seed(1234, stored_seed=5678)
    assert "1234" in str(raised.value) and "5678" in str(raised.value)


def test_drawn_seed_is_logged_and_in_range():
    messages = []

    def log(message, **kwargs):
        messages.append(message)

    seeds = {cli.choose_seed(None, None, log=log) for _ in range(5)}
    assert all(0 <= seed <= cli.MAX_SEED and isinstance(seed, int) for seed in seeds)
    assert len(seeds) > 1  # drawn afresh each time
    assert len(messages) == 5
    for seed in seeds:
        assert any(f"--seed {seed}" in message for message in messages)


def test_drawn_seed_without_a_log_says_nothing(capsys):
    assert 0 <= cli.choose_seed(log=None) <= cli.MAX_SEED
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------------------
# Errors that end a script.

class Interrupted(Exception):
    exit_code = 130  # 128 + SIGINT


def test_exit_codes():
    assert cli.exit_code(Interrupted("interrupted")) == 130
    assert cli.exit_code(ValueError("bad")) == 2
    assert cli.exit_code(FileNotFoundError("missing")) == 2
    assert cli.exit_code(RuntimeError("broken")) == 1
    assert cli.exit_code(OSError("disk")) == 1


@pytest.mark.parametrize("error, expected_code, expected_line", [
    (ValueError("bad value\n  over two lines"), 2, "program.py: error: bad value over two lines"),
    (RuntimeError("broken"), 1, "program.py: error: broken"),
    (Interrupted("interrupted by SIGINT;\nresume with the same command"), 130,
     "interrupted by SIGINT; resume with the same command"),
])
def test_report_prints_one_line_and_returns_the_code(error, expected_code, expected_line, capsys):
    assert cli.report("program.py", error) == expected_code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == expected_line + "\n"
