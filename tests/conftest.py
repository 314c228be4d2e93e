"""Shared pytest fixtures."""

import pytest


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """Tiny synthetic copies of all five datasets in their real on-disk layouts, generated once per session
    (data/make_synthetic.py, seed 0). Treat it as read-only: copy files elsewhere before breaking them."""
    from data.make_synthetic import make_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, seed=0, size="tiny")
    return root
