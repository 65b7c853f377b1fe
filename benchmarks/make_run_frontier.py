"""Where a finished `make run` spent its time, stage by stage, and what other sample counts would cost (issue 30).

Reads a run's folder after `make run`: each DVC stage's end is the time its metrics file or RLIP step marker was
written, so a stage's time is the gap to the stage before it (the first gap, from `--start` or the virtual
environment's install stamp, is install + prepare). Then the frontier: every stage that relaxes with the judge is
linear in the samples it judges (its time divided by its samples is its cost per sample), the rest of the run does
not depend on them, so

    minutes(N SFT samples, E paired endpoint samples) = fixed + N x (evaluate s / sample) + 2 E x (endpoint s / sample)

with the mid-iteration evaluations and the reward's rollouts kept as they ran. A projection from one measured run,
not a measurement of the other points: the cost per sample depends on the crystals the model draws.

    python benchmarks/make_run_frontier.py /tmp/fresh --start $(cat /tmp/makerun.start) --end $(cat /tmp/makerun.end)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

N_SFT = (95, 200, 340, 500, 1000)
N_ENDPOINT = (46, 100, 200, 500)


def timeline(run: Path, start: float) -> list[tuple[str, float, float]]:
    """(stage, end time, seconds) in the order the stages finished."""
    ends = {name: (run / "metrics" / f"{name}.json").stat().st_mtime for name in ("prepare", "sft", "sample",
                                                                                  "evaluate")}
    for marker in (run / "data/rlip/default").glob("iter_*/*.done.json"):
        ends[f"rlip_{marker.parent.name}_{marker.name.removesuffix('.done.json')}"] = marker.stat().st_mtime
    rows, last = [], start
    for name, end in sorted(ends.items(), key=lambda item: item[1]):
        rows.append((name, end, end - last))
        last = end
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the folder `make run` ran in")
    parser.add_argument("--start", type=float, default=None, help="epoch seconds make run started (default: the "
                        ".venv install stamp, which leaves the install out)")
    parser.add_argument("--end", type=float, default=None, help="epoch seconds make run ended (default: last stage)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    if not (args.run / "metrics/evaluate.json").is_file():
        raise SystemExit(f"make_run_frontier: {args.run} has no finished `make run` (metrics/evaluate.json)")
    start = args.start if args.start is not None else (args.run / ".venv/.installed").stat().st_mtime
    rows = timeline(args.run, start)
    end = args.end if args.end is not None else rows[-1][1]
    total = end - start
    print(f"{'stage':<28} {'seconds':>8}")
    for name, _, seconds in rows:
        print(f"{name:<28} {seconds:>8.0f}")
    print(f"{'(after the last stage)':<28} {end - rows[-1][1]:>8.0f}\n{'total':<28} {total:>8.0f}  "
          f"({total / 60:.1f} min)")

    seconds = {name: s for name, _, s in rows}
    evaluate = json.loads((args.run / "metrics/evaluate.json").read_text())
    n_sft = evaluate["n_requested"]
    per_sft = seconds["evaluate"] / n_sft
    rlip = json.loads((args.run / "metrics/rlip.json").read_text())
    last = rlip["vs_sft"]["iteration"]
    n_end = rlip["vs_sft"]["rates"]["parse_rate"]["n_a"]
    endpoint_s = seconds["rlip_iter_0_evaluate"] + seconds[f"rlip_iter_{last}_evaluate"]
    per_end = endpoint_s / (2 * n_end)
    fixed = total - seconds["evaluate"] - endpoint_s
    print(f"\njudge: {evaluate.get('judge', '?')}; evaluate {per_sft:.1f} s per SFT sample ({n_sft}), RLIP endpoint "
          f"evaluations {per_end:.1f} s per sample ({n_end} paired x 2), the rest {fixed / 60:.1f} min")
    grid = {(n, e): (fixed + n * per_sft + 2 * e * per_end) / 60 for n in N_SFT for e in N_ENDPOINT}
    print("projected make run minutes: rows SFT samples, columns paired endpoint samples")
    print(f"{'':>6}" + "".join(f"{e:>8}" for e in N_ENDPOINT))
    for n in N_SFT:
        print(f"{n:>6}" + "".join(f"{grid[n, e]:>8.0f}" for e in N_ENDPOINT))
    if args.out:
        args.out.write_text(json.dumps({
            "stages_s": {name: round(s, 1) for name, _, s in rows}, "total_s": round(total, 1),
            "n_sft": n_sft, "n_endpoint": n_end, "s_per_sft_sample": round(per_sft, 2),
            "s_per_endpoint_sample": round(per_end, 2), "fixed_s": round(fixed, 1),
            "projected_minutes": {f"{n}x{e}": round(m, 1) for (n, e), m in grid.items()}}, indent=1))


if __name__ == "__main__":
    main()
