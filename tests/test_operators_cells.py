"""Operators, mixed op, cell and fabric of the PoseNFS search space."""
import json

import pytest
import torch
from torch import nn

from src.architecture.fabric.cell import Cell, CellSpec, edge_layout
from src.architecture.fabric.fabric import Fabric, FabricSpec, prune_unreachable, rising_spec, triangle_spec
from src.architecture.fabric.mixed_op import MixedOp
from src.architecture.fabric.op_registry import OPS, build_op, register_op

OPS4 = ["zero", "skip_connect", "sep_conv_3x3", "atr_conv_3x3"]
ALL_OPS = ["zero", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "atr_conv_3x3", "atr_conv_5x5",
           "max_pool_3x3", "avg_pool_3x3"]
SIZES = [(16, 12), (8, 6), (4, 3), (2, 2)]  # backbone maps of a 64x48 input


def _maps(channels, batch=2):
    torch.manual_seed(0)
    return [torch.randn(batch, c, h, w) for c, (h, w) in zip(channels, SIZES)]


@pytest.mark.parametrize("name", ALL_OPS)
def test_every_op_keeps_shape_at_stride_1_and_halves_at_stride_2(name):
    x = torch.randn(2, 4, 9, 7)
    assert build_op(name, 4, 1)(x).shape == x.shape
    assert build_op(name, 4, 2)(x).shape == (2, 4, 5, 4)


def test_zero_is_zero_and_pools_end_in_affine_free_bn():
    assert torch.count_nonzero(build_op("zero", 3)(torch.randn(1, 3, 4, 4))) == 0
    for name in ("max_pool_3x3", "avg_pool_3x3"):
        bn = build_op(name, 3)[-1]
        assert isinstance(bn, nn.BatchNorm2d) and not bn.affine


def test_register_op_adds_a_named_factory_and_refuses_duplicates():
    @register_op("test_double")
    class Double(nn.Module):
        def __init__(self, c, stride):
            super().__init__()

        def forward(self, x):
            return 2 * x
    try:
        x = torch.randn(1, 2, 3, 3)
        torch.testing.assert_close(MixedOp(2, ["test_double"])(x), 2 * x)
        with pytest.raises(ValueError, match="test_double"):
            register_op("test_double")(Double)
    finally:
        OPS.pop("test_double")
    with pytest.raises(ValueError, match="unknown operation 'nope'"):
        build_op("nope", 2)


@pytest.mark.parametrize("i", range(len(ALL_OPS)))
def test_mixed_op_with_one_hot_alpha_equals_that_op(i):
    torch.manual_seed(0)
    mixed = MixedOp(4, ALL_OPS).eval()
    x = torch.randn(2, 4, 6, 5)
    alpha = torch.full((len(ALL_OPS),), -1e4)
    alpha[i] = 0.0
    torch.testing.assert_close(mixed(x, torch.softmax(alpha, 0)), mixed.ops[ALL_OPS[i]](x))


def test_mixed_op_without_weights_averages_its_ops():
    mixed = MixedOp(3, ["zero", "skip_connect"]).eval()
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(mixed(x), x / 2)


def test_cell_mixes_its_inputs_and_owns_beta_only_with_several_inputs():
    spec = CellSpec(3, 1, ["same", "finer", "coarser"], [0], {0: OPS4})
    cell = Cell(spec, 8, [8, 4, 16], 1, 1, OPS4, arch="own")
    assert cell.beta.shape == (3,) and cell.alpha.shape == (1, 4)
    xs = [torch.randn(2, 8, 8, 6), torch.randn(2, 4, 16, 12), torch.randn(2, 16, 4, 3)]
    assert cell(xs, (8, 6)).shape == (2, 8, 8, 6)
    single = Cell(CellSpec(0, 1, ["finer"], [0], {0: OPS4}), 8, [4], 1, 1, OPS4, arch="shared")
    assert not hasattr(single, "beta") and not hasattr(single, "alpha")
    assert single([xs[1]], (8, 6), torch.zeros(1, 4)).shape == (2, 8, 8, 6)


def test_cell_spec_errors_name_the_cell_and_field():
    with pytest.raises(ValueError, match="cell L2_S0: edge 1 reads input node 1"):
        CellSpec(2, 0, ["same"], [0], {0: OPS4, 1: OPS4}).validate(2, 1)
    with pytest.raises(ValueError, match="cell L2_S0: states \\[1\\] have no kept edge"):
        CellSpec(2, 0, ["same"], [0], {0: OPS4}).validate(1, 2)
    with pytest.raises(ValueError, match="order"):
        CellSpec(2, 0, ["coarser", "same"], [0], {0: OPS4}).validate(1, 1)


@pytest.mark.parametrize("depth, cut", [(6, 3), (7, 4)])
def test_cnf_is_a_triangle_of_six_cells_ending_in_the_quarter_cell(depth, cut):
    spec = triangle_spec([4, 8, 16, 32], 2, OPS4, depth, cut, (0, 1, 2, 3))
    fabric = Fabric(spec, [8, 16, 32, 64])
    assert list(fabric.cells) == [f"L{cut}_S0", f"L{cut}_S1", f"L{cut}_S2", f"L{cut + 1}_S0", f"L{cut + 1}_S1",
                                  f"L{depth - 1}_S0"]
    out = fabric(_maps([8, 16, 32, 64]))
    assert len(out) == 1 and out[0].shape == (2, 8, 16, 12)
    # missing neighbours are simply absent (the top cell has no finer input, no aliasing)
    assert fabric.cells[f"L{cut}_S0"].spec.inputs == ["same", "coarser"]
    assert fabric.cells[f"L{cut}_S2"].spec.inputs == ["same", "finer", "coarser"]


def test_fabric_from_a_stem_and_rising_backbone_fabric_shapes():
    tri = Fabric(triangle_spec([4, 8, 16, 32], 2, OPS4, 6, 0, (0,)), [8])
    assert tri.cells["L0_S1"].spec.inputs == ["finer"] and len(tri.cells) == 15
    assert tri([torch.randn(2, 8, 16, 12)])[0].shape == (2, 8, 16, 12)
    rise = Fabric(rising_spec([4, 8, 16, 32], 2, OPS4, 4), [8])
    outs = rise([torch.randn(2, 8, 16, 12)])
    assert [tuple(o.shape) for o in outs] == [(2, 8 * 2 ** i) + SIZES[i] for i in range(4)]
    with pytest.raises(ValueError, match="cannot reach 4 rows"):
        rising_spec([4, 8, 16, 32], 2, OPS4, 2)


def test_one_shot_alpha_is_shared_and_per_cell_alpha_follows_kept_edges():
    spec = triangle_spec([4, 8, 16, 32], 2, OPS4, 6, 3, (0, 1, 2, 3), hidden_states_num=2, input_nodes_num=2)
    assert len(edge_layout(2, 2)) == 5
    shared = Fabric(spec, [8, 16, 32, 64], one_shot=True)
    assert shared.alpha.shape == (5, 4) and not any(hasattr(c, "alpha") for c in shared.cells.values())
    own = Fabric(spec, [8, 16, 32, 64], one_shot=False)
    assert not hasattr(own, "alpha")
    # first-layer cells have no previous-previous input (node 1): their edges from it are not built
    assert own.cells["L3_S0"].alpha.shape == (3, 4) and own.cells["L4_S0"].alpha.shape == (5, 4)
    for fabric in (shared, own):
        out = fabric(_maps([8, 16, 32, 64]))[0]
        out.mean().backward()
        assert out.shape == (2, 8, 16, 12)
    assert "e4:s1<-s0" in own.arch_table() and "alpha (shared)" in shared.arch_table()


def test_no_weight_of_a_fabric_is_unused():
    fabric = Fabric(triangle_spec([4, 8, 16, 32], 2, OPS4, 6, 3, (0, 1, 2, 3), 2, 2), [8, 16, 32, 64])
    fabric(_maps([8, 16, 32, 64]))[0].pow(2).mean().backward()
    assert [n for n, p in fabric.named_parameters() if p.grad is None] == []


def test_spec_json_round_trip_and_errors_name_the_field():
    spec = triangle_spec([4, 8, 16, 32], 2, OPS4, 6, 3, (0, 1, 2, 3), input_nodes_num=2)
    d = json.loads(json.dumps(spec.to_dict()))
    assert FabricSpec.from_dict(d) == spec
    del d["cells"][0]["edges"]
    with pytest.raises(ValueError, match=r"genotype field 'fabric.cells\[0\].edges': missing"):
        FabricSpec.from_dict(d)
    d = spec.to_dict()
    d["factor"] = "16"
    with pytest.raises(ValueError, match="genotype field 'fabric.factor': must be int, got string"):
        FabricSpec.from_dict(d)


def _pruned_spec():
    """The CNF without L3_S2 (L4_S1 keeps only its same input) and with ops {skip, sep3} on every edge."""
    spec = triangle_spec([4, 8, 16, 32], 2, OPS4, 6, 3, (0, 1, 2, 3))
    d = spec.to_dict()
    d["cells"] = [c for c in d["cells"] if (c["layer"], c["scale"]) != (3, 2)]
    for c in d["cells"]:
        if (c["layer"], c["scale"]) == (4, 1):
            c["inputs"] = ["same"]
        c["edges"] = {"0": ["skip_connect", "sep_conv_3x3"]}
    return FabricSpec.from_dict(d)


def test_pruned_derived_fabric_inherits_weights_and_equals_the_supernet_at_pruning_limits():
    torch.manual_seed(0)
    spec = triangle_spec([4, 8, 16, 32], 2, OPS4, 6, 3, (0, 1, 2, 3))
    supernet = Fabric(spec, [8, 16, 32, 64]).eval()
    derived = Fabric(_pruned_spec(), [8, 16, 32, 64], searchable=False).eval()
    assert not any(n.endswith(("alpha", "beta")) for n, _ in derived.named_parameters())
    assert list(derived.cells) == ["L3_S0", "L3_S1", "L4_S0", "L4_S1", "L5_S0"]
    assert set(derived.state_dict()) < set(supernet.state_dict())  # derived names are supernet names
    assert derived.load_state_dict(supernet.state_dict(), strict=False).missing_keys == []
    with torch.no_grad():  # the supernet with the pruned choices at softmax 0 computes the same function
        supernet.alpha.copy_(torch.tensor([[-1e4, 0.0, 0.0, -1e4]]))
        supernet.cells["L4_S1"].beta.copy_(torch.tensor([0.0, -1e4, -1e4]))
    maps = _maps([8, 16, 32, 64])
    torch.testing.assert_close(derived(maps)[0], supernet(maps)[0])


def test_invalid_specs_are_refused_and_dead_cells_can_be_pruned():
    spec = triangle_spec([4, 8, 16, 32], 2, OPS4, 6, 3, (0, 1, 2, 3))
    d = spec.to_dict()
    d["cells"] = [c for c in d["cells"] if (c["layer"], c["scale"]) != (3, 2)]
    with pytest.raises(ValueError, match="cell L4_S1 reads L3_S2, which is not in the fabric"):
        FabricSpec.from_dict(d)
    d = spec.to_dict()
    for c in d["cells"]:
        if (c["layer"], c["scale"]) == (4, 1):
            c["inputs"] = ["same", "finer"]  # L3_S2 now feeds nothing
    with pytest.raises(ValueError, match=r"cells \['L3_S2'\] feed no kept cell"):
        FabricSpec.from_dict(d)
    cells = [CellSpec(**{**c, "edges": {int(k): v for k, v in c["edges"].items()}}) for c in d["cells"]]
    loose = FabricSpec(**{**{k: v for k, v in d.items() if k != "cells"}, "cells": cells})
    pruned = prune_unreachable(loose)
    pruned.validate()
    assert [c.name for c in pruned.cells] == ["L3_S0", "L3_S1", "L4_S0", "L4_S1", "L5_S0"]
