"""Genotype files written before the typed genotype (tests/fixtures/genotypes) load and rebuild the same networks."""
import json
from pathlib import Path

import pytest
import torch

from src.architecture.genotype.genotype import load_genotype
from src.config.defaults import get_default_config
from src.network_factory.from_genotype import build_from_genotype_file

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "genotypes"
NAMES = ("part_cnf_mobilenet_v2", "part_cnf_fabric_backbone", "part_cnf_hr_supernet", "fabric_stem", "hr_dense")


def fixture_cfg():
    cfg = get_default_config()
    cfg.MODEL.INPUT_SIZE = [48, 64]
    return cfg


def unpack(packed: dict) -> dict:
    """The state dict of a packed fixture (see tests/fixtures/genotypes/README.md)."""
    state, offset = {}, 0
    for key, shape, dtype in zip(packed["keys"], packed["shapes"], packed["dtypes"]):
        n = int(torch.Size(shape).numel())
        state[key] = packed["data"][offset:offset + n].to(getattr(torch, dtype)).reshape(shape)
        offset += n
    assert offset == packed["data"].numel()
    return state


@pytest.mark.parametrize("name", NAMES)
def test_old_genotype_files_parse_into_what_they_say(name):
    path = FIXTURES / f"{name}.json"
    assert load_genotype(str(path)).to_dict() == json.loads(path.read_text())  # nothing lost, nothing added


@pytest.mark.parametrize("name", NAMES)
def test_old_genotype_files_rebuild_the_same_outputs(name):
    model = build_from_genotype_file(fixture_cfg(), str(FIXTURES / f"{name}.json"))
    packed = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    model.load_state_dict(unpack(packed))
    with torch.no_grad():
        out = model.eval()(packed["input"])
    torch.testing.assert_close(out, packed["output"], rtol=0, atol=1e-6)
