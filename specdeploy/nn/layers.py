"""PyTorch SpecNet layers, exactly the conventions of DESIGN.md §2.

Spectral feature maps are dense complex tensors ``[B, C, Hs, Ws//2+1]`` inside torch (fine for
training; the packed format is a storage format for inference). Every layer knows its spectral size
statically, because ``Ws`` cannot be recovered from the half-spectrum width alone and because the
exported op set has static shapes.

Gradients: thresholding multiplies by a 0/1 mask, so kept coefficients pass gradients and dropped
ones get zero gradient, as the paper trains it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = ("tanh", "none")


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


class SpecConv2d(nn.Module):
    """Spectral convolution block: product with the kernel spectrum, bias on DC, threshold, activation.

    ``in_domain="spatial"``: input is a real map [B, C, H, W]; it is zero-padded to
    (H + k - 1, W + k - 1) and transformed (paper's Algorithm 1, a full linear convolution).
    ``in_domain="spectral"``: input is a spectral map of size (Hs, Ws); the product is a circular
    convolution of that size.

    ``norm=True`` adds the spectral channel normalization of DESIGN §2: output channel o is scaled by
    ``gain[o] / rms[o]`` before bias and threshold; ``folded()`` turns it into plain kernels for export.
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
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        # He initialization of the spatial kernel, as for the spatial twin.
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.norm = norm
        if norm:
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
    def input_size(self) -> tuple[int, int]:
        """Spatial input (H, W) for a first layer; the spectral size otherwise."""
        if self.in_domain == "spatial":
            return self.Hs - self.kernel_size + 1, self.Ws - self.kernel_size + 1
        return self.Hs, self.Ws

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, in_domain={self.in_domain}, "
            f"Hs={self.Hs}, Ws={self.Ws}, beta={self.beta}, activation={self.activation}, norm={self.norm}"
        )

    def spectrum_in(self, x: torch.Tensor) -> torch.Tensor:
        """The input as an orthonormal half spectrum of size (Hs, Ws)."""
        if self.in_domain == "spatial":
            if x.is_complex() or x.shape[-2:] != self.input_size:
                raise ValueError(
                    f"SpecConv2d: expected a real spatial input of size {self.input_size}, got {tuple(x.shape)}"
                )
            return torch.fft.rfft2(x, s=(self.Hs, self.Ws), norm="ortho")
        expected = (self.Hs, half_width(self.Ws))
        if not x.is_complex() or x.shape[-2:] != expected:
            raise ValueError(f"SpecConv2d: expected a spectral input of size {expected}, got {tuple(x.shape)}")
        return x

    def pre_threshold(self, x: torch.Tensor) -> torch.Tensor:
        """Y before threshold: channel sum of products, normalization, bias on DC."""
        X = self.spectrum_in(x)
        K = kernel_spectrum(self.weight, self.Hs, self.Ws)
        B, C, P, Q = X.shape
        # Per frequency a [B, C] x [C, O] product: one batched matmul over the F frequencies.
        # Contiguous operands: complex bmm on permuted views copies matrix by matrix (30x slower).
        Xf = X.reshape(B, C, P * Q).permute(2, 0, 1).contiguous()
        Kf = K.reshape(self.out_channels, C, P * Q).permute(2, 1, 0).contiguous()
        Y = torch.bmm(Xf, Kf).permute(1, 2, 0).reshape(B, self.out_channels, P, Q)
        if self.norm:
            Y = Y * (self.gain / self._rms(Y)).to(Y.dtype)[None, :, None, None]
        if self.bias is not None:
            dc = torch.zeros_like(Y)
            dc[:, :, 0, 0] = (self.bias * math.sqrt(self.Hs * self.Ws)).to(Y.dtype)
            Y = Y + dc
        return Y

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
        Y = self.pre_threshold(x)
        Yhat, keep = threshold(Y, self.beta)
        self.last_kept_fraction = float(keep.float().mean())
        return complex_tanh(Yhat) if self.activation == "tanh" else Yhat

    @torch.no_grad()
    def folded(self) -> "SpecConv2d":
        """An equivalent layer without normalization: w'_o = w_o * gain_o / running_rms_o (eval semantics)."""
        out = SpecConv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            in_domain=self.in_domain,
            Hs=self.Hs,
            Ws=self.Ws,
            beta=self.beta,
            activation=self.activation,
            bias=self.bias is not None,
            norm=False,
        ).to(self.weight.device)
        scale = self.gain / self.running_rms if self.norm else torch.ones_like(self.weight[:, 0, 0, 0])
        out.weight.copy_(self.weight * scale[:, None, None, None])
        if self.bias is not None:
            out.bias.copy_(self.bias)
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
