"""User catalog files: extending and overriding entries, and every way a file can be bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.catalog import load as load_mod
from planner.catalog import load_catalog
from traces.errors import InputError

NEW_GPU = """
gpus:
  X100:
    vendor: Acme
    bf16_tflops: 500
    fp8_tflops: 1000
    hbm_gb: 96
    hbm_tbps: 4
    tdp_w: 600
    idle_w: 60
    link_gbps: 400
    nic_gbit: 400
    max_sm_clock_mhz: 1800
    min_sm_clock_mhz: 300
    price_per_hour: 2.5
    sources:
      bf16_tflops: "Acme X100 datasheet"
"""


def _write(tmp_path: Path, text: str | bytes, name: str = "user.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_user_yaml_adds_a_gpu_and_overrides_a_price(tmp_path: Path) -> None:
    user = _write(tmp_path, NEW_GPU + "  H100-SXM:\n    price_per_hour: 2.10\n")
    cat = load_catalog([user])
    x = cat.gpu("X100")
    assert (x.vendor, x.bf16_tflops, x.gpus_per_node) == ("Acme", 500.0, 8)
    assert x.sources["bf16_tflops"] == "Acme X100 datasheet"
    assert x.sources["tdp_w"] == f"user catalog {user}"  # unsourced user numbers say where they came from
    h100 = cat.gpu("H100-SXM")
    assert h100.price_per_hour == 2.10
    assert h100.sources["price_per_hour"] == f"user catalog {user}"
    assert h100.tdp_w == 700.0 and "datasheet" in h100.sources["tdp_w"]  # the rest is untouched
    assert load_catalog().gpu("H100-SXM").price_per_hour != 2.10  # no state leaks between loads


def test_override_by_alias_or_case_merges_into_the_bundled_entry(tmp_path: Path) -> None:
    user = _write(tmp_path, "gpus:\n  a100-sxm:\n    price_per_hour: 1.0\n  h200-sxm:\n    idle_w: 90\n")
    cat = load_catalog([user])
    assert "a100-sxm" not in cat.gpus and "h200-sxm" not in cat.gpus
    assert cat.gpu("A100-80GB-SXM").price_per_hour == 1.0
    assert cat.gpu("H200-SXM").idle_w == 90.0


def test_later_files_win_and_models_can_be_added(tmp_path: Path) -> None:
    first = _write(tmp_path, "gpus:\n  L40S:\n    price_per_hour: 1.5\n", "a.yaml")
    second = _write(tmp_path, "gpus:\n  L40S:\n    price_per_hour: 1.2\n", "b.yaml")
    tiny = _write(tmp_path, """
models:
  Tiny-MoE:
    num_layers: 2
    hidden_size: 64
    num_heads: 4
    num_kv_heads: 2
    head_dim: 16
    ffn_size: 0
    vocab_size: 1000
    params_b: 0.000350
    moe: {num_experts: 4, experts_per_token: 2, expert_ffn_size: 128}
""", "tiny.yaml")
    cat = load_catalog([first, second, tiny])
    assert cat.gpu("L40S").price_per_hour == 1.2
    m = cat.model("Tiny-MoE")
    assert m.computed_params() == 350_016
    assert m.moe is not None and m.moe.num_experts == 4


def test_empty_user_file_changes_nothing(tmp_path: Path) -> None:
    assert load_catalog([_write(tmp_path, "")]) == load_catalog()


BAD = [
    # (file content, substrings the one-line error must contain)
    ("gpus:\n  H100-SXM:\n    tdp: 5\n", ["row 3", "gpus.H100-SXM.tdp", "unknown key 'tdp'", "tdp_w"]),
    ("gpus:\n  H100-SXM:\n    tdp_w: '700'\n", ["gpus.H100-SXM.tdp_w", "valid number"]),
    ("gpus:\n  H100-SXM:\n    tdp_w: true\n", ["gpus.H100-SXM.tdp_w", "valid number"]),
    ("gpus:\n  H100-SXM:\n    price_per_hour: -1\n",
     ["row 3", "gpus.H100-SXM.price_per_hour", "greater than 0"]),
    ("gpus:\n  H100-SXM:\n    fp8_tflops: -2\n", ["gpus.H100-SXM.fp8_tflops", "greater than or equal to 0"]),
    ("gpus:\n  H100-SXM:\n    hbm_tbps: .inf\n", ["gpus.H100-SXM.hbm_tbps", "finite"]),
    ("gpus:\n  H100-SXM:\n    idle_w: 800\n", ["gpus.H100-SXM", "idle_w (800) must be below tdp_w (700)"]),
    ("gpus:\n  H100-SXM:\n    gpus_per_node: 8.5\n", ["gpus.H100-SXM.gpus_per_node", "valid integer"]),
    ("gpus:\n  H100-SXM:\n    tdp_w: 600\n    tdp_w: 700\n", ["row 4", "duplicate key 'tdp_w'"]),
    ("gpus:\n  H100-SXM: 5\n", ["row 2", "gpus.H100-SXM", "mapping"]),
    ("gpus: [1, 2]\n", ["field gpus", "mapping"]),
    ("gpu:\n  H100-SXM: {}\n", ["row 1", "unknown top-level key 'gpu'"]),
    ("- 1\n- 2\n", ["top level must be a mapping"]),
    ("gpus:\n  [a, b\n", ["invalid YAML"]),
    ("gpus:\n  X:\n    vendor: Acme\n", ["gpus.X.bf16_tflops", "required key is missing", "more problems"]),
    ("gpus:\n  H100-SXM:\n    sources: {tdp: x}\n", ["gpus.H100-SXM.sources.tdp", "unknown source key"]),
    ("gpus:\n  H100-SXM:\n    sources: {tdp_w: ' '}\n", ["gpus.H100-SXM.sources.tdp_w", "empty source"]),
    ("gpus:\n  H100-SXM:\n    aliases: [H200]\n",
     ["gpus.H100-SXM.aliases", "alias 'H200' collides with GPU"]),
    ("models:\n  Llama-3.1-8B:\n    num_layers: 40\n",
     ["models.Llama-3.1-8B.params_b", "architecture gives 9.78B", "within 3%"]),
    ("models:\n  Mixtral-8x7B:\n    active_params_b: 20\n",
     ["row 3", "models.Mixtral-8x7B.active_params_b", "architecture gives 12.88B"]),
    ("models:\n  Llama-3.1-8B:\n    num_kv_heads: 7\n", ["models.Llama-3.1-8B", "multiple of num_kv_heads"]),
    ("models:\n  DeepSeek-V3:\n    moe: {top_k: 2}\n",
     ["row 3", "models.DeepSeek-V3.moe.top_k", "experts_per_token"]),
    ("models:\n  DeepSeek-V3:\n    mla: {kv_lora_rank: 0}\n",
     ["models.DeepSeek-V3.mla.kv_lora_rank", "greater than 0"]),
]


@pytest.mark.parametrize(("text", "needles"), BAD, ids=[n[1] if len(n) > 1 else n[0] for _, n in BAD])
def test_bad_yaml_names_file_and_key_path(tmp_path: Path, text: str, needles: list[str]) -> None:
    user = _write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_catalog([user])
    msg = str(info.value)
    assert msg.startswith(str(user))
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg


def test_non_utf8_file(tmp_path: Path) -> None:
    user = _write(tmp_path, b"gpus:\n  H100-SXM:\n    vendor: \xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8") as info:
        load_catalog([user])
    assert info.value.path == str(user)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match="file not found") as info:
        load_catalog([missing])
    assert info.value.path == str(missing)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_catalog([tmp_path])


def test_bundled_style_file_needs_a_source_for_every_number(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Shipped files get no automatic "user catalog" sources: a number without a citation is refused.
    shipped = _write(tmp_path, NEW_GPU, "gpus.yaml")
    monkeypatch.setattr(load_mod, "bundled_paths", lambda: [str(shipped)])
    with pytest.raises(InputError, match=r"gpus\.X100\.sources\.fp8_tflops: no source for 'fp8_tflops'"):
        load_catalog()
    model = _write(tmp_path, """
models:
  M:
    num_layers: 1
    hidden_size: 8
    num_heads: 2
    num_kv_heads: 2
    head_dim: 4
    ffn_size: 16
    vocab_size: 10
    params_b: 0.000000729
    sources: {architecture: "config.json"}
""", "models.yaml")
    monkeypatch.setattr(load_mod, "bundled_paths", lambda: [str(model)])
    # One 'architecture' source covers the shapes, but a published count needs its own citation.
    with pytest.raises(InputError, match=r"models\.M\.sources\.params_b: no source"):
        load_catalog()
