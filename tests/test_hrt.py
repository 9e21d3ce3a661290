"""HRFormer: window attention (padding semantics, relative position bias), HRT block, T/S/B models, op, model_info."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from src.architecture.fabric.cell import Cell, CellSpec
from src.architecture.fabric.op_registry import OPS, build_op
from src.architecture.hr.hrt_block import (HRTBlock, WindowAttention, default_num_heads, drop_path,
                                        relative_position_index, window_padding)
from src.config.loader import load_config
from src.network_factory.registry import build_model
from src.utils.flops import count_params

PUBLISHED_PARAMS_M = {"tiny": 8.0, "small": 13.5, "base": 50.3}  # HRT-Cls README (ImageNet-1K, 1000 classes)
OUR_PARAMS = {"tiny": 8_035_820, "small": 13_544_882, "base": 50_320_098}

TINY_OPTS = ["MODEL.HRT.NUM_CHANNELS", "[8, 16, 24, 32]", "MODEL.HRT.NUM_HEADS", "[1, 2, 2, 4]",
             "MODEL.HRT.NUM_MODULES", "[1, 1, 1]", "MODEL.HRT.NUM_BLOCKS", "1", "MODEL.HRT.STEM_CHANNELS", "8",
             "MODEL.HRT.STAGE1_BLOCKS", "1", "MODEL.HRT.HEAD_CHANNELS", "[4, 8, 8, 16]",
             "MODEL.HRT.HEAD_FINAL_CHANNELS", "32"]


def naive_window_attention(attn: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Reference: loop over windows and heads of a map whose sides are multiples of the window."""
    b, h, w, c = x.shape
    ws, nh = attn.window_size, attn.num_heads
    hd = c // nh
    out = torch.zeros_like(x)
    wq, wk, wv = attn.qkv.weight.split(c)
    bq, bk, bv = attn.qkv.bias.split(c)
    bias = torch.zeros(nh, ws * ws, ws * ws)
    for i in range(ws * ws):
        for j in range(ws * ws):
            dy, dx = i // ws - j // ws, i % ws - j % ws
            bias[:, i, j] = attn.relative_position_bias_table[(dy + ws - 1) * (2 * ws - 1) + dx + ws - 1]
    for n in range(b):
        for y0 in range(0, h, ws):
            for x0 in range(0, w, ws):
                tokens = x[n, y0:y0 + ws, x0:x0 + ws].reshape(-1, c)
                heads = []
                for k in range(nh):
                    sl = slice(k * hd, (k + 1) * hd)
                    q = tokens @ wq[sl].T + bq[sl]
                    kk = tokens @ wk[sl].T + bk[sl]
                    v = tokens @ wv[sl].T + bv[sl]
                    heads.append((q @ kk.T / hd ** 0.5 + bias[k]).softmax(-1) @ v)
                res = attn.proj(torch.cat(heads, 1))
                out[n, y0:y0 + ws, x0:x0 + ws] = res.reshape(ws, ws, c)
    return out


def test_window_padding_is_centred():
    assert window_padding(9, 11, 4) == (0, 1, 1, 2)  # (left, right, top, bottom)
    assert window_padding(64, 48, 7) == (0, 1, 3, 3)
    assert window_padding(14, 7, 7) == (0, 0, 0, 0)


def test_window_attention_matches_reference_on_multiple_of_window():
    torch.manual_seed(0)
    attn = WindowAttention(8, 2, 3)
    x = torch.randn(2, 6, 9, 8)
    torch.testing.assert_close(attn(x), naive_window_attention(attn, x), rtol=1e-4, atol=1e-5)


def test_window_attention_any_size_equals_zero_padded_map_cropped_back():
    torch.manual_seed(0)
    attn = WindowAttention(8, 2, 4)
    x = torch.randn(2, 9, 11, 8)  # neither side a multiple of 4
    y = attn(x)
    assert y.shape == x.shape
    left, right, top, bottom = window_padding(9, 11, 4)
    xp = F.pad(x, (0, 0, left, right, top, bottom))
    assert xp.shape[1:3] == (12, 12)
    cropped = attn(xp)[:, top:top + 9, left:left + 11]
    torch.testing.assert_close(y, cropped)
    torch.testing.assert_close(y, naive_window_attention(attn, xp)[:, top:top + 9, left:left + 11],
                               rtol=1e-4, atol=1e-5)
    # locality: changing one token changes only its own (padded-grid) window
    x2 = x.clone()
    x2[0, 0, 0] += 1.0  # padded position (1, 0) -> window rows 0..3, cols 0..3 -> map rows 0..2, cols 0..3
    diff = (attn(x2) - y).abs().sum(-1)[0]
    assert diff[:3, :4].gt(0).all() and diff[3:].eq(0).all() and diff[:, 4:].eq(0).all()


def test_relative_position_index_is_mirror_symmetric():
    ws = 5
    idx = relative_position_index(ws)
    n, side = ws * ws, 2 * ws - 1
    centre = (ws - 1) * side + (ws - 1)  # offset (0, 0)
    assert idx.shape == (n, n)
    assert torch.equal(torch.diagonal(idx), torch.full((n,), centre))
    assert torch.equal(idx + idx.T, torch.full((n, n), 2 * centre))  # (i, j) and (j, i) are mirror offsets
    assert set(idx.flatten().tolist()) == set(range(side * side))  # every offset occurs
    for i in range(n):
        for j in range(n):
            assert idx[i, j] == (i // ws - j // ws + ws - 1) * side + (i % ws - j % ws + ws - 1)


def test_relative_position_bias_structure():
    ws, heads = 3, 2
    attn = WindowAttention(4, heads, ws)
    side = 2 * ws - 1
    with torch.no_grad():  # table entry = 100 * dy + dx (+ 1000 * head), offsets decoded from the row
        rows = torch.arange(side * side)
        dy, dx = rows // side - (ws - 1), rows % side - (ws - 1)
        for h in range(heads):
            attn.relative_position_bias_table[:, h] = (100 * dy + dx + 1000 * h).float()
    bias = attn.relative_position_bias()
    assert bias.shape == (heads, ws * ws, ws * ws)
    for i in range(ws * ws):
        for j in range(ws * ws):
            expect = 100 * (i // ws - j // ws) + (i % ws - j % ws)
            assert bias[0, i, j] == expect and bias[1, i, j] == expect + 1000
    # one table for every window: equal offsets share one bias (block-Toeplitz), antisymmetric here
    assert torch.equal(bias[0], -bias[0].T)
    with torch.no_grad():
        attn.relative_position_bias_table.fill_(0.5)
    assert torch.equal(attn.relative_position_bias(), torch.full((heads, 9, 9), 0.5))


def test_hrt_block_any_size_forward_backward_and_drop_path():
    torch.manual_seed(0)
    block = HRTBlock(16, 2, window_size=7, drop_path=0.0)
    for h, w in ((13, 10), (1, 1), (14, 21)):
        x = torch.randn(2, 16, h, w, requires_grad=True)
        y = block(x)
        assert y.shape == x.shape and y.is_contiguous()
        y.square().mean().backward()
        assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in block.parameters())
    assert block.ffn.net[0].out_channels == 64  # expansion 4
    x = torch.ones(1000, 3)
    kept = drop_path(x, 0.3, training=True)
    col = kept[:, 0]
    assert (col.eq(0) | torch.isclose(col, torch.tensor(1 / 0.7))).all() and abs(col.eq(0).float().mean() - 0.3) < 0.06
    assert torch.equal(kept.eq(0).all(1), kept.eq(0).any(1))  # whole samples are dropped
    assert torch.equal(drop_path(x, 0.3, training=False), x)


def test_hrt_op_in_registry_and_in_a_cell():
    assert "hrt_window_attention" in OPS
    assert default_num_heads(64) == 2 and default_num_heads(78) == 2 and default_num_heads(8) == 1
    x = torch.randn(2, 16, 9, 11)
    assert build_op("hrt_window_attention", 16, 1)(x).shape == (2, 16, 9, 11)
    assert build_op("hrt_window_attention", 16, 2)(x).shape == (2, 16, 5, 6)
    ops = ["zero", "skip_connect", "hrt_window_attention"]
    cell = Cell(CellSpec(1, 1, ["same"], [0], {0: ops}), 16, [16], 1, 1, ops, arch="own")
    out = cell([x], (9, 11))
    assert out.shape == (2, 16, 9, 11)
    out.mean().backward()
    assert cell.alpha.grad is not None and cell.alpha.grad.abs().sum() > 0
    hrt = cell.edges["0"].ops["hrt_window_attention"]
    assert hrt.attn.relative_position_bias_table.grad is not None


def test_op_registration_runs_one_way_from_the_hr_space_into_the_fabric_registry():
    """The fabric space imports nothing of the HR space; importing the HR space (as every genotype parse does)
    registers its op."""
    code = ("import sys\n"
            "import src.architecture.fabric.fabric, src.architecture.fabric.spec\n"
            "from src.architecture.fabric.op_registry import OPS\n"
            "assert not [m for m in sys.modules if m.startswith('src.architecture.hr')]\n"
            "assert 'hrt_window_attention' not in OPS and 'sep_conv_3x3' in OPS\n"
            "from src.architecture.genotype.genotype import parse_genotype\n"
            "assert 'hrt_window_attention' in OPS\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_published_settings_parameter_counts():
    for variant, published in PUBLISHED_PARAMS_M.items():
        cfg = load_config(f"configs/cls/hrformer_{variant}.yaml")
        n = count_params(build_model(cfg))
        assert n == OUR_PARAMS[variant]
        assert abs(n / 1e6 - published) / published < 0.01, (variant, n)


@pytest.mark.slow
def test_published_models_forward_backward_224_and_256x192():
    torch.manual_seed(0)
    for variant in ("tiny", "small", "base"):
        model = build_model(load_config(f"configs/cls/hrformer_{variant}.yaml"))
        for h, w in ((224, 224), (256, 192)):  # 256x192: branch maps 64x48..8x6, none a multiple of 7
            model.zero_grad(set_to_none=True)
            out = model(torch.randn(1, 3, h, w))
            assert out.shape == (1, 1000)
            out.logsumexp(1).sum().backward()
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        del model


def test_drop_path_ramp_and_tiny_classifier_any_size():
    cfg = load_config("configs/cls/hrformer_base.yaml", TINY_OPTS + ["DATASET.NUM_CLASSES", "5",
                                                                     "MODEL.HRT.NUM_HEADS", "[1, 1, 1, 1]"])
    model = build_model(cfg)
    rates = [m.p for m in model.modules() if type(m).__name__ == "DropPath"]
    assert len(rates) == 2 + 3 + 4  # one block per branch; the ramp has 3 slots (0, 0.1, 0.2), one per stage
    assert sorted(set(round(r, 6) for r in rates)) == [0.0, 0.1, 0.2]
    model.eval()
    for h, w in ((33, 47), (64, 48)):
        assert model(torch.randn(2, 3, h, w)).shape == (2, 5)


def test_hrformer_pose_heatmaps_and_all_parameters_used():
    cfg = load_config("", TINY_OPTS + ["MODEL.NAME", "hrformer_pose", "MODEL.NUM_JOINTS", "17"])
    model = build_model(cfg)
    out = model(torch.randn(2, 3, 64, 48))
    assert out.shape == (2, 17, 16, 12)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())  # last module fuses into branch 0 only
    assert model.arch_parameters() == []


@pytest.mark.slow
def test_model_info_prints_params_and_macs(capsys):
    from tools.model_info import main
    assert main(["--cfg", "configs/cls/hrformer_tiny.yaml", "--input-size", "224", "224"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2] == f"params {OUR_PARAMS['tiny']}"
    macs = int(lines[-1].split()[1])
    assert lines[-1].startswith("macs ") and lines[-3] == f"flops {2 * macs}"
    assert 1.6e9 < macs < 1.83e9  # conv/linear/bmm MACs; the README's 1.83 G also counts BN, adds, softmax
    from src.engine.cli import run_cli
    assert run_cli(main, ["--cfg", "configs/cls/missing.yaml"]) == 2  # a config error, like train.py
    assert "config file not found" in capsys.readouterr().err
