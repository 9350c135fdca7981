"""Export ``nn.LSTM`` as one ONNX ``LSTM`` node, fast.

Why: the dynamo exporter runs torch's LSTM decomposition (one cell per time
step, traced on fake tensors) several times before it emits the ONNX
``LSTM`` op. For the CRNN (124 frames, 2 bidirectional layers) that took
about 5 minutes on a 2-core CPU. :class:`OnnxLSTM` emits the ``LSTM`` op
directly through ``torch.onnx.ops.symbolic_multi_out`` while exporting and
runs the wrapped ``nn.LSTM`` unchanged otherwise; the export parity check
compares the result with the untouched torch model.

ONNX and torch differ in two conventions handled here: gate order (torch
``i, f, g, o``; ONNX ``i, o, f, c``) and the bias (ONNX wants ``[Wb; Rb]``).
"""

from __future__ import annotations

import torch
from torch import nn

_TORCH_TO_ONNX_GATES = (0, 3, 1, 2)


def _onnx_gates(tensor: torch.Tensor) -> torch.Tensor:
    chunks = tensor.chunk(4, dim=0)
    return torch.cat([chunks[i] for i in _TORCH_TO_ONNX_GATES], dim=0)


class OnnxLSTM(nn.Module):
    """Drop-in for an eval-mode ``nn.LSTM`` (no projections) during ONNX export."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        if getattr(lstm, "proj_size", 0):
            raise ValueError("LSTMs with projections are not supported by the ONNX LSTM op")
        self.lstm = lstm
        self.hidden = int(lstm.hidden_size)
        self.directions = 2 if lstm.bidirectional else 1
        self.layers = int(lstm.num_layers)
        self.batch_first = bool(lstm.batch_first)
        for layer in range(self.layers):
            w, r, b = [], [], []
            for direction in range(self.directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                w.append(_onnx_gates(getattr(lstm, f"weight_ih{suffix}").detach()))
                r.append(_onnx_gates(getattr(lstm, f"weight_hh{suffix}").detach()))
                if lstm.bias:
                    b.append(
                        torch.cat(
                            [
                                _onnx_gates(getattr(lstm, f"bias_ih{suffix}").detach()),
                                _onnx_gates(getattr(lstm, f"bias_hh{suffix}").detach()),
                            ]
                        )
                    )
                else:
                    b.append(torch.zeros(8 * self.hidden, dtype=w[-1].dtype))
            self.register_buffer(f"w{layer}", torch.stack(w).contiguous())
            self.register_buffer(f"r{layer}", torch.stack(r).contiguous())
            self.register_buffer(f"b{layer}", torch.stack(b).contiguous())

    def forward(
        self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if not torch.onnx.is_in_onnx_export() or hx is not None:
            return self.lstm(x, hx)
        if self.batch_first:
            x = x.transpose(0, 1)
        steps, batch, _ = x.shape
        hidden = cell = x
        for layer in range(self.layers):
            weights = [getattr(self, f"{kind}{layer}") for kind in ("w", "r", "b")]
            y, hidden, cell = torch.onnx.ops.symbolic_multi_out(
                "LSTM",
                [x, *weights],
                {
                    "hidden_size": self.hidden,
                    "direction": "bidirectional" if self.directions == 2 else "forward",
                },
                dtypes=[x.dtype] * 3,
                shapes=[
                    [steps, self.directions, batch, self.hidden],
                    [self.directions, batch, self.hidden],
                    [self.directions, batch, self.hidden],
                ],
                version=14,
            )
            # (T, D, B, H) -> (T, B, D*H): forward then backward features, as torch.
            x = y.permute(0, 2, 1, 3).reshape(steps, batch, self.directions * self.hidden)
        if self.batch_first:
            x = x.transpose(0, 1)
        return x, (hidden, cell)


def replace_lstms(module: nn.Module) -> int:
    """Swap every ``nn.LSTM`` inside ``module`` for :class:`OnnxLSTM`; returns how many."""
    swapped = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.LSTM):
            setattr(module, name, OnnxLSTM(child))
            swapped += 1
        else:
            swapped += replace_lstms(child)
    return swapped
