"""How long GHN-2 parameter prediction takes: graph construction and prediction, median of repeats.

    .venv/bin/python bench/measure/ghn_speed.py                       # tf_efficientnet_b0, ImageNet-sized GHN
    .venv/bin/python bench/measure/ghn_speed.py --model resnet50 --repeats 5
    .venv/bin/python bench/measure/ghn_speed.py --checkpoint results/runs/ghn/fashion_mnist/ghn.pt \
        --in-chans 1 --num-classes 10

Without ``--checkpoint`` a randomly initialised GHN with the ``ghn2_imagenet.pt`` layout (the largest
official one) is timed: the cost does not depend on the weights. The target is <= 1 s in total for
tf_efficientnet_b0 on a 2-core CPU. Prints one line per phase and a JSON line for scripts.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import timm
import torch

from dpiat.ghn import GHN2, build_graph, load_ghn, predict


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tf_efficientnet_b0")
    ap.add_argument("--checkpoint", default=None, help="a GHN checkpoint (default: random ghn2_imagenet layout)")
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--in-chans", type=int, default=3)
    ap.add_argument("--resolution", type=int, default=224, help="side of the tracing input")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ghn = load_ghn(args.checkpoint) if args.checkpoint else GHN2(max_shape=(64, 64, 16, 16), num_classes=1000)
    net = timm.create_model(args.model, num_classes=args.num_classes, in_chans=args.in_chans)
    size = (args.in_chans, args.resolution, args.resolution)
    predict(ghn, net, input_size=size)  # warm-up: first-call allocations and lazy imports
    graph_s, predict_s, total_s = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        graph = build_graph(net, input_size=size)
        t1 = time.perf_counter()
        report = predict(ghn, net, graph=graph)
        t2 = time.perf_counter()
        graph_s.append(t1 - t0)
        predict_s.append(t2 - t1)
        total_s.append(t2 - t0)
    med = {k: round(statistics.median(v), 3) for k, v in
           (("graph_s", graph_s), ("predict_s", predict_s), ("total_s", total_s))}
    result = {"model": args.model, "nodes": len(graph), "params": report.n_params,
              "fraction_predicted": round(report.fraction_predicted, 4), **med,
              "min_total_s": round(min(total_s), 3), "repeats": args.repeats, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine()}
    print(f"{args.model}: {len(graph)} graph nodes, {report.n_params:,} parameters "
          f"({100 * report.fraction_predicted:.1f}% predicted)")
    print(f"graph construction  median {med['graph_s']:.3f} s")
    print(f"prediction          median {med['predict_s']:.3f} s")
    print(f"total               median {med['total_s']:.3f} s  (min {min(total_s):.3f} s, {args.repeats} repeats)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
