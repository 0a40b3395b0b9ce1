"""The learning-curve table (reports.learning_curve_table, scripts/default/learning_curve.sh) and
the section writer of RESULTS.md."""

from __future__ import annotations

import json

import yaml

import reports


def _run(root, name, label, points):
    rd = root / name
    (rd / "curve").mkdir(parents=True)
    (rd / "args.yaml").write_text(yaml.safe_dump({"method": "icl", "frontend_type": "restcn_lite",
                                                  "width_mult": 0.25}))
    (rd / "curve" / "label.txt").write_text(label + "\n")
    with open(rd / "log.jsonl", "w") as fh:
        for seen, wall, _ in points:
            fh.write(json.dumps({"patterns_seen": seen, "wall_s": wall}) + "\n")
    for seen, _, acc in points:
        snap = rd / "curve" / f"seen_{seen}"
        (snap / "external_pyxtal").mkdir(parents=True)
        m = {"cs_acc": acc, "sg_top1": acc / 2, "sg_top5": acc / 1.5, "sg_top1_extinction": acc / 1.8}
        lab = {f"lab_{k}": v / 2 for k, v in m.items()}
        (snap / "test_metrics.json").write_text(json.dumps({**m, **lab}))
        if seen > 1000:  # the first point has no external evaluation yet: shown as '–'
            (snap / "external_pyxtal" / "test_metrics.json").write_text(json.dumps({"cs_acc": 0.25}))
    return rd


def test_learning_curve_rows_in_order_of_patterns_seen(tmp_path):
    a = _run(tmp_path, "a", "file data", [(50_000, 120.0, 0.4), (1000, 6.0, 0.2)])
    table = reports.learning_curve_table([a], "curves")
    rows = [r for r in table.splitlines() if r.startswith("| file data")]
    assert len(rows) == 2
    first = [c.strip() for c in rows[0].strip("|").split("|")]
    assert first[:4] == ["file data", "restcn_lite (width 0.25)", "1,000", "0.1"]
    # clean CS, SG top-1, SG top-5, ext; lab = half; external missing
    assert first[4:8] == ["20.0", "10.0", "13.3", "11.1"]
    assert first[8:12] == ["10.0", "5.0", "6.7", "5.6"]
    assert first[12:] == ["–"] * 4
    second = [c.strip() for c in rows[1].strip("|").split("|")]
    assert second[2:5] == ["50,000", "2.0", "40.0"] and second[12] == "25.0"


def test_write_section_replaces_only_its_block(tmp_path):
    f = tmp_path / "R.md"
    f.write_text("# Results\n\nintro\n")
    reports.write_section(f, "curve", "T1\n")
    reports.write_section(f, "other", "X\n")
    reports.write_section(f, "curve", "T2\n")
    text = f.read_text()
    assert text.startswith("# Results\n\nintro\n")
    assert "<!-- curve:begin -->\nT2\n<!-- curve:end -->" in text and "T1" not in text
    assert "<!-- other:begin -->\nX\n<!-- other:end -->" in text
