"""TensorRT error reporting, recipes and images (issue 13 item 7), without TensorRT: stand-in modules.

A plugin that refuses a node's fields must be reported with its own message, not as "plugin not
found, pass --plugins"; shipped recipes keep TensorRT's default tactic sources; the x86 image builds
for the GPUs people have; the docs say which JetPack has TensorRT 10.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from specdeploy import recipes
from specdeploy.trt import compat

REPO = Path(__file__).resolve().parents[1]
REFUSED = "Could not create the plugin."
NOT_FOUND = "Plugin not found, are the plugin name, version, and namespace correct?"
PLUGIN_MSG = "SpecConv node 'features.0': attribute 'beta' = -1 must be a finite number >= 0"


def _err(node: int, name: str, op: str, desc: str) -> dict:
    return {"node": node, "node_name": name, "operator": op, "desc": desc, "code": "UNSUPPORTED_NODE"}


def test_refused_plugin_is_reported_with_its_own_message(tmp_path: Path) -> None:
    text = compat.format_parser_errors([_err(3, "features.0", "SpecConv", REFUSED)], tmp_path / "lib.so",
                                       ["some other TensorRT error", PLUGIN_MSG])
    assert PLUGIN_MSG in text
    assert "refused" in text and "--plugins" not in text and "not found" not in text
    assert "some other TensorRT error" not in text  # only the lines about this node


def test_refused_plugin_without_a_log_line_says_so() -> None:
    text = compat.format_parser_errors([_err(3, "features.0", "SpecConv", REFUSED)])
    assert "refused" in text and "logged no reason" in text and "--plugins" not in text


def test_missing_plugin_still_gets_the_plugins_hint(tmp_path: Path) -> None:
    text = compat.format_parser_errors([_err(3, "features.0", "SpecConv", NOT_FOUND)], tmp_path / "lib.so",
                                       [PLUGIN_MSG])
    assert text.startswith("plugin not found for node 3 'features.0' (SpecConv)") and "--plugins" in text


class _Registry:
    def __init__(self) -> None:
        self.creators: dict = {}

    def get_creator(self, name, version, namespace=""):
        return self.creators.get((name, version, namespace))

    def load_library(self, path):
        for n in compat.SPECDEPLOY_PLUGINS:
            self.creators[(n, "1", "")] = f"creator:{n}"
        return object()


def _fake_trt_whose_plugin_refuses() -> types.ModuleType:
    """Parser: the SpecConv creator logs its reason through the logger, the parser says 'Could not create'."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0.30"

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self, *a):
            pass

    trt.ILogger = ILogger
    registry = _Registry()
    trt.get_plugin_registry = lambda: registry

    class Err:
        def node(self):
            return 3

        def node_name(self):
            return "features.0"

        def node_operator(self):
            return "SpecConv"

        def desc(self):
            return REFUSED

        def code(self):
            return "UNSUPPORTED_NODE"

    class Parser:
        def __init__(self, network, logger):
            self.logger = logger
            self.num_errors = 0

        def parse_from_file(self, path):
            self.logger.log(ILogger.Severity.ERROR, PLUGIN_MSG)
            self.num_errors = 1
            return False

        def get_error(self, i):
            return Err()

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return object()

    trt.Builder, trt.OnnxParser = Builder, Parser
    return trt


def test_build_engine_reports_the_plugins_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt_whose_plugin_refuses())
    monkeypatch.setattr(compat, "_loaded", {})
    from specdeploy.trt.builder import EngineBuildError, build_engine

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    lib = tmp_path / "libspecdeploy_trt.so"
    lib.write_bytes(b"plugin")
    with pytest.raises(EngineBuildError) as ei:
        build_engine(model, tmp_path / "m.engine", lib, device_info={"name": "x", "compute_capability": "8.7"})
    msg = str(ei.value)
    assert PLUGIN_MSG in msg and "pass the plugin library" not in msg
    assert not (tmp_path / "m.engine").exists()


def test_build_engine_never_writes_over_its_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from specdeploy.outputs import OutputError
    from specdeploy.trt.builder import build_engine

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    with pytest.raises(OutputError, match="input"):
        build_engine(model, model, None, device_info={})
    assert model.read_bytes() == b"x"


# ------------------------------------------------------------------------------ recipes and images

TRT_DEFAULT_SOURCES = {"EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"}


@pytest.mark.parametrize("recipe", recipes.all_recipes(), ids=lambda r: r.name)
def test_shipped_recipes_keep_tensorrts_default_tactic_sources(recipe: recipes.Recipe) -> None:
    """An explicit list replaces TensorRT's default set: one without the edge-mask and JIT convolutions
    turns them off (and loading cuBLAS/cuDNN skews both models' memory), so none may ship."""
    src = set(recipe.tensorrt.tactic_sources)
    assert not src or TRT_DEFAULT_SOURCES <= src, f"{recipe.name} turns off TensorRT default tactics: {sorted(src)}"


def _docker_archs(path: Path) -> list[str]:
    text = path.read_text()
    m = re.search(r'^ARG CUDA_ARCHS="([0-9a-z;\-]+)"', text, re.M)
    assert m, f"{path.name} has no ARG CUDA_ARCHS"
    assert '-DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS}"' in text, f"{path.name} does not pass CUDA_ARCHS to cmake"
    return m.group(1).split(";")


def test_x86_image_builds_for_turing_ampere_and_newer() -> None:
    archs = _docker_archs(REPO / "docker" / "Dockerfile.x86")
    real = {a.split("-")[0] for a in archs}
    for need in ("75", "80", "86", "89", "90"):  # T4, A100, A10/RTX 30, L4/RTX 40, H100
        assert need in real, f"sm_{need} missing from the x86 image: {archs}"
    # the newest entry carries PTX (no -real suffix) so GPUs newer than the list still load the kernels
    assert any(not a.endswith("-real") for a in archs), archs


def test_docs_say_jetpack_6_1_for_tensorrt_10() -> None:
    """JetPack 6.0 ships TensorRT 8.6; 10.3 comes with 6.1+. No doc or build message may say otherwise."""
    files = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "docker").glob("Dockerfile*"),
             *(REPO / "export").glob("*.toml"), *(REPO / "specdeploy" / "trt").glob("*.py"),
             REPO / "plugins" / "trt_common" / "trtCompat.h", REPO / "plugins" / "cmake" / "tensorrt.cmake"]
    bad = []
    for f in files:
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"JetPack 6(?![.\d])", line) and "10.3" in line and "6.0" not in line:
                bad.append(f"{f.relative_to(REPO)}:{i}: {line.strip()}")
    assert not bad, "say 'JetPack 6.1+' (6.0 has TensorRT 8.6):\n" + "\n".join(bad)
    assert "6.1" in (REPO / "plugins" / "trt_common" / "trtCompat.h").read_text()
