"""PyTorch SpecNet layers, exactly the conventions of DESIGN.md §2.

Spectral feature maps are dense complex tensors ``[B, C, Hs, Ws//2+1]`` inside torch (fine for
training; the packed format is a storage format for inference). Every layer knows its spectral size
statically, because ``Ws`` cannot be recovered from the half-spectrum width alone and because the
exported op set has static shapes.

Gradients: thresholding multiplies by a 0/1 mask, so kept coefficients pass gradients and dropped
ones get zero gradient, as the paper trains it.

Two blocks share SpecConv2d (DESIGN §2 and §2b): the paper's (``activation`` "tanh"/"none": threshold
and activation per coefficient, spectral channel normalization) and the hybrid one (``activation``
"relu": inverse transform, BatchNorm + ReLU + optional 2x2 pool on the spatial map, forward
transform, threshold; maps between layers stay thresholded half spectra).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as Fn
from torch import nn

ACTIVATIONS = ("tanh", "none", "relu")
POOLS = ("none", "max2", "avg2")
"""``pool`` of a "relu" SpecConv: 2x2 windows, stride 2, ceil mode over the pixels that exist (§2b)."""


def half_width(Ws: int) -> int:
    """Columns of the half spectrum of a real map of width Ws."""
    return Ws // 2 + 1


def complex_tanh(y: torch.Tensor) -> torch.Tensor:
    """tanh(Re) + i tanh(Im): keeps zeros zero and conjugate symmetry (DESIGN §2)."""
    return torch.complex(torch.tanh(y.real), torch.tanh(y.imag))


def threshold(y: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero every coefficient with |y| <= beta; returns (thresholded, keep mask).

    The test is ``re*re + im*im > beta*beta`` like every runtime (docs/format.md), so torch, the
    reference and the kernels agree on which coefficients survive.
    """
    beta2 = torch.tensor(beta, dtype=torch.float32) ** 2
    keep = (y.real * y.real + y.imag * y.imag) > beta2
    return y * keep, keep


def kernel_spectrum(weight: torch.Tensor, Hs: int, Ws: int) -> torch.Tensor:
    """Plain DFT of the k x k kernels zero-padded to Hs x Ws: [O, C, Hs, Wh] complex.

    Formed on the fly from the spatial kernels, so weight memory equals the spatial twin's.
    """
    return torch.fft.rfft2(weight, s=(Hs, Ws), norm="backward")


def centred_kernel_spectrum(weight: torch.Tensor, Hs: int, Ws: int) -> torch.Tensor:
    """DFT of the kernels centred on (k//2, k//2): ``sum_uv w[u,v] e^{-2 pi i (p(u-k//2)/Hs + q(v-k//2)/Ws)}``.

    The product with it is a circular "same" convolution (DESIGN §2b step 1), so a hybrid layer keeps
    its features where the twin's padded convolution puts them instead of shifting them by k//2.
    Formed exactly as the zero-padded kernel rolled by -k//2 in both axes, then the plain DFT.
    """
    k = weight.shape[-1]
    padded = Fn.pad(weight, (0, Ws - weight.shape[-1], 0, Hs - weight.shape[-2]))
    rolled = torch.roll(padded, shifts=(-(k // 2), -(k // 2)), dims=(-2, -1))
    return torch.fft.rfft2(rolled, norm="backward")


def pooled_size(n: int, pool: str) -> int:
    """Output size of a "relu" SpecConv's pool along one axis: ceil(n/2) for "max2"/"avg2"."""
    return n if pool == "none" else (n + 1) // 2


def spatial_pool(y: torch.Tensor, pool: str) -> torch.Tensor:
    """2x2 stride-2 pooling in ceil mode over the pixels that exist (odd sizes: the last window is
    partial; "avg2" divides by the pixels it covers, never by 4)."""
    if pool == "none":
        return y
    if pool == "max2":
        return Fn.max_pool2d(y, 2, 2, ceil_mode=True)
    # count_include_pad only concerns explicit padding (0 here); with ceil_mode torch divides by the
    # pixels of the window that lie inside the map. tests/test_nn_conventions.py checks it on odd sizes.
    return Fn.avg_pool2d(y, 2, 2, ceil_mode=True, count_include_pad=False)


class SpecConv2d(nn.Module):
    """Spectral convolution block, paper (DESIGN §2) or hybrid (§2b), chosen by ``activation``.

    ``in_domain="spatial"``: input is a real map [B, C, H, W]; it is zero-padded to
    (H + k - 1, W + k - 1) and transformed (paper's Algorithm 1, a full linear convolution).
    ``in_domain="spectral"``: input is a spectral map of size (Hs, Ws); the product is a circular
    convolution of that size (for "relu" with the kernel centred: a circular "same" convolution).

    Paper block (``activation`` "tanh"/"none"): threshold, then the activation per coefficient.
    ``norm=True`` adds the spectral channel normalization of DESIGN §2: output channel o is scaled by
    ``gain[o] / rms[o]`` before bias and threshold.

    Hybrid block (``activation="relu"``): inverse transform, BatchNorm (``norm=True``) + ReLU, ``pool``
    ("none"/"max2"/"avg2", ceil mode), forward transform, threshold; the output spectrum has size
    ``(out_Hs, out_Ws)`` and no activation acts on it.

    Both normalizations are linear in the kernel; ``folded()`` turns them into plain kernels (and, for
    BatchNorm, a bias) for export.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        in_domain: str,
        Hs: int,
        Ws: int,
        beta: float,
        activation: str = "tanh",
        pool: str = "none",
        bias: bool = True,
        norm: bool = True,
        momentum: float = 0.1,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if in_domain not in ("spatial", "spectral"):
            raise ValueError(f"SpecConv2d: in_domain must be 'spatial' or 'spectral', got {in_domain!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"SpecConv2d: activation must be one of {ACTIVATIONS}, got {activation!r}")
        if pool not in POOLS:
            raise ValueError(f"SpecConv2d: pool must be one of {POOLS}, got {pool!r}")
        if pool != "none" and activation != "relu":
            raise ValueError(
                f"SpecConv2d: pool {pool!r} needs activation 'relu' (hybrid block); paper models pool with SpecPool2d"
            )
        if beta < 0 or not math.isfinite(beta):
            raise ValueError(f"SpecConv2d: beta must be a finite value >= 0, got {beta}")
        if kernel_size < 1 or kernel_size > min(Hs, Ws):
            raise ValueError(f"SpecConv2d: kernel_size {kernel_size} must be in 1..min(Hs, Ws)={min(Hs, Ws)}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.in_domain = in_domain
        self.Hs, self.Ws = Hs, Ws
        self.beta = float(beta)
        self.activation = activation
        self.pool = pool
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        # He initialization of the spatial kernel, as for the spatial twin.
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.norm = norm
        # The hybrid block normalizes the spatial map like the twin (BatchNorm before the ReLU); the paper
        # block has no spatial map, so it normalizes the spectrum (gain / running RMS).
        self.bn = nn.BatchNorm2d(out_channels) if norm and activation == "relu" else None
        if norm and activation != "relu":
            self.gain = nn.Parameter(torch.ones(out_channels))
            self.register_buffer("running_rms", torch.ones(out_channels))
            # 0 until the first training batch, which sets running_rms outright: an average that starts
            # from 1 would leave eval outputs far off while the true RMS is still far from 1.
            self.register_buffer("rms_initialized", torch.zeros((), dtype=torch.bool))
        else:
            self.gain = None
            self.register_buffer("running_rms", None)
            self.register_buffer("rms_initialized", None)
        # Fraction of coefficients kept in the last forward (for logs); not state.
        self.last_kept_fraction: float = float("nan")

    @property
    def hybrid(self) -> bool:
        """True for the §2b block (activation "relu")."""
        return self.activation == "relu"

    @property
    def input_size(self) -> tuple[int, int]:
        """Spatial input (H, W) for a first layer; the spectral size otherwise."""
        if self.in_domain == "spatial":
            return self.Hs - self.kernel_size + 1, self.Ws - self.kernel_size + 1
        return self.Hs, self.Ws

    @property
    def out_Hs(self) -> int:
        """Rows of the output spectral map: Hs, or ceil(Hs/2) after a pool."""
        return pooled_size(self.Hs, self.pool)

    @property
    def out_Ws(self) -> int:
        """Width of the output map's spatial size: Ws, or ceil(Ws/2) after a pool."""
        return pooled_size(self.Ws, self.pool)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, in_domain={self.in_domain}, "
            f"Hs={self.Hs}, Ws={self.Ws}, beta={self.beta}, activation={self.activation}, norm={self.norm}"
        )
        return s + (f", pool={self.pool}" if self.pool != "none" else "")

    def fuse_pool(self, pool: str) -> None:
        """Make this hybrid layer end with ``pool`` (the zoo builder fuses the twin's next pool into it)."""
        if not self.hybrid:
            raise ValueError("SpecConv2d: only a 'relu' (hybrid) layer can pool; paper models use SpecPool2d")
        if pool not in POOLS:
            raise ValueError(f"SpecConv2d: pool must be one of {POOLS}, got {pool!r}")
        if self.pool != "none":
            raise ValueError(f"SpecConv2d: this layer already pools ({self.pool!r})")
        self.pool = pool

    def _check_input(self, x: torch.Tensor) -> None:
        if self.in_domain == "spatial":
            if x.is_complex() or x.shape[-2:] != self.input_size:
                raise ValueError(
                    f"SpecConv2d: expected a real spatial input of size {self.input_size}, got {tuple(x.shape)}"
                )
            return
        expected = (self.Hs, half_width(self.Ws))
        if not x.is_complex() or x.shape[-2:] != expected:
            raise ValueError(f"SpecConv2d: expected a spectral input of size {expected}, got {tuple(x.shape)}")

    def spectrum_in(self, x: torch.Tensor) -> torch.Tensor:
        """The input as an orthonormal half spectrum of size (Hs, Ws)."""
        self._check_input(x)
        if self.in_domain == "spatial":
            return torch.fft.rfft2(x, s=(self.Hs, self.Ws), norm="ortho")
        return x

    def kernel_spectrum(self) -> torch.Tensor:
        """[O, C, Hs, Wh] kernel spectrum: centred for a hybrid layer on a spectral input (§2b step 1)."""
        if self.hybrid and self.in_domain == "spectral":
            return centred_kernel_spectrum(self.weight, self.Hs, self.Ws)
        return kernel_spectrum(self.weight, self.Hs, self.Ws)

    def pre_threshold(self, x: torch.Tensor) -> torch.Tensor:
        """Y: channel sum of products, normalization (paper block), bias on DC.

        For the hybrid block this is step 1 of §2b (the spectrum before the inverse transform).
        """
        X = self.spectrum_in(x)
        K = self.kernel_spectrum()
        B, C, P, Q = X.shape
        # Per frequency a [B, C] x [C, O] product: one batched matmul over the F frequencies.
        # Contiguous operands: complex bmm on permuted views copies matrix by matrix (30x slower).
        Xf = X.reshape(B, C, P * Q).permute(2, 0, 1).contiguous()
        Kf = K.reshape(self.out_channels, C, P * Q).permute(2, 1, 0).contiguous()
        Y = torch.bmm(Xf, Kf).permute(1, 2, 0).reshape(B, self.out_channels, P, Q)
        if self.gain is not None:
            Y = Y * (self.gain / self._rms(Y)).to(Y.dtype)[None, :, None, None]
        if self.bias is not None:
            dc = torch.zeros_like(Y)
            dc[:, :, 0, 0] = (self.bias * math.sqrt(self.Hs * self.Ws)).to(Y.dtype)
            Y = Y + dc
        return Y

    def spatial_preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """``irfft2(pre_threshold(x), s=(Hs, Ws), norm="ortho")`` of a hybrid layer, computed in space.

        By the convolution theorem the spectral product is a convolution (full and zero-padded for a
        spatial input, circular "same" for a spectral one), and torch's conv2d is several times faster
        than the complex per-frequency product on a CPU; tests/test_nn_conventions.py checks that both
        give the same map. The inverse transform of a half spectrum reads only its Hermitian part, and
        that projection commutes with the product by a real kernel's spectrum, so this holds for any
        half spectrum X (also one whose threshold split a conjugate pair).
        """
        self._check_input(x)
        k = self.kernel_size
        w = self.weight.flip(-1, -2)  # a convolution is torch's cross-correlation with the flipped kernel
        if self.in_domain == "spatial":
            y = Fn.conv2d(x, w, padding=k - 1)
        else:
            xs = torch.fft.irfft2(x, s=(self.Hs, self.Ws), norm="ortho")
            c = k // 2
            if k > 1:
                xs = Fn.pad(xs, (k - 1 - c, c, k - 1 - c, c), mode="circular")
            y = Fn.conv2d(xs, w)
        if self.bias is not None:
            y = y + self.bias[None, :, None, None]
        return y

    def _rms(self, Y: torch.Tensor) -> torch.Tensor:
        """RMS of |Y_o| over batch and frequencies: the batch value in training, the running one in eval."""
        if not self.training:
            return self.running_rms
        rms = torch.sqrt((Y.real.square() + Y.imag.square()).mean(dim=(0, 2, 3)) + self.eps)
        with torch.no_grad():
            if bool(self.rms_initialized):
                self.running_rms.mul_(1 - self.momentum).add_(self.momentum * rms.detach())
            else:
                self.running_rms.copy_(rms.detach())
                self.rms_initialized.fill_(True)
        return rms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hybrid:
            return self._forward_hybrid(x)
        Y = self.pre_threshold(x)
        Yhat, keep = threshold(Y, self.beta)
        self.last_kept_fraction = float(keep.float().mean())
        return complex_tanh(Yhat) if self.activation == "tanh" else Yhat

    def _forward_hybrid(self, x: torch.Tensor) -> torch.Tensor:
        """§2b steps 1-4: product (as a convolution), BatchNorm + ReLU, pool, forward transform, threshold."""
        y = self.spatial_preactivation(x)
        if self.bn is not None:
            y = self.bn(y)
        y = spatial_pool(torch.relu(y), self.pool)
        Z = torch.fft.rfft2(y, norm="ortho")
        Zhat, keep = threshold(Z, self.beta)
        self.last_kept_fraction = float(keep.float().mean())
        return Zhat

    @torch.no_grad()
    def folded(self) -> "SpecConv2d":
        """An equivalent layer without normalization (eval semantics).

        Paper block: ``w'_o = w_o * gain_o / running_rms_o``. Hybrid block (§2b): ``w'_o = w_o * s_o``,
        ``b'_o = (b_o - mean_o) * s_o + shift_o``, ``s_o = gamma_o / sqrt(var_o + eps)``.
        """
        out = SpecConv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            in_domain=self.in_domain,
            Hs=self.Hs,
            Ws=self.Ws,
            beta=self.beta,
            activation=self.activation,
            pool=self.pool,
            bias=self.bias is not None or self.bn is not None,
            norm=False,
        ).to(self.weight.device)
        if self.bn is not None:
            scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
            b = self.bias if self.bias is not None else torch.zeros_like(scale)
            out.bias.copy_((b - self.bn.running_mean) * scale + self.bn.bias)
        else:
            scale = self.gain / self.running_rms if self.gain is not None else torch.ones_like(self.weight[:, 0, 0, 0])
            if self.bias is not None:
                out.bias.copy_(self.bias)
        out.weight.copy_(self.weight * scale[:, None, None, None])
        out.eval()
        return out


def pool_rows(Hs: int, out_Hs: int) -> list[int]:
    """Rows of an Hs-row spectrum kept by spectral pooling to out_Hs rows, in output order."""
    lo = (out_Hs + 1) // 2
    hi = out_Hs // 2
    return list(range(lo)) + list(range(Hs - hi, Hs))


def pool_scale(Hs: int, Ws: int, out_Hs: int, out_Ws: int) -> float:
    """Factor that keeps the orthonormal spectrum consistent after cropping (constant maps stay constant)."""
    return math.sqrt(out_Hs * out_Ws / (Hs * Ws))


class SpecPool2d(nn.Module):
    """Spectral pooling: keep the lowest frequencies (DESIGN §2); never creates non-zeros."""

    def __init__(self, Hs: int, Ws: int, out_Hs: int | None = None, out_Ws: int | None = None) -> None:
        super().__init__()
        self.Hs, self.Ws = Hs, Ws
        self.out_Hs = out_Hs if out_Hs is not None else (Hs + 1) // 2
        self.out_Ws = out_Ws if out_Ws is not None else (Ws + 1) // 2
        if not (1 <= self.out_Hs <= Hs and 1 <= self.out_Ws <= Ws):
            raise ValueError(f"SpecPool2d: output size {(self.out_Hs, self.out_Ws)} must be within 1..{(Hs, Ws)}")
        self.register_buffer("rows", torch.tensor(pool_rows(Hs, self.out_Hs)), persistent=False)

    def extra_repr(self) -> str:
        return f"({self.Hs}, {self.Ws}) -> ({self.out_Hs}, {self.out_Ws})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.Hs, half_width(self.Ws)):
            raise ValueError(f"SpecPool2d: expected spectral size {(self.Hs, half_width(self.Ws))}, got {tuple(x.shape)}")
        y = x.index_select(-2, self.rows)[..., : half_width(self.out_Ws)]
        return y * pool_scale(self.Hs, self.Ws, self.out_Hs, self.out_Ws)


class SpecToSpatial(nn.Module):
    """Leave the spectral domain: orthonormal inverse real FFT to a [B, C, Hs, Ws] real map."""

    def __init__(self, Hs: int, Ws: int) -> None:
        super().__init__()
        self.Hs, self.Ws = Hs, Ws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(x, s=(self.Hs, self.Ws), norm="ortho")


class SpecConcat(nn.Module):
    """Channel concatenation of spectral maps of the same size (DenseNet)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


def spec_convs(model: nn.Module) -> list[tuple[str, SpecConv2d]]:
    """The SpecConv2d layers of a model with their names, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SpecConv2d)]


def kept_fractions(model: nn.Module) -> dict[str, float]:
    """Fraction of coefficients each SpecConv2d kept in its last forward."""
    return {n: m.last_kept_fraction for n, m in spec_convs(model)}


@torch.no_grad()
def fold_normalization(model: nn.Module) -> nn.Module:
    """Replace every normalized SpecConv2d by its folded equivalent, in place (eval semantics)."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, SpecConv2d) and child.norm:
                setattr(module, child_name, child.folded())
    return model
