import itertools

import numpy as np
import pytest
import torch

from src.config.loader import load_config
from src.engine import trainer as trainer_module
from src.engine.prefetch import Prefetcher
from src.engine.trainer import Trainer, seed_all
from src.network_factory.registry import build_model
from tests.conftest import ROOT, tiny_train_opts


class Counting:
    """An iterator of 0, 1, 2, ... that counts how many items were fetched."""

    def __init__(self, fail_at=None):
        self.fetched, self.fail_at = 0, fail_at

    def __iter__(self):
        return self

    def __next__(self):
        if self.fetched == self.fail_at:
            raise ValueError(f"cannot read image {self.fetched}.jpg: broken")
        self.fetched += 1
        return self.fetched - 1


def test_yields_exactly_count_items_in_order():
    source = Counting()
    with Prefetcher(source, 5) as batches:
        assert list(batches) == [0, 1, 2, 3, 4]
    assert source.fetched == 5  # never one past the count


def test_rng_draws_are_those_of_the_plain_loop():
    def draws():
        while True:
            yield np.random.rand(3)

    np.random.seed(7)
    plain = list(itertools.islice(draws(), 6))
    np.random.seed(7)
    with Prefetcher(draws(), 6) as batches:
        prefetched = list(batches)
    assert all(np.array_equal(a, b) for a, b in zip(plain, prefetched))


def test_iterator_error_is_raised_in_order_with_its_message():
    with Prefetcher(Counting(fail_at=2), 5) as batches:
        assert [next(batches), next(batches)] == [0, 1]
        with pytest.raises(ValueError, match="cannot read image 2.jpg: broken"):
            next(batches)
        with pytest.raises(StopIteration):
            next(batches)


def test_early_close_fetches_at_most_one_more():
    source = Counting()
    with Prefetcher(source, 100) as batches:
        assert next(batches) == 0
    assert source.fetched <= 3  # the item in use, the one queued, at most one being fetched


def test_training_is_bit_identical_to_the_plain_loop(tiny_synthetic, tmp_path, monkeypatch):
    """The trainer's prefetching thread changes nothing: same weights and arch values as loading in the loop
    itself, on a bilevel search (weight and arch batches drawn alternately from the global NumPy RNG)."""
    def train(out):
        opts = tiny_train_opts(tiny_synthetic, out, **{
            "SEARCH.STRATEGY": "first_order_gradient", "SEARCH.WARMUP_EPOCHS": 0, "MODEL.FABRIC.FACTOR": 2,
            "TRAIN.BATCH_SIZE": 2, "TRAIN.EVAL_INTERVAL": 100})
        cfg = load_config(str(ROOT / "configs/synthetic_search_demo.yaml"), opts)
        seed_all(cfg.SEED)
        trainer = Trainer(cfg, build_model(cfg))
        trainer.fit()
        return trainer.core.state_dict()

    threaded = train(tmp_path / "threaded")

    class InLoop:  # the plain loop: every batch loaded by the consumer, when it asks
        def __init__(self, iterator, count):
            self.items = itertools.islice(iterator, count)

        def __enter__(self):
            return self.items

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(trainer_module, "Prefetcher", InLoop)
    plain = train(tmp_path / "plain")
    assert threaded.keys() == plain.keys()
    assert all(torch.equal(threaded[k], plain[k]) for k in plain)
