"""Command line: ``python -m dpiat`` (or ``dpiat``).

    dpiat transfer tf_efficientnet_b2 tf_efficientnet_b0 --source-weights b2.safetensors --num-classes 10 \\
        --out b0_init.safetensors
    dpiat explain tf_efficientnet_b2 tf_efficientnet_b0        # the matching, layer by layer
    dpiat similarity tf_efficientnet_b0 tf_efficientnet_b1 tf_efficientnet_b2 mixnet_l
    dpiat rank tf_efficientnet_b0                              # against 52 built-in timm CNNs

Models are timm names. Matching, similarity and ranking build them on the meta device (no memory, no
weights). Errors print one clear message and exit with status 2; nothing is written on failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from dpiat.errors import DpiatError


def _build(name: str, num_classes: int, in_chans: int, device: str | None = None):
    from dpiat.models import create_model

    return create_model(name, num_classes=num_classes, in_chans=in_chans, device=device)


def cmd_transfer(args) -> int:
    from dpiat.pipeline import transfer
    from dpiat.weights import load_weights, save_weights

    if not args.out.endswith(".safetensors"):
        raise DpiatError(f"--out must be a .safetensors file, got {args.out!r}")
    if args.source_weights and args.source_weights.startswith("zoo:"):  # real weights installed offline
        from dpiat.zoo import load_zoo

        source = load_zoo(args.source_weights[len("zoo:"):])
        arch = (getattr(source, "pretrained_cfg", None) or {}).get("architecture")
        if arch and arch != args.source:
            raise DpiatError(f"{args.source_weights} is a {arch}, not a {args.source}: give {arch} as the source")
    else:
        source = _build(args.source, args.source_num_classes, args.in_chans)
    if args.source_weights and not args.source_weights.startswith("zoo:"):
        load_weights(source, args.source_weights)
    else:
        print("warning: no --source-weights given: transferring the source's *random* init "
              "(useful only as a control)", file=sys.stderr)
    target = _build(args.target, args.num_classes, args.in_chans)
    report = transfer(source, target, method=args.method)
    save_weights(target, args.out)
    print(report.summary())
    print(f"wrote {args.out}")
    if args.report:
        from pathlib import Path
        Path(args.report).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0


def cmd_explain(args) -> int:
    from dpiat.matching import match

    source = _build(args.source, args.source_num_classes, args.in_chans, device="meta")
    target = _build(args.target, args.num_classes, args.in_chans, device="meta")
    print(f"source {args.source} -> target {args.target}")
    print(match(source, target).table())
    return 0


def _matrix(names: list[str], values: list[list[float]]) -> str:
    w = max(len(n) for n in names)
    head = " " * w + "  " + "  ".join(f"{i:>7d}" for i in range(len(names)))
    rows = [f"{n:<{w}}  " + "  ".join(f"{v:7.4f}" for v in row) + f"   [{i}]"
            for i, (n, row) in enumerate(zip(names, values))]
    return "\n".join([head, *rows])


def cmd_similarity(args) -> int:
    from dpiat.ranking import similarity_matrix

    names = [args.a, args.b, *args.more]
    print(_matrix(names, similarity_matrix(names)))
    return 0


def cmd_rank(args) -> int:
    from dpiat.models import check_model_name
    from dpiat.ranking import DEFAULT_CANDIDATES, rank_sources

    candidates = args.candidates or [c for c in DEFAULT_CANDIDATES if c != args.target]
    for name in [args.target, *candidates]:
        check_model_name(name)  # fail on a typo before building anything
    t0 = time.perf_counter()
    ranked = rank_sources(args.target, candidates)
    print(f"sources for {args.target}, most similar first ({len(candidates)} candidates, "
          f"{time.perf_counter() - t0:.1f} s):")
    for i, (name, sim) in enumerate(ranked[: args.top], 1):
        print(f"{i:3d}. {name:<28} {sim:.4f}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpiat", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def models(q, two=True):
        q.add_argument("source", help="timm name of the source")
        q.add_argument("target", help="timm name of the target")
        q.add_argument("--num-classes", type=int, default=1000, help="target classes (default 1000)")
        q.add_argument("--source-num-classes", type=int, default=1000, help="source classes (default 1000)")
        q.add_argument("--in-chans", type=int, default=3, help="input channels of both models (default 3)")

    t = sub.add_parser("transfer", help="transfer a source's weights into a fresh target and save it")
    models(t)
    t.add_argument("--source-weights", help="safetensors or torch state dict of the trained source, or zoo:<name> for real weights of dpiat.zoo (e.g. zoo:efficientnet_lite0_imagenet, with source tf_efficientnet_lite0)")
    t.add_argument("--out", required=True, help="where to write the target's weights (.safetensors)")
    t.add_argument("--method", default="dpiat", help="transfer method (default: the faithful 'dpiat')")
    t.add_argument("--report", help="also write the transfer report as JSON here")
    t.set_defaults(fn=cmd_transfer)

    e = sub.add_parser("explain", help="print the layer matching as a table")
    models(e)
    e.set_defaults(fn=cmd_explain)

    s = sub.add_parser("similarity", help="print the similarity matrix of two or more timm models")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("more", nargs="*")
    s.set_defaults(fn=cmd_similarity)

    r = sub.add_parser("rank", help="rank candidate sources for a target by similarity")
    r.add_argument("target")
    r.add_argument("--candidates", nargs="+", help="timm names (default: 52 built-in ImageNet CNNs)")
    r.add_argument("--top", type=int, default=20, help="how many to print (default 20)")
    r.set_defaults(fn=cmd_rank)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except DpiatError as e:
        print(f"dpiat {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
