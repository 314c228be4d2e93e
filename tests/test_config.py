"""Config files, parent chains, dotted overrides and the errors a user sees."""

from pathlib import Path

import pytest
import yaml

from utils.config import load_config, save_config
from utils.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRETRAIN = CONFIGS / "pretrain.yaml"


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_overrides_are_typed_by_the_defaults():
    cfg = load_config(PRETRAIN, ["optim.lr=5e-4", "model.k=15", "loss.cross_modal=mean", "train.amp=none"],
                      defaults=PRETRAIN)
    assert cfg.optim.lr == 5e-4 and isinstance(cfg.optim.lr, float)  # '5e-4' is a string to YAML 1.1
    assert cfg.model.k == 15 and cfg.loss.cross_modal == "mean" and cfg.train.amp == "none"
    assert cfg["optim"]["epochs"] == 250  # untouched keys keep the published value


def test_an_int_is_accepted_where_a_float_is_expected():
    assert load_config(PRETRAIN, ["optim.lr=1"], defaults=PRETRAIN).optim.lr == 1.0


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown key 'optim.lrr'"),
    ("model.k=abc", "'model.k' must be int"),
    ("model.k=2.5", "'model.k' must be int"),
    ("model.gray_branch=3", "'model.gray_branch' must be bool"),
    ("optim=3", "'optim' is a section"),
    ("optim.lr", "expected key.sub=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PRETRAIN, [override], defaults=PRETRAIN)


def test_a_user_file_is_merged_over_its_base_and_validated(tmp_path):
    child = write(tmp_path / "mine.yaml", {"base": str(PRETRAIN), "optim": {"epochs": 3}, "out": "runs/x"})
    cfg = load_config(child, ["seed=7"], defaults=PRETRAIN)
    assert (cfg.optim.epochs, cfg.out, cfg.seed, cfg.optim.lr) == (3, "runs/x", 7, 0.001)

    typo = write(tmp_path / "typo.yaml", {"base": str(PRETRAIN), "optim": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown key 'optim\.epoch'"):
        load_config(typo, defaults=PRETRAIN)


def test_a_file_without_base_is_checked_against_the_script_defaults(tmp_path):
    cfg = load_config(write(tmp_path / "bare.yaml", {"optim": {"epochs": 2}}), defaults=PRETRAIN)
    assert cfg.optim.epochs == 2 and cfg.model.name == "adacrossnet"
    with pytest.raises(ConfigError, match="unknown key 'modle'"):
        load_config(write(tmp_path / "bad.yaml", {"modle": {}}), defaults=PRETRAIN)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: cannot read config"):
        load_config(tmp_path / "missing.yaml", defaults=PRETRAIN)
    (tmp_path / "broken.yaml").write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_config(tmp_path / "broken.yaml", defaults=PRETRAIN)
    loop = write(tmp_path / "loop.yaml", {"base": "loop.yaml"})
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config(loop, defaults=PRETRAIN)


SCRIPT_DEFAULTS = ("pretrain.yaml", "classification.yaml", "partseg.yaml", "semseg.yaml")


def test_every_shipped_config_loads_against_its_scripts_defaults():
    for path in CONFIGS.glob("*.yaml"):
        if path.name == "runtime.yaml":
            continue
        chain = [path.name]
        while (parent := yaml.safe_load((CONFIGS / chain[-1]).read_text()).get("base")) is not None:
            chain.append(Path(parent).name)
        defaults = next(name for name in chain if name in SCRIPT_DEFAULTS)  # every config belongs to a script
        cfg = load_config(path, defaults=CONFIGS / defaults)
        assert "optim" in cfg and "model" in cfg, path


def test_the_resolved_config_round_trips(tmp_path):
    cfg = load_config(PRETRAIN, ["optim.lr=2e-4"], defaults=PRETRAIN)
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml", defaults=PRETRAIN)
    assert again == cfg and "base" not in again
