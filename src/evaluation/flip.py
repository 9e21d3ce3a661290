"""Flip test: average the heatmaps of the image and of its mirror (flipped back, left/right swapped)."""
import torch


def flip_back(heatmaps: torch.Tensor, flip_pairs) -> torch.Tensor:
    """Mirror [N, K, H, W] heatmaps horizontally and swap the left/right channels.

    With the geometry convention (heatmap pixel u at input s*u + (s-1)/2) a plain flip is exact: no shift.
    """
    perm = list(range(heatmaps.shape[1]))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return heatmaps.flip(3)[:, perm]


@torch.no_grad()
def infer_heatmaps(model, images: torch.Tensor, flip_pairs, flip_test: bool) -> torch.Tensor:
    """Model heatmaps of a batch, averaged with the flipped pass when `flip_test`."""
    heatmaps = model(images)
    if flip_test:
        heatmaps = 0.5 * (heatmaps + flip_back(model(images.flip(3)), flip_pairs))
    return heatmaps
