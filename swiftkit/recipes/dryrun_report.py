"""The ``--dry_run`` plan as text for people: model, parameters per group, data, steps, memory."""

from __future__ import annotations

_GROUP_LABELS = {"embeddings": "embeddings", "attention": "attention", "mlp": "MLP", "norms": "norms",
                 "head": "head", "adapters": "adapters (new)", "other": "other"}


def size(n: float | None) -> str:
    """Bytes in binary units: ``512.0 MiB``, ``1.93 GiB``."""
    if n is None:
        return "?"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}" if unit == "GiB" else f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def count(n: int | None) -> str:
    """A parameter count: ``134,515,008``."""
    return "?" if n is None else f"{n:,}"


def _parameters(params: dict) -> list[str]:
    lines = [f"parameters: {count(params['trainable'])} trainable of {count(params['total'])} "
             f"({params['trainable_percent']:.4g}%)",
             f"  {'group':<16}{'trainable':>16}{'total':>16}"]
    for name, label in _GROUP_LABELS.items():
        g = params["groups"].get(name)
        if g:
            lines.append(f"  {label:<16}{count(g['trainable']):>16}{count(g['total']):>16}")
    for tie in params.get("tied", []):
        lines.append(f"  tied: {tie} (counted once)")
    return lines


def _data(data: dict) -> list[str]:
    if data.get("streaming"):
        return [f"data: --streaming (not read ahead); {data['val_rows']} validation rows"]
    lines = [f"data: {data['train_rows']} training rows, {data['val_rows']} validation rows; skipped: "
             f"{data['rows_too_long']} over --max_length, {data['bad_rows_skipped']} bad rows"
             + (f"; {data['duplicates']} duplicates" if "duplicates" in data else ""),
             f"  {data['tokens_counted']}: {count(data['tokens'])} in all, {data['mean_tokens']} per row on average, "
             f"longest {data['max_tokens']}"]
    hist = data.get("histogram") or []
    most = max((b["rows"] for b in hist), default=0) or 1
    low = 0
    for bucket in hist:
        bar = "#" * round(30 * bucket["rows"] / most)
        lines.append(f"  {low + 1:>6}-{bucket['upto']:<6} {bucket['rows']:>8}  {bar}")
        low = bucket["upto"]
    return lines


def _schedule(s: dict, data: dict) -> list[str]:
    if s.get("steps_per_epoch") is None:
        return [f"steps: {s['total_steps']} (--max_steps), {s['rows_per_step']} rows per step; {s.get('note', '')}"]
    how = "packed rows" if data.get("packing") else "rows"
    lines = [f"steps: {s['steps_per_epoch']} per epoch of {s['trainer_rows']} {how}, {s['total_steps']} in all "
             f"({s['epochs']} epochs); {s['rows_per_step']} rows per step"]
    if "tokens_per_step" in s:
        lines.append(f"  tokens per step: {s['tokens_per_step']} on average (real tokens; "
                     f"{count(s['tokens_per_epoch'])} per epoch)")
    if s.get("note"):
        lines.append(f"  {s['note']}")
    return lines


def _memory(m: dict) -> list[str]:
    where = "process resident memory" if m["device"] == "cpu" else "CUDA device memory"
    parts, how = m["parts"], m["how"]
    lines = [f"estimated peak memory: {size(m['peak_bytes'])} ({where}, at the {m['peak_stage']})",
             f"  {'runtime':<18}{size(parts['runtime']):>12}  {how['runtime']}",
             f"  {'weights':<18}{size(parts['weights']):>12}  {m['dtype']}; {how['weights']}",
             f"  {'gradients':<18}{size(parts['gradients']):>12}  of {size(m['gradients_total'])} in all",
             f"  {'optimizer states':<18}{size(parts['optimizer_states']):>12}  {how['optimizer_states']}",
             f"  {'activations':<18}{size(parts['activations']):>12}  {how['activations']}; {how['trace']}"]
    if parts["optimizer_workspace"]:
        lines.append(f"  {'step workspace':<18}{size(parts['optimizer_workspace']):>12}  {how['optimizer_workspace']}")
    lines.append(f"  {'allocator':<18}{size(parts['allocator']):>12}  {how['allocator']}")
    b = m["batch"]
    lines.append(f"  largest batch traced: {b['rows']} x {b['width']} tokens ({b['sequences']} sequences), logits at "
                 f"{b['logits_positions']} positions; recomputed in backward: "
                 f"{m['recompute']}; autocast {m['autocast'] or 'off'}")
    lines.append(f"  loading peak: {size(m['loading_peak_bytes'])}; training peak: {size(m['training_peak_bytes'])}")
    return lines


def render(plan: dict) -> str:
    """The plan in a few dozen lines."""
    model = plan["model"]
    lines = [f"swiftkit {plan['command']} dry run: nothing was loaded or written",
             f"model: {model['model']} ({model['architecture']}, {model['path']}); template {model['template']}, "
             f"--max_length {model['max_length']}; --train_type {model['train_type']}", ""]
    lines += _parameters(plan["parameters"]) + [""]
    lines += _data(plan["data"]) + [""]
    lines += _schedule(plan["schedule"], plan["data"]) + [""]
    lines += _memory(plan["memory"])
    if plan.get("allocator"):
        lines += [f"allocator: {plan['allocator']} (the run trains under it; SWIFTKIT_ALLOCATOR, docs/sft.md)"]
    if plan["notes"]:
        lines += ["", "notes:"] + [f"  - {note}" for note in plan["notes"]]
    return "\n".join(lines)
