"""Hyper-connections: Zhu et al., "Hyper-Connections", ICLR 2025, arXiv:2409.19606 (inventory S001).

The residual stream is kept as ``n`` parallel copies (the *expansion rate*; the hyper hidden matrix
``H = (h_1 ... h_n)``): the network input is copied ``n`` times at the start of the residual trunk and the streams
are summed at its end. Each layer ``T`` (one residual branch) has an HC matrix of ``(n + 1) x (n + 1)`` entries:
the *width connections* ``A_m`` (``n`` weights: the layer input is ``h_0 = sum_j A_m[j] h_j``) and
``A_r`` (``n x n``: the streams mixed among themselves), and the *depth connections* ``B`` (``n`` weights: how the
layer output is written back): ``H'_k = B[k] T(h_0) + sum_j A_r[j, k] h_j``. Static HC learns these numbers;
dynamic HC adds input-dependent terms per token (per pixel here), ``A(H) = s_a * tanh(norm(H) W_a) + A`` and
``B(H) = s_b * tanh(norm(H) W_b) + B``, with ``W`` initialised to zero and the scales ``s`` to 0.01. The static values
start at ``A_m = e_{k mod n}`` for layer ``k`` (the one-hot stream the layer reads), ``A_r = I`` and ``B = 1``, which
makes the network the Pre-Norm residual network at initialisation (every stream is the residual stream; the final
sum is ``n`` times it, which the final norm of a Pre-Norm network removes). The weights are stored as the paper's
pseudo-code stores them: ``static_alpha = [A_m | A_r]`` (``n x (n + 1)``), ``static_beta = B``. Sources: the
initial values, the 0.01 scales, the tanh and the LayerNorm are as recalled from the paper's pseudo-code (its text
could not be read here; lucidrains' ``hyper-connections`` package, see ``shared/reference/fidelity.md``, uses the
same one-hot / identity / ones start and 1e-2 scales).

Weight decay: the authors note that the static connection weights must not be decayed (training can diverge); the
module lists them in ``no_weight_decay_params`` and blockzoo's trainer puts them in its no-decay group.

Where this differs from, or fills in, the paper: the paper's dynamic norm is the network's norm layer (LayerNorm in
its pseudo-code); here it is a LayerNorm over the channels with affine parameters (lucidrains' ``hyper-connections``
package uses an RMSNorm). The paper has no official code release. The paper applies HC to Pre-Norm transformers
(one HC per attention / MLP sub-layer); in blockzoo's post-activation ResNet skeleton each residual unit is one
layer, its shortcut (identity or projection) is applied to the mixed streams ``A_r^T H`` and its post-addition norm
and activation to every stream, so ``n = 1`` with the initial values is exactly the plain residual ResNet. A ResNet
has no final norm, so there the paper's sum over the streams makes the pooled features ``n`` times the plain
network's at initialisation (the classifier sees them scaled by ``n``); in the Pre-Norm ViT / MetaFormer skeletons the
final norm removes the factor, as in the paper. ``reduce="mean"`` (an option, not the paper's) averages the streams
instead, so that a network without a final norm starts as the plain one (output and gradients).

Stream layout (the extension of the ``connection`` slot's contract, see DEVELOPERS.md): the ``n`` streams are folded
into the batch dimension, stream-major (``(n * B, ...)``), so shortcuts, norms and activations of the skeleton work
unchanged. A skeleton that carries streams builds its connection slot with ``SlotContext(streams=True)`` and calls
``expand(x)`` at the start of the trunk, ``width(h) -> (layer_input, streams, beta)`` before each branch,
``depth(streams, branch_output, beta)`` after it and ``reduce(h)`` at the end; other skeletons refuse the block at
build time (``Requires(streams=True)``). Called on two plain tensors, ``forward(shortcut, branch)`` is a trunk of one
layer: expand, write back, reduce (``n = 1`` at initialisation: ``shortcut + branch``).

Registered as one name, ``hyper_connection`` (options ``n``, ``dynamic``, ``reduce``): ``create_model("resnet20",
connection="hyper_connection(n=4, dynamic=True)")``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from blockzoo import papers
from blockzoo.checks import check_choice, check_input, check_int
from blockzoo.errors import IncompatibleBlockError
from blockzoo.registry import Claim, Requires, register_block

__all__ = ["HyperConnection", "hc_param_count", "stream_trunk", "combine_streams"]

_TEST = "tests/blocks/connection/test_hyper.py"
_DYNAMIC_SCALE = 0.01   # the paper's initial s_alpha, s_beta


def hc_param_count(n: int, channels: int, dynamic: bool) -> int:
    """Parameters of one hyper-connection: the static ``(n + 1) x (n + 1)`` HC matrix less its fixed zero corner
    (``n (n + 2)``); dynamic adds ``W_a`` (``C x (n + 1)``), ``W_b`` (``C``), the two scales and the norm (``2 C``)."""
    static = n * (n + 2)
    return static + (channels * (n + 2) + 2 + 2 * channels if dynamic else 0)


class HyperConnection(nn.Module):
    """One layer's hyper-connection (static or dynamic) over ``n`` streams folded into the batch dimension.

    Args:
        channels: the stream width at the layer's input (the dynamic weights' input size).
        n: the expansion rate (number of streams; the paper's best setting is 4).
        dynamic: add the input-dependent (tanh-scaled) connection weights (DHC); ``False``: static (SHC).
        layer_index: the layer's index in the trunk (the skeleton sets it): the initial ``A_m`` reads stream
            ``layer_index mod n``.
        channels_last: the channels are the last dimension (tokens ``(B, N, C)``); ``False``: NCHW.
        reduce: how the trunk's end combines the streams: ``"sum"`` (the paper) or ``"mean"`` (for a network without
            a final norm, e.g. a ResNet: the initialised network is then the plain one, output and gradients).
    """

    no_weight_decay_params = ("static_alpha", "static_beta")

    def __init__(self, channels: int, n: int = 4, dynamic: bool = False, layer_index: int = 0,
                 channels_last: bool = False, reduce: str = "sum"):
        super().__init__()
        check_int(n, "n", min_value=1, owner="hyper_connection")
        self.reduce_mode = check_choice(reduce, "reduce", ("sum", "mean"), owner="hyper_connection")
        check_int(layer_index, "layer_index", min_value=0, owner="hyper_connection")
        self.streams, self.dynamic, self.layer_index = n, bool(dynamic), layer_index
        self.channel_dim = -1 if channels_last else 1   # of one stream's tensor
        self.static_alpha = nn.Parameter(torch.empty(n, n + 1))
        self.static_beta = nn.Parameter(torch.empty(n))
        if self.dynamic:
            self.dynamic_alpha_scale = nn.Parameter(torch.empty(1))
            self.dynamic_beta_scale = nn.Parameter(torch.empty(1))
        self.set_input_channels(channels)

    def set_input_channels(self, channels: int) -> None:
        """The width of the streams at the layer's input (the dynamic weights read it; a skeleton whose layer changes
        the width, a ResNet unit with a projection shortcut, sets it); re-initialises the connection."""
        check_int(channels, "channels", min_value=1, owner="hyper_connection")
        if self.dynamic:
            self.norm = nn.LayerNorm(channels)
            self.dynamic_alpha_fn = nn.Parameter(torch.empty(channels, self.streams + 1))
            self.dynamic_beta_fn = nn.Parameter(torch.empty(channels))
        self.init_weights()

    def init_weights(self) -> None:
        """The paper's initialisation: ``A_m = e_{k mod n}``, ``A_r = I``, ``B = 1``, dynamic ``W = 0``, scales 0.01
        (the network is then the Pre-Norm residual network)."""
        n = self.streams
        with torch.no_grad():
            self.static_alpha.zero_()
            self.static_alpha[self.layer_index % n, 0] = 1.0
            self.static_alpha[:, 1:] = torch.eye(n)
            self.static_beta.fill_(1.0)
            if self.dynamic:
                self.norm.reset_parameters()
                self.dynamic_alpha_fn.zero_()
                self.dynamic_beta_fn.zero_()
                self.dynamic_alpha_scale.fill_(_DYNAMIC_SCALE)
                self.dynamic_beta_scale.fill_(_DYNAMIC_SCALE)

    def set_channels_last(self) -> None:
        """Streams of tokens ``(B, N, C)`` (a transformer skeleton calls it): the dynamic weights read the last dim."""
        self.channel_dim = -1

    def set_layer_index(self, index: int) -> None:
        """Set the layer's index in the trunk and re-initialise (the skeleton calls it once, after building)."""
        self.layer_index = check_int(index, "layer_index", min_value=0, owner="hyper_connection")
        self.init_weights()

    # ------------------------------------------------------------------------------------------ the stream protocol
    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's input copied into ``n`` streams: ``(B, ...) -> (n * B, ...)``."""
        return torch.cat([x] * self.streams, 0)

    def reduce(self, h: torch.Tensor) -> torch.Tensor:
        """The sum (or mean) of the streams: ``(n * B, ...) -> (B, ...)``."""
        return combine_streams(h.unflatten(0, (self.streams, -1)), self.reduce_mode)

    def _channels_last(self, hs: torch.Tensor) -> torch.Tensor:   # (n, B, ...) -> channels last
        return hs.movedim(self.channel_dim + 1 if self.channel_dim > 0 else -1, -1)

    def _channels_back(self, hs: torch.Tensor) -> torch.Tensor:
        return hs.movedim(-1, self.channel_dim + 1 if self.channel_dim > 0 else -1)

    def width(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The width connections of stream state ``h`` (``(n * B, ...)``): the layer input ``A_m^T H`` (``(B, ...)``),
        the mixed streams ``A_r^T H`` (``(n * B, ...)``) and the depth weights ``B`` the layer output gets."""
        hs = h.unflatten(0, (self.streams, -1))
        if not self.dynamic:
            mix = torch.einsum("jk,j...->k...", self.static_alpha, hs)
            return mix[0], mix[1:].flatten(0, 1), self.static_beta
        hs = self._channels_last(hs)
        normed = self.norm(hs)
        # the static weights broadcast over the positions: moved next to the stream axis, added, moved back
        alpha = (torch.tanh(normed @ self.dynamic_alpha_fn) * self.dynamic_alpha_scale).movedim(0, -2)
        alpha = (alpha + self.static_alpha).movedim(-2, 0)
        beta = (torch.tanh(normed @ self.dynamic_beta_fn) * self.dynamic_beta_scale).movedim(0, -1)
        beta = (beta + self.static_beta).movedim(-1, 0)
        mix = self._channels_back(torch.einsum("j...k,j...c->k...c", alpha, hs))
        return mix[0], mix[1:].flatten(0, 1), beta

    def subsample(self, beta: torch.Tensor, stride: int) -> torch.Tensor:
        """The depth weights of a strided NCHW layer: the dynamic (per-position) weights at every ``stride``-th input
        position, the positions a strided 3x3 / 1x1 conv centres on (``ceil(H / stride)``); static ones unchanged."""
        return beta[..., ::stride, ::stride] if self.dynamic else beta

    def depth(self, streams: torch.Tensor, out: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """The depth connection: ``H'_k = beta_k * out + streams_k`` (``streams``: the mixed streams, through the
        skeleton's shortcut)."""
        if not self.dynamic:
            written = torch.einsum("j,...->j...", beta, out)
        else:
            written = self._channels_back(beta.unsqueeze(-1) * self._channels_last(out.unsqueeze(0)))
        return (written + streams.unflatten(0, (self.streams, -1))).flatten(0, 1)

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        """A trunk of one layer on plain tensors: expand ``shortcut``, write ``branch`` back, sum the streams."""
        check_input(shortcut, "hyper_connection", ndim=shortcut.ndim)   # a floating-point tensor, any layout
        _, streams, beta = self.width(self.expand(shortcut))
        return self.reduce(self.depth(streams, branch, beta))

    def extra_repr(self) -> str:
        return f"n={self.streams}, dynamic={self.dynamic}, layer_index={self.layer_index}"


def combine_streams(hs: torch.Tensor, mode: str) -> torch.Tensor:
    """Streams stacked in dim 0, ``(k, B, ...) -> (B, ...)``: their sum or mean (a skeleton's feature maps use it)."""
    return hs.mean(0) if mode == "mean" else hs.sum(0)


def stream_trunk(units: list[nn.Module], merges: list[nn.Module], owner: str) -> int:
    """Set up a skeleton's residual trunk for stream connections and return its number of streams (0: plain
    connections). ``units``: the trunk's blocks in order (attributes ``expands`` / ``reduces``: the first copies its
    input into the streams, the last sums them); ``merges``: their connection modules in layer order (each learns its
    layer index, the stream its initial width connection reads). Every merge must carry the same ``n``."""
    counts = {getattr(m, "streams", 0) for m in merges}
    if counts == {0}:
        return 0
    if len(counts) > 1:
        raise IncompatibleBlockError(
            f"{owner}: hyper-connections carry n streams through the whole trunk, so every block needs the same "
            f"stream connection, got stream counts {sorted(counts)} (0: a plain connection); use one connection value")
    units[0].expands = units[-1].reduces = True
    for k, merge in enumerate(merges):
        merge.set_layer_index(k)
    return counts.pop()


@register_block(
    "hyper_connection", slot="connection", family="connection", paper=papers.HYPER_CONNECTIONS,
    summary="n residual streams with learnable width (A_m, A_r) and depth (B) connections; static or dynamic (tanh)",
    requires=Requires(streams=True),
    claims=(
        Claim("with n = 1 and the fixed initial connections a hyper-connected ResNet is the plain residual ResNet",
              f"{_TEST}::test_n1_resnet_equals_plain_residual"),
        Claim("at initialisation HC equals the Pre-Norm residual connection (every stream is the residual stream)",
              f"{_TEST}::test_init_equals_pre_norm_residual"),
        Claim("in the ViT skeleton (one HC per attention / MLP sub-layer) the initialised HC network gives the "
              "Pre-Norm ViT's output", f"{_TEST}::test_vit_at_init_is_the_pre_norm_vit"),
        Claim("dynamic HC with zero dynamic weights equals static HC", f"{_TEST}::test_dynamic_zero_equals_static"),
        Claim("parameters per layer: n(n+2) static; dynamic adds C(n+2) + 2 scales (+ the norm's 2C)",
              f"{_TEST}::test_parameter_count"),
        Claim("the static connection weights are excluded from weight decay",
              f"{_TEST}::test_trainer_does_not_decay_static_weights"),
        Claim("HC beats the residual connection at equal parameters (paper: LLM pre-training and ViT on ImageNet)",
              "benchmarks/claims/connection_hyper.py", status="measured"),
        Claim("HC beats the residual connection in a ViT at equal budget (paper: ViT on ImageNet)",
              "benchmarks/claims/connection_hyper_vit.py", status="measured"),
    ),
    notes="Only skeletons that carry streams accept it: the connection slot of the ResNet skeleton, of the ViT "
          "families (vit/deit, deepvit, convit: one per attention / MLP sub-layer) and of the MetaFormer families "
          "whose blocks merge through it (ConvNeXt, InceptionNeXt, HorNet, PoolFormer, pf_convnext; the streams "
          "cross each downsampling layer with shared weights); other backbones refuse it at build time.",
    usage='model = create_model("resnet20", connection="hyper_connection(n=4, dynamic=True)")')
def _hyper_connection(channels: int, n: int = 4, dynamic: bool = False, reduce: str = "sum") -> nn.Module:
    return HyperConnection(channels, n=n, dynamic=dynamic, reduce=reduce)
