"""`gcsim accuracy`'s outputs: the table (mode x non-ideality, before -> after adaptation), the
results as CSV, and the PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from gcsim.core.atomic import check_targets, replacing_all

COLUMNS = ("none", "quantize", "decay", "mismatch", "all")


def _cell(row) -> str:
    text = f"{row['accuracy']:.3f}"
    if row.get("adapted_accuracy") is not None:
        text += f" -> {row['adapted_accuracy']:.3f}"
    return text


def _describe_task(task: dict) -> str:
    if task["name"] == "mqar":
        return (f"vocabulary {task['vocab']}, {task['pairs']} pairs, {task['queries']} queries, "
                f"{task['seq_len']} tokens")
    return f"vocabulary {task['vocab']}, {task['seq_len']} tokens"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(line[i])) for line in [header] + rows) for i in range(len(header))]
    return ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip()
            for line in [header] + rows]


def format_report(report: dict) -> list[str]:
    task, model, train = report["task"], report["model"], report["training"]
    settings = report["settings"]
    lines = [
        f"gcsim accuracy {task['name']}: {_describe_task(task)} (chance {report['chance']:.3f})",
        f"  model: {model['layers']} layers x {model['heads']} heads of dim {model['head_dim']} "
        f"({model['parameters']:,} parameters), window {settings['window']}, arrays of "
        f"{settings['array']}",
        f"  softmax training: {train['steps']} steps of {settings['batch']} sequences in "
        f"{train['seconds']:.1f} s (budget {train['step_budget']}, stops at "
        f"{train['stop_at_validation_accuracy']:.0%} on a validation batch), accuracy "
        f"{train['accuracy']:.3f} on {settings['eval_sequences']} held-out sequences",
    ]
    rows = report["results"]
    present = [c for c in COLUMNS if any(r["nonideality"] == c for r in rows)]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    table = [["softmax"] + [f"{report['reference']['accuracy']:.3f}" if c == "none" else ""
                            for c in present]]
    for label in labels:
        cells = {r["nonideality"]: _cell(r) for r in rows if r["label"] == label}
        table.append([label] + [cells.get(c, "-") for c in present])
    adapted = settings["adapt"] and report["adaptation"]
    lines += ["", "the softmax model on each mode, " + (
        "before -> after adaptation (statistics calibration, then "
        f"{settings['scaler_steps']} steps on the scalers and {settings['weight_steps']} on "
        "every weight with the hardware in the loop, every non-ideality on, on another "
        "mismatch draw):" if adapted else "calibrated on statistics (no adaptation):")]
    lines += _table(["mode"] + present, table)
    carried = [label for label in labels if any(
        r["label"] == label and r.get("from_linear_accuracy") is not None for r in rows)]
    if carried:
        table = []
        for label in carried:
            cells = {r["nonideality"]: f"{r['from_linear_accuracy']:.3f}" for r in rows
                     if r["label"] == label}
            table.append([label] + [cells.get(c, "-") for c in present])
        lines += ["", "the model adapted on linear cells, carried onto each mode by the "
                      "statistics calibration alone (the published chain before its last "
                      "fine-tune):"]
        lines += _table(["mode"] + present, table)
    deployed = [label for label in labels if any(
        r["label"] == label and r.get("on_fitted_accuracy") is not None for r in rows)]
    if deployed:
        table = []
        for label in deployed:
            cells = {r["nonideality"]: f"{r['on_fitted_accuracy']:.3f}" + (
                f" / {r['on_fitted_calibrated_accuracy']:.3f}"
                if r.get("on_fitted_calibrated_accuracy") is not None else "")
                for r in rows if r["label"] == label}
            table.append([label] + [cells.get(c, "-") for c in present])
        lines += ["", "the model adapted on each bundle's published-form export, run on the "
                      "bundle's fitted cells (what a user of the published training code gets; "
                      "'all' includes the fitted mismatch), as adapted / carried there by the "
                      "statistics calibration:"]
        lines += _table(["mode"] + present, table)
    lines.append("")
    if len({(r["label"], r["nonideality"]) for r in rows}) < len(labels) * len(present):
        lines.append("'-': not applicable (ideal has no non-idealities; linear, paper and "
                     "exported model no mismatch)")
    lines += _export_cost(rows)
    decays = [f"{r['label']} {r['decay_factor_per_token']:.3g}" for r in rows
              if r["nonideality"] == "all" and r["decay"]]
    if decays:
        lines.append("decay exponent per token of age: " + ", ".join(decays))
    checks = report["twin_check"]
    if checks:
        largest = max(c["max_abs_difference"] for c in checks)
        values = sum(layer["values"] for c in checks for layer in c["layers"])
        verdict = "equal" if all(c["equal"] for c in checks) else "DIFFERENT"
        lines.append(f"twin vs NumPy simulator on the model's own q, k, v (float64, "
                     f"{len(checks)} modes, {values:,} outputs): {verdict}, largest "
                     f"|difference| {largest:.3g}")
    for label, warnings in report.get("warnings", {}).items():
        lines += [f"warning: {label}: {line}" for line in warnings]
    seeds = report["seeds"]
    lines.append(f"seeds: --seed {seeds['seed']}, evaluated chip --mismatch-seed "
                 f"{seeds['mismatch_evaluation']}, adapted on chip "
                 f"{seeds['mismatch_adaptation']}")
    times = report["timings_s"]
    lines.append("time: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in
                                      times.items()) + f" ({settings['threads']} threads, "
                                                      f"twin in {settings['dtype']})")
    return lines


def export_costs(rows: list[dict]) -> list[dict]:
    """Per bundle evaluated both fitted and exported, and per column both have: the accuracy
    of the softmax model calibrated onto each, of the model adapted on each, and of the model
    adapted on the export run on the fitted cells (what a user of the published code gets)."""
    costs = []
    for fitted in rows:
        if fitted["mode"] != "fitted":
            continue
        match = [r for r in rows if r["mode"] == "exported" and r["fits"] == fitted["fits"]
                 and r["nonideality"] == fitted["nonideality"]]
        if match:
            exported = match[0]
            costs.append({
                "fits": fitted["fits"], "label": fitted["label"].split(":", 1)[1],
                "nonideality": fitted["nonideality"],
                "fitted_accuracy": fitted["accuracy"], "exported_accuracy": exported["accuracy"],
                "fitted_adapted_accuracy": fitted.get("adapted_accuracy"),
                "exported_adapted_accuracy": exported.get("adapted_accuracy"),
                "exported_adapted_on_fitted_accuracy": exported.get("on_fitted_accuracy"),
                "exported_adapted_on_fitted_calibrated_accuracy": exported.get(
                    "on_fitted_calibrated_accuracy")})
    return costs


def _export_cost(rows: list[dict]) -> list[str]:
    """One line per bundle, under `all` (every non-ideality; the export has no mismatch, the
    fitted cells do) or else the first column both have."""
    lines = []
    costs = export_costs(rows)
    for fits in dict.fromkeys(c["fits"] for c in costs):
        mine = {c["nonideality"]: c for c in costs if c["fits"] == fits}
        cost = mine.get("all") or next(iter(mine.values()))
        text = (f"export cost, {cost['label']} ({cost['nonideality']}): calibrated fitted "
                f"{cost['fitted_accuracy']:.3f}, exported {cost['exported_accuracy']:.3f}")
        if cost["fitted_adapted_accuracy"] is not None:
            text += (f"; adapted fitted {cost['fitted_adapted_accuracy']:.3f}, exported "
                     f"{cost['exported_adapted_accuracy']:.3f}")
        if cost["exported_adapted_on_fitted_accuracy"] is not None:
            text += (", adapted on the export then run on the fitted cells "
                     f"{cost['exported_adapted_on_fitted_accuracy']:.3f}")
        if cost["exported_adapted_on_fitted_calibrated_accuracy"] is not None:
            text += (f" ({cost['exported_adapted_on_fitted_calibrated_accuracy']:.3f} "
                     "calibrated there)")
        lines.append(text)
    return lines


def results_table(report: dict) -> pd.DataFrame:
    return pd.DataFrame(report["results"])


def plot(report: dict):
    """Grouped bars: per mode, the accuracy under each non-ideality before (light) and after
    (dark) adaptation; lines at the softmax model's accuracy and at chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    present = [c for c in COLUMNS if any(r["nonideality"] == c for r in rows)]
    width = 0.8 / max(1, len(present))
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(labels) + 2), 4.2))
    carried_labelled = deployed_labelled = False
    for j, name in enumerate(present):
        labelled = False
        for i, label in enumerate(labels):
            match = [r for r in rows if r["label"] == label and r["nonideality"] == name]
            if not match:
                continue
            r = match[0]
            x = i - 0.4 + width * (j + 0.5)
            ax.bar(x, r["accuracy"], width * 0.9, color=colors(j), alpha=0.35,
                   label=None if labelled else name)
            if r.get("adapted_accuracy") is not None:
                ax.bar(x, r["adapted_accuracy"], width * 0.45, color=colors(j))
            if r.get("on_fitted_accuracy") is not None:
                ax.plot(x, r["on_fitted_accuracy"], "rv", ms=5,
                        label=None if deployed_labelled else
                        "adapted on the export, run on fitted cells")
                if r.get("on_fitted_calibrated_accuracy") is not None:
                    ax.plot(x, r["on_fitted_calibrated_accuracy"], "r^", ms=5,
                            label=None if deployed_labelled else "... calibrated there")
                deployed_labelled = True
            if r.get("from_linear_accuracy") is not None:
                ax.plot(x, r["from_linear_accuracy"], "kD", ms=4,
                        label=None if carried_labelled else "from linear, calibrated only")
                carried_labelled = True
            labelled = True
    ax.axhline(report["reference"]["accuracy"], color="k", lw=1, ls="-",
               label="softmax model")
    ax.axhline(report["chance"], color="k", lw=1, ls=":", label="chance")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20 if len(labels) > 5 else 0,
                       ha="right" if len(labels) > 5 else "center", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("task accuracy")
    task = report["task"]
    notes = ["wide pale bars: the softmax model calibrated; narrow dark bars: adapted"]
    if carried_labelled:
        notes.append("diamonds: the linear-adapted model calibrated")
    if deployed_labelled:
        notes.append("triangles: adapted on a bundle's export, run on its fitted cells "
                     "(down: as adapted; up: calibrated there)")
    ax.set_title("\n".join([f"{task['name']}: {_describe_task(task)}"] + notes), fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


OUTPUTS = ("accuracy.json", "accuracy.csv", "accuracy.png")


def output_targets(out_dir: Path) -> list[Path]:
    return check_targets([Path(out_dir) / name for name in OUTPUTS], "--out")


def write_outputs(out_dir: Path, report: dict) -> list[Path]:
    """accuracy.json, accuracy.csv and accuracy.png, written together (core.atomic)."""
    import matplotlib.pyplot as plt

    targets = output_targets(out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fig = plot(report)
    try:
        with replacing_all(*targets, what="--out") as temporaries:
            Path(temporaries[0]).write_text(json.dumps(report, indent=2) + "\n")
            results_table(report).to_csv(temporaries[1], index=False)
            fig.savefig(temporaries[2], dpi=120, format="png")
    finally:
        plt.close(fig)
    return targets
