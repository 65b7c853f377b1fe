"""Per-token cost of constrained decoding on this CPU (issue 12): the grammar's mask (llguidance) and the Wyckoff
automaton's token walk, replayed over real texts. A benchmark, not a test; run it alone.

    python benchmarks/bench_constraint.py --samples data/samples/sft.jsonl --model models/sft [--qwen]

Every text is tokenized, and before each of its tokens the mask is computed as the sampler would; the
automaton's cost is printed per line of the text (formula, space group, abc, angles, Sites, site lines), since
the lines differ by an order of magnitude. Texts the automaton would not have produced (the unconstrained
model's formula and sites disagree, say) are replayed up to the first token it forbids.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time

LINES = ("formula", "space group", "abc", "angles", "Sites (N)", "site lines")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", required=True, help="a samples JSONL (its final rows are replayed)")
    parser.add_argument("--model", required=True, help="a model directory (its tokenizer is used)")
    parser.add_argument("--qwen", action="store_true", help="use the vendored Qwen2.5 tokenizer instead")
    parser.add_argument("--n", type=int, default=900, help="texts to replay")
    args = parser.parse_args()

    from plaidpp.constraint.automaton import Constraint, Rules
    from plaidpp.settings.sampling import SamplerSettings
    from plaidpp.training.models import load_tokenizer

    if args.qwen:
        from plaidpp.data.tokenizer import load_qwen_tokenizer

        tokenizer = load_qwen_tokenizer()
    else:
        tokenizer = load_tokenizer(args.model)
    rows = [json.loads(line) for line in open(args.samples)]
    rows = [r for r in rows if r.get("final", True) and r.get("repr", "wyckoff") == "wyckoff"][: args.n]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {len(rows)} texts; "
          f"vocabulary {len(tokenizer)}")

    started = time.perf_counter()
    sampler = SamplerSettings()  # what the sampler builds, once per tokenizer
    constraint = Constraint(tokenizer, "wyckoff", "grammar+spacegroup", Rules.of(sampler))
    print(f"set-up (grammar compile, tokenizer views): {time.perf_counter() - started:.2f} s")

    grammar_s, grammar_n = 0.0, 0
    walk_s: dict[int, float] = collections.defaultdict(float)
    walk_n: collections.Counter[int] = collections.Counter()
    left = 0
    for row in rows:
        ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"]
        batch = constraint.start([row.get("spacegroup")])
        matcher, state = batch.matchers[0], batch.states[0]
        for token in ids:
            t0 = time.perf_counter()
            matcher.compute_bitmask()
            t1 = time.perf_counter()
            constraint.table.allowed(state)
            t2 = time.perf_counter()
            grammar_s += t1 - t0
            grammar_n += 1
            line = min(state.line, 5)
            walk_s[line] += t2 - t1
            walk_n[line] += 1
            matcher.consume_token(token)
            state = state.feed(constraint.token_text(token))
            if state is None:
                left += 1
                break
    total_walk = sum(walk_s.values())
    print(f"grammar mask (llguidance): {1e6 * grammar_s / grammar_n:.1f} µs per token over {grammar_n} tokens")
    print(f"automaton walk: {1e6 * total_walk / sum(walk_n.values()):.1f} µs per token "
          f"({left} of {len(rows)} texts leave the constraint before their end)")
    for line, name in enumerate(LINES):
        if walk_n[line]:
            print(f"    {name:12s} {walk_n[line]:7d} tokens  {1e6 * walk_s[line] / walk_n[line]:8.1f} µs per token")


if __name__ == "__main__":
    main()
