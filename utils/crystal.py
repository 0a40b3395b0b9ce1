"""Crystallography in one place: space group → crystal system, enantiomorphs, extinction groups,
hierarchy masks.

Conventions (docs/DATA.md): on disk space groups are International Tables numbers 1..230; inside
tensors they are 0..229. Crystal systems are 0..6 in the order of ``CRYSTAL_SYSTEMS``. The
numpy-only tables live in ``utils.sg_tables`` (importable without torch) and are re-exported here.
"""

from __future__ import annotations

import torch

from utils.sg_tables import (  # noqa: F401  (re-exported)
    _CS_LAST_SG,
    _INT_COLUMNS,
    CRYSTAL_SYSTEMS,
    DATA_DIR,
    ENANTIOMORPH_PAIRS,
    N_CS,
    N_SG,
    SG_TO_CS,
    _add_translation,
    _check_number,
    _subgroup_table,
    _symop_table,
    bravais_lattice,
    centring,
    enantiomorph_partner,
    extinction_groups,
    laue_class,
    maximal_subgroups,
    point_group,
    sg_column,
    sg_number,
    sg_symbol,
    sg_to_cs_number,
    space_group_table,
    symmetry_operations,
)


def sg_to_cs(y_sg: torch.Tensor) -> torch.Tensor:
    """Map 0-based space-group indices (any shape) to crystal-system indices, on the same device."""
    return torch.as_tensor(SG_TO_CS, device=y_sg.device)[y_sg]


def per_system(values: torch.Tensor) -> torch.Tensor:
    """Sum (..., 230) per-space-group values (e.g. counts) over each crystal system → (..., 7)."""
    if values.shape[-1] != N_SG:
        raise ValueError(f"per_system: last dimension {values.shape[-1]} != {N_SG} space groups")
    idx = torch.as_tensor(SG_TO_CS, device=values.device)
    return values.new_zeros(*values.shape[:-1], N_CS).index_add_(-1, idx, values)


def cs_sg_mask(device: torch.device | str | None = None) -> torch.Tensor:
    """(7, 230) bool: ``mask[c, s]`` is True when space group s belongs to crystal system c."""
    m = torch.zeros(N_CS, N_SG, dtype=torch.bool, device=device)
    m[torch.as_tensor(SG_TO_CS, device=device), torch.arange(N_SG, device=device)] = True
    return m


def soft_cs_mask(logits: torch.Tensor, cs_logits: torch.Tensor) -> torch.Tensor:
    """Two-level log distribution over the 230 space groups from SG scores and CS scores:
    ``log p_cs[cs(g)] + o_g − logsumexp_{g' ∈ cs(g)} o_g'`` (logsumexp over groups = 0), i.e.
    p(g) = p(system) · p(g | system) with p(g | system) the softmax of o within the system.

    Args:
        logits: (B, 230) space-group scores o. cs_logits: (B, 7) crystal-system scores.

    Returns:
        (B, 230) float32 log-probabilities.
    """
    o = logits.float()
    allowed = cs_sg_mask(o.device)                                               # (7, 230)
    per_cs = o.unsqueeze(1).masked_fill(~allowed, float("-inf")).logsumexp(dim=-1)  # (B, 7)
    log_p_cs = torch.log_softmax(cs_logits.float(), dim=-1)
    return (log_p_cs - per_cs)[:, torch.as_tensor(SG_TO_CS, device=o.device)] + o
