"""spos-profile as a user runs it."""

from __future__ import annotations

import json

from .conftest import run_cli


def test_profile_json_contract():
    proc = run_cli("spos-profile", "oneshot-s+", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["flops"] == 291_475_944 and d["params"] == 3_541_829
    mn = d["micronet"]
    assert set(mn) >= {"mults", "adds", "ops", "params", "score"}
    assert mn["ops"] == mn["mults"] + mn["adds"]
    assert mn["score"] == mn["params"] / 6.9e6 + mn["ops"] / 1170e6
    assert len(d["blocks"]) == 20
    assert {"block", "channel", "mid_channels", "flops", "params"} <= set(d["blocks"][0])
    assert sum(b["flops"] for b in d["blocks"]) + d["stem"]["flops"] + d["head"]["flops"] == d["flops"]
    assert d["blocks"][19]["mid_channels"] == 448


def test_profile_tables_and_compare(tmp_path):
    proc = run_cli(
        "spos-profile",
        "oneshot",
        "--table",
        "ops",
        "--score-bits",
        "8",
        "--compare",
        "mobilenetv2_1.0",
        "--plot",
        str(tmp_path / "p.png"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "mobilenetv2_1.0" in proc.stdout and "b19_pw2_fwd" in proc.stdout
    assert (tmp_path / "p.png").stat().st_size > 1000
    proc = run_cli("spos-profile", "oneshot", "--json", "--compare", "mobilenetv3_small")
    d = json.loads(proc.stdout)
    assert d["compare"][0]["name"] == "mobilenetv3_small" and d["compare"][0]["flops"] > 0
    proc = run_cli("spos-profile", "oneshot", "--compare", "no_such_net")
    assert proc.returncode == 2 and "no_such_net" in proc.stderr


def test_profile_measure_text_reports_load_and_coverage(tmp_path):
    """--measure (onnxruntime) says how much of end-to-end time the nodes cover and how loaded the machine was."""
    from .conftest import TINY_MODEL

    model = tmp_path / "tiny.json"
    model.write_text(json.dumps(TINY_MODEL))
    proc = run_cli("spos-profile", str(model), "--measure", "--repeats", "5", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("measured (onnxruntime"))
    assert "% of end to end" in line and "other: " in line
    assert any(ln.startswith("load: quiet") or ln.startswith("load: BUSY") for ln in proc.stdout.splitlines())
