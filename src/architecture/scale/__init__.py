"""The ScaleNAS space (one-shot multi-scale supernet): its spec and sampling operations (space.py), a
subnet's typed choice (subnet.py), the supernet / standalone subnet network (supernet.py) and the
genotype section "scale" (section.py)."""
