"""Deployment commands of the CLI: export (a checkpoint to ONNX, verified with ONNX Runtime)."""

from __future__ import annotations

import argparse
from pathlib import Path

from resnetlab.errors import UserError
from resnetlab.files import atomic_path, check_output_file

TOLERANCE = 1e-4  # max abs logit difference ONNX Runtime vs PyTorch, fp32


def cmd_export(args: argparse.Namespace) -> None:
    import torch

    from resnetlab import __version__
    from resnetlab.export import export_onnx, require, verify_onnx
    from resnetlab.train.inference import load_trained

    if not args.tolerance > 0:  # before the slow part: a limit no export can meet fails at once
        raise UserError(f"--tolerance must be positive (a max abs logit difference), got {args.tolerance:g}; the "
                        f"default is {TOLERANCE:g}")
    for module in ("onnx", "onnxscript", *(() if args.no_verify else ("onnxruntime",))):
        require(module)  # before the slow part: a missing package is one line, at once
    out = check_output_file(Path(args.onnx), example="model.onnx")  # a folder, or under a file: before the export
    trained = load_trained(args.checkpoint)
    meta = trained.metadata
    # Exported beside the target under a temporary name and renamed once verified: a refused export leaves
    # whatever was at OUT untouched.
    with atomic_path(out) as unverified:
        export_onnx(trained.model, unverified, trained.image_size, args.opset, normalizer=trained.normalizer,
                    classes=trained.classes, include_preprocessing=args.include_preprocessing,
                    metadata={"model": meta.get("model", ""), "model_kwargs": meta.get("model_kwargs", {}),
                              "checkpoint": str(trained.source), "step": meta.get("step", ""),
                              "producer": f"resnetlab {__version__}, torch {torch.__version__}"})
        if not args.no_verify:
            difference = verify_onnx(unverified, trained.model, (1, 3), trained.normalizer)
            if not difference < args.tolerance:
                raise UserError(f"ONNX Runtime and PyTorch logits differ by up to {difference:.3g} "
                                f"(limit {args.tolerance:g}); {out} not written")
    kind = "uint8 pixels" if args.include_preprocessing else f"float32, normalized ({trained.normalizer.kind})"
    print(f"wrote {out}: {meta.get('model', 'model')}, input images (N, 3, {trained.image_size}, "
          f"{trained.image_size}) {kind}, output logits (N, {len(trained.classes)})")
    if not args.no_verify:
        print(f"verified with ONNX Runtime at batch sizes 1 and 3: max abs logit difference {difference:.2e}")


def add_commands(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="a checkpoint to ONNX, checked against PyTorch with ONNX Runtime")
    export.add_argument("checkpoint", help="run directory, checkpoint directory or model.safetensors")
    export.add_argument("--onnx", required=True, metavar="OUT.onnx", help="ONNX file to write (dynamic batch)")
    export.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    export.add_argument("--include-preprocessing", action="store_true",
                        help="put the normalization in the graph: its input is then uint8 NCHW pixels")
    export.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime check")
    export.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"largest max abs logit difference accepted (default {TOLERANCE:g})")
    export.set_defaults(func=cmd_export)
