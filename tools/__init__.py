"""Command-line tools for a trained encoder on your own point clouds (run from the repository root):

    python -m tools.embed     --checkpoint CKPT INPUTS... --out features.npz
    python -m tools.retrieve  features.npz --query PATH_OR_INDEX [-k 5] [--png out.png]
    python -m tools.classify  --reference reference.npz features.npz [--out predictions.csv]
    python -m tools.segment   --checkpoint SEG_CKPT INPUT --out seg.ply [--category chair] [--png out.png]
    python -m tools.export_examples --data-root data/synthetic --out examples

`tools.common.load_model` is the one place that knows which model a checkpoint holds and how to build it.
"""
