"""The k clouds nearest to a query by cosine similarity of their features (a tools.embed .npz).

    python -m tools.retrieve features.npz --query 3 -k 5                  # the 4th embedded cloud
    python -m tools.retrieve features.npz --query scans/chair.ply --png neighbours.png
    python -m tools.retrieve features.npz --query new.ply --checkpoint runs/pretrain/best.pt

The query is an index into the file's `paths`, or a path. A path among the embedded ones is looked up (the
same file, however it is spelled); any other path is embedded on the fly, which needs --checkpoint: the
checkpoint the features came from (its sha256 is checked against the one recorded), with the recorded
preprocessing. A query from the file is left out of its own results, so an exact duplicate of it comes first.
--png draws the query and its neighbours as thumbnails, reading the clouds again from their paths
(benchmark entries such as `modelnet40:test:12` from --data-root).
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: python -m tools.retrieve --help",
          file=sys.stderr)
    raise SystemExit(2)

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from datasets.clouds import Preprocessing
from tools.clouds import benchmark_cloud
from tools.common import file_sha256, load_features, load_model
from tools.pictures import draw_clouds
from utils.errors import ConfigError, UserError, exit_on_user_error


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.retrieve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features", help="a .npz written by tools.embed")
    parser.add_argument("--query", required=True, help="an index into the file's paths, or a path")
    parser.add_argument("-k", type=int, default=5, help="neighbours to show (default 5)")
    parser.add_argument("--checkpoint", help="embed a query path that is not in the file with this checkpoint")
    parser.add_argument("--png", help="draw the query and its neighbours into this PNG")
    parser.add_argument("--data-root", default="data", help="where benchmark entries are read for --png")
    args = parser.parse_args(argv)
    if args.k < 1:
        raise ConfigError("-k: must be >= 1")
    return args


def find_query(args: argparse.Namespace, data: dict) -> tuple[np.ndarray, int | None, str]:
    """(query feature, its row in the file or None, its name)."""
    paths = [str(p) for p in data["paths"]]
    if args.query.isdigit() and not Path(args.query).exists():
        index = int(args.query)
        if index >= len(paths):
            raise ConfigError(f"--query {index}: {args.features} holds {len(paths)} clouds (0..{len(paths) - 1})")
        return data["features"][index], index, paths[index]
    if args.query in paths:
        index = paths.index(args.query)
        return data["features"][index], index, paths[index]
    wanted = Path(args.query).resolve()
    for index, path in enumerate(paths):
        if Path(path).resolve() == wanted:
            return data["features"][index], index, path
    if not args.checkpoint:
        raise ConfigError(f"--query {args.query}: not among the {len(paths)} paths of {args.features}; pass "
                          f"--checkpoint (the one the features came from) to embed it")
    recorded = str(data["checkpoint_sha256"])
    if file_sha256(args.checkpoint) != recorded:
        raise ConfigError(f"--checkpoint {args.checkpoint}: not the checkpoint {args.features} was embedded with "
                          f"({data['checkpoint']}, sha256 {recorded[:12]}...)")
    model_info = json.loads(str(data["model"]))
    model, _ = load_model(args.checkpoint, "embed", k=model_info.get("k"), emb_dims=model_info.get("emb_dims"))
    cloud = Preprocessing.from_json(str(data["preprocessing"])).read(args.query)
    with torch.inference_mode():
        feature = model(torch.from_numpy(cloud)[None]).float()[0].numpy()
    return feature, None, args.query


def neighbours(features: np.ndarray, query: np.ndarray, k: int, exclude: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the k rows most similar to `query`, best first (ties: lower index)."""
    rows = features.astype(np.float64)
    norms = np.linalg.norm(rows, axis=1)
    q = query.astype(np.float64)
    similarity = rows @ q / np.maximum(norms * np.linalg.norm(q), 1e-12)
    if exclude is not None:
        similarity[exclude] = -np.inf
    order = np.argsort(-similarity, kind="stable")[:k]
    order = order[np.isfinite(similarity[order])]
    return order, similarity[order]


def thumbnail(path: str, data: dict, root: str) -> np.ndarray | None:
    """The cloud of a path as the encoder saw it (recorded preprocessing), or None when it cannot be read."""
    settings = Preprocessing.from_json(str(data["preprocessing"]))
    try:
        stored = benchmark_cloud(path, root, settings)
        return settings.prepare(stored, path) if stored is not None else settings.read(path)
    except UserError as error:
        print(f"note: no thumbnail: {error}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> dict:
    data = load_features(args.features)
    query, own, name = find_query(args, data)
    order, similarity = neighbours(data["features"], query, args.k, own)
    labels = data.get("labels")
    names = [str(n) for n in data["class_names"]] if labels is not None else None
    label = (lambda i: f"  {names[int(labels[i])]}") if names else (lambda i: "")
    print(f"query: {name}" + (f" (index {own}{label(own)})" if own is not None else " (embedded now)"))
    print(f"{'rank':>4}  {'cosine':>8}  {'index':>6}  path")
    for rank, (index, value) in enumerate(zip(order, similarity), 1):
        print(f"{rank:>4}  {value:8.5f}  {index:>6}  {data['paths'][index]}{label(index)}")
    if args.png:
        paths = [name] + [str(data["paths"][i]) for i in order]
        titles = ["query\n" + Path(name).name] + [f"{r}: {v:.3f}\n{Path(p).name}"
                                                  for r, (v, p) in enumerate(zip(similarity, paths[1:]), 1)]
        draw_clouds(args.png, [thumbnail(p, data, args.data_root) for p in paths], titles)
        print(f"wrote {args.png}")
    if len(order) < args.k:
        print(f"note: only {len(order)} other clouds in {args.features}")
    return {"query": name, "indices": order.tolist(), "similarities": similarity.tolist()}


@exit_on_user_error
def main(argv=None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
