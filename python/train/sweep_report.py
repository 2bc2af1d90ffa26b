"""The answer of a model-level vocab sweep: V_opt per (depth, budget), its trend with compute, the report files.

Fits work in x = log2 V. V_opt of one curve is the vertex of the parabola through its lowest mean and the two
neighbouring sizes; a minimum at the edge of the grid is reported as such, not as an optimum.
Its interval comes from a bootstrap over seeds (seeds drawn with replacement, the means recomputed, the curve
refitted; seed s is one draw for every V, since all sizes share its init of the blocks and its data order). Means are
adjusted for each seed's offset, so sizes with more seeds than others are still compared on equal terms. V_opt
against compute is a power law fitted per depth, and the same bootstrap draws carry its interval to the
extrapolation to nanochat's compute.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from train.base import parse_args as base_parse_args
from train.gpt import GPTConfig

BASE_DEFAULTS = vars(base_parse_args(["--tokenizer", "-", "--data", "-"]))

BOOTSTRAP = 2000
INTERVAL = (5.0, 95.0)  # percentiles: a 90% interval
NOISE_Z = 2.0  # "within noise": |Δ mean| < NOISE_Z x the standard error of the difference


def nanochat_compute() -> list[dict[str, Any]]:
    """Training FLOPs of nanochat's speedrun configurations with this repository's model (nanochat's architecture
    of Oct 2025): width 64·depth, T = 2048, V = 65536, tokens = 20 x all parameters (speedrun.sh: "The d20 model is
    561M parameters ... 20X ... 11.2B tokens"; d26 is the README's $300 tier, the same ratio)."""
    rows = []
    for name, depth in (("nanochat d20", 20), ("nanochat d26", 26)):
        c = GPTConfig.from_depth(depth, 65536, 2048)
        params = c.num_params()
        tokens = 20 * params
        rows.append(
            {
                "name": name,
                "depth": depth,
                "params": params,
                "tokens": tokens,
                "flops_per_token": c.flops_per_token(),
                "flops": tokens * c.flops_per_token(),
            }
        )
    return rows


def vertex(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, bool]:
    """(x of the minimum, interior?) of one curve: the vertex of the parabola through the lowest point and its two
    neighbours; (the edge x, False) when the lowest point is the first or last one."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    i = int(np.argmin(y))
    if i == 0 or i == len(x) - 1:
        return float(x[i]), False
    # The lowest point and its two neighbours: a wider window would let a far, noisy point drag the vertex
    # away from the minimum (the curves are not parabolas over many octaves).
    a, b, _ = np.polyfit(x[i - 1 : i + 2], y[i - 1 : i + 2], 2)
    if a <= 0:  # cannot happen when the middle point is the lowest; kept for float ties
        return float(x[i]), True
    return float(np.clip(-b / (2 * a), x[i - 1], x[i + 1])), True


Curve = dict[int, dict[int, float]]  # V -> seed -> val bpb


def curves(points: list[dict[str, Any]]) -> dict[tuple[int, float], Curve]:
    """(depth, budget) -> V -> seed -> the val bpb of each finished point (seed s of every V is one paired draw: the
    same blocks at init and the same data order)."""
    out: dict[tuple[int, float], Curve] = {}
    for p in sorted(points, key=lambda p: p["seed"]):
        if p["status"] == "ok" and p["val_bpb"] is not None:
            key = (p["depth"], p["flops_budget"])
            out.setdefault(key, {}).setdefault(p["vocab_size"], {})[p["seed"]] = p["val_bpb"]
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def adjusted_means(columns: list[dict[int, float]], sizes: list[int]) -> list[float]:
    """Each size's mean bpb, adjusted for each seed's offset: the least-squares fit of bpb = f(V) + a_seed.

    A seed shifts every size about alike (one seed ran 0.05 bpb below another at every V), so when some sizes have
    more seeds than others (a rerun that added seeds where sizes were close) plain means would compare sizes on
    different seeds. With every size on the same seeds this is the plain mean. `columns`: one dict V -> bpb per
    seed (a bootstrap draw may repeat a seed)."""
    offsets = [0.0] * len(columns)
    f = [0.0] * len(sizes)
    for _ in range(200):  # alternating means; exact after one round when every size has every seed
        f = [float(np.mean([c[v] - a for c, a in zip(columns, offsets) if v in c])) for v in sizes]
        new = [float(np.mean([c[v] - fv for v, fv in zip(sizes, f) if v in c])) for c in columns]
        shift = float(np.mean(new))
        new = [a - shift for a in new]
        if max(abs(x - y) for x, y in zip(new, offsets)) < 1e-12:
            break
        offsets = new
    return f


def optimum(curve: Curve, rng: np.random.Generator) -> dict[str, Any]:
    """V_opt of one (depth, budget) curve, its bootstrap interval and draws, the per-seed refits, and which sizes are
    within noise of the best one."""
    sizes = list(curve)
    seeds = sorted({s for ys in curve.values() for s in ys})
    columns = [{v: curve[v][s] for v in sizes if s in curve[v]} for s in seeds]
    xs = [math.log2(v) for v in sizes]
    means = adjusted_means(columns, sizes)
    sds = [float(np.std(list(curve[v].values()), ddof=1)) if len(curve[v]) > 1 else float("nan") for v in sizes]
    x_opt, interior = vertex(xs, means) if len(sizes) >= 3 else (xs[int(np.argmin(means))], False)
    best = int(np.argmin(means))
    draws: list[float] = []
    if min(len(ys) for ys in curve.values()) > 1 and len(sizes) >= 3:
        # Seeds are drawn with replacement, one draw for the whole curve: the sizes share each seed's init and data.
        # A draw that leaves some size without a seed is drawn again.
        while len(draws) < BOOTSTRAP:
            pick = [columns[i] for i in rng.integers(0, len(seeds), size=len(seeds))]
            if all(any(v in c for c in pick) for v in sizes):
                draws.append(vertex(xs, adjusted_means(pick, sizes))[0])
    complete = [c for c in columns if len(c) == len(sizes)]
    per_seed = [2 ** vertex(xs, [c[v] for v in sizes])[0] for c in complete] if len(sizes) >= 3 else []
    # An edge is not an optimum: no interval for it (its draws still show how often resampling finds an interior one).
    interval = [2 ** float(np.percentile(draws, q)) for q in INTERVAL] if draws and interior else None
    within = []
    for i, v in enumerate(sizes):
        if i == best:
            continue
        common = [s for s in curve[v] if s in curve[sizes[best]]]
        if len(common) > 1:  # the spread of the per-seed differences
            diff = [curve[v][s] - curve[sizes[best]][s] for s in common]
            se = float(np.std(diff, ddof=1)) / math.sqrt(len(common))
        elif len(curve[v]) > 1 and len(curve[sizes[best]]) > 1:
            se = math.sqrt(sds[i] ** 2 / len(curve[v]) + sds[best] ** 2 / len(curve[sizes[best]]))
        else:
            continue
        if means[i] - means[best] < NOISE_Z * se:
            within.append(v)
    return {
        "v_opt": 2**x_opt,
        "interior": interior,
        "interval": interval,
        "per_seed_v_opt": per_seed,
        "best_measured": sizes[best],
        "within_noise_of_best": within,
        "means": dict(zip(sizes, means)),
        "sds": dict(zip(sizes, sds)),
        "n_seeds": min(len(ys) for ys in curve.values()),
        "seeds_per_size": {v: len(ys) for v, ys in curve.items()},
        "_draws": draws,
    }


def power_law(budgets: list[float], optima: list[dict[str, Any]], targets: list[dict[str, Any]]) -> dict[str, Any]:
    """log2 V_opt = a + b·log10 C over the interior optima; its bootstrap (the optima's own draws) gives the
    interval of each extrapolated V_opt."""
    use = [(c, o) for c, o in zip(budgets, optima) if o["interior"]]
    if len(use) < 2:
        return {"fitted": False, "reason": f"{len(use)} interior optimum(s); a power law needs 2 or more budgets"}
    lc = np.log10([c for c, _ in use])
    b, a = np.polyfit(lc, [math.log2(o["v_opt"]) for _, o in use], 1)
    fit: dict[str, Any] = {
        "fitted": True,
        "budgets": [c for c, _ in use],
        "exponent": float(b * math.log10(2)),  # V_opt ∝ C^exponent
        "log2_v_at_1e12": float(a + 12 * b),
        "slope_log2v_per_decade": float(b),
        "extrapolated": [],
    }
    n_draws = min(len(o["_draws"]) for _, o in use)
    boot = []
    for k in range(n_draws):
        bb, aa = np.polyfit(lc, [o["_draws"][k] for _, o in use], 1)
        boot.append((aa, bb))
    # The trend is resolved when the exponent's bootstrap interval excludes 0; otherwise the extrapolation is noise.
    fit["exponent_interval"] = (
        [float(np.percentile([bb * math.log10(2) for _, bb in boot], q)) for q in INTERVAL] if boot else None
    )
    iv = fit["exponent_interval"]
    fit["resolved"] = bool(iv and (iv[0] > 0 or iv[1] < 0))
    fit["two_budgets_only"] = len(use) == 2
    # How far the line is carried: the decades of compute it was fitted on, and from its end to the farthest target.
    fit["fitted_decades"] = float(lc.max() - lc.min())
    fit["reach_decades"] = float(max((math.log10(t["flops"]) for t in targets), default=lc.max()) - lc.max())
    for t in targets:
        x = math.log10(t["flops"])
        row = {**t, "v_opt": float(2 ** (a + b * x)), "interval": None}
        if boot:
            row["interval"] = [float(2 ** np.percentile([aa + bb * x for aa, bb in boot], q)) for q in INTERVAL]
        fit["extrapolated"].append(row)
    if boot and targets:
        # The interval as a band from the smallest budget to the farthest target, for the plot.
        grid = np.linspace(lc.min(), max(math.log10(t["flops"]) for t in targets), 40)
        ys = np.array([[aa + bb * g for g in grid] for aa, bb in boot])
        lo, hi = (np.percentile(ys, q, axis=0) for q in INTERVAL)
        fit["band"] = {"log10_flops": grid.tolist(), "log2_v_lo": lo.tolist(), "log2_v_hi": hi.tolist()}
    return fit


def analyse(points: list[dict[str, Any]]) -> dict[str, Any]:
    rng = np.random.default_rng(0)  # a fixed seed: the same points give the same report
    opt = {key: optimum(curve, rng) for key, curve in curves(points).items()}
    targets = nanochat_compute()
    laws = {}
    for depth in sorted({d for d, _ in opt}):
        keys = [k for k in opt if k[0] == depth]
        laws[depth] = power_law([c for _, c in keys], [opt[k] for k in keys], targets)
    return {"optima": opt, "laws": laws, "targets": targets}


def per_vocab_costs(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cost side, per (depth, V): bytes/token on the eval text, embedding share, logits memory, measured tok/s."""
    rows: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for p in points:
        rows.setdefault((p["depth"], p["vocab_size"]), []).append(p)
    out = []
    for (depth, v), ps in sorted(rows.items()):
        ok = [p for p in ps if p["tokens_per_s"] > 0]
        out.append(
            {
                "depth": depth,
                "vocab_size": v,
                "bytes_per_token": ps[0]["bytes_per_token"],
                "embedding_share": ps[0]["embedding_share"],
                "logits_bytes_per_position_bf16": ps[0]["logits_bytes_per_position_bf16"],
                "tokens_per_s": float(np.mean([p["tokens_per_s"] for p in ok])) if ok else None,
                "eval_bytes": ps[0]["eval_bytes"],
            }
        )
    return out


def write_report(
    out: Path, points: list[dict[str, Any]], meta: dict[str, Any], log: Callable[[str], None]
) -> dict[str, Any]:
    """report.json, report.md and the two plots; returns report.json's content."""
    a = analyse(points)
    optimum_rows = [
        {"depth": d, "flops_budget": c, **{k: v for k, v in o.items() if not k.startswith("_")}}
        for (d, c), o in a["optima"].items()
    ]
    report = {
        **meta,
        "points": points,
        "optimum": optimum_rows,
        "power_law": {str(d): law for d, law in a["laws"].items()},
        "nanochat_compute": a["targets"],
        "costs": per_vocab_costs(points),
        "failed": [{"name": p["name"], "reason": p["reason"]} for p in points if p["status"] != "ok"],
        "seconds_points": sum(p.get("total_seconds", p["seconds"]) for p in points),
    }
    _write(out / "report.json", json.dumps(report, indent=1, default=str))
    _write(out / "report.md", markdown(report))
    try:
        plot_bpb(report, out / "bpb_vs_vocab.png")
        plot_vopt(report, out / "vopt_vs_compute.png")
    except ImportError:
        log("sweep: matplotlib is not installed (pip install matplotlib); no plots")
    log(f"sweep: report in {out / 'report.md'}")
    return report


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def fmt_c(c: float) -> str:
    """FLOPs as 5e11, 2.5e12."""
    mantissa, exponent = f"{c:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def fmt_tokens(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def lr_text(s: dict[str, Any], key: str) -> str:
    """A learning rate as set, or train.base's default when the sweep left it alone."""
    if s.get(key) is not None:
        return str(s[key])
    return f"{BASE_DEFAULTS[key]} (default)"


def fmt_v(v: float) -> str:
    if 256 <= v < 1e7:
        return f"{v:,.0f}"
    return f"{v:.2g} (2^{math.log2(v):.1f})" if v > 0 else str(v)


def fmt_interval(iv: list[float] | None) -> str:
    return f"[{fmt_v(iv[0])}, {fmt_v(iv[1])}]" if iv else "n/a"


def seeds_text(r: dict[str, Any]) -> str:
    """'2 seed(s) per point', or the range when a rerun added seeds to some points."""
    counts: dict[tuple[int, float, int], int] = {}
    for p in r["points"]:
        key = (p["depth"], p["flops_budget"], p["vocab_size"])
        counts[key] = counts.get(key, 0) + 1
    lo, hi = min(counts.values(), default=r["seeds"]), max(counts.values(), default=r["seeds"])
    return f"{lo} seed(s) per point" if lo == hi else f"{lo} to {hi} seeds per point"


def markdown(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [
        "# Which vocab size trains the best model for this compute? (model-level sweep)",
        "",
        f"`{r['command']}`",
        "",
        f"Device: {r['device']}. Depths {r['depths']}, sequence length {s['max_seq_len']}, "
        f"{r['tokens_per_step']:,} tokens per optimizer step, {seeds_text(r)}, train.base's model and "
        f"optimizer (lrs: embedding {lr_text(s, 'embedding_lr')}, head {lr_text(s, 'unembedding_lr')}, "
        f"Muon {lr_text(s, 'matrix_lr')}; warmdown {lr_text(s, 'warmdown_ratio')}). "
        "Each V trains for round(C / (FLOPs per token(V) x tokens per step)) steps, where FLOPs per token = "
        "6 x (block + head parameters) + 12·L·d·T: a larger V pays for its head with fewer tokens. "
        f"Every point is evaluated on the same {r['eval_documents']} validation documents = {r['eval_bytes']:,} "
        "bytes (val bits per byte, lower is better). Tokenizers: one BPE run to the largest size; every smaller one "
        "is its prefix.",
        "",
        f"Points: {len(r['points'])}, {sum(1 for p in r['points'] if p['status'] == 'ok')} finished, "
        f"{len(r['failed'])} failed; {r['seconds_points'] / 60:.1f} minutes of point time in all.",
        "",
        "## The answer: V_opt per (depth, budget)",
        "",
        "| depth | budget (FLOPs) | V_opt (parabola in log2 V) | 90% interval (bootstrap over seeds) | per-seed refits "
        "| best measured | within noise of the best |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in r["optimum"]:
        vtxt = fmt_v(o["v_opt"]) if o["interior"] else f"at the edge ({fmt_v(o['v_opt'])}): no interior minimum"
        lines.append(
            f"| {o['depth']} | {fmt_c(o['flops_budget'])} | {vtxt} | {fmt_interval(o['interval'])} | "
            f"{', '.join(fmt_v(x) for x in o['per_seed_v_opt']) or 'n/a'} | {o['best_measured']} | "
            f"{', '.join(map(str, o['within_noise_of_best'])) or 'none'} |"
        )
    lines += [
        "",
        f"'Within noise': the mean differs from the best mean by less than {NOISE_Z:g} standard errors of the "
        "difference (from the spread of the per-seed differences: seed s gives every size the same initial blocks "
        "and the same data order; with 2-3 seeds that spread is itself a rough estimate).",
        "",
        "## val bpb per vocab size (mean ± sd over seeds; tokens trained)",
        "",
        "Where sizes have different numbers of seeds, the mean is adjusted for each seed's offset (the fit "
        "bpb = f(V) + a_seed), so that sizes are compared as if on the same seeds; the sd is the raw spread.",
        "",
    ]
    by_key: dict[tuple[int, float], dict[int, list[dict[str, Any]]]] = {}
    for p in r["points"]:
        by_key.setdefault((p["depth"], p["flops_budget"]), {}).setdefault(p["vocab_size"], []).append(p)
    budgets = sorted({c for _, c in by_key})
    for depth in sorted({d for d, _ in by_key}):
        lines += [
            f"Depth {depth}:",
            "",
            "| V | " + " | ".join(f"C = {fmt_c(c)}" for c in budgets) + " |",
            "|---|" + "---|" * len(budgets),
        ]
        sizes = sorted({v for (d, _), row in by_key.items() if d == depth for v in row})
        opt = {o["flops_budget"]: o for o in r["optimum"] if o["depth"] == depth}
        for v in sizes:
            cells = []
            for c in budgets:
                ps = by_key.get((depth, c), {}).get(v, [])
                ok = [p["val_bpb"] for p in ps if p["status"] == "ok" and p["val_bpb"] is not None]
                if not ps:
                    cells.append("—")
                    continue
                if not ok:
                    cells.append("failed")
                    continue
                o = opt.get(c)
                mean = o["means"].get(v, float(np.mean(ok))) if o is not None else float(np.mean(ok))
                sd = f" ± {np.std(ok, ddof=1):.3f}" if len(ok) > 1 else ""
                if o is not None and len(set(o["seeds_per_size"].values())) > 1:
                    sd += f", {len(ok)} seeds"
                mark = ""
                if o is not None and o["best_measured"] == v:
                    mark = " **best**"
                elif o is not None and v in o["within_noise_of_best"]:
                    mark = " ≈"
                cells.append(f"{mean:.4f}{sd}{mark} ({fmt_tokens(ps[0]['tokens_trained'])} tok)")
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["**best**: lowest mean; ≈: within noise of it.", "", "## Equal compute", ""]
    lines += ["| depth | budget | FLOPs used, min … max across V | spread | steps per V |", "|---|---|---|---|---|"]
    for (depth, c), row in sorted(by_key.items()):
        firsts = [ps[0] for _, ps in sorted(row.items())]
        used = [p["steps"] * p["tokens_per_step"] * p["flops_per_token"] for p in firsts]
        lines.append(
            f"| {depth} | {fmt_c(c)} | {min(used):.4g} … {max(used):.4g} | {100 * (max(used) - min(used)) / min(used):.2f}% "
            f"| {', '.join(str(p['vocab_size']) + ': ' + str(p['steps']) for p in firsts)} |"
        )
    lines += [
        "",
        "## What each size costs",
        "",
        "| depth | V | bytes/token (eval text) | embedding + head share of params | logits per position (bf16) "
        "| tokens/s measured | eval bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in r["costs"]:
        tps = f"{c['tokens_per_s']:,.0f}" if c["tokens_per_s"] else "n/a"
        lines.append(
            f"| {c['depth']} | {c['vocab_size']} | {c['bytes_per_token']:.3f} | {100 * c['embedding_share']:.1f}% | "
            f"{c['logits_bytes_per_position_bf16'] / 1024:.0f} KiB | {tps} | {c['eval_bytes']:,} |"
        )
    lines += ["", "## V_opt against compute, extrapolated to nanochat (an extrapolation, not a measurement)", ""]
    for depth, law in r["power_law"].items():
        if not law["fitted"]:
            lines += [f"Depth {depth}: no fit ({law['reason']}).", ""]
            continue
        iv = law.get("exponent_interval")
        caveats = []
        if law.get("two_budgets_only"):
            caveats.append("only two budgets have an interior optimum, so the 'fit' is the line through them")
        if not law.get("resolved"):
            caveats.append(
                "the exponent's 90% interval "
                + (f"[{iv[0]:.2f}, {iv[1]:.2f}] includes 0" if iv else "is unknown (one seed)")
                + ": the trend is not resolved and the extrapolated values below are not meaningful"
            )
        elif law.get("reach_decades", 0) > 5 * max(law.get("fitted_decades", 0), 0.1):
            huge = any(t["v_opt"] > 2**20 for t in law["extrapolated"])
            caveats.append(
                f"the line is fitted on {law['fitted_decades']:.1f} decades of compute and carried "
                f"{law['reach_decades']:.1f} decades beyond them: the values below are that line continued, not a "
                "prediction" + (" (they exceed any vocabulary in use by orders of magnitude)" if huge else "")
            )
        lines += [
            f"Depth {depth}: V_opt ∝ C^{law['exponent']:.2f}"
            + (f" (90% interval of the exponent [{iv[0]:.2f}, {iv[1]:.2f}])" if iv else "")
            + f", fitted on budgets {', '.join(fmt_c(c) for c in law['budgets'])} (log2 V_opt changes by "
            f"{law['slope_log2v_per_decade']:.2f} per decade of compute)."
            + (" **Caveat: " + "; ".join(caveats) + ".**" if caveats else ""),
            "",
            "| target | params | tokens | FLOPs | V_opt extrapolated | 90% interval |",
            "|---|---|---|---|---|---|",
        ]
        for t in law["extrapolated"]:
            lines.append(
                f"| {t['name']} | {t['params'] / 1e6:,.0f}M | {t['tokens'] / 1e9:.1f}B | {t['flops']:.2e} | "
                f"{fmt_v(t['v_opt'])} | {fmt_interval(t['interval'])} |"
            )
        lines.append("")
    lines += [
        "Assumptions of the targets: nanochat's speedrun model (Oct 2025 architecture, the one `train.gpt` copies): "
        "width 64·depth, T = 2048, V = 65536, trained on 20 x its parameters (speedrun.sh: d20 = 561M parameters, "
        "11.2B tokens; d26 = the README's '$300 tier' with the same ratio); FLOPs = tokens x (6 x (blocks + head) + "
        "12·L·d·T). Later nanochat versions use V = 32768 and d26 at a ratio of 8.25 with other parameter counting; "
        "those would lower the d26 target by about 2.5x. The fit is made at a depth far smaller than nanochat's and "
        "across a compute range many orders of magnitude below the targets, at a fixed depth (more compute = more "
        "tokens, not a larger model): read the extrapolated numbers as the direction and rough size of the trend.",
        "",
        "## Compared with Tao et al. 2024",
        "",
        "Tao et al. 2024 ('Scaling Laws with Vocabulary: Larger Models Deserve Larger Vocabularies') find that the "
        "compute-optimal vocabulary grows with compute as a power law (the optimal vocab parameters grow more slowly "
        "than the non-vocabulary parameters), and that most LLMs use vocabularies smaller than optimal (they predict "
        "at least 216K for Llama2-70B instead of its 32K). Their budgets grow model and data together; this sweep "
        "holds the model fixed per depth, so its trend mixes the vocab question with how long a fixed model trains. "
        + trend_sentence(r)
        + " The intervals only carry the seed-to-seed noise; they do not cover the error of assuming a power law "
        "far outside the measured range.",
        "",
    ]
    if r["failed"]:
        lines += ["## Failed points", ""] + [f"- {f['name']}: {f['reason']}" for f in r["failed"]] + [""]
    return "\n".join(lines)


def trend_sentence(r: dict[str, Any]) -> str:
    fitted = [(d, law) for d, law in r["power_law"].items() if law["fitted"]]
    if not fitted:
        return "This sweep has too few interior optima to fit a trend, so it neither supports nor contradicts them."
    parts = []
    for d, law in fitted:
        e = law["exponent"]
        way = "grows" if e > 0.02 else ("shrinks" if e < -0.02 else "stays about flat")
        sure = ""
        if not law.get("resolved"):
            sure = ", within noise of no trend" if law.get("exponent_interval") else ", no interval with one seed"
        parts.append(f"at depth {d}, V_opt {way} with compute (exponent {e:.2f}{sure})")
    if not all(law.get("resolved") for _, law in fitted):
        return (
            "Here, " + "; ".join(parts) + ". Over this narrow range of compute the seed noise is larger than the "
            "trend, so this sweep neither confirms nor contradicts them; more seeds, more budgets (a wider range "
            "of compute) or a larger evaluation set would be needed."
        )
    agree = all(law["exponent"] > 0 for _, law in fitted)
    return (
        "Here, " + "; ".join(parts) + ". "
        + (
            "That is the direction Tao et al. report, measured here at a fixed model size, where more compute "
            "means more tokens for the same model."
            if agree
            else "That is not the direction Tao et al. report; at this tiny scale and with this noise, the trend is "
            "not resolved."
        )
    )  # fmt: skip


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bpb(r: dict[str, Any], path: Path) -> None:
    plt = _plt()
    depths = r["depths"]
    fig, axes = plt.subplots(1, len(depths), figsize=(7.5 * len(depths), 4.8), dpi=120, squeeze=False)
    by_key = curves(r["points"])
    opt = {(o["depth"], o["flops_budget"]): o for o in r["optimum"]}
    colors = plt.cm.viridis(np.linspace(0, 0.85, max(1, len(r["budgets"]))))
    for ax, depth in zip(axes[0], depths):
        for color, c in zip(colors, r["budgets"]):
            curve = by_key.get((depth, c))
            if not curve:
                continue
            sizes = list(curve)
            o = opt[depth, c]
            means = [o["means"][v] for v in sizes]
            for v in sizes:
                ax.scatter([v] * len(curve[v]), list(curve[v].values()), color=color, s=10, alpha=0.45, lw=0)
            ax.plot(sizes, means, "-o", color=color, ms=5, label=f"C = {fmt_c(c)} FLOPs")
            if o["interior"]:
                y = min(means)
                err = None
                if o["interval"]:
                    err = [[o["v_opt"] - o["interval"][0]], [o["interval"][1] - o["v_opt"]]]
                ax.errorbar([o["v_opt"]], [y], xerr=err, fmt="v", color=color, ms=8, capsize=3, mec="k")
        ax.set_xscale("log", base=2)
        ax.set_xticks(r["vocab_sizes"])
        ax.set_xticklabels([f"{v // 1024}k" if v >= 1024 else str(v) for v in r["vocab_sizes"]])
        ax.set_xlabel("vocab size V (log2 axis)")
        ax.set_ylabel("val bits per byte (same bytes for every V)")
        ax.set_title(f"depth {depth}: bpb at equal training FLOPs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="▼ = V_opt (90% interval)", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_vopt(r: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    markers = "osD^v"
    targets = r["nanochat_compute"]
    for k, depth in enumerate(r["depths"]):
        rows = [o for o in r["optimum"] if o["depth"] == depth]
        inner = [o for o in rows if o["interior"]]
        edge = [o for o in rows if not o["interior"]]
        if inner:
            err = np.array(
                [
                    [o["v_opt"] - o["interval"][0], o["interval"][1] - o["v_opt"]] if o["interval"] else [0, 0]
                    for o in inner
                ]
            ).T
            ax.errorbar(
                [o["flops_budget"] for o in inner],
                [o["v_opt"] for o in inner],
                yerr=err,
                fmt=markers[k % 5],
                capsize=3,
                label=f"depth {depth}: V_opt (90% interval)",
            )
        if edge:
            ax.scatter([o["flops_budget"] for o in edge], [o["v_opt"] for o in edge], marker="x", color="gray",
                       label=f"depth {depth}: minimum at the grid's edge")  # fmt: skip
        law = r["power_law"][str(depth)]
        if not law["fitted"]:
            continue
        lo, hi = min(law["budgets"]), max(law["budgets"])
        far = max(t["flops"] for t in targets)
        xs = np.logspace(math.log10(lo), math.log10(hi), 20)
        xe = np.logspace(math.log10(hi), math.log10(far), 50)
        a0, slope = law["log2_v_at_1e12"], law["slope_log2v_per_decade"]

        def f(x: np.ndarray, a0: float = a0, slope: float = slope) -> np.ndarray:
            return np.asarray(2 ** (a0 + slope * (np.log10(x) - 12)))

        ax.plot(xs, f(xs), "-", color=f"C{k}", label=f"depth {depth}: fit V_opt ∝ C^{law['exponent']:.2f}")
        ax.plot(xe, f(xe), "--", color=f"C{k}", alpha=0.7, label=f"depth {depth}: EXTRAPOLATION (90% band)")
        if "band" in law:
            band = law["band"]
            ax.fill_between(
                10 ** np.array(band["log10_flops"]),
                2 ** np.array(band["log2_v_lo"]),
                2 ** np.array(band["log2_v_hi"]),
                color=f"C{k}",
                alpha=0.12,
                lw=0,
            )
        if not law.get("resolved"):
            iv = law.get("exponent_interval")
            ax.text(
                0.5, 0.55,
                "trend not resolved: the exponent's 90% interval "
                + (f"[{iv[0]:.2f}, {iv[1]:.2f}] includes 0" if iv else "is unknown")
                + "\nthe extrapolation (dashed, shaded) is not meaningful",
                transform=ax.transAxes, ha="center", fontsize=9, color="darkred",
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "darkred"},
            )  # fmt: skip
            continue
        for j, t in enumerate(law["extrapolated"]):
            err = None
            if t["interval"]:
                err = [[t["v_opt"] - t["interval"][0]], [t["interval"][1] - t["v_opt"]]]
            ax.errorbar([t["flops"]], [t["v_opt"]], yerr=err, fmt="*", ms=12, color=f"C{k}", capsize=4, mec="k")
            ax.annotate(
                f"{t['name']} ({t['flops']:.1e} FLOPs):\nextrapolated V_opt ≈ {fmt_v(t['v_opt'])}",
                (t["flops"], t["v_opt"]),
                textcoords="axes fraction",  # fixed places in the empty middle, so labels never collide
                xytext=(0.42, 0.72 - 0.12 * j),
                fontsize=7,
                arrowprops={"arrowstyle": "-", "lw": 0.5},
            )
    for t in targets:
        ax.axvline(t["flops"], color="k", ls=":", lw=0.8)
        ax.text(
            t["flops"], 0.02, f"{t['name']} ({t['flops']:.1e})", rotation=90, ha="right", va="bottom", fontsize=7,
            transform=ax.get_xaxis_transform(),
        )  # fmt: skip
    ax.axvspan(max(r["budgets"]), max(t["flops"] for t in targets) * 3, color="gray", alpha=0.06, lw=0)
    ax.text(
        max(r["budgets"]) * 3, 0.9, "not measured: extrapolation →", fontsize=8, color="dimgray",
        transform=ax.get_xaxis_transform(),
    )  # fmt: skip
    ax.axhline(65536, color="gray", ls=":", lw=0.8)
    ax.text(min(r["budgets"]), 65536 * 1.08, "nanochat's V = 65536", fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log", base=2)
    # Keep the axis on real vocab sizes: an extrapolation that leaves them is off the plot (its number is in the
    # report), rather than squashing the measured points.
    highs = [t["v_opt"] for law in r["power_law"].values() if law["fitted"] for t in law["extrapolated"]]
    ax.set_ylim(2**8, min(2.0**40, max([2.0**17, *[2 * h for h in highs]])))
    ax.set_xlabel("training FLOPs per point (log)")
    ax.set_ylabel("V_opt (log2)")
    ax.set_title("Optimal vocab size against compute (dashed = extrapolation, not measured)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
