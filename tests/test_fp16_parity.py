"""fp16 SpecVGG16: why native-host and the reference disagree end to end, on real MNIST images (issue 13 item 3).

Measured (VGG16 width 1/4, paper block, 125 training steps on MNIST, fp16 values, 1000 test images):
top-1 agreement 0.996, max |logit diff| 0.91, 134 samples differ by > 0.01; fp32 agrees to 3e-6.

The mechanism, pinned by these tests:
1. Per op, on the same input, the two agree as DESIGN §7 asks: no mask flips, about 0.1% of the
   stored fp16 values differ by one fp16 ulp (2^-11 at 0.5..1), pooling is bit-identical. The ulp
   comes from the pre-threshold spectrum Y: the reference computes it in float64 and rounds once to
   fp32, the host library accumulates in fp32 (its kernel spectra from fp32 twiddles). Y differs by an
   fp32 ulp or two in a few values; rounding to fp16 turns that into a whole fp16 ulp (8192x larger)
   for values next to an fp16 rounding boundary. (tanh is not it: with libm's tanhf in the
   reference, or tanh in float64, the count stays the same.)
2. Chained through the network, one such ulp eventually moves a coefficient whose |Y| is within
   ~1e-5 of beta across the threshold (an allowed flip, §7), and the paper block's hard threshold
   (a jump of tanh(beta) = 0.76) turns that one flip into O(1) differences in the next layer: measured
   1 flip at features.6, 15 at features.8, 765 at features.16 for the 16 worst samples.
So neither runtime is wrong against the contract; the end-to-end difference is the threshold
amplifying an allowed rounding difference, and fp16 storage makes the first flip ~8000x likelier
than fp32 storage. Making native-host bit-identical to the reference needs the host library to
accumulate Y (and its twiddles) in float64 (plugins/spec_conv/spec_conv.h ``eval_k``, the
``sd_conv_kernel_coeff`` twiddle tables): reported to the lead, not done here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from specdeploy import data as datasets
from specdeploy import native, packed, runtime, zoo
from specdeploy.export import export_model
from specdeploy.reference import ops as R

FP16_ULP_AT_1 = 2.0 ** -10  # spacing of fp16 values in [1, 2); values here are |tanh| < 1


@pytest.fixture(scope="module")
def vgg(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """SpecVGG16 width 1/8 with its normalization statistics from 256 real MNIST images (no training:
    the statistics alone make the thresholds keep 10-40%), fp16 values, and 64 real test images."""
    torch.manual_seed(0)
    model = zoo.build(zoo.ModelConfig(model="vgg16", domain="spectral", in_channels=1, beta=1.0, width=0.125,
                                      block="paper"))
    train = datasets.prepare("mnist", "train", 32, 1, samples=256)
    x = torch.from_numpy(datasets.normalize(train.images, "mnist"))
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), 64):
            model(x[i:i + 64])
    model.eval()
    path = tmp_path_factory.mktemp("fp16") / "vgg16.fp16.onnx"
    export_model(model, path, batch=None, max_batch=64, value_dtype="fp16", calib_images=x.numpy(),
                 metadata={"specdeploy.data": {"name": "mnist"}})
    test = datasets.prepare("mnist", "test", 32, 1, samples=64)
    return path, datasets.normalize(test.images, "mnist")


def _ops(path: Path) -> tuple[runtime.ModelInfo, list[tuple[object, onnx.NodeProto, list[np.ndarray | None]]]]:
    info = runtime.read_model(path)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in info.model.graph.initializer}
    out = []
    for n in info.spec_nodes:
        if n.op not in ("SpecConv", "SpecPool"):
            break
        node = info.model.graph.node[n.index]
        out.append((n, node, [inits.get(i) if i else None for i in node.input[1:]]))
    return info, out


def _run(impl: object, n: object, x: np.ndarray, w: list[np.ndarray | None]) -> np.ndarray:
    return impl.spec_conv(x, *w, **n.attrs) if n.op == "SpecConv" else impl.spec_pool(x, **n.attrs)  # type: ignore[attr-defined]


def _decode(n: object, y: np.ndarray, w: list[np.ndarray | None]) -> packed.Decoded:
    a = n.attrs  # type: ignore[attr-defined]
    if n.op == "SpecConv":  # type: ignore[attr-defined]
        return packed.decode(y, w[0].shape[0], packed.num_coeffs(a["Hs"], a["Ws"]), a["value_dtype"])
    return packed.decode(y, a["C"], packed.num_coeffs(a["out_Hs"], a["out_Ws"]), a["value_dtype"])


def _rel_to_beta(n: object, x: np.ndarray, w: list[np.ndarray | None]) -> np.ndarray:
    """|Y| / beta - 1 of the reference's pre-threshold spectrum, [B, O, F] (float64)."""
    a = n.attrs  # type: ignore[attr-defined]
    Hs, Ws, C = a["Hs"], a["Ws"], a["C"]
    if a["in_domain"] == "spatial":
        X = R.spatial_spectrum(x, Hs, Ws)
    else:
        X = packed.decode(x, C, packed.num_coeffs(Hs, Ws), a["value_dtype"]).values.astype(np.complex128)
        X = X.reshape(-1, C, Hs, Ws // 2 + 1)
    Y = np.einsum("bcpq,ocpq->bopq", X, R.kernel_spectrum(w[0], Hs, Ws))
    if len(w) > 1 and w[1] is not None:
        Y[:, :, 0, 0] += w[1] * math.sqrt(Hs * Ws)
    return np.abs(Y.reshape(len(x), w[0].shape[0], -1)) / a["beta"] - 1.0


def test_each_op_agrees_on_the_same_input(vgg: tuple[Path, np.ndarray], host_lib_path: Path) -> None:
    """DESIGN §7 per op: masks agree except within 1e-3 of beta; values within one fp16 ulp."""
    path, x = vgg
    lib = native.load("host", host_lib_path)
    _, ops = _ops(path)
    cur = x
    differing = 0
    for n, _node, w in ops:
        ref, nat = _run(R, n, cur, w), _run(lib, n, cur, w)
        dr, dn = _decode(n, ref, w), _decode(n, nat, w)
        flips = dr.keep != dn.keep
        if flips.any():
            assert n.op == "SpecConv"
            assert np.abs(_rel_to_beta(n, cur, w)[flips]).max() < 1e-3, f"{n.name}: a flip away from beta"
        both = dr.keep & dn.keep
        diff = (dr.values - dn.values)[both]
        d = np.maximum(np.abs(diff.real), np.abs(diff.imag))  # per component: one fp16 ulp at most
        assert d.max(initial=0.0) <= FP16_ULP_AT_1 / 2, f"{n.name}: values differ by more than an fp16 ulp"
        if n.op == "SpecPool":
            assert np.array_equal(ref, nat), f"{n.name}: pooling is exact"
        differing += int((d > 0).sum())
        cur = ref
    assert differing > 0  # the ulps that start the cascade exist (if this fails, the mechanism changed)


def test_end_to_end_difference_starts_from_an_allowed_flip(vgg: tuple[Path, np.ndarray], host_lib_path: Path) -> None:
    """Each runtime chained on its own outputs: the first op where the masks differ flips only
    coefficients within 1e-3 of beta (allowed); later ones may differ anywhere (the cascade)."""
    path, x = vgg
    lib = native.load("host", host_lib_path)
    _, ops = _ops(path)
    cur = {"ref": x, "nat": x}
    first = None
    for n, _node, w in ops:
        out = {"ref": _run(R, n, cur["ref"], w), "nat": _run(lib, n, cur["nat"], w)}
        flips = _decode(n, out["ref"], w).keep != _decode(n, out["nat"], w).keep
        if flips.any() and first is None:
            first = n.name
            same_input = np.array_equal(cur["ref"], cur["nat"])
            rel = np.abs(_rel_to_beta(n, cur["ref"], w)[flips])
            # on the same input only near-beta flips are allowed; on inputs that already differ by
            # fp16 ulps the flipped coefficients must still be close to beta (well within 1%)
            assert rel.max() < (1e-3 if same_input else 1e-2), (n.name, rel.max())
        cur = out
    if first is None:
        pytest.skip("no mask differed on these 64 images (the cascade did not start)")
