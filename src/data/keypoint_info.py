"""Keypoint metadata: names, left/right flip pairs, skeletons (0-based) and COCO OKS sigmas."""
import numpy as np

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
COCO_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0

# MPII native order (HRNet / SimpleBaseline JSON layout).
MPII_KEYPOINTS = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
)
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
MPII_SKELETON = (
    (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
    (10, 11), (11, 12), (12, 7), (7, 13), (13, 14), (14, 15),
)
MPII_HEAD_TOP, MPII_UPPER_NECK = 9, 8

_LOWER_BODY_WORDS = ("hip", "knee", "ankle", "pelvis")
_SIDES = (("left_", "right_"), ("l_", "r_"))


def flip_pairs_from_names(names) -> tuple:
    """(left, right) index pairs of names such as left_x/right_x or l_x/r_x."""
    index = {n: i for i, n in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        for left, right in _SIDES:
            if name.startswith(left) and right + name[len(left):] in index:
                pairs.append((i, index[right + name[len(left):]]))
    return tuple(pairs)


def upper_body_ids(names) -> tuple:
    """Joints above the hips (used by the half-body augmentation)."""
    return tuple(i for i, n in enumerate(names) if not any(w in n for w in _LOWER_BODY_WORDS))


def flip_permutation(num_joints: int, flip_pairs) -> np.ndarray:
    """Index array that swaps every left/right pair."""
    perm = np.arange(num_joints)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm
