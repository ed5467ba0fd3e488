"""Stage orderings_table: the papers' central claims over the runs of `snakemake orderings`, each with its
mean and spread over the seeds, the paper's numbers beside ours, and whether it holds.

claims.csv, one row per (backbone, claim): backbone, paper, claim, result / compared (the rows of metrics.csv
compared: the result must beat the best of the compared rows), paper_result, paper_compared (the paper's
numbers, VOC 2012), result_mean, result_sd, compared_mean, compared_sd, margin_mean, margin_sd (percent;
sd over seeds, 0 for one seed; the compared value of a seed is the best compared row of that seed), seeds
(how many seeds the claim holds in, of how many), verdict: holds when the mean margin is above 0 (not below
0 for "not below"), fails otherwise, "-" for a number without a claim. claims.md: the same as a Markdown
table (README)."""
from typing import NamedTuple

import numpy as np
import pandas as pd

from wsss.io import atomic_path, save_csv
from wsss.metrics import read
from wsss.params import Param, resolve

PARAMS = {
    "runs": Param(list, help="[backbone, seed] of each metrics file, in order"),
    "label_split": Param(str, help="the split the pseudo-labels are scored on (CAM, random walk, instances)"),
    "eval_split": Param(str, help="the split the segmentation networks are scored on"),
}


class Claim(NamedTuple):
    paper: str
    text: str
    result: tuple  # (stage, method, metric) of metrics.csv
    compared: tuple  # rows the result must beat (the best of them); () for a number without a claim
    strict: bool  # above (True) or not below (False)
    paper_values: tuple  # (result, best compared) in percent, PASCAL VOC 2012


def _row(stage, method, metric="iou"):
    return stage, method, metric


PSI_ROWS = [_row("seg", m) for m in ("psi_baseline", "psi_cpp", "psi_sld")]
CDSP_ROWS = [_row("seg", m) for m in ("cdsp_segs", "cdsp_segc", "cdsp_seg", "cdsp_seg_dc", "cdsp_seg_lorm",
                                      "cdsp_seg_ds")]
CLAIMS = [
    Claim("IRNet Table 2", "random-walk labels above the CAMs", _row("sem_seg", "irnet_rw"), (_row("cam", "cam"),),
          True, (66.5, 48.3)),
    Claim("IRNet Table 1", "instance labels (AP50)", _row("ins_seg", "irnet", "ap50"), (), True, (37.7,)),
    Claim("RPNet Table I", "RPNet's CAMs above the plain network's", _row("cam", "rpnet"), (_row("cam", "cam"),),
          True, (50.8, 48.3)),
    Claim("RPNet Table I", "Base + RPNet + BR above Base + BR", _row("sem_seg", "rpnet_rw"),
          (_row("sem_seg", "irnet_rw"),), True, (69.0, 66.0)),
    Claim("DSRG Table 2", "growth above no growth", _row("seg", "dsrg"), (_row("seg", "dsrg_nogrowth"),), True,
          (57.6, 53.6)),
    Claim("DSRG Table 2", "the retrain not below its teacher", _row("seg", "dsrg_retrain"), (_row("seg", "dsrg"),),
          False, (59.0, 57.6)),
    Claim("PSI Table 3", "+ CPP above the baseline", PSI_ROWS[1], PSI_ROWS[:1], True, (70.1, 66.6)),
    Claim("PSI Table 3", "+ SLD above the baseline", PSI_ROWS[2], PSI_ROWS[:1], True, (69.4, 66.6)),
    Claim("PSI Table 3", "CPP + SLD the best", _row("seg", "psi"), tuple(PSI_ROWS), True, (72.9, 70.1)),
    Claim("CDSP Table 2", "scribbles + CAM pseudo-labels above scribbles alone", CDSP_ROWS[2], CDSP_ROWS[:1], True,
          (72.13, 66.17)),
    Claim("CDSP Table 2", "all terms the best", _row("seg", "cdsp"), tuple(CDSP_ROWS), True, (73.91, 73.64)),
]
SCORED_ON_LABELS = {"cam", "sem_seg", "ins_seg"}  # the rest are networks, scored on the evaluation split


def run(params: dict, *, metrics_csv: list, out, markdown):
    """metrics_csv: each run's gathered metrics (orderings_run), for the runs of params["runs"]."""
    params = resolve(params, PARAMS, "orderings_table")
    if len(params["runs"]) != len(metrics_csv):
        raise ValueError(f"orderings_table: {len(metrics_csv)} metrics files for {len(params['runs'])} runs")
    values = {}  # (backbone, seed) -> {(stage, method, metric): value in percent}
    for (backbone, seed), file in zip(params["runs"], metrics_csv):
        values[(backbone, seed)] = means(read(file), params["label_split"], params["eval_split"])
    table = claims_table(values)
    save_csv(out, table)
    with atomic_path(markdown) as tmp:
        tmp.write_text(to_markdown(table))


def means(table: pd.DataFrame, label_split: str, eval_split: str) -> dict:
    """(stage, method, metric) -> mean value in percent (class empty) on the split its stage is scored on;
    DSRG's `_cambg` (background cues from the CAMs) counts as the network itself."""
    rows = table[table["class"].fillna("") == ""]
    return {(r.stage, r.method.removesuffix("_cambg"), r.metric): 100 * float(r.value) for r in rows.itertuples()
            if r.split == (label_split if r.stage in SCORED_ON_LABELS else eval_split)}


def claims_table(values: dict) -> pd.DataFrame:
    """One row per (backbone, claim) over the seeds of `values` (module docstring); claims whose rows a run
    lacks are left out."""
    out = []
    for backbone in dict.fromkeys(b for b, _ in values):
        runs = [v for (b, _), v in values.items() if b == backbone]
        for claim in CLAIMS:
            rows = (claim.result, *claim.compared)
            if not all(row in run for run in runs for row in rows):
                continue
            result = np.array([run[claim.result] for run in runs])
            compared = np.array([max(run[row] for row in claim.compared) for run in runs]) if claim.compared else None
            out.append(dict(backbone=backbone, paper=claim.paper, claim=claim.text, **_verdict(claim, result, compared)))
    return pd.DataFrame(out, columns=["backbone", "paper", "claim", "result", "compared", "paper_result",
                                      "paper_compared", "result_mean", "result_sd", "compared_mean", "compared_sd",
                                      "margin_mean", "margin_sd", "seeds", "verdict"])


def _verdict(claim: Claim, result: np.ndarray, compared) -> dict:
    sd = (lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else 0.0)  # noqa: E731
    row = dict(result="/".join(claim.result), compared=", ".join("/".join(r) for r in claim.compared),
               paper_result=claim.paper_values[0],
               paper_compared=claim.paper_values[1] if len(claim.paper_values) > 1 else None,
               result_mean=float(result.mean()), result_sd=sd(result))
    if compared is None:
        return {**row, "seeds": f"{len(result)}", "verdict": "-"}
    margin = result - compared
    holds = margin > 0 if claim.strict else margin >= 0
    mean_holds = margin.mean() > 0 if claim.strict else margin.mean() >= 0
    return {**row, "compared_mean": float(compared.mean()), "compared_sd": sd(compared),
            "margin_mean": float(margin.mean()), "margin_sd": sd(margin), "seeds": f"{int(holds.sum())}/{len(margin)}",
            "verdict": "holds" if mean_holds else "fails"}


def to_markdown(table: pd.DataFrame) -> str:
    """| backbone | claim | paper (VOC) | ours (mean ± sd over seeds) | margin | seeds | verdict |"""
    def pm(mean, sd):
        return "" if pd.isna(mean) else f"{mean:.1f} ± {sd:.1f}"

    lines = ["| backbone | claim | paper (VOC 2012) | ours | margin | holds in seeds | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in table.itertuples():
        paper = f"{r.paper_result:g}" + ("" if pd.isna(r.paper_compared) else f" vs {r.paper_compared:g}")
        ours = pm(r.result_mean, r.result_sd) + ("" if pd.isna(r.compared_mean) else
                                                  f" vs {pm(r.compared_mean, r.compared_sd)}")
        margin = "" if pd.isna(r.margin_mean) else f"{r.margin_mean:+.1f} ± {r.margin_sd:.1f}"
        lines.append(f"| {r.backbone} | {r.paper}: {r.claim} | {paper} | {ours} | {margin} | {r.seeds} | {r.verdict} |")
    return "\n".join(lines) + "\n"
