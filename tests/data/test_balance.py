from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cinematic.data.balance import balanced_weights, stratified_split


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, 0.5), (1.0, 0.9)])
def test_sampler_alpha_controls_group_shares_over_10000_draws(alpha, expected):
    groups = ["big"] * 90 + ["small"] * 10
    weights = balanced_weights(groups, alpha)
    draws = np.random.default_rng(0).choice(len(groups), size=10_000, p=weights)
    share = np.mean([groups[i] == "big" for i in draws])
    assert abs(share - expected) <= 0.03


def test_weights_multiply_over_attributes():
    groups = [("en", "happy"), ("en", "sad"), ("en", "sad"), ("es", "sad")]
    w = balanced_weights(groups, 0.0)
    raw = np.array([1 / 3 * 1, 1 / 3 * 1 / 3, 1 / 3 * 1 / 3, 1 * 1 / 3])
    np.testing.assert_allclose(w, raw / raw.sum())
    np.testing.assert_allclose(balanced_weights(groups, 1.0), 0.25)


def test_stratified_split_keeps_group_shares_within_one_sample():
    groups = ["a"] * 53 + ["b"] * 31 + ["c"] * 11 + ["d"] * 5
    train, val = stratified_split(groups, 0.2, seed=3)
    assert sorted(train + val) == list(range(100)) and not set(train) & set(val)
    counts = Counter(groups[i] for i in val)
    for group, total in Counter(groups).items():
        assert abs(counts[group] - total * len(val) / len(groups)) <= 1
    assert stratified_split(groups, 0.2, seed=3) == (train, val)
    assert stratified_split(groups, 0.2, seed=4) != (train, val)
    assert len(stratified_split(groups, 0.2, seed=3, max_val=7)[1]) == 7


def test_group_stats_and_budget_values():
    from cinematic.data.balance import augmentation_budget, group_stats

    stats = group_stats(["en"] * 6 + ["es"] * 3 + ["de"])
    assert stats["counts"] == {"en": 6, "es": 3, "de": 1} and stats["imbalance_ratio"] == 6.0
    p = np.array([0.6, 0.3, 0.1])
    assert stats["normalized_entropy"] == pytest.approx(-(p * np.log(p)).sum() / np.log(3), abs=1e-6)
    assert (
        group_stats(["a", "b"])["normalized_entropy"] == 1.0 and group_stats(["a"])["normalized_entropy"] == 0
    )
    assert augmentation_budget(stats["counts"]) == {
        "en": {"add": 0, "per_item": 0},
        "es": {"add": 3, "per_item": 1},
        "de": {"add": 5, "per_item": 5},
    }


def test_report_on_demo_data_is_valid_html_with_one_chart_per_attribute(demo_data, tmp_path, capsys):
    import json
    from html.parser import HTMLParser

    from cinematic.cli import main

    assert main(["data", "report", str(demo_data), "--out", str(tmp_path / "report.html")]) == 0
    assert "imbalance" in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    attributes = [(k, a) for k, s in report["kinds"].items() for a in s["attributes"]]
    assert {"music", "voice", "lyrics"} <= set(report["kinds"])
    assert {
        ("music", "emotion"),
        ("music", "genre"),
        ("voice", "speaker"),
        ("voice", "gender"),
        ("lyrics", "language"),
    } <= set(attributes)
    voice_speakers = report["kinds"]["voice"]["attributes"]["speaker"]
    assert sum(voice_speakers["counts"].values()) == report["kinds"]["voice"]["items"]

    class Checker(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.charts, self.errors = [], 0, []

        def handle_starttag(self, tag, attrs):
            if tag == "img" and ("class", "chart") in attrs:
                self.charts += 1
                assert dict(attrs)["src"].startswith("data:image/png;base64,")
            elif tag not in ("img", "meta", "br"):
                self.stack.append(tag)

        def handle_endtag(self, tag):
            if not self.stack or self.stack.pop() != tag:
                self.errors.append(tag)

    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "http" not in text.split("<body>")[1].split("data:")[0]
    checker = Checker()
    checker.feed(text)
    assert checker.errors == [] and checker.stack == []
    assert checker.charts == len(attributes)
