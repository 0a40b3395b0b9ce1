"""The crystallographer's evidence as an input of ICL's crystal-system branch and rule-guided gate
(issue 23, part 2).

The evidence vector of one pattern (``indexing.api``, 110 floats; ``models`` never imports
``indexing``, the layout is restated here and checked by a test):

* ``[0:7]``    ℓ_cs: crystal-system log-likelihood ratios from the indexed cell (0 for the best);
* ``[7:106]``  ℓ_ext: extinction-group log-likelihood ratios (0 for the best, floored at −30);
* ``[106:110]`` quality q: log(1 + M₂₀), fraction of the first lines indexed, peaks / 100, solved.

An unsolved pattern has ℓ = 0 and q = 0: the same input as "no evidence", so the model then
behaves exactly as without it.

Two parts, each optional (``parts``):

* ``cs`` — the crystal-system branch combines its logits with the evidence:
  ``cs' = cs + t(q) ⊙ max(ℓ_cs, −cap)`` with a per-system trust ``t(q) = A·q + b`` (A: 7×4,
  b: 7). The trust depends on the quality, so a cell with a poor M₂₀ (a lab pattern, a failed
  indexing) moves the branch less. cs' drives the hard mask and the gate's rule prior.
* ``gate`` — the gate takes the evidence as its prior:
  ``gate logits = G(u) + softmax(cs') @ R + E·ẽ``, ẽ = [max(ℓ_cs, −cap)/cap, max(ℓ_ext, −cap)/cap, q]
  (110 → K, E linear). The seed's gate carries a fixed crystallographic prior per crystal
  system; this is that knowledge measured per pattern.

Every parameter starts at zero, so a model given the evidence inputs starts as the model without
them (its checkpoint's behaviour is kept until the inputs are trained).
"""

from __future__ import annotations

import torch
from torch import nn

from utils.crystal import N_CS
from utils.errors import ConfigError

N_EXT = 99
N_QUALITY = 4
EVIDENCE_DIM = N_CS + N_EXT + N_QUALITY
EVIDENCE_PARTS = ("cs", "gate")


def parse_parts(spec: str | None) -> tuple[str, ...]:
    """``"gate,cs"`` → ``("cs", "gate")``; ``"none"``/``""``/None → ``()``."""
    if spec is None or str(spec).strip() in ("", "none"):
        return ()
    parts = tuple(sorted({p.strip() for p in str(spec).split(",") if p.strip()}))
    bad = [p for p in parts if p not in EVIDENCE_PARTS]
    if bad:
        raise ConfigError(f"evidence inputs: unknown part(s) {bad}. Fix: use a comma list of "
                          f"{', '.join(EVIDENCE_PARTS)} (or none)")
    return parts


def check_evidence(evidence: torch.Tensor, batch: int) -> torch.Tensor:
    if evidence.dim() != 2 or evidence.shape != (batch, EVIDENCE_DIM):
        raise ConfigError(f"evidence inputs: expected evidence of shape ({batch}, {EVIDENCE_DIM}), got "
                          f"{tuple(evidence.shape)}. Fix: pass indexing.api vectors, one per pattern")
    if not torch.isfinite(evidence).all():
        raise ConfigError("evidence inputs: the evidence holds NaN or inf. Fix: recompute it (indexing "
                          "floors every log-likelihood at −30)")
    return evidence.float()


class EvidenceInputs(nn.Module):
    """The trainable maps from the evidence into the CS branch and the gate (module docstring).

    Args:
        num_experts: K of the gate.
        parts: a subset of ``("cs", "gate")``.
        cap: log-likelihood ratios are clipped at −cap (as the fusion's cap).

    Shapes: evidence (B, 110); cs_logits (B, 7) → (B, 7); gate bias (B, K).
    """

    def __init__(self, num_experts: int, parts: tuple[str, ...] = EVIDENCE_PARTS, cap: float = 16.0) -> None:
        super().__init__()
        self.parts = tuple(parts)
        if not self.parts:
            raise ConfigError("EvidenceInputs: no part. Fix: pass cs, gate or both")
        if cap <= 0:
            raise ConfigError(f"EvidenceInputs: cap {cap} must be > 0")
        self.cap = float(cap)
        if "cs" in self.parts:
            self.cs_trust = nn.Linear(N_QUALITY, N_CS)
            nn.init.zeros_(self.cs_trust.weight)
            nn.init.zeros_(self.cs_trust.bias)
        if "gate" in self.parts:
            self.gate_map = nn.Linear(EVIDENCE_DIM, num_experts)
            nn.init.zeros_(self.gate_map.weight)
            nn.init.zeros_(self.gate_map.bias)

    @staticmethod
    def split(evidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ℓ_cs (B,7), ℓ_ext (B,99), q (B,4))."""
        return evidence[:, :N_CS], evidence[:, N_CS:N_CS + N_EXT], evidence[:, N_CS + N_EXT:]

    def cs(self, cs_logits: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
        """cs' (the input unchanged without the ``cs`` part)."""
        if "cs" not in self.parts:
            return cs_logits
        l_cs, _, q = self.split(evidence)
        trust = self.cs_trust(q) * q[:, -1:]          # an unsolved pattern (solved = 0) adds nothing
        return cs_logits + trust * l_cs.clamp_min(-self.cap)

    def gate_bias(self, evidence: torch.Tensor) -> torch.Tensor | None:
        """E·ẽ (B, K), or None without the ``gate`` part."""
        if "gate" not in self.parts:
            return None
        l_cs, l_ext, q = self.split(evidence)
        e = torch.cat([l_cs.clamp_min(-self.cap) / self.cap, l_ext.clamp_min(-self.cap) / self.cap, q], dim=1)
        return self.gate_map(e) * q[:, -1:]
