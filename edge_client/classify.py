"""`edge-client classify IMAGE... [--model DIR] [--top-k 5] [--threshold 0.3]`

Classify image files once and print one prediction message per image as a JSON line on stdout.
An unreadable image gets one line on stderr and the others are still classified; the exit status
is then 1. A model that cannot be loaded or a bad option exits 2.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from actions.errors import EdgeConsoleError, ImageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage dump
        print(f"edge-client classify: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _threshold(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability between 0 and 1, got {text}")
    return value


def _top_k(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edge-client classify", description="Classify image files and print prediction messages as JSON lines.")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--model", type=Path, default=os.environ.get("EDGE_CLIENT_MODEL_DIR"),
                        help="compiled model directory (default: $EDGE_CLIENT_MODEL_DIR)")
    parser.add_argument("--variant", choices=("fp32", "int8"), default=os.environ.get("EDGE_CLIENT_VARIANT") or None,
                        help="which ONNX model to run (default: the manifest's choice)")
    parser.add_argument("--top-k", type=_top_k, default=5)
    parser.add_argument("--threshold", type=_threshold, default=0.3, help="minimum probability, 0..1 (default 0.3)")
    parser.add_argument("--device", default=os.environ.get("EDGE_CLIENT_DEVICE_NAME") or socket.gethostname(),
                        help="device name put in each message (default: the host name)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.model is None:
        print("edge-client classify: no model; pass --model DIR or set EDGE_CLIENT_MODEL_DIR", file=sys.stderr)
        return 2
    from actions.inference import load_model
    from actions.messages.prediction import build_prediction, encode

    try:
        model = load_model(args.model, args.variant, threads=1)  # one image per core: see classify_many
    except EdgeConsoleError as exc:
        print(f"edge-client classify: {exc}", file=sys.stderr)
        return 2

    def read_all():
        for path in args.images:
            try:
                yield path, path.read_bytes()
            except OSError as exc:
                yield path, ImageError(f"cannot read it ({exc.strerror or exc})")

    failed = 0
    seq = 0
    items = list(read_all())
    readable = [(p, data) for p, data in items if not isinstance(data, ImageError)]
    results = iter(model.classify_many((d for _, d in readable), args.top_k, args.threshold))
    out = sys.stdout.buffer
    for path, data in items:
        result = data if isinstance(data, ImageError) else next(results)
        if isinstance(result, ImageError):
            failed += 1
            print(f"edge-client classify: {path}: {result}", file=sys.stderr)
            continue
        seq += 1
        msg = build_prediction(result, device=args.device, model_name=model.name, model_version=model.version,
                               seq=seq, top_k=args.top_k, threshold=args.threshold, source=path.name)
        out.write(encode(msg) + b"\n")
        out.flush()
    return 1 if failed else 0
