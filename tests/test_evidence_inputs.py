"""ICL with the indexing evidence as an input of its crystal-system branch and gate
(``models/evidence_inputs.py``, ``Trainer/evidence_inputs.py``, ``train_evidence.py``): the
layout, the start at the plain model, the formulas against naive ones, unsolved patterns, the
stage-two fit on synthetic evidence, the Evaluator, the checkpoint, bad evidence, and
train.py → train_evidence.py → test.py / predict.py end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import create_model
from models.evidence_inputs import EVIDENCE_DIM, N_EXT, N_QUALITY, parse_parts
from Trainer import Evaluator
from Trainer.evidence_inputs import as_tensors, frozen_outputs, train_evidence_inputs
from utils.crystal import N_CS, SG_TO_CS
from utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
L = 512


def _model(parts: str = "cs,gate", seed: int = 0):
    torch.manual_seed(seed)
    return create_model("icl_moe", frontend="restcn_lite", frontend_kwargs={"width_mult": 0.125},
                        evidence_inputs=parts).eval()


def _evidence(rng, y_cs: np.ndarray, solved: bool = True) -> np.ndarray:
    """Evidence whose crystal-system block points at ``y_cs`` (0 there, −8 elsewhere)."""
    n = len(y_cs)
    ev = np.zeros((n, EVIDENCE_DIM), np.float32)
    if not solved:
        return ev
    ev[:, :N_CS] = -8.0
    ev[np.arange(n), y_cs] = 0.0
    ev[:, N_CS:N_CS + N_EXT] = -rng.uniform(0, 30, (n, N_EXT))
    ev[:, -N_QUALITY:] = [np.log1p(20.0), 1.0, 0.3, 1.0]
    return ev


def _randomize(model) -> None:
    with torch.no_grad():
        for p in model.evidence_parameters():
            p.normal_(0, 0.5)


def test_layout_matches_indexing():
    from indexing.api import EVIDENCE_DIM as DIM
    from indexing.conditions import N_GROUPS
    assert EVIDENCE_DIM == DIM and N_EXT == N_GROUPS


def test_parts_are_parsed_and_checked():
    assert parse_parts("gate,cs") == ("cs", "gate") and parse_parts("none") == () == parse_parts(None)
    with pytest.raises(ConfigError, match="unknown part"):
        parse_parts("cs,mask")


def test_starts_as_the_plain_model_and_loads_its_weights():
    rng = np.random.default_rng(0)
    plain, with_ev = _model("none"), _model("cs,gate")
    missing, unexpected = with_ev.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("evidence_inputs.") for k in missing)
    x = torch.randn(4, 1, L)
    ev = torch.as_tensor(_evidence(rng, np.array([0, 2, 4, 6])))
    a, b = plain(x), with_ev(x, evidence=ev)
    for k in ("logits", "cs_logits", "gate", "ensemble_logits"):
        torch.testing.assert_close(a[k], b[k])
    assert plain.uses_evidence is False and with_ev.uses_evidence is True


@torch.no_grad()
def test_formulas_match_a_naive_computation():
    rng = np.random.default_rng(1)
    m = _model("cs,gate")
    _randomize(m)
    x = torch.randn(3, 1, L)
    ev = torch.as_tensor(_evidence(rng, np.array([1, 3, 5])))
    out, base = m(x, evidence=ev), m(x)
    cap = m.evidence_inputs.cap
    q = ev[:, -N_QUALITY:]
    cs_naive = torch.empty(3, N_CS)
    gate_logits = torch.empty(3, m.num_experts)
    e_norm = torch.cat([ev[:, :N_CS].clamp(min=-cap) / cap,
                        ev[:, N_CS:N_CS + N_EXT].clamp(min=-cap) / cap, q], 1)
    ein = m.evidence_inputs
    for i in range(3):
        for c in range(N_CS):
            trust = float(m.evidence_inputs.cs_trust.weight[c] @ q[i] + m.evidence_inputs.cs_trust.bias[c])
            cs_naive[i, c] = base["cs_logits"][i, c] + trust * max(float(ev[i, c]), -cap)
        p_cs = torch.softmax(cs_naive[i], 0)
        for k in range(m.num_experts):
            gate_logits[i, k] = (m.gate.fc.weight[k] @ base["proj"][i] + m.gate.fc.bias[k]
                                 + p_cs @ m.gate.prior[:, k]
                                 + ein.gate_map.weight[k] @ e_norm[i] + ein.gate_map.bias[k])
    torch.testing.assert_close(out["cs_logits"], cs_naive, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["gate"], torch.softmax(gate_logits, 1), atol=1e-5, rtol=1e-4)
    allowed = m.cs_sg_mask[cs_naive.argmax(1)]
    assert bool(torch.all(allowed[torch.arange(3), out["logits"].argmax(1)]))  # masked by the combined system


def test_unsolved_pattern_changes_nothing():
    m = _model("cs,gate")
    _randomize(m)
    x = torch.randn(2, 1, L)
    out = m(x, evidence=torch.zeros(2, EVIDENCE_DIM))
    base = m(x)
    for k in ("logits", "cs_logits", "gate"):
        torch.testing.assert_close(out[k], base[k])


@pytest.mark.parametrize("bad, match", [(torch.zeros(2, 100), "shape"),
                                        (torch.full((2, EVIDENCE_DIM), float("nan")), "NaN")])
def test_bad_evidence_is_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        _model()(torch.randn(2, 1, L), evidence=bad)


def test_checkpoint_round_trip_keeps_the_inputs():
    m = _model("gate")
    _randomize(m)
    again = create_model(**m.config)
    again.load_state_dict(m.state_dict())
    assert again.config["evidence_inputs"] == "gate" and again.evidence_inputs.parts == ("gate",)
    x, ev = torch.randn(2, 1, L), torch.as_tensor(_evidence(np.random.default_rng(2), np.array([0, 1])))
    torch.testing.assert_close(again.eval()(x, evidence=ev)["gate"], m(x, evidence=ev)["gate"])


def _stored(model, rng, n):
    y_sg = rng.integers(0, 230, n)
    y_cs = SG_TO_CS[y_sg]
    x = torch.randn(n, 1, L)
    out = {k: v.numpy() for k, v in frozen_outputs(model, x).items()}
    return as_tensors({**out, "evidence": _evidence(rng, y_cs), "y_sg": y_sg, "y_cs": y_cs})


def test_stage_two_learns_to_trust_informative_evidence():
    """An untrained model knows nothing of the system; evidence that names it is learned within a
    few hundred full-batch steps, with everything but the evidence inputs unchanged."""
    rng = np.random.default_rng(3)
    m = _model("cs")
    frozen = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("evidence_inputs.")}
    train, val = _stored(m, rng, 200), _stored(m, rng, 100)
    hist = train_evidence_inputs(m, train, val, epochs=150, lr=0.05)
    assert hist["val_start"]["cs_acc"] < 0.4 and hist["val_best"]["cs_acc"] > 0.95, hist["val_best"]
    for k, v in m.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k
    assert all(p.requires_grad for p in m.parameters())


def test_evaluator_passes_the_evidence_in_loader_order():
    rng = np.random.default_rng(4)
    m = _model("cs")
    _randomize(m)
    x = torch.randn(10, 1, L)
    y_sg = torch.as_tensor(rng.integers(0, 230, 10))
    y_cs = torch.as_tensor(SG_TO_CS[y_sg.numpy()])
    loader = [{"x": x[i:i + 4], "y_sg": y_sg[i:i + 4], "y_cs": y_cs[i:i + 4],
               "idx": torch.arange(i, min(i + 4, 10))} for i in range(0, 10, 4)]
    ev = _evidence(rng, SG_TO_CS[y_sg.numpy()])
    ev_pred = Evaluator(m, np.ones(230)).predict(loader, evidence=ev)
    with torch.no_grad():
        direct = m(x, evidence=torch.as_tensor(ev))["cs_logits"].numpy()
    np.testing.assert_allclose(ev_pred["cs_logits"], direct, atol=1e-5)
    assert not np.allclose(Evaluator(m, np.ones(230)).predict(loader)["cs_logits"], direct)
    with pytest.raises(ValueError, match="evidence rows"):
        Evaluator(m, np.ones(230)).predict(loader, evidence=ev[:12].repeat(2, 0))


@pytest.mark.slow
def test_train_evidence_end_to_end(cubic_data, tmp_path, capsys, test_cli):
    """train.py (ICL, one epoch) → train_evidence.py → test.py with the evidence inputs →
    predict.py on an instrument file."""
    import train
    import train_evidence
    res = train.main(["--method", "icl", "--data_dir", str(cubic_data), "--epochs", "1",
                      "--output_dir", str(tmp_path / "Log"), "--device", "cpu", "--batch_size", "8",
                      "--seed", "0", "--frontend_type", "restcn_lite", "--width_mult", "0.125"])
    run = Path(res["run_dir"])
    rep = train_evidence.main([str(run), "--pool", "2", "--renderings", "clean", "--epochs", "20",
                               "--evidence_workers", "1",
                               "--inputs", "cs,gate"])
    out = run / "evidence_cs_gate"
    state = torch.load(out / "best.pt", weights_only=False)
    assert state["model_config"]["evidence_inputs"] == "cs,gate" and state["fusion"]["temperature"] > 0
    assert rep["pool_patterns"] == 2 and rep["best_epoch"] >= -1
    assert json.loads((out / "evidence_inputs.json").read_text())["inputs"] == ["cs", "gate"]
    m = test_cli.main(["--ckpt", str(out / "best.pt"), "--out_dir", str(tmp_path / "eval")])
    for k in ("sg_top1", "model_sg_top1", "index_sg_top1", "lab_model_cs_acc"):
        assert k in m, k
    assert m["model_cs_acc"] >= rep["val_start"]["cs_acc"] - 0.34  # 3 val patterns: the fit's scale

    import predict
    nacl = ROOT / "tests" / "fixtures" / "instrument" / "nacl_cu.xrdml"
    rows = predict.main(["--ckpt", str(out / "best.pt"), str(nacl), "--topk", "3"])
    assert rows[0]["index"]["crystal_system"] == "cubic"
    assert "model alone:" in capsys.readouterr().out


def test_train_evidence_refuses_what_it_cannot_train(tmp_path):
    import train_evidence
    from utils.errors import CheckpointError
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        train_evidence.main([str(tmp_path / "missing")])
    torch.save({"model_config": {"name": "linear"}, "model": {}, "args": {}}, tmp_path / "best.pt")
    with pytest.raises(ConfigError, match="ICL \\(icl_moe\\) only"):
        train_evidence.main([str(tmp_path)])
    with pytest.raises(ConfigError, match="nothing to train"):
        train_evidence.main([str(tmp_path / "missing"), "--inputs", "none"])
