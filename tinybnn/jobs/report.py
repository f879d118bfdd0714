"""report.md for ``tinybnn compress``: the result in a sentence, the stage table, and every
figure with one sentence on what it shows. Reads only the report dict, so it can be made again
from report.json."""

from ..io import atomic_write


def _pct(x):
    return "-" if x is None else f"{100 * x:.2f} %"


def _sci(x):
    return "-" if x is None else f"{x:.1e}"


def _stage_table(stages):
    head = ("| stage | kernels | removed (ids) | their norms (largest) | predictive mean moved by "
            "| test accuracy before retraining | validation accuracy | test accuracy "
            "| switched off after training | parameters | parameter bytes (file bytes) "
            "| Mflops / image | ms / 100 images |\n" + "|---" * 13 + "|\n")
    rows = []
    for r in stages:
        n = r["n_parameters"]
        verdict = "" if r["accepted"] else " (rejected)"
        change = r.get("change_on_removal", {}).get("max_mean_change")
        before = r.get("before_retraining", {}).get("test_accuracy")
        rows.append(
            f"| {r['stage']}{verdict} | {r['kernels']} "
            f"| {', '.join(map(str, r['removed'])) or '-'} "
            f"| {_sci(max(r['removed_norms'])) if r.get('removed_norms') else '-'} "
            f"| {_sci(change)} | {_pct(before)} | {_pct(r['val_accuracy'])} "
            f"| {_pct(r['test_accuracy'])} | {r['switched_off']} | {n['total']} "
            f"| {r['parameter_bytes']} ({r['model_file_bytes']}) "
            f"| {r['flops_per_example'] / 1e6:.2f} | {r.get('inference_ms_per_100', float('nan')):.1f} |")
    return head + "\n".join(rows) + "\n"


def _vanilla_table(stages):
    head = ("| stage | kernels | its smallest norms removed (largest) | predictive mean moved by "
            "| test accuracy before retraining | test accuracy after |\n" + "|---" * 6 + "|\n")
    rows = [f"| 0 | {stages[0]['vanilla']['kernels']} | - | - | - "
            f"| {_pct(stages[0]['vanilla']['test_accuracy'])} |"]
    for r in stages[1:]:
        v = r.get("vanilla")
        if v:
            rows.append(f"| {r['stage']} | {v['kernels']} | {_sci(max(v['removed_norms']))} "
                        f"| {_sci(v['change_on_removal']['max_mean_change'])} "
                        f"| {_pct(v['before_retraining']['test_accuracy'])} "
                        f"| {_pct(v['test_accuracy'])} |")
    return head + "\n".join(rows) + "\n"


def markdown(report):
    """The report as Markdown text."""
    c, o, s0 = report["config"], report["options"], report["stages"][0]
    near = report["near_zero"]
    rate = f"{c['lr']:g}" if c["final_lr"] is None else f"{c['lr']:g} -> {c['final_lr']:g}"
    lines = [
        f"# Self-compression of the paper's CNN on {report['dataset']}",
        "",
        f"Preset `{report['preset']}` ({c['epochs']} epochs of batches of {c['batch_size']}, Adam "
        f"{rate}, "
        f"regulariser `{c['regulariser']}`), seed {report['seed']}; {report['n_train']} "
        f"training, {report['n_val']} validation and {report['n_test']} test images. Rule "
        f"`{o['rule']}` (value {o['value']:g}) on the `{o['criterion']}` ranking; after a "
        f"removal: `{o['retrain']}` ({o['retrain_epochs']} epoch(s)). Every decision reads the "
        f"validation split; test accuracy is reported only.",
        "",
        f"**Result:** {report['start_kernels']} -> {report['final_kernels']} kernels, test "
        f"accuracy {_pct(report['start_test_accuracy'])} -> "
        f"{_pct(report['final_test_accuracy'])}. **Stopped because:** {report['stop_reason']}. "
        f"Run time {report['seconds']:.0f} s.",
        "",
        f"**Switched off** (||M_k||_F < {near:g}) after each epoch of the first training: "
        f"{', '.join(map(str, report['switched_off_by_epoch'])) or '-'}; after it, "
        f"{s0['switched_off']} of {s0['kernels']} (smallest norm {s0['smallest_kernel_norm']:.2g}).",
    ]
    if "vanilla" in s0:
        v = s0["vanilla"]
        lines += ["", f"The vanilla twin (the same data, seed and budget, cross-entropy) reached "
                      f"{_pct(v['test_accuracy'])} with {v['switched_off']} kernels below {near:g} "
                      f"(smallest norm {v['smallest_kernel_norm']:.2g})."]
    lines += ["", "![self-compression](self_compression.png)", "",
              "Left: the norm of every kernel's mean through training (blue: the kernels that "
              "went below the threshold or were removed), with the vanilla twin's norms after "
              "training. Right: test accuracy against kernels kept, removing the smallest-norm "
              "kernels without retraining (dotted) and stage by stage with retraining (solid).",
              "", "## Stages", "", _stage_table(report["stages"])]
    for r in report["stages"][1:]:
        ch = r["change_on_removal"]
        lines.append(
            f"- Stage {r['stage']}: removing kernels {r['removed']} (norms "
            f"{', '.join(f'{v:.2g}' for v in r['removed_norms'])}) changed the predictive mean "
            f"by at most {ch['max_mean_change']:.3g} and the covariance by "
            f"{ch['relative_cov_change']:.3g} (relative Frobenius norm) on the first "
            f"validation images.")
    if "vanilla" in s0:
        lines += ["", "The vanilla twin, pruned like the Bayesian network (as many of its "
                      "lowest-norm kernels at each stage) and retrained the same way:", "",
                  _vanilla_table(report["stages"])]
    lines += ["## Figures", "",
              "![norms](norms.png)", "",
              f"The kernel norms after training, sorted, on a log axis, with the threshold "
              f"{near:g}; red crosses mark the kernels the stages removed.", "",
              "![kernels](kernels.png)", "",
              "The trained kernel means as images (the lowest-norm ones first); removed kernels "
              "framed in red.", "",
              "![variances](variances.png)", "",
              "The distribution of the learned kernel variances.", "",
              "![accuracy vs kernels](accuracy_vs_kernels.png)", "",
              "Every baseline: test accuracy against kernels kept."]
    return "\n".join(lines) + "\n"


def write_markdown(path, report):
    """Write report.md atomically."""
    text = markdown(report)
    atomic_write(path, lambda f: f.write(text.encode()))
