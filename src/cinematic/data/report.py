"""The composition report (`cinematic data report DIR --out report.html`): what a data folder holds, per
kind and attribute (counts, charts, the augmentation budget that would even out small groups), with the
music read in its corpus layout (EMOPIA, MAESTRO, Lakh or the seed's)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cinematic.data.balance import augmentation_budget, group_stats
from cinematic.errors import UserError

_SKIP_KEYS = {"text", "transcript", "lyrics", "title", "description", "path", "file", "id"}


def collect_records(root: str | Path) -> dict[str, list[dict]]:
    """{"music": [...], "voice": [...], "lyrics": [...]}: one attribute dict per item of each kind found
    under `root` (a data root or a single kind's folder)."""
    from cinematic.data.cleaning import detect_kinds
    from cinematic.data.corpora import discover_music_corpus
    from cinematic.data.dataset import read_lyrics_dir, read_voice_dir

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    records: dict[str, list[dict]] = {}
    for kind, folder in detect_kinds(root).items():
        if kind == "music":
            records[kind] = [  # in its corpus layout: EMOPIA's quadrants, MAESTRO's composers and split
                {"format": i.kind, **i.labels, **({"split": i.split} if i.split else {})}
                for i in discover_music_corpus(folder).items
            ]
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
