"""The CUDA kernel library (libspecdeploy_kernels.so) on a GPU vs the numpy reference and vs the host
library, through the device-pointer API with torch CUDA buffers.

Marked ``gpu``: skipped (with the reason) where torch has no CUDA device. The library is taken from
$SPECDEPLOY_KERNELS_LIB, else built once per session for the present GPU's architecture.

Same grid and comparison rules as test_native_host.py, plus: the CUDA library and the host library
compute the same fp32 bits before the activation (the shared SD_HD functions use explicit fma /
non-contracted multiply-add), so their headers and masks must agree exactly.
"""

from __future__ import annotations


import numpy as np
import pytest

from specdeploy import native
from specdeploy import packed as P
from specdeploy import reference as R

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch", reason="the GPU tests use torch CUDA buffers")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch", allow_module_level=True)

from helpers.native_host import (  # noqa: E402  (shared grid and comparison rules)
    CONCAT_CASES,
    CONV_SETTINGS,
    CONV_SPATIAL,
    CONV_SPECTRAL,
    POOL_CASES,
    TO_SPATIAL_CASES,
    _capacity,
    _seed,
    assert_same_packed,
    compare_packed,
    conv_case,
    make_packed,
)


@pytest.fixture(scope="session")
def libs(gpu_lib_paths):
    """(cuda library, host library), loaded; built once per session (tests/conftest.py)."""
    cuda_path, host_path = gpu_lib_paths
    cuda = native.load("cuda", cuda_path)  # runs sd_check_device: surfaces a wrong architecture
    return cuda, native.load("host", host_path)


def _dev(a: np.ndarray) -> "torch.Tensor":
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


def _garbage(nbytes: int) -> "torch.Tensor":
    # workspace and outputs start as garbage: the kernels must not rely on zeroed memory
    return torch.full((max(1, nbytes),), 0xA5, dtype=torch.uint8, device="cuda")


def _stream() -> int:
    return torch.cuda.current_stream().cuda_stream


def cuda_spec_conv(lib, x, w, b, *, in_domain, C, Hs, Ws, k, beta, activation, capacity, value_dtype, ws_offset=0,
                   input_spectrum="auto", pool="none"):
    O = w.shape[0]
    if in_domain == "spatial":
        p = native.conv_params(in_domain=in_domain, C=C, O=O, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation,
                               capacity=capacity, value_dtype=value_dtype, H=x.shape[2], W=x.shape[3],
                               x_dtype=x.dtype, has_bias=b is not None, input_spectrum=input_spectrum, pool=pool)
    else:
        p = native.conv_params(in_domain=in_domain, C=C, O=O, Hs=Hs, Ws=Ws, k=k, beta=beta, activation=activation,
                               capacity=capacity, value_dtype=value_dtype, has_bias=b is not None,
                               in_row_words=x.shape[1], pool=pool)
    B = x.shape[0]
    S = lib.out_row_words(p)
    xd, wd = _dev(x), _dev(w.astype(np.float32))
    bd = _dev(b.astype(np.float32)) if b is not None else None
    y = torch.full((B, S), -1, dtype=torch.int32, device="cuda")
    n = lib.spec_conv_workspace_size(p, B)
    ws = _garbage(n + ws_offset)
    lib.spec_conv_forward_ptr(p, B, xd.data_ptr(), wd.data_ptr(), None if bd is None else bd.data_ptr(), y.data_ptr(),
                              ws.data_ptr() + ws_offset, n, _stream())
    torch.cuda.synchronize()
    return y.cpu().numpy()


def cuda_spec_pool(lib, x, **a):
    p = native.pool_params(**a, in_row_words=x.shape[1])
    B, S = x.shape[0], lib.out_row_words(p)
    y = torch.full((B, S), -1, dtype=torch.int32, device="cuda")
    n = lib.spec_pool_workspace_size(p, B)
    ws = _garbage(n)
    xd = _dev(x)
    lib.spec_pool_forward_ptr(p, B, xd.data_ptr(), y.data_ptr(), ws.data_ptr(), n, _stream())
    torch.cuda.synchronize()
    return y.cpu().numpy()


def cuda_spec_concat(lib, xs, **a):
    p = native.concat_params(**a, in_row_words=[x.shape[1] for x in xs])
    B, S = xs[0].shape[0], lib.out_row_words(p)
    y = torch.full((B, S), -1, dtype=torch.int32, device="cuda")
    n = lib.spec_concat_workspace_size(p, B)
    ws = _garbage(n)
    xds = [_dev(x) for x in xs]
    lib.spec_concat_forward_ptr(p, B, [t.data_ptr() for t in xds], y.data_ptr(), ws.data_ptr(), n, _stream())
    torch.cuda.synchronize()
    return y.cpu().numpy()


def cuda_spec_to_spatial(lib, x, *, C, Hs, Ws, value_dtype, y_dtype=np.float32):
    p = native.to_spatial_params(C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype, in_row_words=x.shape[1], y_dtype=y_dtype)
    B = x.shape[0]
    tdt = torch.float32 if y_dtype == np.float32 else torch.float16
    y = torch.full((B, C, Hs, Ws), float("nan"), dtype=tdt, device="cuda")
    n = lib.spec_to_spatial_workspace_size(p, B)
    ws = _garbage(n)
    xd = _dev(x)
    lib.spec_to_spatial_forward_ptr(p, B, xd.data_ptr(), y.data_ptr(), ws.data_ptr(), n, _stream())
    torch.cuda.synchronize()
    return y.cpu().numpy()


def test_device_and_build_info(libs):
    cuda, _ = libs
    assert cuda.build_info.startswith("cuda")
    cuda.check_device()
    assert cuda.abi_version() == native.ABI_VERSION


@pytest.mark.parametrize("value_dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("setting", CONV_SETTINGS, ids=lambda s: f"b{s[0]}-{s[1]}-{s[3]}")
@pytest.mark.parametrize("case", CONV_SPATIAL + CONV_SPECTRAL, ids=str)
def test_spec_conv_gpu(libs, case, setting, value_dtype):
    cuda, host = libs
    dom = "spatial" if case in CONV_SPATIAL else "spectral"
    rng = np.random.default_rng(_seed((case, setting, value_dtype, "gpu")))
    x, w, b, attrs, Y, O, F = conv_case(rng, case, dom, setting, value_dtype)
    got = cuda_spec_conv(cuda, x, w, b, **attrs)
    ref = R.spec_conv(x, w, b, **attrs)
    compare_packed(got, ref, C=O, F=F, value_dtype=value_dtype, scores64=Y, what=f"cuda SpecConv {attrs}")
    hst = host.spec_conv(x, w, b, **attrs)
    vs = P.Layout.from_row_words(O, F, hst.shape[1], value_dtype).values_start
    assert np.array_equal(got[:, :vs], hst[:, :vs]), "cuda and host headers/masks/offsets must agree exactly"
    compare_packed(got, hst, C=O, F=F, value_dtype=value_dtype, rtol_val=1e-6, what="cuda vs host")


@pytest.mark.parametrize("case", CONV_SPATIAL + [(4, 3, 64, 32, 32, 3)], ids=str)
def test_spec_conv_gpu_streamed_and_dense_input_spectrum(libs, case):
    """Both ways to the first layer's input spectrum give the host library's bits on the GPU."""
    cuda, host = libs
    rng = np.random.default_rng(_seed((case, "stream", "gpu")))
    x, w, b, attrs, Y, O, F = conv_case(rng, case, "spatial", (0.4, "tanh", True, "tight"), "fp32")
    want = host.spec_conv(x, w, b, **attrs, input_spectrum="dense")
    vs = P.Layout.from_row_words(O, F, want.shape[1], "fp32").values_start
    for mode in ("dense", "streamed"):
        got = cuda_spec_conv(cuda, x, w, b, **attrs, input_spectrum=mode)
        assert np.array_equal(got[:, :vs], want[:, :vs]), f"{mode}: headers/masks/offsets differ from the host"
        compare_packed(got, want, C=O, F=F, value_dtype="fp32", rtol_val=1e-6, what=f"cuda {mode} vs host")


def test_spec_conv_gpu_realistic_and_unaligned_workspace(libs):
    cuda, host = libs
    rng = np.random.default_rng(1)
    x, w, b, attrs, Y, O, F = conv_case(rng, (8, 32, 48, 30, 30, 3), "spatial", (0.5, "tanh", True, "tight"), "fp16")
    got = cuda_spec_conv(cuda, x, w, b, ws_offset=3, **attrs)
    compare_packed(got, R.spec_conv(x, w, b, **attrs), C=O, F=F, value_dtype="fp16", scores64=Y, what="realistic")
    assert np.array_equal(got, cuda_spec_conv(cuda, x, w, b, **attrs)), "reruns must be identical"


@pytest.mark.parametrize("value_dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("rule", ["full", "tight", 1])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_spec_pool_gpu(libs, case, rule, value_dtype):
    cuda, _ = libs
    B, C, Hs, Ws, oH, oW = case
    rng = np.random.default_rng(_seed((case, rule, value_dtype, "gpu")))
    x = make_packed(rng, B, C, Hs, Ws, value_dtype, density=0.5)
    oF = P.num_coeffs(oH, oW)
    d = P.decode(x, C, P.num_coeffs(Hs, Ws), value_dtype)
    cap = _capacity(rule, C * oF, int(d.keep.reshape(B, -1).sum(axis=1).max() * oF / P.num_coeffs(Hs, Ws)))
    a = dict(C=C, Hs=Hs, Ws=Ws, out_Hs=oH, out_Ws=oW, capacity=cap, value_dtype=value_dtype)
    assert_same_packed(cuda_spec_pool(cuda, x, **a), R.spec_pool(x, **a), C=C, F=oF, value_dtype=value_dtype)


@pytest.mark.parametrize("value_dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("rule", ["full", "tight", 1])
@pytest.mark.parametrize("case", CONCAT_CASES, ids=str)
def test_spec_concat_gpu(libs, case, rule, value_dtype):
    cuda, _ = libs
    B, Cs, Hs, Ws = case
    rng = np.random.default_rng(_seed((str(case), rule, value_dtype, "gpu")))
    xs = [make_packed(rng, B, c, Hs, Ws, value_dtype, density=rng.uniform(0.2, 0.8)) for c in Cs]
    F = P.num_coeffs(Hs, Ws)
    nnz = sum(int(P.decode(x, c, F, value_dtype).nnz.max()) for x, c in zip(xs, Cs))
    a = dict(C=Cs, Hs=Hs, Ws=Ws, capacity=_capacity(rule, sum(Cs) * F, nnz), value_dtype=value_dtype)
    assert_same_packed(cuda_spec_concat(cuda, xs, **a), R.spec_concat(xs, **a), C=sum(Cs), F=F,
                       value_dtype=value_dtype)


@pytest.mark.parametrize("value_dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("case", TO_SPATIAL_CASES, ids=str)
def test_spec_to_spatial_gpu(libs, case, value_dtype):
    cuda, host = libs
    B, C, Hs, Ws = case
    rng = np.random.default_rng(_seed((case, value_dtype, "gpu")))
    x = make_packed(rng, B, C, Hs, Ws, value_dtype, density=0.7)
    got = cuda_spec_to_spatial(cuda, x, C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype)
    ref = R.spec_to_spatial(x, C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype)
    scale = max(float(np.abs(ref).max()), 1e-30)
    assert float(np.abs(got - ref).max()) / scale <= 1e-5
    half = cuda_spec_to_spatial(cuda, x, C=C, Hs=Hs, Ws=Ws, value_dtype=value_dtype, y_dtype=np.float16)
    assert np.array_equal(half, got.astype(np.float16)), "fp16 output = RNE of the fp32 output"


# ------------------------------------------------------------------------------- the hybrid block


HYBRID_GPU_CASES = [  # in_domain, B, C, O, Hs, Ws, k, pool, value_dtype
    ("spectral", 6, 16, 40, 17, 17, 3, "max2", "fp16"),
    ("spectral", 5, 64, 24, 9, 9, 3, "none", "fp32"),
    ("spectral", 3, 8, 17, 12, 7, 5, "avg2", "fp16"),
    ("spatial", 9, 3, 64, 34, 34, 3, "max2", "fp16"),
    ("spatial", 2, 1, 6, 32, 32, 5, "avg2", "fp32"),
    # chunks of 2 samples x 72 channels (ops.spec_conv.hybrid_chunk): two 64-row GEMM tiles, the second
    # partial; the GEMM's columns span two samples, the last chunk has one
    ("spectral", 33, 64, 72, 8, 8, 3, "max2", "fp16"),
    ("spectral", 33, 64, 72, 8, 8, 3, "none", "fp32"),
    # chunks of 2 samples x 16 channels, partial in both
    ("spectral", 9, 32, 40, 8, 8, 3, "max2", "fp16"),
    ("spectral", 9, 32, 40, 8, 8, 3, "avg2", "fp32"),
    # F = 6384 > kHybSmemMaxF: the spatial step's stage plane in the workspace, not shared memory
    ("spectral", 2, 4, 8, 112, 112, 3, "max2", "fp16"),
    ("spectral", 2, 4, 8, 112, 112, 3, "none", "fp32"),
    # F = 6144 = kHybSmemMaxF: the largest stage plane in shared memory (48 KiB), 1024-thread blocks
    ("spectral", 2, 4, 8, 96, 126, 3, "max2", "fp16"),
    ("spectral", 2, 4, 8, 96, 126, 3, "none", "fp32"),
]


@pytest.mark.parametrize("case", HYBRID_GPU_CASES, ids=lambda c: "-".join(map(str, c)))
def test_spec_conv_hybrid_gpu_agrees_with_host(libs, case):
    """activation "relu" (DESIGN §2b): the CUDA library's GEMM (tensor cores for fp16 operands) sums in
    another order than the host's, so DESIGN §7's rule applies: headers' beta_used/overflowed equal,
    masks equal except coefficients within a relative 1e-3 of the threshold (by the host's |Z|), values
    to fp32 rounding of the largest coefficient; both with and without overflow."""
    cuda, host = libs
    in_domain, B, C, O, Hs, Ws, k, pool, vd = case
    rng = np.random.default_rng(sum(map(ord, repr(case))))
    w = (rng.standard_normal((O, C, k, k)) / (k * np.sqrt(C))).astype(np.float32)
    b = (0.2 * rng.standard_normal(O)).astype(np.float32)
    if in_domain == "spatial":
        x = rng.standard_normal((B, C, Hs - k + 1, Ws - k + 1)).astype(np.float32)
    else:
        x = make_packed(rng, B, C, Hs, Ws, vd, density=0.3, overflowed=np.zeros(B, bool))
    oHs, oWs = ((Hs + 1) // 2, (Ws + 1) // 2) if pool != "none" else (Hs, Ws)
    oF = P.num_coeffs(oHs, oWs)
    attrs = dict(in_domain=in_domain, C=C, Hs=Hs, Ws=Ws, k=k, activation="relu", value_dtype=vd, pool=pool)
    z = P.decode(host.spec_conv(x, w, b, beta=0.0, capacity=O * oF, **attrs), O, oF, vd).values
    beta = float(np.quantile(np.abs(z), 0.75))
    for cap in (O * oF, max(1, O * oF // 8)):
        yh = host.spec_conv(x, w, b, beta=beta, capacity=cap, **attrs)
        yc = cuda_spec_conv(cuda, x, w, b, beta=beta, capacity=cap, ws_offset=3, **attrs)
        dh, dc = P.decode(yh, O, oF, vd), P.decode(yc, O, oF, vd)
        assert np.array_equal(dh.overflowed, dc.overflowed)
        assert np.array_equal(dh.beta_used.view(np.uint32), dc.beta_used.view(np.uint32))
        # the host's |Z| of every coefficient (beta 0, room for all), stored in this value dtype
        zh = P.decode(host.spec_conv(x, w, b, beta=0.0, capacity=O * oF, **attrs), O, oF, vd).values
        t = dh.beta_used.astype(np.float64)[:, None, None]
        near = np.abs(np.abs(zh) - t) <= 1e-3 * t
        bad = (dh.keep != dc.keep) & ~near
        assert not bad.any(), f"{int(bad.sum())} mask bits differ away from the threshold (cap {cap})"
        both = dh.keep & dc.keep
        tol = (2e-3 if vd == "fp16" else 1e-5) * float(np.abs(z).max())
        assert np.abs(dh.values[both] - dc.values[both]).max(initial=0.0) <= tol
        assert np.array_equal(yh[:, 3], yc[:, 3])  # header flags (finite inputs: 0)
        if vd == "fp32" or in_domain == "spatial":  # SIMT fp32 GEMM (a spatial input's spectrum need not
            # fit fp16) in c order and the same SD_HD code after it: the host's bits
            assert np.array_equal(yh, yc), f"fp32-GEMM hybrid rows differ from the host's (cap {cap})"



def test_spec_conv_hybrid_gpu_large_spatial_spectrum(libs):
    """An unnormalised image's spectrum passes fp16's 65504 at DC (here about 2500 * 1024 / 34 = 75,300): a spatial
    input always takes the fp32 GEMM (plan.cpp gemm_split), so fp16 values still give the host's bits and no
    non-finite flag (a hi/lo fp16 split would turn the DC product into inf - inf = NaN)."""
    cuda, host = libs
    rng = np.random.default_rng(14)
    x = (5000.0 * rng.random((2, 1, 32, 32))).astype(np.float32)
    w = (rng.standard_normal((8, 1, 3, 3)) / 3.0).astype(np.float32)
    b = (0.2 * rng.standard_normal(8)).astype(np.float32)
    attrs = dict(in_domain="spatial", C=1, Hs=34, Ws=34, k=3, activation="relu", value_dtype="fp16", pool="max2")
    oF = P.num_coeffs(17, 17)
    z = P.decode(host.spec_conv(x, w, b, beta=0.0, capacity=8 * oF, **attrs), 8, oF, "fp16").values
    assert float(np.abs(z).max()) > 1e4  # the regime this test is about (fp16 values saturate at 65504)
    beta = float(np.quantile(np.abs(z), 0.75))
    yh = host.spec_conv(x, w, b, beta=beta, capacity=8 * oF, **attrs)
    yc = cuda_spec_conv(cuda, x, w, b, beta=beta, capacity=8 * oF, **attrs)
    assert not yc[:, 3].any(), "no non-finite flag from finite inputs"
    assert np.array_equal(yh, yc)