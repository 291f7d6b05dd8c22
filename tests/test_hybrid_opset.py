"""The op set's hybrid-block additions (DESIGN §2b, §3): SpecConv activation "relu" and ``pool``.

Old files (no ``pool`` attribute) stay valid; ``pool`` shrinks the output's spectral size (row words,
shape inference, planner); bad values name the node and the attribute; runtimes whose kernels lack
the block refuse the file naming node and attribute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from specdeploy import memory, ops, packed, runtime, zoo
from specdeploy.export import export_model
from specdeploy.export.schemas import register
from specdeploy.runtime.errors import BackendUnavailableError, ModelError, UnsupportedByBackendError


def _trained_like(model: zoo.ZooModel) -> zoo.ZooModel:
    torch.manual_seed(0)
    x = torch.randn(8, model.config.in_channels, 32, 32)
    model.train()
    for _ in range(3):
        model(x)  # normalization statistics away from their initial values
    return model.eval()


@pytest.fixture(scope="module")
def hybrid_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = _trained_like(zoo.create("lenet5", in_channels=1, block="hybrid", beta=0.3))
    return export_model(model, tmp_path_factory.mktemp("hy") / "lenet5-hybrid.onnx", value_dtype="fp16").path


@pytest.fixture(scope="module")
def paper_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = _trained_like(zoo.create("lenet5", in_channels=1, beta=0.3, block="paper"))
    return export_model(model, tmp_path_factory.mktemp("pa") / "lenet5-paper.onnx").path


def _conv_nodes(path: Path) -> list[onnx.NodeProto]:
    return [n for n in onnx.load(str(path)).graph.node if n.op_type == "SpecConv"]


def test_paper_files_have_no_pool_and_read_as_none(paper_onnx: Path) -> None:
    assert all("pool" not in {a.name for a in n.attribute} for n in _conv_nodes(paper_onnx))
    info = runtime.read_model(paper_onnx)
    assert {n.attrs["pool"] for n in info.spec_nodes if n.op == "SpecConv"} == {"none"}


def test_hybrid_nodes_pool_and_shrink_their_output(hybrid_onnx: Path) -> None:
    nodes = _conv_nodes(hybrid_onnx)
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes]
    assert [(a["activation"], a["pool"], a["Hs"]) for a in attrs] == [(b"relu", b"max2", 36), (b"relu", b"max2", 18)]
    register()
    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(hybrid_onnx)), strict_mode=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    for n, a in zip(nodes, attrs):
        F = packed.num_coeffs(a["Hs"] // 2, a["Ws"] // 2)  # 36 -> 18, 18 -> 9: the pooled map
        words = packed.row_words(n_out := int(onnx.numpy_helper.to_array(
            next(i for i in onnx.load(str(hybrid_onnx)).graph.initializer if i.name == n.input[1])).shape[0]),
            F, a["capacity"], "fp16")
        assert shapes[n.output[0]][1:] == [words], (n.name, n_out)
    plan = memory.plan(str(hybrid_onnx), batch=1, activation_dtype="fp16")
    assert plan.peak_bytes > 0


@pytest.mark.parametrize(
    "activation,pool,message",
    [("tanh", "max2", "attribute 'pool' = 'max2' is invalid: pools only with activation 'relu'"),
     ("relu", "max3", "attribute 'pool' = 'max3' is invalid: must be one of 'none', 'max2', 'avg2'"),
     ("sigmoid", "none", "attribute 'activation' = 'sigmoid' is invalid")],
)
def test_bad_values_name_node_and_attribute(tmp_path: Path, hybrid_onnx: Path, activation: str, pool: str,
                                            message: str) -> None:
    m = onnx.load(str(hybrid_onnx))
    node = next(n for n in m.graph.node if n.op_type == "SpecConv")
    for a in node.attribute:
        if a.name == "activation":
            a.s = activation.encode()
        if a.name == "pool":
            a.s = pool.encode()
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(ModelError, match=rf"node '{node.name}'.*{message}"):
        runtime.load(bad, "reference")


def test_reference_and_ort_agree_on_hybrid(hybrid_onnx: Path) -> None:
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)  # exported at batch 1
    ref = runtime.load(hybrid_onnx, "reference").run(x)
    # the packed maps are the same bits; the head (Gemm) sums in another order in ORT
    np.testing.assert_allclose(ref, runtime.load(hybrid_onnx, "ort").run(x), rtol=1e-5, atol=1e-6)


@pytest.fixture()
def kernels_without_relu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Native kernels that lack the hybrid block (as before they implemented it): the op's rule says so."""
    import dataclasses

    def lacks_relu(a: dict) -> str | None:
        return f"attribute 'activation' = {a['activation']!r} is not implemented" if a["activation"] == "relu" else None

    monkeypatch.setitem(ops.REGISTRY, "SpecConv", dataclasses.replace(ops.REGISTRY["SpecConv"], native_unsupported=lacks_relu))


def test_native_host_refuses_unsupported_attribute_naming_node(hybrid_onnx: Path, host_lib_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               kernels_without_relu: None) -> None:
    monkeypatch.setenv("SPECDEPLOY_HOST_LIB", str(host_lib_path))
    first = _conv_nodes(hybrid_onnx)[0].name
    with pytest.raises(UnsupportedByBackendError, match=rf"node '{first}' \(SpecConv\): attribute 'activation' = 'relu'"):
        runtime.load(hybrid_onnx, "native-host")
    assert issubclass(UnsupportedByBackendError, BackendUnavailableError)  # the demo's fallback catches it


def test_tensorrt_build_refuses_unsupported_attribute_before_tensorrt(tmp_path: Path, hybrid_onnx: Path,
                                                                      kernels_without_relu: None) -> None:
    from specdeploy.trt.builder import EngineBuildError, build_engine

    first = _conv_nodes(hybrid_onnx)[0].name
    with pytest.raises(EngineBuildError, match=rf"node '{first}' \(SpecConv\): attribute 'activation' = 'relu'"):
        build_engine(hybrid_onnx, tmp_path / "e.plan", plugins=None)


def test_native_host_runs_the_hybrid_block(hybrid_onnx: Path, host_lib_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECDEPLOY_HOST_LIB", str(host_lib_path))
    x = np.random.default_rng(1).standard_normal((1, 1, 32, 32)).astype(np.float32)
    ref = runtime.load(hybrid_onnx, "reference").run(x)
    np.testing.assert_allclose(runtime.load(hybrid_onnx, "native-host").run(x), ref, rtol=1e-3, atol=1e-3)


def test_native_unsupported_rule() -> None:
    conv = ops.REGISTRY["SpecConv"]
    assert conv.native_unsupported({"activation": "tanh", "pool": "none"}) is None
    assert conv.native_unsupported({"activation": "relu", "pool": "max2"}) is None  # the kernels have it
    assert conv.defaults == {"pool": "none"}
