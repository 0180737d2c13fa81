"""The targets of the performance issue, and the text tables of a run.

:func:`targets` turns a results dictionary into pass / fail / not checked
lines (a target whose baseline was not measured, such as bayesian-torch when it
is not installed, is *not checked*; one whose measurement failed is an
*error*); :func:`render` prints every figure and the targets.
"""

from __future__ import annotations

from typing import Any

BACKEND_TITLES = {
    "torch": "torch eager",
    "compile": "torch.compile",
    "jax": "JAX nnx.jit",
}
BASELINES = {
    "deterministic": "det",
    "floor": "floor",
    "bayesian_torch": "b-torch",
}

# (id, figure, baseline, limit, backends, what)
TIME_TARGETS = (
    ("T1a", "train", "floor", 1.10, ("torch", "compile"), "torch train step / floor"),
    (
        "T1b",
        "train",
        "bayesian_torch",
        0.55,
        ("torch", "compile"),
        "torch train step / bayesian-torch",
    ),
    ("T2a", "predict", "floor", 1.00, ("torch", "compile"), "torch MC predict / floor"),
    (
        "T2b",
        "predict",
        "bayesian_torch",
        0.60,
        ("torch", "compile"),
        "torch MC predict / bayesian-torch",
    ),
    ("T3", "train", "floor", 1.10, ("jax",), "JAX train step / floor"),
)
MEMORY_LIMIT = 2.5
COMPILE_LIMIT_S = 1.0
LINEARITY_LIMIT = 1.5


def _target(tid, what, model, backend, value, limit, note=""):
    if isinstance(value, str):
        status, value = value, None
    elif value is None:
        status = "not checked"
    else:
        status = "pass" if value <= limit else "fail"
    return {
        "id": tid,
        "what": what,
        "model": model,
        "backend": backend,
        "value": value,
        "limit": limit,
        "status": status,
        "note": note,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target the run can judge, with its status."""
    out = []
    for tid, figure, base, limit, backends, what in TIME_TARGETS:
        for model, by_backend in results.get(figure, {}).items():
            for backend, cell in by_backend.items():
                if backend not in backends:
                    continue
                if "error" in cell:
                    out.append(
                        _target(
                            tid, what, model, backend, "error", limit, cell["error"]
                        )
                    )
                    continue
                ratio = cell["ratios"].get(base)
                note = "" if ratio else f"{base} not measured"
                value = ratio["median"] if ratio else None
                out.append(_target(tid, what, model, backend, value, limit, note))
    for model, by_framework in results.get("params", {}).items():
        for framework, cell in by_framework.items():
            what = "trainable params = 2x Bayesian + fixed, only mu/rho"
            if "error" in cell:
                out.append(
                    _target("T4a", what, model, framework, "error", 0, cell["error"])
                )
                continue
            exact = cell["count"]["bnnc"] == round(
                cell["expected_ratio"] * cell["count"]["deterministic"]
            )
            ok = exact and cell["only_mu_rho"]
            note = f"ratio {cell['ratio']:.3f}, expected {cell['expected_ratio']:.3f}"
            entry = _target("T4a", what, model, framework, None, 0, note)
            entry.update(value=cell["ratio"], limit=cell["expected_ratio"])
            entry["status"] = "pass" if ok else "fail"
            out.append(entry)
    for model, by_backend in results.get("memory", {}).items():
        for backend, cell in by_backend.items():
            what = "peak RSS of training / deterministic"
            if "error" in cell:
                out.append(
                    _target(
                        "T4b",
                        what,
                        model,
                        backend,
                        "error",
                        MEMORY_LIMIT,
                        cell["error"],
                    )
                )
                continue
            value = cell["ratios"].get("deterministic")
            out.append(_target("T4b", what, model, backend, value, MEMORY_LIMIT))
    comp = results.get("compile")
    if comp:
        if "error" in comp:
            out.append(
                _target(
                    "T5",
                    "bnnc compile",
                    "-",
                    "cli",
                    "error",
                    COMPILE_LIMIT_S,
                    comp["error"],
                )
            )
        elif "largest" in comp:
            n = comp["largest"]
            out.append(
                _target(
                    "T5a",
                    f"bnnc compile of a {n}-layer spec (s)",
                    "-",
                    "cli",
                    comp["deep"][str(n)]["s"],
                    COMPILE_LIMIT_S,
                )
            )
            out.append(
                _target(
                    "T5b",
                    "compile time per layer, large/small sizes (linear = 1)",
                    "-",
                    "cli",
                    comp.get("linearity"),
                    LINEARITY_LIMIT,
                )
            )
    return out


def _ratio(cell: dict[str, Any], base: str) -> str:
    r = cell["ratios"].get(base)
    if r is None:
        return "n/a"
    if isinstance(r, (int, float)):
        return f"{r:.2f}x"
    return f"{r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(str(x)) for x in column) for column in zip(header, *rows, strict=False)
    ]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=False))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=False))
        for row in rows
    ]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _timing_table(figure: dict[str, Any]) -> str:
    header = ["model", "backend", "bnnc ms", "det ms", "floor ms", "b-torch ms"]
    header += [f"/{short}" for short in BASELINES.values()]
    rows = []
    for model, by_backend in figure.items():
        for backend, cell in by_backend.items():
            name = BACKEND_TITLES.get(backend, backend)
            if "error" in cell:
                rows.append([model, name, "error: " + cell["error"][:60]])
                continue
            ms = cell["ms"]
            rows.append(
                [model, name]
                + [_ms(ms.get(k)) for k in ("bnnc", *BASELINES)]
                + [_ratio(cell, base) for base in BASELINES]
            )
    return _table(header, [r + [""] * (len(header) - len(r)) for r in rows])


def render(results: dict[str, Any]) -> str:
    """The whole report as text."""
    meta = results["meta"]
    cfg = meta["config"]
    versions = ", ".join(
        f"{name} {version or 'not installed'}"
        for name, version in meta["versions"].items()
    )
    parts = [
        f"bnnc benchmark: {meta['command']}",
        f"{meta['cpu']}, {cfg['threads']} threads; versions {versions}; "
        f"load average {meta['load_before']} before, {meta.get('load_after')} after",
        "Ratios: bnnc / baseline, median [min-max] of per-round ratios, "
        f"{cfg['rounds']} rounds after {cfg['warmup']} warm-up calls.",
    ]
    if results.get("train"):
        parts += [
            "",
            f"Training step (batch {cfg['batch']}, Adam, ELBO with KL), "
            f"{cfg['train_steps']} steps per contender per round",
            _timing_table(results["train"]),
        ]
    if results.get("predict"):
        parts += [
            "",
            f"MC prediction (S={cfg['mc_samples']}, batch {cfg['predict_batch']}, "
            f"no grad), {cfg['predict_calls']} per contender per round",
            _timing_table(results["predict"]),
        ]
    if results.get("memory"):
        rows = []
        for model, by_backend in results["memory"].items():
            for backend, cell in by_backend.items():
                name = BACKEND_TITLES.get(backend, backend)
                if "error" in cell:
                    rows.append([model, name, "error: " + cell["error"][:60]])
                    continue
                mib = cell["mib"]
                net = cell.get("net_ratios", {}).get("deterministic")
                rows.append(
                    [
                        model,
                        name,
                        _ms(mib.get("empty")),
                        _ms(mib.get("bnnc")),
                        _ms(mib.get("deterministic")),
                        _ms(mib.get("bayesian_torch")),
                        _ratio(cell, "deterministic"),
                        _ratio(cell, "bayesian_torch"),
                        "n/a" if net is None else f"{net:.2f}x",
                    ]
                )
        header = ["model", "backend", "import MiB", "bnnc MiB", "det MiB"]
        header += ["b-torch MiB", "/det", "/b-torch", "/det above import"]
        parts += [
            "",
            f"Peak RSS of a training run ({cfg['memory_steps']} steps, one process "
            "each; 'import' = the framework imported, nothing built)",
            _table(header, [r + [""] * (len(header) - len(r)) for r in rows]),
        ]
    if results.get("params"):
        rows = []
        for model, by_framework in results["params"].items():
            for framework, cell in by_framework.items():
                if "error" in cell:
                    rows.append([model, framework, "error: " + cell["error"][:60]])
                    continue
                rows.append(
                    [
                        model,
                        framework,
                        f"{cell['count']['bnnc']:,}",
                        f"{cell['count']['deterministic']:,}",
                        f"{cell['ratio']:.3f}x",
                        f"{cell['expected_ratio']:.3f}x",
                        "yes" if cell["only_mu_rho"] else "no",
                        f"{cell['bytes']['bnnc'] / 2**20:.2f}",
                    ]
                )
        header = ["model", "framework", "bnnc params", "det params", "ratio"]
        header += ["2x Bayes + fixed", "only mu/rho", "bnnc MiB"]
        parts += [
            "",
            "Trainable parameters",
            _table(header, [r + [""] * (len(header) - len(r)) for r in rows]),
        ]
    comp = results.get("compile")
    if comp and "error" not in comp:
        rows = [
            [f"{name} ({backend})", f"{v['s']:.3f}", f"{v['ratio_to_startup']:.1f}x"]
            for name, by_backend in comp["specs"].items()
            for backend, v in by_backend.items()
        ]
        rows += [
            [f"{n} layers (torch)", f"{v['s']:.3f}", f"{v['ratio_to_startup']:.1f}x"]
            for n, v in comp["deep"].items()
        ]
        parts += [
            "",
            f"`bnnc compile` end to end (median of {comp['runs']}; python startup "
            f"{comp['python_startup_s'] * 1000:.0f} ms)",
            _table(["spec", "seconds", "/python startup"], rows),
        ]
        if "per_layer_ms" in comp:
            slopes = ", ".join(f"{k}: {v:.2f}" for k, v in comp["per_layer_ms"].items())
            lin = comp.get("linearity")
            parts.append(
                f"per added layer (ms): {slopes}; linearity "
                f"{'n/a' if lin is None else f'{lin:.2f}'} (1.0 = straight line)"
            )
    elif comp:
        parts += ["", f"compile time: error: {comp['error']}"]
    parts += ["", "Targets"]
    rows = []
    for t in results.get("targets", []):
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        rows.append(
            [
                t["status"].upper(),
                t["id"],
                t["what"],
                t["model"],
                t["backend"]
                if t["id"] == "T4a"
                else BACKEND_TITLES.get(t["backend"], t["backend"]),
                value,
                f"<= {t['limit']:.2f}" if t["id"] != "T4a" else f"== {t['limit']:.3f}",
                t["note"][:60],
            ]
        )
    parts.append(
        _table(
            ["status", "id", "target", "model", "backend", "value", "limit", ""], rows
        )
    )
    counts: dict[str, int] = {}
    for t in results.get("targets", []):
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    parts.append(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return "\n".join(parts)
