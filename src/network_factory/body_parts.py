"""Body-part groups of the part-specific CNFs: `body_parts(num_joints, P) -> [(part name, joint indices)]`.

17 joints = COCO order, 16 joints = native MPII order (as in the HRNet MPII JSON). P = 1 works for any
joint count. P = 1, 3, 5 partition the joints; P = 8 shares each shoulder (head_shoulder, upper arm), elbow
(upper arm, lower arm) and knee (upper_legs, lower leg) between two parts, whose predictions are averaged.
"""
from typing import Dict, List, Tuple

COCO_JOINTS = ("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
               "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle")
MPII_JOINTS = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax", "upper_neck",
               "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist")

_ARMS = ("l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist")
_LIMB_PARTS = (("l_upper_arm", ("l_shoulder", "l_elbow")), ("r_upper_arm", ("r_shoulder", "r_elbow")),
               ("l_lower_arm", ("l_elbow", "l_wrist")), ("r_lower_arm", ("r_elbow", "r_wrist")))
_LOWER_LEGS = (("l_lower_leg", ("l_knee", "l_ankle")), ("r_lower_leg", ("r_knee", "r_ankle")))
_KNEES_ANKLES = ("l_knee", "r_knee", "l_ankle", "r_ankle")

_COCO_HEAD = ("nose", "l_eye", "r_eye", "l_ear", "r_ear")
_MPII_HEAD = ("head_top", "upper_neck", "thorax")
_COCO_HIPS = ("l_hip", "r_hip")
_MPII_HIPS = ("pelvis", "l_hip", "r_hip")

_TABLES: Dict[int, Tuple[Tuple[str, ...], Dict[int, tuple]]] = {
    17: (COCO_JOINTS, {
        3: (("head", _COCO_HEAD), ("upper_limb", _ARMS), ("lower_limb", _COCO_HIPS + _KNEES_ANKLES)),
        5: (("head_shoulder", _COCO_HEAD + ("l_shoulder", "r_shoulder")), ("l_arm", ("l_elbow", "l_wrist")),
            ("r_arm", ("r_elbow", "r_wrist")), ("hips", _COCO_HIPS), ("legs", _KNEES_ANKLES)),
        8: (("head_shoulder", _COCO_HEAD + ("l_shoulder", "r_shoulder")),) + _LIMB_PARTS
           + (("upper_legs", _COCO_HIPS + ("l_knee", "r_knee")),) + _LOWER_LEGS,
    }),
    16: (MPII_JOINTS, {
        3: (("head", _MPII_HEAD), ("upper_limb", _ARMS), ("lower_limb", _MPII_HIPS + _KNEES_ANKLES)),
        5: (("head_shoulder", _MPII_HEAD + ("l_shoulder", "r_shoulder")), ("l_arm", ("l_elbow", "l_wrist")),
            ("r_arm", ("r_elbow", "r_wrist")), ("hips", _MPII_HIPS), ("legs", _KNEES_ANKLES)),
        8: (("head_shoulder", _MPII_HEAD + ("l_shoulder", "r_shoulder")),) + _LIMB_PARTS
           + (("upper_legs", _MPII_HIPS + ("l_knee", "r_knee")),) + _LOWER_LEGS,
    }),
}


def body_parts(num_joints: int, num_parts: int) -> List[Tuple[str, List[int]]]:
    """[(part name, joint indices)] for P = `num_parts`; every joint is in at least one part."""
    if num_parts == 1:
        return [("all", list(range(num_joints)))]
    if num_joints not in _TABLES:
        raise ValueError(f"MODEL.PARTS.NUM={num_parts} needs 17 (COCO) or 16 (MPII) joints, got {num_joints}")
    names, table = _TABLES[num_joints]
    if num_parts not in table:
        raise ValueError(f"MODEL.PARTS.NUM must be 1, 3, 5 or 8, got {num_parts}")
    return [(part, [names.index(j) for j in joints]) for part, joints in table[num_parts]]
