"""``specdeploy build``: its options, its one-line errors, and its summary (through the stand-in TensorRT)."""

from __future__ import annotations

from helpers.fake_tensorrt import DEVICE, tiny_spatial_onnx
from specdeploy.trt import sidecar


def test_cli_build_without_tensorrt_is_a_one_line_error(no_tensorrt, tmp_path, capsys):
    from specdeploy import cli

    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    rc = cli.main(["build", str(onnx_file), "-o", str(tmp_path / "m.engine"), "--plugins", str(tmp_path / "l.so")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "TensorRT Python package not found: install specdeploy[trt]" in err
    assert "Traceback" not in err


def test_cli_build_parser_defaults(monkeypatch):
    from specdeploy import cli

    monkeypatch.delenv("SPECDEPLOY_TRT_PLUGINS", raising=False)
    args = cli.build_parser().parse_args(["build", "m.onnx", "-o", "m.engine", "--plugins", "lib.so"])
    assert args.fp16 is None and args.workspace is None and args.max_batch is None and args.recipe is None
    args = cli.build_parser().parse_args(["build", "m.onnx", "-o", "e", "--plugins", "l", "--fp16", "--workspace",
                                          "512", "--max-batch", "8", "--recipe", "r.toml"])
    assert args.fp16 is True and args.workspace == 512 and args.max_batch == 8 and args.recipe == "r.toml"


def test_cli_build_needs_plugins(monkeypatch, tmp_path, capsys):
    from specdeploy import cli

    monkeypatch.delenv("SPECDEPLOY_TRT_PLUGINS", raising=False)
    rc = cli.main(["build", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.engine")])
    assert rc == 2 and "--plugins is required" in capsys.readouterr().err


def test_cli_build_prints_a_summary_and_needs_no_plugins_for_a_twin(fake_trt, tmp_path, monkeypatch, capsys):
    from specdeploy import cli
    from specdeploy.trt import cudart

    monkeypatch.delenv("SPECDEPLOY_TRT_PLUGINS", raising=False)
    monkeypatch.setattr(cudart, "Cuda", lambda *a, **k: fake_trt.cuda)
    model = tiny_spatial_onnx(tmp_path / "twin.onnx", max_batch=8)
    rc = cli.main(["build", str(model), "-o", str(tmp_path / "twin.engine"), "--fp16", "--workspace", "128"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0].startswith(f"engine  {tmp_path / 'twin.engine'}  ") and " bytes  built in " in out[0]
    assert out[1].strip() == ("TensorRT 10.3.0.30 on Orin (nvgpu) (sm_87), fp16, workspace 128 MiB, "
                              "batch 1..8 (opt 8)")
    assert out[2].strip() == "plugins none (no specdeploy ops)"
    assert out[3] == f"sidecar {tmp_path / 'twin.engine.json'}"
    data = sidecar.read_sidecar(tmp_path / "twin.engine")
    assert data["plugin_library"] is None
    # an engine built without plugins passes the check whatever library the runner is given
    other = tmp_path / "lib.so"
    other.write_bytes(b"x")
    sidecar.check_sidecar(tmp_path / "twin.engine", tensorrt_version="10.3.0", device=DEVICE, plugin_path=other)
    assert fake_trt.registry.loads == []
