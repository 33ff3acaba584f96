import json

import pytest

from ceasr.config import (
    ExperimentConfig,
    ModelConfig,
    from_dict,
    load_config,
    save_json,
    to_dict,
    with_overrides,
)
from ceasr.errors import ConfigError


def test_defaults_round_trip_through_json(tmp_path):
    cfg = with_overrides(ExperimentConfig(), ["train.betas=[0.8, 0.9]", "model.d_model=64"])
    save_json(cfg, tmp_path / "c.json")
    back = from_dict(ExperimentConfig, json.loads((tmp_path / "c.json").read_text()))
    assert back == cfg
    assert back.train.betas == (0.8, 0.9)


def test_yaml_fills_only_given_fields(tmp_path):
    (tmp_path / "c.yaml").write_text("model:\n  encoder: transformer\ntrain:\n  lr: 0.01\n")
    cfg = load_config(tmp_path / "c.yaml", ["train.max_steps=7", "train.spec_augment=false"])
    assert cfg.model.encoder == "transformer"
    assert cfg.model.d_model == ModelConfig().d_model
    assert cfg.train.lr == 0.01 and cfg.train.max_steps == 7 and cfg.train.spec_augment is False


def test_base_file_is_read_first_and_overridden_field_by_field(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  encoder: transformer\n  d_model: 96\ntrain:\n  lr: 0.01\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("base: ../base.yaml\nmodel:\n  d_model: 64\n")
    cfg = load_config(tmp_path / "sub" / "c.yaml")
    assert cfg.model.encoder == "transformer"  # from the base
    assert cfg.model.d_model == 64  # this file's value wins
    assert cfg.train.lr == 0.01


def test_base_cycle_and_missing_base_are_config_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: gone.yaml\n")
    with pytest.raises(ConfigError, match="gone.yaml: cannot read config"):
        load_config(tmp_path / "c.yaml")


def differing_fields(a: dict, b: dict) -> set[tuple[str, str]]:
    """``(section, field)`` of every field two config dicts (``to_dict``) set differently."""
    return {(s, f) for s in a for f in a[s] if a[s][f] != b[s][f]}


def test_bilingual_demo_is_the_english_recipe_with_its_own_tokenizer_decoder_epochs_lr_and_augmentation():
    from ceasr.demo import demo_config_path

    en, zh = to_dict(load_config(demo_config_path("en"))), to_dict(load_config(demo_config_path("zh-en")))
    assert differing_fields(en, zh) == {
        ("tokenizer", "kind"), ("model", "decoder_layers"), ("model", "decoder_positions"), ("train", "max_epochs"),
        ("train", "lr"), ("feat_augment", "reverb_prob"), ("feat_augment", "noise_prob"), ("feat_augment", "warp"),
    }
    assert zh["feat_augment"]["reverb_prob"] == zh["feat_augment"]["noise_prob"] == 0.0
    assert (en["feat_augment"]["warp"], zh["feat_augment"]["warp"]) == ([0.85, 1.3], [0.85, 1.2])
    assert zh["tokenizer"]["kind"] == "bilingual"
    assert (zh["model"]["decoder_layers"], zh["model"]["decoder_positions"]) == (2, True)


def test_commands_recipe_is_the_demo_without_budget_and_with_warps_to_1_2():
    from ceasr.demo import demo_config_path

    en = to_dict(load_config(demo_config_path("en")))
    cmd = to_dict(load_config(demo_config_path("en").with_name("commands.yaml")))
    assert differing_fields(en, cmd) == {("train", "max_minutes"), ("feat_augment", "warp")}
    assert (cmd["train"]["max_minutes"], cmd["feat_augment"]["warp"]) == (0.0, [0.85, 1.2])


@pytest.mark.parametrize(
    "override, words",
    [
        ("train.lr", "section.field=value"),
        ("train.nope=1", "section.field=value"),
        ("nosection.lr=1", "section.field=value"),
        ("train.max_steps=abc", "expected int"),
        ("train.max_steps=1.5", "expected int"),
        ("train.spec_augment=3", "expected bool"),
    ],
)
def test_bad_overrides_are_config_errors(override, words):
    with pytest.raises(ConfigError, match=words):
        with_overrides(ExperimentConfig(), [override])


def test_unknown_yaml_field_is_named(tmp_path):
    (tmp_path / "c.yaml").write_text("model:\n  layers: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: model: unknown field\(s\) layers"):
        load_config(tmp_path / "c.yaml")


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_to_dict_is_json_ready():
    d = to_dict(ExperimentConfig())
    assert d["train"]["betas"] == [0.9, 0.98]
    json.dumps(d)


def test_variadic_tuples_take_any_length_and_fixed_ones_their_own():
    from ceasr.whisper.config import WhisperFinetuneConfig

    assert from_dict(WhisperFinetuneConfig, {"merge_ratios": [0.2, "0.4", 0.6]}).merge_ratios == (0.2, 0.4, 0.6)
    assert from_dict(WhisperFinetuneConfig, {"merge_ratios": []}).merge_ratios == ()
    with pytest.raises(ConfigError, match="merge_ratios"):
        from_dict(WhisperFinetuneConfig, {"merge_ratios": ["half"]})
    with pytest.raises(ConfigError, match="train.betas"):
        from_dict(ExperimentConfig, {"train": {"betas": [0.9, 0.98, 0.5]}})


def test_a_tuple_flag_is_a_yaml_list_or_comma_separated():
    for text in ("[0.8, 1.1]", "0.8,1.1", "0.8, 1.1"):
        assert with_overrides(ExperimentConfig(), [f"feat_augment.warp={text}"]).feat_augment.warp == (0.8, 1.1)
    with pytest.raises(ConfigError, match="feat_augment.warp"):
        with_overrides(ExperimentConfig(), ["feat_augment.warp=0.8,1.1,1.2"])
    with pytest.raises(ConfigError, match="feat_augment.warp"):
        with_overrides(ExperimentConfig(), ["feat_augment.warp=low,high"])
