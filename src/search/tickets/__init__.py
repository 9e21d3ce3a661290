"""SuperTickets (ECCV'22): sparse tickets drawn from a supernet while it trains and shrinks.

| module             | holds                                                                            |
|--------------------|----------------------------------------------------------------------------------|
| `masks.py`         | prunable tensors (TICKET.INCLUDE / EXCLUDE), attaching / reading / folding masks |
| `scores.py`        | weight scores: magnitude, lamp, random, snip, synflow (one interface)            |
| `schedule.py`      | the density schedule (cubic / linear / oneshot) and its formula                  |
| `pruner.py`        | one global step with `torch.nn.utils.prune.global_unstructured`; random masks    |
| `ticket_pruner.py` | the run's pruning state: steps, kept / rewound values, masks across shrinks      |
| `report.py`        | true density per layer, non-zero parameters, sparse MACs per layer               |
| `transfer.py`      | ticket files: retrain with fixed masks, transfer of a ticket's backbone          |

The trainer runs it through `TicketHook` (src/engine/hooks.py).
"""
