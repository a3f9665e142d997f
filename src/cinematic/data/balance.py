"""Bias reduction (the seed's "Bias Reduction"): balanced sampling weights, stratified splits,
augmentation budgets for small groups, and the composition report (`cinematic data report`).

Balanced sampling uses inverse frequency with a temperature α: a sample whose group has count n gets
weight ∝ n^−(1−α), multiplied over the chosen attributes. α = 1 keeps the natural frequencies, α = 0
draws every group equally often (the total weight of a group is n · n^−1 = 1).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np

from cinematic.errors import UserError


def _as_tuple(group: Hashable) -> tuple:
    return group if isinstance(group, tuple) else (group,)


def balanced_weights(groups: Sequence[tuple | str], alpha: float) -> np.ndarray:
    """Per-sample sampling probabilities (sum 1): Π over attributes of count(value)^−(1−α).

    `groups[i]` is sample i's value (a str) or values (a tuple, one per attribute). Counts are taken per
    attribute position, so with two attributes a rare language and a rare emotion are both brought up.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    keys = [_as_tuple(g) for g in groups]
    width = len(keys[0])
    if any(len(k) != width for k in keys):
        raise ValueError("every group must have the same number of attributes")
    weights = np.ones(n, dtype=np.float64)
    for position in range(width):
        counts = Counter(k[position] for k in keys)
        per_sample = np.array([counts[k[position]] for k in keys], dtype=np.float64)
        weights *= per_sample ** -(1.0 - alpha)
    return weights / weights.sum()


def _largest_remainder(counts: dict[Hashable, int], total: int, order: list[Hashable]) -> dict[Hashable, int]:
    """Split `total` over groups proportionally to `counts`: floors plus one for the largest remainders,
    so each share is within one of its exact quota."""
    n = sum(counts.values())
    exact = {g: total * c / n for g, c in counts.items()}
    alloc = {g: int(np.floor(q)) for g, q in exact.items()}
    left = total - sum(alloc.values())
    # Ties broken by the seeded order, so no group is favoured by its name.
    ranked = sorted(order, key=lambda g: -(exact[g] - alloc[g]))
    for g in ranked[:left]:
        alloc[g] += 1
    return alloc


def stratified_split(
    groups: Sequence[Hashable], val_fraction: float, seed: int, max_val: int | None = None
) -> tuple[list[int], list[int]]:
    """(train indices, validation indices), both sorted, with each group's validation share within one
    sample of its share of the whole. Deterministic in `seed`.

    The validation size is round(N · val_fraction), capped by `max_val`, and at least 1 when
    val_fraction > 0 and N ≥ 2 (so a tiny data set still validates).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(groups)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    if max_val is not None:
        n_val = min(n_val, max_val)
    n_val = min(n_val, max(0, n - 1))
    if n_val == 0:
        return list(range(n)), []
    rng = np.random.default_rng(seed)
    members: dict[Hashable, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    order = list(members)
    order = [order[i] for i in rng.permutation(len(order))]
    alloc = _largest_remainder({g: len(m) for g, m in members.items()}, n_val, order)
    val: list[int] = []
    for group in order:
        picked = rng.permutation(members[group])[: alloc[group]]
        val.extend(int(i) for i in picked)
    val_set = set(val)
    return [i for i in range(n) if i not in val_set], sorted(val)


# ---------------------------------------------------------------------------------------------------
# Group statistics and augmentation budgets
# ---------------------------------------------------------------------------------------------------


def group_stats(values: Sequence[Hashable]) -> dict:
    """Counts, shares, imbalance ratio (largest / smallest group) and normalized entropy H / log(k)
    (1 = perfectly even; 0 for a single group) of one attribute's values."""
    counts = Counter(values)
    total = sum(counts.values())
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))))
    shares = {str(k): v / total for k, v in ordered.items()} if total else {}
    p = np.array(list(shares.values()), dtype=np.float64)
    k = len(p)
    entropy = float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 else 0.0
    return {
        "counts": {str(key): n for key, n in ordered.items()},
        "shares": {key: round(v, 6) for key, v in shares.items()},
        "groups": k,
        "total": total,
        "imbalance_ratio": (max(counts.values()) / min(counts.values())) if counts else None,
        "normalized_entropy": round(entropy, 6),
    }


def augmentation_budget(counts: dict[str, int], target: int | None = None, max_per_item: int = 1000) -> dict:
    """Augmented copies per group that bring each group up to `target` (default: the largest group):
    {"group": {"add": n, "per_item": ceil(n / count)}}, with per_item capped at `max_per_item`
    (1000 variations per clip exist, see `augmentation.VariationGenerator`)."""
    if not counts:
        return {}
    target = max(counts.values()) if target is None else target
    budget = {}
    for group, count in counts.items():
        per_item = min(max_per_item, -(-max(0, target - count) // count)) if count else 0
        budget[group] = {"add": min(max(0, target - count), per_item * count), "per_item": per_item}
    return budget


# ---------------------------------------------------------------------------------------------------
# Composition report (`cinematic data report DIR --out report.html`)
# ---------------------------------------------------------------------------------------------------

_SKIP_KEYS = {"text", "transcript", "lyrics", "title", "description", "path", "file", "id"}


def collect_records(root: str | Path) -> dict[str, list[dict]]:
    """{"music": [...], "voice": [...], "lyrics": [...]}: one attribute dict per item of each kind found
    under `root` (a data root or a single kind's folder)."""
    from cinematic.data.cleaning import detect_kinds
    from cinematic.data.dataset import read_lyrics_dir, read_music_dir, read_voice_dir

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    records: dict[str, list[dict]] = {}
    for kind, folder in detect_kinds(root).items():
        if kind == "music":
            records[kind] = [{"format": i.kind, **i.labels} for i in read_music_dir(folder)]
        elif kind == "voice":
            records[kind] = [
                {**u.meta, "speaker": u.speaker, "language": u.language or "unknown"}
                for u in read_voice_dir(folder)
            ]
        else:
            records[kind] = [{**s.labels, "language": s.language} for s in read_lyrics_dir(folder)]
    return records


def _attribute_values(records: list[dict]) -> dict[str, tuple[str, list]]:
    """attribute → ("categorical" | "numeric", values). Lists of strings count each element (multi-label
    attributes such as instruments); free-text keys are skipped."""
    keys = sorted({k for r in records for k in r if k.lower() not in _SKIP_KEYS})
    out = {}
    for key in keys:
        values = [r[key] for r in records if key in r and r[key] is not None]
        flat: list = []
        for value in values:
            flat.extend(value if isinstance(value, list) else [value])
        if not flat or any(isinstance(v, dict) for v in flat):
            continue
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat)
        if numeric:
            out[key] = ("numeric", [float(v) for v in flat])
        else:
            out[key] = ("categorical", [str(v) for v in flat])
    return out


def composition(root: str | Path) -> dict:
    """The report's data: for every kind and attribute, its statistics (and a budget for categorical ones)."""
    report: dict = {"data_dir": str(root), "kinds": {}}
    for kind, records in collect_records(root).items():
        attributes = {}
        for key, (type_, values) in _attribute_values(records).items():
            missing = sum(1 for r in records if r.get(key) is None)
            if type_ == "numeric":
                arr = np.array(values)
                attributes[key] = {
                    "type": "numeric",
                    "values": values,
                    "missing": missing,
                    "count": len(values),
                    "min": float(arr.min()),
                    "max": float(arr.max()),
                    "mean": float(arr.mean()),
                    "std": float(arr.std()),
                }
            else:
                stats = group_stats(values)
                attributes[key] = {
                    "type": "categorical",
                    "missing": missing,
                    **stats,
                    "augmentation_budget": augmentation_budget(stats["counts"]),
                }
        report["kinds"][kind] = {"items": len(records), "attributes": attributes}
    return report


def _chart_png(kind: str, name: str, attr: dict) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # fixed margins instead of a tight layout: one draw per chart instead of two
    fig, ax = plt.subplots(
        figsize=(6.0, 3.0), dpi=72, gridspec_kw={"left": 0.1, "right": 0.98, "top": 0.88, "bottom": 0.4}
    )
    if attr["type"] == "categorical":
        labels = list(attr["counts"])[:40]
        counts = [attr["counts"][k] for k in labels]
        ax.bar(range(len(labels)), counts, color="#4c72b0")
        short = [label if len(label) <= 18 else label[:17] + "…" for label in labels]
        ax.set_xticks(
            range(len(labels)), short, rotation=40 if len(labels) > 4 else 0, ha="right", fontsize=7
        )
        ax.axhline(attr["total"] / max(attr["groups"], 1), color="#c44e52", lw=1, ls="--", label="even share")
        ax.legend(fontsize=7)
        ax.set_ylabel("items")
    else:
        ax.hist(attr["values"], bins=20, color="#55a868")
        ax.set_ylabel("items")
    ax.set_title(f"{kind} · {name}", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def render_html(report: dict) -> str:
    """A self-contained HTML page: a table and an embedded PNG bar chart per attribute."""
    import base64
    import html

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>Data composition report</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th:first-child,td:first-child"
        "{text-align:left}.warn{color:#c44e52}</style>",
        "</head>",
        "<body>",
        f"<h1>Data composition: {html.escape(report['data_dir'])}</h1>",
    ]
    for kind, section in report["kinds"].items():
        parts.append(f"<h2>{html.escape(kind)} ({section['items']} items)</h2>")
        if not section["attributes"]:
            parts.append("<p>No metadata attributes found.</p>")
        for name, attr in section["attributes"].items():
            parts.append(f'<section class="attribute" id="{html.escape(kind)}-{html.escape(name)}">')
            parts.append(f"<h3>{html.escape(name)}</h3>")
            if attr["type"] == "categorical":
                ratio = attr["imbalance_ratio"]
                warn = ' class="warn"' if ratio and ratio > 3 else ""
                parts.append(
                    f"<p{warn}>{attr['groups']} groups, imbalance ratio {ratio:.2f}, normalized entropy "
                    f"{attr['normalized_entropy']:.3f}, missing {attr['missing']}</p>"
                )
                parts.append(
                    "<table><tr><th>group</th><th>count</th><th>share</th><th>augment to balance</th></tr>"
                )
                for group, count in attr["counts"].items():
                    budget = attr["augmentation_budget"][group]
                    parts.append(
                        f"<tr><td>{html.escape(group)}</td><td>{count}</td>"
                        f"<td>{attr['shares'][group]:.1%}</td><td>+{budget['add']} "
                        f"({budget['per_item']} per item)</td></tr>"
                    )
                parts.append("</table>")
            else:
                parts.append(
                    f"<p>numeric: {attr['count']} values, min {attr['min']:.4g}, mean {attr['mean']:.4g}, "
                    f"max {attr['max']:.4g}, missing {attr['missing']}</p>"
                )
            png = base64.b64encode(_chart_png(kind, name, attr)).decode("ascii")
            parts.append(
                f'<img class="chart" alt="{html.escape(kind)} {html.escape(name)}" '
                f'src="data:image/png;base64,{png}">'
            )
            parts.append("</section>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def write_report(data_dir: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Write `out` (HTML) and the same data as JSON beside it (`out` with suffix .json)."""
    from cinematic.utils import atomic_write_bytes

    report = composition(data_dir)
    out = Path(out)
    json_path = out.with_suffix(".json")
    plain = json.loads(json.dumps(report))
    for section in plain["kinds"].values():
        for attr in section["attributes"].values():
            attr.pop("values", None)  # raw numeric values stay out of the JSON
    atomic_write_bytes(out, render_html(report).encode("utf-8"))
    atomic_write_bytes(json_path, json.dumps(plain, indent=1, ensure_ascii=False).encode("utf-8"))
    return out, json_path


def report_command(args) -> int:
    """`cinematic data report DIR --out report.html`."""
    html_path, json_path = write_report(args.data_dir, args.out)
    report = json.loads(json_path.read_text(encoding="utf-8"))
    for kind, section in report["kinds"].items():
        print(f"{kind}: {section['items']} items")
        for name, attr in section["attributes"].items():
            if attr["type"] == "categorical":
                print(
                    f"  {name:<14} {attr['groups']:>3} groups  imbalance {attr['imbalance_ratio']:6.2f}  "
                    f"entropy {attr['normalized_entropy']:.3f}"
                )
            else:
                print(f"  {name:<14} numeric  mean {attr['mean']:.4g}")
    print(f"report: {html_path} (data: {json_path})")
    return 0
