"""Graphviz pictures of the fabrics of a genotype: one cluster per fabric (searchable backbone, then each
part), cells on a grid (layers left to right, scales top to bottom) labelled with their kept op(s) and
alpha, input edges drawn with width and colour by softmaxed beta, and a legend.

view "derived": only the kept cells and inputs. view "supernet" (needs the genotype's search record): every
supernet cell and input, the pruned ones grey and dashed. Cell nodes carry the SVG id `cell-<fabric>-<name>`
and class `cell kept` / `cell pruned`. Without the `dot` binary the `.dot` source is written instead, with
the command that renders it. A ScaleNAS subnet ("scale" section) is drawn as its branches (rows), blocks
(one node per module and depth) and fusion edges.
"""
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import graphviz

from src.architecture.fabric.cell import SCALE_OFFSET, CellSpec, cell_name, edge_layout
from src.architecture.fabric.spec import FabricSpec
from src.architecture.genotype.genotype import Genotype, search_records
from src.architecture.genotype.search_record import FabricRecord
from src.architecture.hr.spec import HRDenseGenotype, HRGenotype
from src.architecture.scale.section import ScaleGenotype
from src.utils.atomic import atomic_write

VIEWS = ("derived", "supernet")
FORMATS = ("svg", "png", "pdf")
_RAMP = ((0.0, (198, 219, 239)), (0.33, (107, 174, 214)), (0.66, (33, 113, 181)), (1.0, (203, 24, 29)))
_PRUNED = "#b0b0b0"


def beta_colour(v: float) -> str:
    """Light blue (0) -> dark blue -> red (1)."""
    v = min(1.0, max(0.0, v))
    for (a, ca), (b, cb) in zip(_RAMP, _RAMP[1:]):
        if v <= b:
            t = (v - a) / (b - a)
            return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb))
    return "#cb181d"


def _edge_attrs(beta: Optional[float], pruned: bool) -> Dict[str, str]:
    if pruned:
        return {"style": "dashed", "color": _PRUNED, "penwidth": "0.8", "fontcolor": _PRUNED, "fontsize": "8",
                **({"label": f"{beta:.2f}"} if beta is not None else {})}
    if beta is None:  # a same-scale input node (not mixed by beta)
        return {"style": "dotted", "color": "#555555", "penwidth": "1.0"}
    return {"color": beta_colour(beta), "penwidth": f"{0.6 + 5 * beta:.2f}", "label": f"{beta:.2f}",
            "fontsize": "8"}


def _op_lines(cell: CellSpec, sup: Optional[CellSpec], alpha: Optional[Dict[int, tuple]],
              spec: FabricSpec) -> List[str]:
    """One line per kept edge: its kept op(s) with the alpha that chose them (`sup`, `alpha`: the supernet
    cell and its softmaxed alpha per edge, when the genotype has a search record)."""
    layout = edge_layout(spec.input_nodes_num, spec.hidden_states_num)
    lines = []
    for e, ops in sorted(cell.edges.items()):
        if sup is not None:
            values = dict(zip(sup.edges[e], alpha[e]))
        else:
            values = dict(zip(ops, (cell.op_weights or {}).get(e, [1.0 / len(ops)] * len(ops))))
        text = " + ".join(f"{o} {values[o]:.2f}" for o in ops)
        lines.append(text if len(layout) == 1 else f"e{e}: {text}")
    return lines


def _fabric_cluster(graph: graphviz.Digraph, idx: int, label: str, spec: FabricSpec, record: Optional[FabricRecord],
                    view: str, sink: str) -> None:
    rows = len(spec.size_types)
    kept = {c.name: c for c in spec.cells}
    shown = record.fabric if view == "supernet" else spec
    cells = {c.name: c for c in shown.cells}
    sup = {c.name: c for c in record.fabric.cells} if record is not None else {}
    first, last = spec.input_layer, max(c.layer for c in cells.values())
    node = {}
    with graph.subgraph(name=f"cluster_{idx}") as cl:
        cl.attr(label=label, style="rounded", color="#888888", fontname="Helvetica")
        previous: List[str] = []
        for layer in range(first, last + 1):
            column = []
            for s in range(rows):
                nid = f"f{idx}_L{layer}_S{s}"
                name = cell_name(layer, s)
                if layer == first and s in spec.input_scales:
                    cl.node(nid, f"input 1/{spec.size_types[s]}", shape="box", style="filled",
                            fillcolor="#eeeeee", fontname="Helvetica", fontsize="10")
                    node[(layer, s)] = nid
                elif name in cells:
                    ok = name in kept
                    text = "\\n".join([f"{name}  1/{spec.size_types[s]}"]
                                      + (_op_lines(kept[name], sup.get(name), record and record.alpha[name],
                                                   spec) if ok else ["pruned"]))
                    attrs = ({"style": "filled,rounded", "fillcolor": "#dbe9f6", "color": "#2b5d8c"} if ok else
                             {"style": "dashed,rounded", "color": _PRUNED, "fontcolor": _PRUNED})
                    cl.node(nid, text, shape="box", fontname="Helvetica", fontsize="10",
                            id=f"cell-{idx}-{name}", **{"class": "cell kept" if ok else "cell pruned"}, **attrs)
                    node[(layer, s)] = nid
                else:
                    cl.node(nid, "", style="invis", width="1.6", height="0.5")
                column.append(nid)
            with cl.subgraph(name=f"col_{idx}_{layer}") as col:
                col.attr(rank="same")
                for nid in column:
                    col.node(nid)
                for a, b in zip(column, column[1:]):  # LR layouts stack a rank bottom-up: order coarse -> fine
                    col.edge(b, a, style="invis")
            for a, b in zip(previous, column):  # keep each scale on one row
                cl.edge(a, b, style="invis", weight="20")
            previous = column
        for name, c in cells.items():
            head = node[(c.layer, c.scale)]
            derived = kept.get(name)
            if record is not None:
                betas = dict(zip(sup[name].inputs, record.beta[name]))
            else:
                betas = dict(zip(c.inputs, c.input_weights or [1.0 / len(c.inputs)] * len(c.inputs)))
            for kind in c.inputs:
                src = node[(c.layer - 1, c.scale + SCALE_OFFSET[kind])]
                pruned = derived is None or kind not in derived.inputs
                cl.edge(src, head, **_edge_attrs(betas[kind], pruned))
            for k in c.input_nodes:
                if k > 0:
                    cl.edge(node[(c.layer - 1 - k, c.scale)], head, constraint="false",
                            **_edge_attrs(None, derived is None))
        for out in spec.outputs:
            c = kept[out]
            graph.edge(node[(c.layer, c.scale)], sink, color="#555555")


def _legend(graph: graphviz.Digraph) -> None:
    swatches = "".join(f'<TD BGCOLOR="{beta_colour(v)}" WIDTH="18"> </TD>' for v in (0.0, 0.25, 0.5, 0.75, 1.0))
    html = ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2">'
            '<TR><TD COLSPAN="6"><B>legend</B></TD></TR>'
            f'<TR><TD ALIGN="LEFT">input edge: width, colour, label = softmaxed beta 0 to 1</TD>{swatches}</TR>'
            '<TR><TD ALIGN="LEFT" COLSPAN="6">dotted edge: same-scale input node of an earlier layer</TD></TR>'
            '<TR><TD ALIGN="LEFT" COLSPAN="6">cell: name, stride 1/s, kept op(s) with softmaxed alpha</TD></TR>'
            '<TR><TD ALIGN="LEFT" COLSPAN="6"><FONT COLOR="#909090">grey dashed: pruned (supernet view)'
            '</FONT></TD></TR></TABLE>>')
    with graph.subgraph(name="cluster_legend") as lg:
        lg.attr(label="", color="#cccccc")
        lg.node("legend", html, shape="plaintext", fontname="Helvetica", fontsize="10")


def _hr_cluster(graph: graphviz.Digraph, hr: HRGenotype) -> None:
    """One node per HR-supernet branch (top = 1/4) with its width, surviving blocks, hidden channels and tokens."""
    hr = hr.backbone if isinstance(hr, HRDenseGenotype) else hr  # hr_dense wraps the supernet genotype
    blocks = hr.blocks
    with graph.subgraph(name="cluster_hr") as cl:
        cl.attr(label="HR supernet (surviving)", style="rounded", color="grey40", fontname="Helvetica")
        previous = None
        for i, (width, alive) in enumerate(zip(hr.widths, hr.branches)):
            mine = [b for name, b in blocks.items() if _branch_of(name) == i]
            paths = sum(len(b.kernels) for b in mine)
            hidden = sum(sum(b.channels) for b in mine)
            tokens = sum(b.tokens for b in mine)
            skips = sum(1 for b in mine if not b.kernels)
            label = (f"branch 1/{4 * 2 ** i}  width {width}\n{len(mine)} blocks ({skips} skip only), "
                     f"{paths} kernel paths\nhidden channels {hidden}" + (f", tokens {tokens}" if tokens else ""))
            node = f"hr_{i}"
            cl.node(node, label if alive else f"branch 1/{4 * 2 ** i} removed", shape="box", fontname="Helvetica",
                    fontsize="9", style="rounded,filled" if alive else "rounded,dashed",
                    fillcolor="#fde9d9", color="grey40" if alive else "grey70")
            if previous is not None:
                cl.edge(previous, node, style="invis")
            previous = node


def _branch_of(block_name: str) -> int:
    """Branch index of an HR block name: `stages.S.parallel.B.k` -> B, `stages.S.fuse.edges.I_O` -> O."""
    parts = block_name.split(".")
    if "parallel" in parts:
        return int(parts[parts.index("parallel") + 1])
    if "edges" in parts:
        return int(parts[parts.index("edges") + 1].split("_")[-1])
    return -1


def _scale_cluster(graph: graphviz.Digraph, scale: ScaleGenotype) -> None:
    """A ScaleNAS subnet: one row per branch (top = 1/4), one node per block (module m, depth d) left to
    right, and a fusion edge k -> i after block d for every bit that is on (coloured by the source branch)."""
    space, colours = scale.space, ("#2b5d8c", "#cb181d", "#238b45", "#6a51a3")
    with graph.subgraph(name="cluster_scale") as cl:
        cl.attr(label=f"ScaleNAS subnet ({space.block} blocks, depth list {list(space.depth_list)})",
                style="rounded", color="grey40", fontname="Helvetica")
        last = {}  # branch -> its latest node
        for b, w in enumerate(space.widths):
            last[b] = f"sc_in{b}"
            cl.node(last[b], f"branch 1/{4 * 2 ** b}\nwidth {w}", shape="box", style="filled", fillcolor="#eeeeee",
                    fontname="Helvetica", fontsize="9")
        for b in range(1, len(space.widths)):
            cl.edge(last[b - 1], last[b], style="invis")
        for m, choice in enumerate(scale.subnet.modules):
            n = len(choice.depths)
            for d in range(max(choice.depths)):
                nodes = {}
                for i in range(n):
                    if d < choice.depths[i]:
                        nodes[i] = f"sc_m{m}_b{i}_d{d}"
                        cl.node(nodes[i], f"m{m} d{d + 1}/{choice.depths[i]}", shape="box", style="rounded,filled",
                                fillcolor="#dbe9f6", fontname="Helvetica", fontsize="8")
                        cl.edge(last[i], nodes[i], color="#555555", weight="10")
                with cl.subgraph(name=f"sc_rank_{m}_{d}") as col:
                    col.attr(rank="same")
                    for nid in nodes.values():
                        col.node(nid)
                for i, nid in nodes.items():
                    for k, on in enumerate(choice.fusion[i][d]):
                        if on and k != i:
                            cl.edge(nodes.get(k, last[k]), nid, color=colours[k % len(colours)], constraint="false",
                                    arrowsize="0.5", penwidth="0.8")
                last.update(nodes)


def fabric_graph(g: Genotype, view: str = "derived") -> graphviz.Digraph:
    """The graphviz source of every fabric of a genotype."""
    if view not in VIEWS:
        raise ValueError(f"render view must be one of {VIEWS}, got '{view}'")
    records = search_records(g)
    fabrics: List[Tuple[str, str, FabricSpec]] = g.arch.fabrics()
    if not fabrics and g.arch.hr is None and g.arch.scale is None:
        raise ValueError(f"genotype of model '{g.model}' has no fabric, HR or ScaleNAS part to render")
    if view == "supernet" and not all(path in records for path, _, _ in fabrics):
        raise ValueError("the supernet view needs the genotype's search record (render --view derived instead)")
    graph = graphviz.Digraph("fabricnas", graph_attr={"rankdir": "LR", "newrank": "true", "nodesep": "0.2",
                                                      "ranksep": "0.5", "fontname": "Helvetica",
                                                      "label": f"{g.model} ({view} view)", "labelloc": "t"})
    for idx, (path, label, spec) in reversed(list(enumerate(fabrics))):  # declared last = drawn on top
        if path.startswith("parts."):
            part = g.arch.parts[int(path.split(".")[1])]
            sink = f"out_{idx}"
            graph.node(sink, f"head\\n{len(part.joints)} joints", shape="ellipse", fontname="Helvetica",
                       fontsize="10")
        else:
            sink = f"out_{idx}"
            graph.node(sink, "backbone maps\\n(to every part)", shape="ellipse", fontname="Helvetica",
                       fontsize="10")
        _fabric_cluster(graph, idx, label, spec, records.get(path), view, sink)
    if g.arch.hr is not None:
        _hr_cluster(graph, g.arch.hr)
    if g.arch.scale is not None:
        _scale_cluster(graph, g.arch.scale)
    if fabrics or g.arch.hr is not None:  # the legend explains fabric cells and edges
        _legend(graph)
    return graph


def render_genotype(g: Genotype, out: str, view: str = "derived", log_fn=print) -> str:
    """Write the picture to `out` (.svg, .png or .pdf); without `dot`, write `<out>.dot` and say how to render
    it. Returns the path written."""
    fmt = os.path.splitext(out)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"render output {out} must end in one of {', '.join('.' + f for f in FORMATS)}")
    graph = fabric_graph(g, view)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if shutil.which("dot") is None:
        path = os.path.splitext(out)[0] + ".dot"
        _write(path, graph.source.encode())
        log_fn(f"graphviz 'dot' not found: wrote {path}; render it with: dot -T{fmt} {path} -o {out}")
        return path
    _write(out, graph.pipe(format=fmt))
    return out


def _write(path: str, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
