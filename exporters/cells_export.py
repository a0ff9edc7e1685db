"""Exported SNASNet graphs for cost models: the cells' identity sum nodes collapsed into fan-in.

``to_nir`` exports SNASNet (``nasflow.spaces.snasnet``) and its cells (``nasflow.snn.cells``) through the
generic wiring converter (``exporters.nir_wiring``): in a cell with backward edges every node ``j`` is an
identity ``Scale`` node ``<cell>.node{j}``, the one node a backward edge (a NIR back edge) ends in.
Hardware models map connections between neurons, so ``collapse_sums`` re-routes those sums.
"""

from __future__ import annotations

import nir
import numpy as np

__all__ = ["collapse_sums"]


def collapse_sums(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph without the cells' identity sum nodes (``<cell>.node{j}``): every edge into one is re-routed
    to each of its consumers, so fan-in sums sit at the neurons, as ``hwmodels`` maps connections.

    For cost models only: with the sum nodes gone a backward edge ends in several neurons, and NIR's
    DFS rule can no longer mark all of them as back edges, so do not simulate the result.
    """
    sums = {k for k, n in graph.nodes.items() if k.rsplit(".", 1)[-1].startswith("node")
            and type(n).__name__ == "Scale" and np.all(np.asarray(n.scale) == 1.0)}
    edges = [tuple(e) for e in graph.edges]
    for s in sums:
        ins = [a for a, b in edges if b == s]
        outs = [b for a, b in edges if a == s]
        edges = [e for e in edges if s not in e] + [(a, b) for a in ins for b in outs]
    nodes = {k: v for k, v in graph.nodes.items() if k not in sums}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata), type_check=False)
