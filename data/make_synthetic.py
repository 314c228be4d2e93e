"""Generate small synthetic copies of the five AdaCrossNet datasets, in their real on-disk layouts.

    python data/make_synthetic.py --out data/synthetic --seed 0 --size small
    python -m data.make_synthetic --out data/synthetic --seed 0 --size small

The generator itself is the package data/synthetic_gen/ (see its docstring and data/README.md).
"""

import sys

if __package__:  # python -m data.make_synthetic, or `from data.make_synthetic import make_synthetic`
    from .synthetic_gen import main, make_synthetic
else:  # python data/make_synthetic.py: Python puts data/ itself first on sys.path
    from synthetic_gen import main, make_synthetic

__all__ = ["main", "make_synthetic"]

if __name__ == "__main__":
    sys.exit(main())
