"""Command line: ``python -m dpiat`` (or ``dpiat``).

    dpiat recommend vit_tiny_patch16_224 --top 5                # which pretrained source? (tags listed)
    dpiat transfer deit_tiny_patch16_224.fb_in1k vit_tiny_patch16_224 --method dpiat_struct --num-classes 10 \\
        --out vit_init.safetensors                              # a tag: its pretrained weights
    dpiat transfer tf_efficientnet_b2 tf_efficientnet_b0 --source-weights b2.safetensors --num-classes 10 \\
        --out b0_init.safetensors
    dpiat explain tf_efficientnet_b2 tf_efficientnet_b0        # the matching, layer by layer
    dpiat similarity tf_efficientnet_b0 tf_efficientnet_b1 tf_efficientnet_b2 mixnet_l
    dpiat rank tf_efficientnet_b0                              # against the built-in timm CNNs

Models are timm names. Matching, similarity and ranking build them on the meta device (no memory, no
weights). Errors print one clear message and exit with status 2; nothing is written on failure, and every
argument is checked before anything is built or printed. Output cut short by its reader (``| head``) ends
quietly.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from dpiat.errors import DpiatError, UnknownNameError, close_matches

DESCRIPTION = ("DPIAT: transfer trained weights between networks of different architectures. Models are timm "
               "names; matching, similarity and ranking build them on the meta device (shapes only).")
EXAMPLES = """examples:
  dpiat recommend vit_tiny_patch16_224 --top 5             # pretrained sources for a target, with their tags
  dpiat transfer resnet18.a1_in1k resnet34 --num-classes 10 --out r34.safetensors   # a tag: its weights
  dpiat transfer tf_efficientnet_lite0 tinynet_e --source-weights zoo:efficientnet_lite0_imagenet \\
      --num-classes 10 --in-chans 1 --out e.safetensors
  dpiat cache-tag tf_efficientnet_lite0.in1k --weights zoo:efficientnet_lite0_imagenet   # a tag, offline
  dpiat explain tf_efficientnet_b2 tf_efficientnet_b0      # the matching, layer by layer
  dpiat similarity tf_efficientnet_b0 tf_efficientnet_b1 mixnet_l
  dpiat rank tf_efficientnet_b0 --top 10

Errors print one line and exit with status 2; nothing is written on failure."""


def _build(name: str, num_classes: int, in_chans: int, device: str | None = None, pretrained: bool = False):
    from dpiat.models import create_model

    return create_model(name, num_classes=num_classes, in_chans=in_chans, device=device, pretrained=pretrained)


def _writable(path: str, option: str, suffix: str | None = None) -> Path:
    """An output file's path, checked before any work: its extension, and a folder that exists (nothing is
    created on the way: a typo in the folder fails instead of making a new tree)."""
    out = Path(path)
    if suffix and out.suffix != suffix:
        raise DpiatError(f"{option} must be a {suffix} file, got {path!r}")
    if out.is_dir():
        raise DpiatError(f"{option} {path!r} is a folder: give a file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise DpiatError(f"{option} {path!r}: the folder {str(parent)!r} does not exist (create it first)")
    return out


def _arch(name: str) -> str:
    return name.split(".", 1)[0] if not name.startswith("hf-hub:") else name


def _load_source(args):
    """The source model and a line saying where its weights came from (None: a random init, warned of)."""
    from dpiat.pretrained import is_pretrained_name
    from dpiat.weights import load_weights

    weights, pretrained = args.source_weights, args.pretrained
    if weights == "timm":  # as the harness's source.weights=timm
        weights, pretrained = None, True
    if weights and pretrained:
        raise DpiatError("give either --pretrained (timm's weights) or --source-weights FILE, not both")
    kwargs = {"num_classes": args.source_num_classes, "in_chans": args.in_chans}
    if weights and weights.startswith("zoo:"):  # real weights installed offline
        from dpiat.zoo import load_zoo

        source = load_zoo(weights[len("zoo:"):])
        arch = (getattr(source, "pretrained_cfg", None) or {}).get("architecture")
        if arch and arch != _arch(args.source):
            raise DpiatError(f"{weights} is a {arch}, not a {args.source}: give {arch} as the source")
        return source, f"source weights: {weights}"
    if weights:  # a file; a tag in the source's name then only says what the file holds
        if args.source.startswith("hf-hub:"):
            raise DpiatError("with --source-weights FILE, name the source's architecture (e.g. resnet18), "
                             "not an hf-hub: repository")
        source = _build(args.source, **kwargs)
        load_weights(source, weights)
        return source, f"source weights: {weights}"
    if pretrained or is_pretrained_name(args.source):
        source = _build(args.source, pretrained=True, **kwargs)
        cfg = getattr(source, "pretrained_cfg", None) or {}
        tag = f"{cfg.get('architecture', _arch(args.source))}.{cfg['tag']}" if cfg.get("tag") else args.source
        return source, f"source weights: timm's pretrained {tag}, from {cfg.get('file') or 'the hub'}"
    return _build(args.source, **kwargs), None


def cmd_transfer(args) -> int:
    from dpiat.pipeline import METHODS, transfer
    from dpiat.weights import save_weights

    from dpiat.models import check_model_name

    out = _writable(args.out, "--out", ".safetensors")  # every check before anything is built
    report_path = _writable(args.report, "--report") if args.report else None
    if args.method not in METHODS:
        raise UnknownNameError("transfer method", args.method, METHODS)
    for name in (args.source, args.target):  # a typo fails before any weights are looked for
        if not name.startswith("hf-hub:"):
            check_model_name(name)
    source, origin = _load_source(args)
    target = _build(args.target, num_classes=args.num_classes, in_chans=args.in_chans)
    report = transfer(source, target, method=args.method)
    if report_path is not None:  # both files, or (on a failure before) neither
        from dpiat.atomic import atomic_open

        with atomic_open(report_path, "w") as f:
            f.write(json.dumps(report.as_dict(), indent=2) + "\n")
    try:
        save_weights(target, out)
    except BaseException:
        if report_path is not None:
            report_path.unlink(missing_ok=True)
        raise
    if origin is None:  # after the work: a command that fails says only why
        print(f"warning: no --source-weights given and {args.source!r} names no pretrained tag: transferred the "
              "source's *random* init (useful only as a control). For trained weights name a tag (dpiat recommend "
              f"lists them, e.g. {_arch(args.source)}.<tag>), add --pretrained for timm's default one, or give "
              "--source-weights FILE", file=sys.stderr)
    else:
        print(origin)
    print(report.summary())
    print(f"wrote {out}")
    return 0


def cmd_cache_tag(args) -> int:
    from dpiat.hub_cache import cache_tag

    path = cache_tag(args.tag, args.weights, args.cache_dir)
    print(f"wrote {path}: {args.weights} as timm's {args.tag}; it now loads offline by that name (HF_HUB_OFFLINE=1 "
          f"dpiat transfer {args.tag} ..., source.weights=timm)")
    return 0


def _plot_path(path: str | None) -> Path | None:
    """``--plot FILE`` checked before anything is printed: extension, folder, matplotlib."""
    if not path:
        return None
    from dpiat.plots import check_plot_path

    return check_plot_path(_writable(path, "--plot"))


def _check_method(method: str) -> None:
    from dpiat.pipeline import METHODS

    if method not in METHODS:  # before anything is built
        raise UnknownNameError("transfer method", method, METHODS)


def cmd_explain(args) -> int:
    from dpiat.ranking import match

    _check_method(args.method)
    plot = _plot_path(args.plot)
    source = _build(args.source, args.source_num_classes, args.in_chans, device="meta")
    target = _build(args.target, args.num_classes, args.in_chans, device="meta")
    matching = match(source, target, method=args.method)
    print(f"source {args.source} -> target {args.target} (method {args.method})")
    print(matching.table())
    if plot:
        from dpiat.plots import plot_matching

        plot_matching(matching, plot, source=args.source, target=args.target, method=args.method)
        print(f"wrote {plot}")
    return 0


def _matrix(names: list[str], values: list[list[float]]) -> str:
    w = max(len(n) for n in names)
    head = " " * w + "  " + "  ".join(f"{i:>7d}" for i in range(len(names)))
    rows = [f"{n:<{w}}  " + "  ".join(f"{v:7.4f}" for v in row) + f"   [{i}]"
            for i, (n, row) in enumerate(zip(names, values))]
    return "\n".join([head, *rows])


def cmd_similarity(args) -> int:
    from dpiat.ranking import similarity_matrix

    names = list(args.models)
    if len(names) < 2:
        raise DpiatError(f"similarity compares two or more models, got {len(names)}"
                         + (f" ({names[0]}): add another, e.g. dpiat similarity {names[0]} tf_efficientnet_b0"
                            if names else ": e.g. dpiat similarity tf_efficientnet_b0 tf_efficientnet_b1"))
    _check_method(args.method)
    plot = _plot_path(args.plot)
    values = similarity_matrix(names, method=args.method)
    print(_matrix(names, values))
    if plot:
        from dpiat.plots import plot_similarity

        plot_similarity(names, values, plot, method=args.method)
        print(f"wrote {plot}")
    return 0


def _count(text: str) -> float:
    """A parameter count as typed: 5000000, 5e6, 5M, 300K, 1.2G."""
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:].upper(), 1.0)
    try:
        value = float(text[:-1] if scale != 1.0 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a parameter count: {text!r} (e.g. 5000000, 5e6, 5M, 300K)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _positive(text: str) -> int:
    """A whole number >= 1 (classes, channels, --top, --workers)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def cmd_recommend(args) -> int:
    from dpiat.recommender import recommend

    rec = recommend(args.target, candidates=args.candidates, name=args.name, max_params=args.max_params,
                    tags=args.tags, exclude_families=args.exclude_family,
                    top=args.top if args.top is not None or args.json else 20, score=args.score,
                    method=args.method, workers=args.workers, num_classes=args.num_classes,
                    in_chans=args.in_chans, include_test_nets=args.include_test_nets)
    for note in rec.notes:
        print(note, file=sys.stderr)
    if args.json:
        print("[\n" + ",\n".join(json.dumps(c.as_dict()) for c in rec.candidates) + "\n]")
    else:
        print(rec.table())
        if rec.skipped:
            print(f"skipped ({len(rec.skipped)}): " + "; ".join(f"{n}: {r}" for n, r in rec.skipped[:5])
                  + ("; ... (--json lists the ranked ones only)" if len(rec.skipped) > 5 else ""))
    return 0


def cmd_rank(args) -> int:
    from dpiat.models import check_model_name
    from dpiat.ranking import rank_sources

    _check_method(args.method)
    for name in [args.target, *(args.candidates or [])]:
        check_model_name(name)  # fail on a typo before building anything
    t0 = time.perf_counter()
    ranked = rank_sources(args.target, args.candidates, method=args.method)  # None: the built-in list, less the target
    print(f"sources for {args.target}, most similar first by method {args.method} ({len(ranked)} candidates, "
          f"{time.perf_counter() - t0:.1f} s):")
    for i, (name, sim) in enumerate(ranked[: args.top], 1):
        print(f"{i:3d}. {name:<28} {sim:.4f}")
    note = _transformer_note(args.target, [sim for _, sim in ranked]) if args.method != "dpiat_struct" else None
    if note:
        print(note)
    return 0


def _transformer_note(target: str, sims: list[float]) -> str | None:
    """Why a transformer target scores near 0 against every candidate, or None."""
    if not sims or max(sims) >= 0.05:
        return None
    from torch import nn

    from dpiat.models import as_model

    model = as_model(target)
    if not any(isinstance(m, (nn.LayerNorm, nn.MultiheadAttention)) or hasattr(m, "qkv") for m in model.modules()):
        return None
    return (f"note: every similarity is below 0.05 because {target} is a transformer: faithful DPIAT was designed "
            "for CNNs and matches only Conv, Linear and BatchNorm layers by shape, so its fused qkv projections, "
            "LayerNorms and token/position embeddings have no counterpart among these candidates; "
            "--method dpiat_struct measures the matching that transfers them")


class UsageError(DpiatError):
    """A command line argparse refuses, reworded into one line (argparse prints its usage first)."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


def _options(p: argparse.ArgumentParser) -> list[str]:
    return [o for action in p._actions for o in action.option_strings if o.startswith("--")]


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes raise :class:`UsageError`: one line saying what to fix, no usage block."""

    def error(self, message: str):
        required = re.match(r"the following arguments are required: (.*)", message)
        choice = re.match(r"argument (\w+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if required:
            message = f"missing {required.group(1)}; {self.prog} --help lists what it takes"
        elif choice and choice.group(1) == "command":
            commands = re.findall(r"'([^']*)'", choice.group(3))
            close = close_matches(choice.group(2), commands, n=2)
            message = (f"unknown command {choice.group(2)!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                       + f"; the commands: {', '.join(commands)}")
        raise UsageError(self.prog, message)


def _unknown(extra: list[str], p: argparse.ArgumentParser) -> UsageError:
    """Arguments the command does not take, with its closest options."""
    first = extra[0]
    if first.startswith("-"):
        close = close_matches(first.split("=", 1)[0], _options(p), n=2)
        return UsageError(p.prog, f"no option {first}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                          + f"; {p.prog} --help lists the options")
    return UsageError(p.prog, f"unexpected argument{'s' if len(extra) > 1 else ''} {' '.join(extra)}; "
                              f"{p.prog} --help lists what it takes")


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; ``only="recommend"`` builds that command alone, without importing torch
    (the registry of methods and the built-in candidate list that the other commands' help shows need it), so
    a cached ``dpiat recommend`` answers in a fraction of a second."""
    p = _Parser(prog="dpiat", description=DESCRIPTION, epilog=EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    p.commands = sub.choices  # name -> its parser (for the options of a command given an unknown one)
    if only != "recommend":
        _add_torch_commands(sub)
    _add_recommend(sub)
    return p


def _add_torch_commands(sub) -> None:
    from dpiat.pipeline import METHODS  # the registry: every named variant, also those added later
    from dpiat.ranking import DEFAULT_CANDIDATES

    def models(q, two=True):
        q.add_argument("source", help="timm name of the source")
        q.add_argument("target", help="timm name of the target")
        q.add_argument("--num-classes", type=_positive, default=1000, help="target classes (default 1000)")
        q.add_argument("--source-num-classes", type=_positive, default=1000, help="source classes (default 1000)")
        q.add_argument("--in-chans", type=_positive, default=3, help="input channels of both models (default 3)")

    def method(q, what):
        q.add_argument("--method", default="dpiat", metavar="METHOD",
                       help=f"transfer method whose matching {what}, one of: {', '.join(METHODS)} (default: dpiat, "
                            "the faithful method; dpiat_struct also matches q/k/v, norms, tokens and position "
                            "embeddings)")

    t = sub.add_parser("transfer", help="transfer a source's weights into a fresh target and save it",
                       description="Transfer a trained source's weights into a fresh target. The source's weights: "
                                   "a pretrained tag in its name (resnet18.a1_in1k, hf-hub:timm/...; from the local "
                                   "Hugging Face cache, else downloaded), --pretrained, or --source-weights.")
    models(t)
    t.add_argument("--source-weights", metavar="FILE",
                   help="safetensors or torch state dict of the trained source; zoo:<name> for real weights of "
                        "dpiat.zoo (e.g. zoo:efficientnet_lite0_imagenet, with source tf_efficientnet_lite0); timm "
                        "for timm's pretrained weights (as --pretrained)")
    t.add_argument("--pretrained", action="store_true",
                   help="load timm's pretrained weights of the source (a bare architecture: timm's default tag; "
                        "a source named with a tag gets that tag's weights without this flag)")
    t.add_argument("--out", required=True, help="where to write the target's weights (.safetensors)")
    t.add_argument("--method", default="dpiat", metavar="METHOD",
                   help=f"transfer method, one of: {', '.join(METHODS)} (default: dpiat, the faithful method)")
    t.add_argument("--report", help="also write the transfer report as JSON here")
    t.set_defaults(fn=cmd_transfer)

    h = sub.add_parser("cache-tag", help="put a zoo: or local weights file into the hub cache under a pretrained tag",
                       description="Put weights at hand into the Hugging Face hub cache ($HF_HUB_CACHE, else "
                                   "$HF_HOME/hub, else ~/.cache/huggingface/hub) as timm's download of TAG would "
                                   "lie there, so that TAG then loads offline (HF_HUB_OFFLINE=1) in dpiat transfer, "
                                   "dpiat.create_model(TAG, pretrained=True) and the harness's source.weights=timm. "
                                   "The weights are checked against TAG's architecture first.")
    h.add_argument("tag", metavar="TAG",
                   help="a pretrained tag, <architecture>.<tag> (e.g. tf_efficientnet_lite0.in1k)")
    h.add_argument("--weights", required=True, metavar="WEIGHTS",
                   help="zoo:<name> (dpiat.zoo, e.g. zoo:efficientnet_lite0_imagenet) or a safetensors / torch "
                        "state dict of the tag's architecture")
    h.add_argument("--cache-dir", metavar="DIR", help="the hub cache to fill (default: the one huggingface_hub uses)")
    h.set_defaults(fn=cmd_cache_tag)

    e = sub.add_parser("explain", help="print the layer matching as a table")
    models(e)
    method(e, "is shown")
    e.add_argument("--plot", metavar="FILE", help="also draw the matching to FILE (.png or .svg; needs matplotlib)")
    e.set_defaults(fn=cmd_explain)

    s = sub.add_parser("similarity", help="print the similarity matrix of two or more timm models")
    s.add_argument("models", metavar="MODEL", nargs="*", help="two or more timm names (one row and column each)")
    method(s, "is measured")
    s.add_argument("--plot", metavar="FILE", help="also draw the matrix as a heatmap to FILE (.png or .svg; needs matplotlib)")
    s.set_defaults(fn=cmd_similarity)

    r = sub.add_parser("rank", help="rank candidate sources for a target by similarity")
    r.add_argument("target", help="timm name of the target")
    r.add_argument("--candidates", nargs="+", metavar="MODEL",
                   help=f"timm names, all ranked (default: the {len(DEFAULT_CANDIDATES)} built-in ImageNet CNNs "
                        "less the target itself)")
    r.add_argument("--top", type=_positive, default=20, help="how many to print (default 20)")
    method(r, "is measured")
    r.set_defaults(fn=cmd_rank)


def _add_recommend(sub) -> None:
    from dpiat.recommender import DEFAULT_SCORE, SCORES

    c = sub.add_parser("recommend", help="rank every pretrained timm architecture as a source for a target (cached)")
    c.add_argument("target", help="timm name of the target")
    c.add_argument("--candidates", nargs="+", metavar="MODEL",
                   help="timm names to rank (default: every architecture with pretrained weights in timm)")
    c.add_argument("--name", nargs="+", metavar="PATTERN", help="keep architectures matching a shell pattern, e.g. '*efficientnet*'")
    c.add_argument("--tags", nargs="+", metavar="PATTERN",
                   help="keep architectures with a pretrained tag matching, e.g. '*in1k*' or '*in22k*'")
    c.add_argument("--exclude-family", nargs="+", metavar="PATTERN",
                   help="drop timm model families (modules), e.g. vision_transformer 'swin*'")
    c.add_argument("--max-params", type=_count, metavar="N", help="drop candidates with more parameters (5e6, 5M, 300K)")
    c.add_argument("--include-test-nets", action="store_true",
                   help="also rank timm's smoke-test nets (test_*: tiny random architectures for timm's own tests), "
                        "left out by default")
    c.add_argument("--top", type=_positive, help="how many to list (default: 20 in the table, all with --json)")
    c.add_argument("--json", action="store_true",
                   help="print a JSON list (name, score, similarity, overwritten, params, method, tags)")
    c.add_argument("--score", default=DEFAULT_SCORE, choices=sorted(SCORES),
                   help="what the ranking sorts by: " + "; ".join(f"{k}: {v[1]}" for k, v in SCORES.items())
                        + f" (default {DEFAULT_SCORE})")
    c.add_argument("--method", default="auto", metavar="METHOD",
                   help="transfer method whose matching is measured: a method name (dpiat, dpiat_struct, ...) or "
                        "auto (the default): dpiat_struct for a target with layers only it transfers (attention, "
                        "LayerNorm, tokens, position embeddings), else the faithful dpiat")
    c.add_argument("--num-classes", type=_positive, help="target classes (default: the timm default)")
    c.add_argument("--in-chans", type=_positive, help="target input channels (default 3)")
    c.add_argument("--workers", type=_positive, help="processes building and scoring (default: the usable CPUs)")
    c.set_defaults(fn=cmd_recommend)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    p = parser("recommend" if command == "recommend" else None)
    try:
        args, extra = p.parse_known_args(argv)
        if extra:
            raise _unknown(extra, p.commands.get(args.command, p))
    except UsageError as e:
        print(f"{e.prog}: error: {e}", file=sys.stderr)
        return 2
    try:
        code = args.fn(args)
        sys.stdout.flush()  # here, so that a reader that stopped early (| head) is noticed inside this try
        return code
    except DpiatError as e:
        print(f"dpiat {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader closed the pipe: what it wanted was printed; stop without a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush of stdout would fail again
        os.close(devnull)
        return 141  # as a shell reports a command ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
