"""Configs: defaults from code, YAML chains and dotted overrides on top, every key checked, parts by name."""

import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import pytest
import yaml

from losses.weighting import WEIGHTERS
from tasks.classification import ClassificationConfig
from tasks.pretrain import PretrainConfig
from tasks.classification_finetune import ClsFineTuneConfig
from tasks.segmentation import PartSegConfig, SemSegConfig
from utils.config import OneOf, PositiveInt, Range, build_part, choose, load_config, save_config
from utils.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRETRAIN = CONFIGS / "pretrain.yaml"


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_come_from_code_and_files_only_override():
    cfg = load_config(PRETRAIN, schema=PretrainConfig)
    assert cfg.optim.epochs == 250 and cfg.optim.lr == 1e-3  # the file's value, the code's default
    assert cfg.model.point_backbone == {"name": "dgcnn", "k": 20, "emb_dims": 1024}
    assert cfg.weighting == {"name": "adacrossnet", "alpha": 0.05, "beta": 0.95}
    assert load_config(None, schema=PretrainConfig).optim.epochs == 100


def test_overrides_are_typed_by_the_declaration():
    cfg = load_config(PRETRAIN, ["optim.lr=5e-4", "model.point_backbone.k=15", "loss.cross_modal=mean",
                                 "train.amp=none"], schema=PretrainConfig)
    assert cfg.optim.lr == 5e-4 and isinstance(cfg.optim.lr, float)  # '5e-4' is a string to YAML 1.1
    assert cfg.model.point_backbone.k == 15 and cfg.loss.cross_modal == "mean" and cfg.train.amp == "none"
    assert load_config(PRETRAIN, ["optim.lr=1"], schema=PretrainConfig).optim.lr == 1.0


def test_naming_another_part_starts_its_section_afresh():
    demo = CONFIGS / "demo.yaml"  # convergence with warmup_steps and window
    cfg = load_config(demo, ["weighting.temperature=3", "weighting.name=dwa"], schema=PretrainConfig)
    assert cfg.weighting == {"name": "dwa", "temperature": 3.0}  # the name applies first, whatever the order
    same = load_config(demo, ["weighting.name=convergence"], schema=PretrainConfig)
    assert same.weighting.warmup_steps == 10  # the same name keeps the file's keys
    with pytest.raises(ConfigError, match="unknown key 'weighting.window'"):
        load_config(demo, ["weighting.name=dwa", "weighting.window=3"], schema=PretrainConfig)


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown key 'optim.lrr'"),
    ("model.point_backbone.k=abc", "'model.point_backbone.k' must be int"),
    ("model.point_backbone.k=2.5", "'model.point_backbone.k' must be int"),
    ("model.point_backbone.k=0", "'model.point_backbone.k' must be >= 1, got 0"),
    ("model.gray_branch=3", "'model.gray_branch' must be bool"),
    ("model.point_backbone.name=pointnet2", "'model.point_backbone.name' unknown value 'pointnet2'"),
    ("optim=3", "'optim' is a section"),
    ("optim.lr", "expected key.sub=value"),
    ("optim.lr=-0.01", "'optim.lr' must be > 0"),
    ("optim.lr=.nan", "'optim.lr' must be a finite number"),
    ("optim.epochs=0", "'optim.epochs' must be >= 1"),
    ("optim.batch_size=-4", "'optim.batch_size' must be >= 1"),
    ("optim.name=adagrad", "'optim.name' unknown value 'adagrad'"),
    ("train.eval_every=0", "'train.eval_every' must be >= 1"),
    ("train.num_workers=-1", "'train.num_workers' must be >= 0"),
    ("seed=-1", "'seed' must be >= 0"),
    ("device=gpu", "'device' expected auto, cpu, cuda or cuda:N"),
    ("data.num_points=0", "'data.num_points' must be >= 1"),
    ("data.image_size=0", "'data.image_size' must be >= 1"),
    ("data.background=[1,2]", "'data.background' needs exactly 3 values"),
    ("data.background=[0,0,300]", "'data.background' must be >= 0 and <= 255"),
    ("weighting.beta=1.0", "'weighting.beta' must be >= 0 and < 1"),
    ("loss.temperature=0", "'loss.temperature' must be > 0"),
    ("monitor.svm_c=-1", "'monitor.svm_c' must be > 0"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PRETRAIN, [override], schema=PretrainConfig)


@pytest.mark.parametrize("schema, override, message", [
    (ClassificationConfig, "data.scanobjectnn_variant=FOO", "'data.scanobjectnn_variant' unknown value 'FOO'"),
    (ClassificationConfig, "data.datasets=[modelnet10]", "'data.datasets' unknown value 'modelnet10'"),
    (ClassificationConfig, "data.datasets=[]", "'data.datasets' needs at least 1 value"),
    (ClassificationConfig, "svm.c=-1", "'svm.c' must be > 0"),
    (ClassificationConfig, "fewshot.settings=[5w0s]", "'fewshot.settings' expected <N>w<K>s"),
    (ClassificationConfig, "svm.folds=1", "'svm.folds' must be >= 2"),
    (PartSegConfig, "loss.label_smoothing=0.5", "'loss.label_smoothing' must be >= 0 and < 0.5"),
    (PartSegConfig, "model.dropout=1", "'model.dropout' must be >= 0 and < 1"),
    (PartSegConfig, "data.train_split=test", "'data.train_split' unknown value 'test'"),
    (SemSegConfig, "data.test_area=7", "'data.test_area' unknown value 7"),
    (SemSegConfig, "data.val_fraction=0", "'data.val_fraction' must be > 0 and < 1"),
])
def test_downstream_values_are_checked(schema, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override], schema=schema)


def test_a_user_file_is_merged_over_its_base_and_validated(tmp_path):
    child = write(tmp_path / "mine.yaml", {"base": str(PRETRAIN), "optim": {"epochs": 3}, "out": "runs/x"})
    cfg = load_config(child, ["seed=7"], schema=PretrainConfig)
    assert (cfg.optim.epochs, cfg.out, cfg.seed, cfg.optim.lr) == (3, "runs/x", 7, 0.001)

    typo = write(tmp_path / "typo.yaml", {"base": str(PRETRAIN), "optim": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown key 'optim\.epoch'"):
        load_config(typo, schema=PretrainConfig)
    with pytest.raises(ConfigError, match="unknown key 'modle'"):
        load_config(write(tmp_path / "bad.yaml", {"modle": {}}), schema=PretrainConfig)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: cannot read config"):
        load_config(tmp_path / "missing.yaml", schema=PretrainConfig)
    (tmp_path / "broken.yaml").write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_config(tmp_path / "broken.yaml", schema=PretrainConfig)
    loop = write(tmp_path / "loop.yaml", {"base": "loop.yaml"})
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config(loop, schema=PretrainConfig)


SCHEMAS = {"pretrain.yaml": PretrainConfig, "classification.yaml": ClassificationConfig,
           "partseg.yaml": PartSegConfig, "semseg.yaml": SemSegConfig, "finetune_dgcnn.yaml": ClsFineTuneConfig}


def test_every_shipped_config_loads_against_its_scripts_schema():
    for path in CONFIGS.glob("*.yaml"):
        chain = [path.name]
        while (parent := yaml.safe_load((CONFIGS / chain[-1]).read_text()).get("base")) is not None:
            chain.append(Path(parent).name)
        schema = SCHEMAS[chain[-1]]  # every config chains up to the file of its script
        cfg = load_config(path, schema=schema)
        assert "optim" in cfg and "model" in cfg, path


def test_the_resolved_config_round_trips(tmp_path):
    cfg = load_config(PRETRAIN, ["optim.lr=2e-4", "weighting.name=convergence"], schema=PretrainConfig)
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml", schema=PretrainConfig)
    assert again == cfg and "base" not in again


# ---- a part declared next to its code -----------------------------------------------------------------------
class Doubler:
    def __init__(self, names, *, factor: Annotated[float, Range(gt=0)] = 2.0, offset: int = 0):
        self.names, self.factor, self.offset = names, factor, offset


@dataclass
class Toy:
    steps: PositiveInt = 3
    mode: Annotated[str, OneOf("a", "b")] = "a"
    weighting: dict = choose({**WEIGHTERS, "doubler": Doubler}, "static")


def test_a_new_part_is_one_constructor_and_one_registry_line():
    cfg = load_config(None, ["weighting.name=doubler", "weighting.factor=3"], schema=Toy)
    assert cfg.weighting == {"name": "doubler", "factor": 3.0, "offset": 0}
    part = build_part({"doubler": Doubler}, cfg.weighting, ("im", "cm"))
    assert (part.names, part.factor) == (("im", "cm"), 3.0)
    with pytest.raises(ConfigError, match="'weighting.factor' must be > 0"):
        load_config(None, ["weighting.name=doubler", "weighting.factor=0"], schema=Toy)


def test_every_declared_key_rejects_a_value_of_the_wrong_type():
    """Walk every key of every script's schema: a value of another type is a ConfigError naming the key."""
    for schema in SCHEMAS.values():
        cfg = load_config(None, schema=schema)
        for dotted, value in _leaves(cfg.to_dict()):
            if dotted.endswith(".name"):
                continue
            bad = "not-a-number" if not isinstance(value, str) else [1, 2]
            if value is None:  # optional paths accept strings; a list is still wrong
                bad = [1, 2]
            with pytest.raises(ConfigError, match=f"'{dotted}'"):
                load_config(None, [f"{dotted}={yaml.safe_dump(bad, default_flow_style=True).strip()}"],
                            schema=schema)


def _leaves(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _declared_keys(section, values, prefix=""):
    """(dotted key, Key) for every leaf of a resolved config, with the declaration it was checked against."""
    from utils.config import Key, Part, Section, part_keys

    for name, spec in section.keys.items():
        if isinstance(spec, Key):
            yield f"{prefix}{name}", spec
        elif isinstance(spec, Section):
            yield from _declared_keys(spec, values[name], f"{prefix}{name}.")
        elif isinstance(spec, Part):
            chosen = values[name]["name"]
            yield from _declared_keys(part_keys(spec.registry[chosen]), values[name], f"{prefix}{name}.")


def _invalid_values(key):
    """Values that break each range / choice / pattern of a declared key (none for unchecked keys)."""
    from utils.config import OneOf, Pattern

    is_list = typing.get_origin(key.type) is list
    item_type = typing.get_args(key.type)[0] if is_list else key.type
    for check in key.checks:
        bad = []
        if isinstance(check, Range):
            for bound, outside in ((check.ge, -1), (check.gt, 0), (check.le, 1), (check.lt, 0)):
                if bound is not None:
                    bad.append(bound + outside if item_type is int else bound + outside * (abs(bound) * 0.5 + 1))
        elif isinstance(check, OneOf):
            bad.append(-99 if all(isinstance(c, int) for c in check.choices) else "no-such-choice")
        elif isinstance(check, Pattern):
            bad.append("!!not valid!!")
        for value in bad:
            if item_type is int and isinstance(value, float):
                value = int(value)
            yield [value] if is_list else value


def test_every_declared_range_and_choice_rejects_a_value_outside_it():
    """Walk every key of every shipped config: where a key declares a range, choices or a pattern, a value
    outside them is a ConfigError naming the key."""
    from utils.config import schema_of

    tried = 0
    for path in sorted(CONFIGS.glob("*.yaml")):
        chain = [path.name]
        while (parent := yaml.safe_load((CONFIGS / chain[-1]).read_text()).get("base")) is not None:
            chain.append(Path(parent).name)
        schema = SCHEMAS[chain[-1]]
        cfg = load_config(path, schema=schema)
        for dotted, key in _declared_keys(schema_of(schema), cfg):
            for value in _invalid_values(key):
                override = f"{dotted}={yaml.safe_dump(value, default_flow_style=True).strip()}"
                override = override.removesuffix("\n...").strip()
                with pytest.raises(ConfigError, match=f"'{re.escape(dotted)}'"):
                    load_config(path, [override], schema=schema)
                tried += 1
    assert tried > 100, tried  # every shipped config, each of its checked keys
