"""Tests for xmod_core.config: typed dataclass configs from YAML and key=value overrides."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from xmod_core.config import (ConfigError, config_hash, from_dict, load_config, parse_overrides,
                              to_dict)


@dataclass
class Optim:
    lr: float = 4e-4
    betas: tuple[float, ...] = (0.9, 0.999)
    clip: Optional[float] = None


@dataclass
class Head:
    name: str
    sizes: list[int] = field(default_factory=lambda: [64, 64])


@dataclass
class Cfg:
    stage: Literal["2d_burn_in", "joint"] = "joint"
    steps: int = 1000
    amp: bool = False
    out_dir: Path = Path("out/train")
    resume: Path | None = None
    crop: tuple[int, int] = (128, 384)
    weights: dict[str, float] = field(default_factory=lambda: {"rgb": 1.0})
    optim: Optim = field(default_factory=Optim)
    heads: list[Head] = field(default_factory=list)


@dataclass
class Required:
    seed: int


def full() -> Cfg:
    return Cfg(stage="2d_burn_in", steps=5, amp=True, out_dir=Path("/tmp/x"), resume=Path("r.pt"),
               crop=(64, 192), weights={"rgb": 0.5, "depth": 2.0},
               optim=Optim(lr=1e-3, betas=(0.8, 0.9), clip=1.0),
               heads=[Head("a"), Head("b", [1, 2, 3])])


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ---- from_dict / to_dict ------------------------------------------------------------------

def test_defaults_and_nested_round_trip():
    assert from_dict(Cfg, {}) == Cfg()
    cfg = full()
    data = to_dict(cfg)
    assert data["out_dir"] == "/tmp/x" and data["crop"] == [64, 192]
    assert data["optim"]["betas"] == [0.8, 0.9]
    assert data["heads"][1] == {"name": "b", "sizes": [1, 2, 3]}
    back = from_dict(Cfg, data)
    assert back == cfg
    assert isinstance(back.out_dir, Path) and isinstance(back.crop, tuple)
    assert isinstance(back.optim.betas, tuple) and isinstance(back.heads[0], Head)


def test_conversions():
    cfg = from_dict(Cfg, {"optim": {"lr": 1, "betas": [1, 0.5]}, "out_dir": "a/b", "resume": None})
    assert cfg.optim.lr == 1.0 and type(cfg.optim.lr) is float
    assert cfg.optim.betas == (1.0, 0.5) and all(type(b) is float for b in cfg.optim.betas)
    assert cfg.out_dir == Path("a/b") and cfg.resume is None


@pytest.mark.parametrize("data, key, words", [
    ({"amp": 1}, "amp", ["bool", "1"]),
    ({"amp": "true"}, "amp", ["bool", "'true'"]),
    ({"steps": True}, "steps", ["int", "True"]),
    ({"steps": 1.5}, "steps", ["int", "1.5"]),
    ({"optim": {"lr": "fast"}}, "optim.lr", ["float", "'fast'"]),
    ({"optim": {"lr": False}}, "optim.lr", ["float", "False"]),
    ({"stage": "3d"}, "stage", ["2d_burn_in", "'3d'"]),
    ({"out_dir": 3}, "out_dir", ["Path", "3"]),
    ({"resume": 3}, "resume", ["Path", "3"]),
    ({"optim": {"clip": "x"}}, "optim.clip", ["float", "'x'"]),
    ({"crop": [1, 2, 3]}, "crop", ["2 items"]),
    ({"crop": 5}, "crop", ["tuple", "5"]),
    ({"optim": {"betas": [0.9, "a"]}}, "optim.betas[1]", ["float", "'a'"]),
    ({"weights": {"rgb": "x"}}, "weights.rgb", ["float"]),
    ({"weights": [1]}, "weights", ["dict"]),
    ({"optim": 3}, "optim", ["Optim", "3"]),
    ({"heads": [{"name": 3}]}, "heads[0].name", ["str", "3"]),
    ({"heads": [{"sizes": [1]}]}, "heads[0].name", ["missing"]),
])
def test_type_errors_name_key_type_and_value(data, key, words):
    with pytest.raises(ConfigError) as err:
        from_dict(Cfg, data)
    msg = str(err.value)
    assert key in msg
    for w in words:
        assert w in msg, msg


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"optim\.lrr") as err:
        from_dict(Cfg, {"optim": {"lrr": 1.0}})
    assert "did you mean 'optim.lr'" in str(err.value)
    assert "lr, betas, clip" in str(err.value)
    with pytest.raises(ConfigError, match="'bogus'.*stage, steps, amp"):
        from_dict(Cfg, {"bogus": 1})
    with pytest.raises(ConfigError, match=r"heads\[0\]\.colour"):
        from_dict(Cfg, {"heads": [{"name": "a", "colour": 1}]})


def test_missing_required_key():
    with pytest.raises(ConfigError, match="missing required key 'seed'"):
        from_dict(Required, {})
    with pytest.raises(ConfigError, match="top: expected a mapping for Required"):
        from_dict(Required, "x", where="top")  # type: ignore[arg-type]
    assert from_dict(Required, {"seed": 3}).seed == 3


def test_config_hash_stable_and_sensitive():
    h = config_hash(Cfg())
    assert h == config_hash(Cfg()) == config_hash(from_dict(Cfg, to_dict(Cfg())))
    assert len(h) == 16 and int(h, 16) >= 0
    assert config_hash(from_dict(Cfg, {"optim": {"lr": 1}})) == config_hash(
        from_dict(Cfg, {"optim": {"lr": 1.0}}))
    assert config_hash(from_dict(Cfg, {"steps": 1001})) != h


# ---- overrides / files ---------------------------------------------------------------------

def test_parse_overrides_yaml_values():
    got = parse_overrides(["optim.lr=1e-3", "amp=true", "crop=[1,2]", "heads.x.y=abc",
                           "name='007'", "resume=null", "expr=a=b"])
    assert got == {"optim": {"lr": 1e-3}, "amp": True, "crop": [1, 2], "heads": {"x": {"y": "abc"}},
                   "name": "007", "resume": None, "expr": "a=b"}
    assert isinstance(got["optim"]["lr"], float)


@pytest.mark.parametrize("item", ["lr", "=3", "a..b=1", "a.=1", " =1"])
def test_parse_overrides_malformed(item):
    with pytest.raises(ConfigError) as err:
        parse_overrides([item])
    assert repr(item) in str(err.value)


def test_parse_overrides_conflict():
    with pytest.raises(ConfigError, match="'optim.lr=2'.*'optim'"):
        parse_overrides(["optim=1", "optim.lr=2"])


def test_load_config_with_overrides(tmp_path):
    p = write(tmp_path, "stage: 2d_burn_in\nsteps: 10\noptim:\n  lr: 1e-4\n  betas: [0.5, 0.6]\n")
    cfg = load_config(Cfg, p)
    assert cfg.stage == "2d_burn_in" and cfg.steps == 10 and cfg.optim.lr == 1e-4
    assert cfg.optim.betas == (0.5, 0.6) and cfg.optim.clip is None
    cfg = load_config(Cfg, p, ["optim.lr=3e-4", "optim.clip=1", "steps=20", "amp=true"])
    assert cfg.optim.lr == 3e-4 and cfg.optim.betas == (0.5, 0.6)  # merged, not replaced
    assert cfg.optim.clip == 1.0 and cfg.steps == 20 and cfg.amp is True
    cfg = load_config(Cfg, p, {"optim": {"lr": 0.5}})
    assert cfg.optim.lr == 0.5 and cfg.steps == 10
    assert load_config(Cfg, write(tmp_path, "", "empty.yaml")) == Cfg()


def test_load_config_unknown_override_key_fails(tmp_path):
    p = write(tmp_path, "steps: 10\n")
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, p, ["optim.lrr=1"])
    assert "optim.lrr" in str(err.value) and str(p) in str(err.value)
    with pytest.raises(ConfigError, match="steps.*int.*'many'"):
        load_config(Cfg, p, ["steps=many"])


def test_load_config_file_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=str(missing)):
        load_config(Cfg, missing)
    bad = write(tmp_path, "steps: [1, 2\n", "bad.yaml")
    with pytest.raises(ConfigError, match=f"{bad}.*invalid YAML"):
        load_config(Cfg, bad)
    lst = write(tmp_path, "- 1\n- 2\n", "list.yaml")
    with pytest.raises(ConfigError, match=f"{lst}.*mapping"):
        load_config(Cfg, lst)
    unknown = write(tmp_path, "optim:\n  momentum: 0.9\n", "unknown.yaml")
    with pytest.raises(ConfigError, match=f"{unknown}.*optim.momentum"):
        load_config(Cfg, unknown)
