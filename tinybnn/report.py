"""report.md for ``tinybnn compress``: the summary table and every plot, each with one sentence
on what it shows. Reads only the report dict, so it can be regenerated from report.json."""

from .io import atomic_write


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f} %"


def _stage_table(stages):
    head = ("| stage | kernels | removed (ids) | test accuracy | before retraining | parameters "
            "(means / variances / biases) | model bytes | Mflops / image | ms / 100 images |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for r in stages:
        n = r["n_parameters"]
        verdict = "" if r.get("accepted", True) else " (rejected)"
        rows.append(
            f"| {r['stage']}{verdict} | {r['kernels']} | "
            f"{', '.join(map(str, r.get('removed', []))) or '-'}"
            f" | {_pct(r['test_accuracy'])} | {_pct(r.get('test_accuracy_before_retraining'))}"
            f" | {n['total']} ({n['means']} / {n['variances']} / {n['biases']})"
            f" | {r['model_bytes']} | {r['flops_per_example'] / 1e6:.2f}"
            f" | {r.get('inference_ms_per_100', float('nan')):.1f} |")
    return head + "\n".join(rows) + "\n"


def markdown(report):
    """The report as Markdown text."""
    o = report["options"]
    lines = [
        f"# Self-compression of the paper's CNN on {report['dataset']}",
        "",
        f"Preset `{report['preset']}`, seed {report['seed']}, {report['n_train']} training images, "
        f"{report['n_test']} test images; criterion `{o['criterion']}`, rule `{o['rule']}` "
        f"(value {o['value']}), after removal: `{o['retrain']}`.",
        "",
        f"**Result:** {report['start_kernels']} -> {report['final_kernels']} kernels, test "
        f"accuracy {_pct(report['start_test_accuracy'])} -> {_pct(report['final_test_accuracy'])}. "
        f"**Stopped because:** {report['stop_reason']}. Run time {report['seconds']:.0f} s.",
        "",
        _stage_table(report["stages"]),
    ]
    for r in report["stages"][1:]:
        ch = r.get("change_on_removal")
        if ch:
            lines.append(
                f"- Stage {r['stage']}: removing kernels {r['removed']} (norms "
                f"{', '.join(f'{v:.2g}' for v in r['removed_norms'])}; "
                f"{r['removed_exactly_zero']} exactly zero) changed the predictive mean by at most "
                f"{ch['max_mean_change']:.3g} and the covariance by "
                f"{ch['relative_cov_change']:.3g} "
                f"(relative Frobenius norm) on {ch['n_examples']} validation images.")
    s0 = report["stages"][0]
    lines += ["", f"**Near-zero kernels** (the paper's sense, ||M_k||_F < 1e-3) after training: "
                  f"{s0['near_zero_kernels']} of {s0['kernels']} (smallest norm "
                  f"{s0['smallest_kernel_norm']:.3g})."]
    if "vanilla" in s0:
        v = s0["vanilla"]
        lines += [f"The vanilla network trained with the same data, seed and budget reached "
                  f"{_pct(v['test_accuracy'])}, with {v['near_zero_kernels']} near-zero kernels "
                  f"(smallest norm {v['smallest_kernel_norm']:.3g})."]
    lines += ["", "## After the run", "",
              "![stages](stages.png)", "",
              "Test accuracy (left axis) and parameter count (right axis) at each accepted stage.",
              "", "![accuracy vs kernels](accuracy_vs_kernels.png)", "",
              "Test accuracy against the number of kernels kept: the Bayesian network compressing "
              "itself, and the baselines pruned by norm without retraining and retrained vanilla "
              "networks of the same sizes.", "", "## Stage by stage", ""]
    for r in report["stages"]:
        p = r.get("plots", {})
        lines += [f"### Stage {r['stage']}", "",
                  f"![norms]({p.get('norms')})", "",
                  "Kernel norms sorted on a log axis (Bayesian; at stage 0 also the vanilla net), "
                  "with the selection cut-off: kernels below it are removed.", "",
                  f"![kernels]({p.get('kernels')})", "",
                  "The kernel means as images; removed kernels framed in red.", "",
                  f"![variances]({p.get('variances')})", "",
                  "The distribution of the learned kernel variances.", ""]
    return "\n".join(lines) + "\n"


def write_markdown(path, report):
    """Write report.md atomically."""
    text = markdown(report)
    atomic_write(path, lambda f: f.write(text.encode()))
