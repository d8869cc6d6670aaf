"""The typed run configuration: presets, overrides, and the errors that name the key and the preset."""

from __future__ import annotations

import pytest

from hpa_utils.config.resolve import list_presets, load_config, resolve_config


@pytest.mark.parametrize("preset", list_presets())
def test_every_shipped_preset_resolves_to_a_typed_configuration(preset):
    config = resolve_config(preset)
    assert config.preset == preset
    assert isinstance(config.train.variants, tuple) and all(isinstance(v, int) for v in config.train.variants)
    assert sorted(config.train.stages.epochs) == ["A", "B", "C"]
    assert config.synthetic and config.data_dir.is_absolute()


def test_dotted_overrides_reach_nested_sections_and_a_stage():
    config = resolve_config("smoke", ["train.base.epochs=5", "train.stages.epochs.B=3", "ensemble.shift=0.3"])
    assert config.train.base.epochs == 5 and config.train.stages.epochs["B"] == 3
    assert config.ensemble.shift == 0.3
    assert resolve_config("smoke", {"top_k": 2}).ensemble.top_k == 2, "a bare name that is one key's"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.base.epochz=3", "preset 'smoke': unknown key train.base.epochz; train.base has: epochs"),
        ("epochz=3", "preset 'smoke': unknown key 'epochz'"),
        ("epochs=3", "'epochs' is ambiguous; write one of train.base.epochs, train.stages.epochs"),
        ("train.base.epochs=six", "preset 'smoke': train.base.epochs must be an integer, got 'six'"),
        ("train.augment=1", "train.augment must be true or false, got 1"),
        ("ensemble.shift=best", "ensemble.shift must be a finite number or 'fit' or 'original', got 'best'"),
        ("train.variants=[0, x]", r"train.variants\[1\] must be an integer"),
        ("train.stages.epochs={A: 1}", "train.stages.epochs must give the epochs of every stage"),
        ("data.val_fraction=1.5", r"data.val_fraction must be in \(0, 1\), got 1.5"),
        ("train.base=3", "train.base must be a section"),
    ],
)
def test_bad_keys_and_values_are_errors_that_name_the_key_and_the_preset(override, message):
    with pytest.raises(ValueError, match=message):
        resolve_config("smoke", [override])


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'nope'; choose one of: full, quick, smoke, standard"):
        resolve_config("nope")


def test_a_preset_of_a_few_lines_takes_every_other_key_from_the_defaults(tmp_path):
    (tmp_path / "mine.yaml").write_text("train:\n  base: {epochs: 5}\nensemble: {top_k: 3}\n")
    config = resolve_config(tmp_path / "mine.yaml")
    quick = resolve_config("quick")
    assert (config.train.base.epochs, config.ensemble.top_k) == (5, 3)
    assert config.train.base.learning_rate == quick.train.base.learning_rate
    assert config.train.stages == quick.train.stages and config.data.image_size == quick.data.image_size
    with pytest.raises(ValueError, match="unknown key train.base.epoch;"):
        (tmp_path / "typo.yaml").write_text("train:\n  base: {epoch: 5}\n")
        resolve_config(tmp_path / "typo.yaml")


def test_the_written_configuration_reads_back_equal(tmp_path):
    config = resolve_config("quick", ["seed=3"], data_dir=tmp_path / "data", output_dir=tmp_path / "out")
    assert not config.synthetic and config.data_dir == (tmp_path / "data").resolve()
    path = config.save()
    assert load_config(path) == config


def test_workers_auto_means_every_core_and_processes_must_be_auto_or_positive():
    import os

    from hpa_utils.config.resolve import resolve_config

    full = resolve_config("full")
    assert full.data.workers == "auto" and full.workers == (os.cpu_count() or 1)
    assert resolve_config("quick", overrides=["data.workers=3"]).workers == 3
    assert resolve_config("quick").train.processes == "auto"
    with pytest.raises(ValueError, match="train.processes"):
        resolve_config("quick", overrides=["train.processes=0"])
    with pytest.raises(ValueError, match="train.processes"):
        resolve_config("quick", overrides=["train.processes=many"])


# --------------------------------------------------------------------------- each setting declared once


def _leaves(raw: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in raw.items():
        if isinstance(value, dict) and not key == "epochs":
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


@pytest.mark.parametrize("name", ["quick", "smoke", "standard", "full"])
def test_a_preset_holds_only_what_differs_from_the_defaults(name):
    from hpa_utils.config.resolve import load_preset, preset_path
    from hpa_utils.config.run_config import RunConfig

    assert len(preset_path(name).read_text().splitlines()) <= 25
    defaults = RunConfig(preset="defaults").to_dict()
    for key, value in _leaves(load_preset(name)).items():
        if key in ("preset", "description"):
            continue
        default = defaults
        for part in key.split("."):
            default = default[part]
        assert value != default, f"{name}: {key} repeats its default"


@pytest.mark.parametrize("name", ["quick", "smoke", "full"])
def test_hpa_config_prints_a_preset_that_resolves_to_the_same_run(name, tmp_path):
    from hpa_utils.config.resolve import resolve_config
    from hpa_utils.config.show import config_yaml

    config = resolve_config(name, ["train.ema=true", "beyond.techniques=[focal]"])
    text = config_yaml(config)
    assert "ema: true" in text and "use_ema" in text  # its value and its declared description
    printed = tmp_path / f"{name}.yaml"
    printed.write_text(text)
    again = resolve_config(printed)
    assert again.to_dict() == config.to_dict()


def test_technique_switches_are_declared_once():
    import dataclasses

    from hpa_utils.config.run_config import TrainConfig
    from hpa_utils.config.techniques import SWITCHES, TECHNIQUES, TechniqueSwitches
    from hpa_utils.training.settings import TrainSettings

    assert issubclass(TrainConfig, TechniqueSwitches) and issubclass(TrainSettings, TechniqueSwitches)
    for cls in (TrainConfig, TrainSettings):
        declared = {f.name: f.default for f in dataclasses.fields(cls) if f.name in SWITCHES}
        assert declared == {f.name: f.default for f in dataclasses.fields(TechniqueSwitches)}
    for technique in TECHNIQUES.values():
        assert set(technique.train) <= set(SWITCHES)
