"""models.toml: the shipped file is valid, and a bad one names the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatapp.config import load_config
from chatapp.errors import ConfigError
from chatapp.paths import find_config, shipped_config_path


def test_shipped_config_serves_the_embedded_model() -> None:
    config = load_config(shipped_config_path())
    model = config.models["smollm2"]
    assert model.engine == "llama.cpp"
    assert model.model == "embedded"
    assert model.context_window == 2048
    assert config.server.port == 8000


def test_config_lookup_prefers_flag_then_data_dir_then_shipped(tmp_path: Path) -> None:
    assert find_config(None, tmp_path) == shipped_config_path()
    (tmp_path / "models.toml").write_text("")
    assert find_config(None, tmp_path) == tmp_path / "models.toml"
    assert find_config(Path("/x.toml"), tmp_path) == Path("/x.toml")


def test_full_model_with_nodes_and_pricing(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("""
[models.big]
engine = "vllm"
model = "org/model"
context_window = 8192
pricing = { input_per_1m = 0.5, output_per_1m = 1.5 }
tensor_parallel_size = 2
[models.big.args]
max-num-seqs = 64
[[models.big.nodes]]
url = "http://10.0.0.2:8000/v1/"
api_key = "k"
weight = 2
""")
    model = load_config(path).models["big"]
    assert model.pricing.output_per_1m == 1.5
    assert model.args == {"max-num-seqs": 64} and model.vllm.tensor_parallel_size == 2
    assert model.nodes[0].url == "http://10.0.0.2:8000/v1"
    assert model.nodes[0].weight == 2.0


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            "[server]\nport = 'eighty'\n[models.m]\nengine='vllm'\nmodel='x'",
            "server.port",
            "integer",
        ),
        (
            "[server]\nport = 70000\n[models.m]\nengine='vllm'\nmodel='x'",
            "server.port",
            "between 1 and 65535",
        ),
        ("[server]\nprot = 1\n", "server.prot", "unknown key"),
        ("[models.m]\nengine = 'ollama'\nmodel = 'x'", "models.m.engine", "must be one of"),
        ("[models.m]\nengine = 'vllm'", "models.m.model", "missing"),
        ("[models.m]\nmodel = 'x'", "models.m.engine", "missing"),
        (
            "[models.m]\nengine='vllm'\nmodel='x'\ncontext_window = -1",
            "models.m.context_window",
            "at least",
        ),
        (
            "[models.m]\nengine='vllm'\nmodel='x'\nargs = { a = [1] }",
            "models.m.args.a",
            "strings, numbers or booleans",
        ),
        ("[[models.m.nodes]]\nurl = 'ftp://x'", "models.m.nodes[0].url", "http"),
        ("models = 3", "models", "table"),
        (
            "[server]\nkeepalive_seconds = nan\n[models.m]\nengine='vllm'\nmodel='x'",
            "server.keepalive_seconds",
            "finite",
        ),
        (
            "[models.m]\nengine='vllm'\nmodel='x'\n[tiers.free]\nrequests_per_minute = 0",
            "tiers.free.requests_per_minute",
            "at least",
        ),
        (
            "[models.m]\nengine='vllm'\nmodel='x'\n[tiers.free]\nrpm = 5",
            "tiers.free.rpm",
            "unknown key",
        ),
        (
            "[models.m]\nengine='vllm'\nmodel='x'\n[tiers.gold]\nrequests_per_minute = 5",
            "server.default_tier",
            "names no tier",
        ),
        ("", "models", "at least one model"),
    ],
)
def test_bad_config_names_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text("[models\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")
