"""ONNX export (src/engine/onnx_export.py, tools/export_onnx.py): onnxruntime parity on a small network of each
supported kind (derived part fabric, shrunk HR-NAS, HRFormer), the command line end to end, and refusals."""
import json

import onnx
import pytest
import torch

from src.architecture.fabric.depthwise import DepthwiseConv2d
from src.architecture.genotype.genotype import genotype_of, save_genotype
from src.config.loader import load_config, save_config
from src.engine.cli import run_cli
from src.engine.onnx_export import export_onnx
from src.engine.trainer import place
from src.network_factory.from_genotype import build_from_genotype, run_fields
from src.network_factory.registry import build_model
from src.search.slimming import build_slimmer
from tests.test_hr_supernet import tiny_cfg as hr_tiny_cfg
from tests.test_hrt import TINY_OPTS as HRFORMER_TINY
from tests.test_prune_genotype import prune, quiet, searched, tiny_cfg
from tests.test_slimming import randomize_bn, zero_gates
from tools.export_onnx import main

IMAGE = (3, 64, 48)  # the tiny configs' MODEL.INPUT_SIZE [48, 64]
CPU = torch.device("cpu")


def derived_part_net(parts: int):
    cfg = tiny_cfg(**{"MODEL.PARTS.NUM": parts})
    derived, g = prune(searched(cfg), cfg, log_fn=quiet)
    return cfg, derived, g


def shrunk_hr_net():
    """A tiny hr_dense supernet with a token transformer and an HRT part, slimmed (a path, a whole block and
    tokens removed), rebuilt from its genotype with its weights."""
    cfg = hr_tiny_cfg(STAGE_BLOCKS=[[1], [1, 1], [1, 1, 1]], WIDTHS=[4, 8, 12], TRANSFORMER_TOKENS=3,
                      TRANSFORMER_BLOCKS=["stages.2.parallel.2.*"], HRT_BLOCKS=["stages.2.parallel.2.*"])
    cfg.MODEL.NAME, cfg.MODEL.HRT.WINDOW_SIZE, cfg.SLIM.METHOD = "hr_dense", 2, "slimming"
    torch.manual_seed(0)
    model = build_model(cfg)
    randomize_bn(model)
    zero_gates(model.backbone, "stages.1.parallel.0.0", {1: list(range(8))})
    zero_gates(model.backbone, "stages.2.parallel.1.0")
    zero_gates(model.backbone, "stages.2.parallel.2.0", {"tokens": [0]})
    assert build_slimmer(cfg, model).shrink() is not None
    g = genotype_of(run_fields(cfg), model)
    rebuilt = build_from_genotype(cfg, g)
    rebuilt.load_state_dict(model.state_dict())
    return cfg, rebuilt


def check(report):
    assert report["max_abs_diff"] <= report["tolerance"] and report["batches"] == [1, 2, 3]


def test_derived_part_fabric_with_shared_joints_exports_as_plain_onnx(tmp_path):
    cfg, derived, _ = derived_part_net(parts=8)  # P = 8: shoulders, elbows and knees averaged over two parts
    path = str(tmp_path / "net.onnx")
    check(export_onnx(place(cfg, derived, CPU), path, IMAGE, "heatmaps"))
    graph = onnx.load(path).graph
    assert {n.domain for n in graph.node} <= {""}  # standard ops only: no PythonOp of DepthwiseConv2d
    assert "ScatterElements" not in {n.op_type for n in graph.node}
    groups = [a.i for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
    assert max(groups) > 1  # the fabric's depthwise convs are grouped Convs
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", 3, 64, 48]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]


def test_part_joint_gathers_compute_what_index_add_did():
    model = searched(tiny_cfg(**{"MODEL.PARTS.NUM": 8}))
    x = torch.randn(2, *IMAGE)
    with torch.no_grad():
        outs = torch.cat([part(model.backbone(x)) for part in model.parts], 1)
        index = torch.tensor([j for joints in model.part_joints for j in joints])
        want = outs.new_zeros(2, model.num_joints, *outs.shape[2:]).index_add(1, index, outs)
        assert torch.equal(model(x), want / model.joint_count.view(1, -1, 1, 1))


def test_depthwise_conv_keeps_its_function_when_training_and_is_a_plain_conv_otherwise():
    conv = DepthwiseConv2d(4, 3, dilation=2)
    x = torch.randn(2, 4, 9, 7)
    y = conv(x)
    assert type(y.grad_fn).__name__ == "_DepthwiseConvBackward"  # the cheap double backward
    with torch.no_grad():
        assert torch.equal(conv(x), y.detach())


def test_shrunk_hr_nas_network_exports_in_channels_last(tmp_path):
    cfg, net = shrunk_hr_net()
    net = place(cfg, net, CPU)  # MEMORY_FORMAT auto: channels_last weights, HR blocks' channels_last inputs
    assert net.final.weight.is_contiguous(memory_format=torch.channels_last)
    check(export_onnx(net, str(tmp_path / "hr.onnx"), IMAGE))


def test_hrformer_pose_exports(tmp_path):
    cfg = load_config("", HRFORMER_TINY + ["MODEL.NAME", "hrformer_pose", "MODEL.INPUT_SIZE", "[48, 64]",
                                           "MODEL.HRT.WINDOW_SIZE", "3"])  # windows pad the 12x16 branch
    torch.manual_seed(0)
    check(export_onnx(place(cfg, build_model(cfg), CPU), str(tmp_path / "hrformer.onnx"), IMAGE))


def test_cli_exports_a_genotype_with_its_checkpoint(tmp_path, capsys):
    cfg, derived, g = derived_part_net(parts=3)
    genotype = save_genotype(g, str(tmp_path / "genotype.json"))
    torch.save({"model": derived.state_dict(), "epoch": 1}, tmp_path / "best.pth")
    out = tmp_path / "out" / "net.onnx"
    argv = ["--genotype", genotype, "--ckpt", str(tmp_path / "best.pth"), "--out", str(out), "--runs", "2",
            "MEMORY_FORMAT", "contiguous"]  # KEY VALUE on top of the genotype's run fields
    assert run_cli(main, argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["out"] == str(out) and summary["bytes"] == out.stat().st_size > 0
    assert summary["input"]["shape"] == ["batch", 3, 64, 48] and summary["output"] == "heatmaps"
    assert summary["parity"]["max_abs_diff"] <= summary["parity"]["tolerance"]
    assert summary["latency"]["pytorch_ms"] > 0 and summary["latency"]["onnxruntime_ms"] > 0
    assert "tolerance" in captured.err and "onnxruntime" in captured.err
    assert [p.name for p in out.parent.iterdir()] == ["net.onnx"]


def test_cli_refuses_a_supernet_in_one_line_and_writes_nothing(tmp_path, capsys):
    save_config(tiny_cfg(), str(tmp_path / "search.yaml"))
    out = tmp_path / "net.onnx"
    assert run_cli(main, ["--cfg", str(tmp_path / "search.yaml"), "--random-init", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: MODEL.NAME part_cnf is a search space") and "\n" not in err
    assert list(tmp_path.iterdir()) == [tmp_path / "search.yaml"]


def test_rejected_ops_and_arch_parameters_are_refused_and_nothing_is_written(tmp_path):
    class Spectrum(torch.nn.Module):
        def forward(self, x):
            return torch.fft.rfft2(x).abs()

    with pytest.raises(ValueError, match="cannot export Spectrum to ONNX: .*fft_rfft2") as err:
        export_onnx(Spectrum(), str(tmp_path / "fft.onnx"), IMAGE)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="arch parameters .* supernet cannot be exported"):
        export_onnx(searched(tiny_cfg()), str(tmp_path / "supernet.onnx"), IMAGE)
    assert list(tmp_path.iterdir()) == []
