"""The precision is measured, not guessed: the choice, its cache, and that the probe leaves
the run alone. The measurement is injected where a test needs a machine of another kind."""

import json
import os

import numpy as np
import pytest

import data
import devices
import models
import precision_probe
import run_settings
import train


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv(precision_probe.CACHE_DIR_VARIABLE, str(directory))
    return directory


@pytest.fixture
def bfloat16_cpu(monkeypatch):
    """A CPU with bfloat16 instructions, whatever this one has."""
    monkeypatch.setattr(devices, "native_precisions", lambda: ("float32", "mixed_bfloat16"))


def _fake_measurement(rates, calls, options=None):
    def measure(candidates, step_function, batch_size, latent_dim, generator_options=None, discriminator_options=None):
        calls.append((tuple(candidates), batch_size, latent_dim))
        if options is not None:
            options.append((generator_options, discriminator_options))
        return {name: rates[name] for name in candidates}
    return measure


@pytest.mark.parametrize("rates, expected", [
    ({"float32": 900.0, "mixed_bfloat16": 640.0}, "float32"),  # an Intel Xeon with avx512_bf16, no AMX
    ({"float32": 900.0, "mixed_bfloat16": 3600.0}, "mixed_bfloat16"),  # a Xeon with AMX
])
def test_the_fastest_measured_precision_is_chosen_and_logged(rates, expected, cache_dir, bfloat16_cpu, capsys):
    calls = []
    choice = precision_probe.decide(None, train.train_step, 64, measure_function=_fake_measurement(rates, calls))
    assert choice.precision == expected and calls == [(("float32", "mixed_bfloat16"), 64, train.LATENT_DIM)]
    assert capsys.readouterr().out.strip() == (
        f"precision {expected} (measured: float32 900 img/s, mixed_bfloat16 {rates['mixed_bfloat16']:.0f} img/s)")


def test_the_answer_is_remembered_per_batch_size_and_measured_again_on_request(cache_dir, bfloat16_cpu):
    calls = []
    measure = _fake_measurement({"float32": 500.0, "mixed_bfloat16": 1000.0}, calls)
    assert precision_probe.decide(None, train.train_step, 64, measure_function=measure, log=None).how == "measured"
    remembered = precision_probe.decide(None, train.train_step, 64, measure_function=measure, log=None)
    assert remembered.how == "remembered" and remembered.precision == "mixed_bfloat16"
    assert remembered.images_per_second == {"float32": 500.0, "mixed_bfloat16": 1000.0}
    assert len(calls) == 1
    precision_probe.decide(None, train.train_step, 128, measure_function=measure, log=None)  # another batch size
    precision_probe.decide(None, train.train_step, 64, remeasure=True, measure_function=measure, log=None)
    assert [call[1] for call in calls] == [64, 128, 64]
    assert len(json.loads((cache_dir / precision_probe.CACHE_FILE).read_text())) == 2


def _cpuinfo(family, model):
    block = f"processor\t: {{}}\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\nmodel\t\t: {model}\n" \
            "model name\t: AMD EPYC\nflags\t\t: avx512f avx512_bf16\n"
    return "\n".join(block.format(processor) for processor in range(2))


def test_the_cpu_is_named_with_its_family_and_model():
    assert devices.cpu_name(_cpuinfo(26, 2)) == "AMD EPYC, family 26 model 2"
    assert devices.cpu_name("model name\t: Apple M2\n") == "Apple M2"
    assert devices.cpu_name("processor\t: 0\nBogoMIPS\t: 50.00\n") == "CPU"


def test_two_generations_under_one_name_are_measured_apart(cache_dir, bfloat16_cpu, monkeypatch):
    # A Zen 4 and a Zen 5 virtual machine both call their CPU "AMD EPYC"; bfloat16 gains
    # 1.4x on one and 1.2x on the other, so neither may take the other's measurement.
    calls = []
    measure = _fake_measurement({"float32": 500.0, "mixed_bfloat16": 1000.0}, calls)
    for family, model in ((25, 17), (26, 2), (25, 17)):
        monkeypatch.setattr(devices, "device_name", lambda: devices.cpu_name(_cpuinfo(family, model)) + " (2 cores)")
        precision_probe.decide(None, train.train_step, 64, measure_function=measure, log=None)
    assert len(calls) == 2  # the third run remembers the first
    assert len(json.loads((cache_dir / precision_probe.CACHE_FILE).read_text())) == 2


def test_the_runs_models_are_measured_and_remembered_apart_from_the_defaults(cache_dir, bfloat16_cpu):
    calls, options = [], []
    measure = _fake_measurement({"float32": 500.0, "mixed_bfloat16": 1000.0}, calls, options)
    wider = dict(filters=(192, 96, 32))
    precision_probe.decide(None, train.train_step, 32, measure_function=measure, log=None)
    precision_probe.decide(None, train.train_step, 32, measure_function=measure, log=None, generator_options=wider)
    assert options == [(None, None), (wider, None)]
    # The defaults asked for by name are the defaults: remembered, not measured again.
    spelled_out = dict(filters=models.GENERATOR_FILTERS, upsampling=models.GENERATOR_UPSAMPLING,
                       extra_convolutions=models.GENERATOR_EXTRA_CONVOLUTIONS)
    assert precision_probe.decide(None, train.train_step, 32, measure_function=measure, log=None,
                                  generator_options=spelled_out,
                                  discriminator_options=dict(minibatch_stddev=models.MINIBATCH_STDDEV)
                                  ).how == "remembered"
    assert precision_probe.decide(None, train.train_step, 32, measure_function=measure, log=None,
                                  discriminator_options=dict(filters=(96, 192))).how == "measured"
    assert len(calls) == 3 and len(json.loads((cache_dir / precision_probe.CACHE_FILE).read_text())) == 3


def test_training_probes_models_like_its_own(tmp_path, monkeypatch):
    asked = []
    decide = precision_probe.decide

    def recording_decide(*args, **kwargs):
        asked.append(kwargs)
        return decide(*args, **kwargs)

    monkeypatch.setattr(precision_probe, "decide", recording_decide)
    images = np.random.default_rng(3).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    train.train(data.make_dataset(images, 32), 1, out_dir=str(tmp_path / "run"), seed=1, precision="float32",
                generator_options=dict(filters=(16, 8, 4)), discriminator_options=dict(filters=(8, 16)), verbose=0)
    assert asked[0]["generator_options"]["filters"] == (16, 8, 4)
    assert asked[0]["generator_options"]["extra_convolutions"] == train.GENERATOR_EXTRA_CONVOLUTIONS
    assert asked[0]["discriminator_options"]["filters"] == (8, 16)


def test_a_corrupt_cache_is_ignored_with_a_warning_and_replaced(cache_dir, bfloat16_cpu, capsys):
    cache_dir.mkdir()
    (cache_dir / precision_probe.CACHE_FILE).write_text("{not json")
    calls = []
    choice = precision_probe.decide(None, train.train_step, 64, log=None,
                                    measure_function=_fake_measurement({"float32": 2.0, "mixed_bfloat16": 1.0}, calls))
    assert choice.precision == "float32" and len(calls) == 1
    assert "warning: ignoring the precision cache" in capsys.readouterr().err
    assert json.loads((cache_dir / precision_probe.CACHE_FILE).read_text())  # rewritten, readable


def test_an_unwritable_cache_is_not_fatal(tmp_path, monkeypatch, bfloat16_cpu, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(precision_probe.CACHE_DIR_VARIABLE, str(blocker / "cache"))
    choice = precision_probe.decide(None, train.train_step, 64, log=None,
                                    measure_function=_fake_measurement({"float32": 1.0, "mixed_bfloat16": 2.0}, []))
    assert choice.precision == "mixed_bfloat16"
    assert "warning: could not remember the measured precision" in capsys.readouterr().err


def test_one_native_precision_is_timed_once_for_the_runs_expected_duration(cache_dir, monkeypatch, capsys):
    # Most CPUs (no bfloat16 instructions) have nothing to choose from, but the run still
    # says how long it should take, from this measurement.
    monkeypatch.setattr(devices, "native_precisions", lambda: ("float32",))
    calls = []
    measure = _fake_measurement({"float32": 412.0}, calls)
    choice = precision_probe.decide(None, train.train_step, 32, measure_function=measure)
    assert choice.precision == "float32" and choice.how == "measured" and choice.images_per_second == {"float32": 412.0}
    assert capsys.readouterr().out.strip() == (
        "precision float32 (the only one this device computes natively; measured: float32 412 img/s)")
    again = precision_probe.decide(None, train.train_step, 32, measure_function=measure)
    assert again.how == "remembered" and again.images_per_second == {"float32": 412.0} and len(calls) == 1
    assert capsys.readouterr().out.strip().startswith(
        "precision float32 (the only one this device computes natively; measured earlier on this machine: "
        "float32 412 img/s;")


def test_an_asked_precision_is_not_timed_but_takes_a_speed_measured_earlier(cache_dir, bfloat16_cpu, capsys):
    never = lambda *args: pytest.fail("measured")  # noqa: E731
    assert precision_probe.decide("float32", train.train_step, 32, measure_function=never,
                                  log=None).images_per_second == {}
    precision_probe.decide(None, train.train_step, 32, log=None,
                           measure_function=_fake_measurement({"float32": 500.0, "mixed_bfloat16": 700.0}, []))
    asked = precision_probe.decide("float32", train.train_step, 32, measure_function=never)
    assert asked.how == "asked" and asked.images_per_second == {"float32": 500.0}
    assert capsys.readouterr().out.strip() == (
        "precision float32 (as asked; measured earlier on this machine: float32 500 img/s)")
    # Not for other models: their speed was never measured.
    assert precision_probe.decide("float32", train.train_step, 32, measure_function=never, log=None,
                                  generator_options=dict(filters=(192, 96, 32))).images_per_second == {}
    # A cache it cannot read gives no speed and no warning: nothing is measured again.
    (cache_dir / precision_probe.CACHE_FILE).write_text("{not json")
    assert precision_probe.decide("float32", train.train_step, 32, log=None).images_per_second == {}
    assert capsys.readouterr().err == ""


def test_an_emulated_precision_is_honoured_with_a_warning(cache_dir, monkeypatch, capsys):
    monkeypatch.setattr(devices, "native_precisions", lambda: ("float32",))
    choice = precision_probe.decide("mixed_bfloat16", train.train_step, 64)
    assert choice.precision == "mixed_bfloat16"
    captured = capsys.readouterr()
    assert captured.out.strip() == "precision mixed_bfloat16 (as asked)"
    warning = [line for line in captured.err.splitlines() if line.strip()]
    assert len(warning) == 1 and "emulated and will be slow" in warning[0]


def test_an_unknown_precision_is_a_value_error():
    with pytest.raises(ValueError, match="precision must be one of"):
        precision_probe.decide("float8", train.train_step, 64)


def test_the_real_measurement_times_every_candidate_without_touching_the_runs_step(cache_dir):
    traces = train.train_step.experimental_get_tracing_count()
    rates = precision_probe.measure(devices.native_precisions(), train.train_step, 16, 8,
                                    generator_options=dict(filters=(16, 8, 4)),
                                    discriminator_options=dict(filters=(8, 16)))
    assert list(rates) == list(devices.native_precisions())
    assert all(np.isfinite(rate) and rate > 0 for rate in rates.values())
    assert train.train_step.experimental_get_tracing_count() == traces  # the probe traces its own copy


def test_measuring_changes_nothing_in_the_training(tmp_path, cache_dir):
    images = np.random.default_rng(2).integers(0, 256, (128, 28, 28), dtype=np.uint8)
    histories = []
    for name, remeasure in (("measured", True), ("remembered", False)):
        out_dir = str(tmp_path / name)
        histories.append(train.train(data.make_dataset(images, 32), 1, out_dir=out_dir, seed=5,
                                     remeasure_precision=remeasure, verbose=0))
        assert run_settings.load(out_dir)["precision_choice"].startswith("precision ")
    for name in ("d_loss", "g_loss", "d_real", "d_fake"):
        np.testing.assert_allclose(histories[0][0][name], histories[1][0][name], rtol=1e-5)
    assert os.path.exists(cache_dir / precision_probe.CACHE_FILE) or len(devices.native_precisions()) == 1
