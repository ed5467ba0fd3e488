"""Stage cdsp_tables: CDSP's Table 2 (loss terms), Table 3 (pseudo-label sources) and Fig. 7 (mIoU vs scribble
drop / shrink ratio) from the networks' eval_seg metrics, plus the pseudo-labels' own mIoU on `split`.

table2.csv: net, one 0/1 column per loss term, miou (the networks on the original scribbles and the main
pseudo-labels). table3.csv: source, pseudo_miou (the pseudo-labels against the masks of `split`; a label 255
counts as background), net, miou. fig7.csv: method (cdsp | psi | scribble_only), mode (drop | shrink), ratio,
net, miou; ratio 0 is the network on the original scribbles. fig7.png draws it."""
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from wsss import metrics
from wsss.datasets import voc
from wsss.io import atomic_path, save_csv
from wsss.params import Param, resolve

PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "split": voc.SPLIT,
    "nets": Param(dict, help="net -> {losses, source, scribbles}: every CDSP network (as in workflow/rules/cdsp.smk)"),
    "main": Param(dict, help="{losses, source}: the full CDSP configuration"),
    "psi_nets": Param(dict, {}, "PSI net -> its scribble set (original | <mode><pct>): Fig. 7's PSI curve"),
    "sources": Param(list, help="Table 3's pseudo-label sources, in the order of the `pseudo` folders"),
    "all_losses": Param(list, help="the loss term names, Table 2's columns"),
}


def run(params: dict, *, root, metrics_csv: list, pseudo: list, table2, table3, fig7, plot):
    """metrics_csv: the eval_seg files of the networks (method = net); pseudo: one label folder per source."""
    params = resolve(params, PARAMS, "cdsp_tables")
    miou = network_miou(metrics_csv)
    nets = params["nets"]
    main = params["main"]
    rows2 = [{"net": net, **{t: int(t in cfg["losses"]) for t in params["all_losses"]}, "miou": miou[net]}
             for net, cfg in nets.items() if cfg["scribbles"] == "original" and cfg["source"] == main["source"]]
    save_csv(table2, pd.DataFrame(rows2))
    rows3 = []
    for source, folder in zip(params["sources"], pseudo):
        net = next(n for n, c in nets.items() if c["source"] == source and c["scribbles"] == "original"
                   and sorted(c["losses"]) == sorted(main["losses"]))
        rows3.append({"source": source, "pseudo_miou": label_miou(root, folder, params), "net": net,
                      "miou": miou[net]})
    save_csv(table3, pd.DataFrame(rows3))
    curve = robustness(nets, main, params["psi_nets"], miou)
    save_csv(fig7, curve)
    draw(curve, plot)


def network_miou(files) -> dict:
    """net -> mIoU from eval_seg files (stage seg, metric iou, class empty; method = net)."""
    table = pd.concat([metrics.read(f) for f in files], ignore_index=True)
    means = table[(table["stage"] == "seg") & (table["metric"] == "iou") & (table["class"] == "")]
    return dict(zip(means["method"], means["value"]))


def label_miou(root, folder, params) -> float:
    n = len(params["class_names"])
    conf = np.zeros((n, n), np.int64)
    for image_id in tqdm(voc.read_ids(root, params["split"]), desc=f"pseudo-labels {Path(folder).name}"):
        gt = voc.load_mask(voc.path(root, "mask", image_id), n)
        label = voc.load_mask(Path(folder) / f"{image_id}.png", n, gt.shape)
        conf += metrics.confusion(np.where(label == voc.IGNORE, 0, label), gt, n)
    return float(np.nanmean(metrics.scores(conf)["iou"]))


def robustness(nets, main, psi_nets, miou) -> pd.DataFrame:
    """Fig. 7's points per mode and ratio: CDSP (the main losses), the scribble-only baseline (L_segs), PSI."""
    methods = {"cdsp": sorted(main["losses"]), "scribble_only": ["segs"]}
    points = [("psi", net, scribbles) for net, scribbles in psi_nets.items()]
    for net, cfg in nets.items():
        method = next((m for m, losses in methods.items() if sorted(cfg["losses"]) == losses), None)
        if method is not None and cfg["source"] == main["source"]:
            points.append((method, net, cfg["scribbles"]))
    rows = []
    for method, net, scribbles in points:
        if scribbles == "original":
            rows += [dict(method=method, mode=mode, ratio=0.0, net=net, miou=miou[net]) for mode in ("drop", "shrink")]
        else:
            mode = scribbles.rstrip("0123456789")
            rows.append(dict(method=method, mode=mode, ratio=int(scribbles[len(mode):]) / 100, net=net, miou=miou[net]))
    return pd.DataFrame(rows).sort_values(["method", "mode", "ratio"], ignore_index=True)


def draw(curve: pd.DataFrame, plot):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    for ax, mode in zip(axes, ("drop", "shrink")):
        for method, part in curve[curve["mode"] == mode].groupby("method"):
            ax.plot(part["ratio"], 100 * part["miou"], marker="o", label=method)
        ax.set_xlabel(f"scribble-{mode} ratio")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mIoU (%)")
    axes[0].legend()
    fig.tight_layout()
    with atomic_path(plot) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
