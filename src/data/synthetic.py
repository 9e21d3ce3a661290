"""Embedded synthetic pose data set: articulated humanoids written in exact COCO keypoint format.

Every left/right cue is mirror-consistent, as for real people: a figure wears one palette on both sides,
limb seam stripes sit on the lateral side of both limbs, and which limb is the person's left follows only
from the way the figure faces. Front views show a face (eyes, nose, mouth), a neckline and a belt buckle,
with the person's left on the image right; back views (`BACK_VIEW_P` of the figures) show hair over the
back of the head, no face and hip pockets, with the person's left on the image left. So the mirror image of a figure
with left/right labels swapped is again a figure of the set (`mirror_figure`), as flip augmentation and the
flip test assume.
Visibility follows COCO: v=2 visible, v=1 labelled but occluded (by another figure, a random occluder, the
figure's own parts, or the head for a turned face), v=0 not labelled with x=y=0 (outside the image, or the
nose and eyes of a back view).
"""
import colorsys
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from src.data.generated import ensure_generated
from src.data.keypoint_info import COCO_FLIP_PAIRS, COCO_KEYPOINTS, COCO_SKELETON, flip_permutation

KEYPOINT_NAMES = list(COCO_KEYPOINTS)
SKELETON = [[a + 1, b + 1] for a, b in COCO_SKELETON]  # 1-based, as in COCO files
PERSON_CATEGORY = {"id": 1, "name": "person", "supercategory": "person",
                   "keypoints": KEYPOINT_NAMES, "skeleton": SKELETON}
FLIP_INDEX = flip_permutation(len(KEYPOINT_NAMES), COCO_FLIP_PAIRS)

BACK_VIEW_P = 0.4  # share of figures seen from behind
_SPLITS = {"train": (0, 1), "val": (1, 1_000_001)}  # split -> (seed stream, first image id)
_OCCLUDER = 250  # owner-map value of random occluders (figures use 1 + 8 * index + group)
OCCLUDER_PART = 6  # `part_map` value of occluder pixels (body-part groups are 0..5)
# body-part groups: 0 head, 1 torso, 2/3 left/right arm, 4/5 left/right leg
_KP_GROUPS = [{0}] * 5 + [{1, 2}, {1, 3}, {2}, {3}, {2}, {3}, {1, 4}, {1, 5}, {4}, {5}, {4}, {5}]
# face keypoints: (index, azimuth towards the person's left, radius and height in head radii)
_FACE = [(0, 0.0, 0.85, -0.1), (1, 32.0, 0.78, 0.2), (2, -32.0, 0.78, 0.2), (3, 90.0, 0.98, 0.0),
         (4, -90.0, 0.98, 0.0)]


def _rgb(h, s, v):
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _cloth(rng):
    if rng.random() < 0.3:
        return _rgb(0, 0, rng.uniform(0.08, 0.95))
    return _rgb(rng.random(), rng.uniform(0.3, 0.95), rng.uniform(0.2, 0.95))


def _shade(colour, factor):
    return tuple(int(min(255, c * factor)) for c in colour)


def _palette(rng):
    """One figure's colours, worn on both sides alike."""
    skin_v = rng.uniform(0.4, 0.98)
    skin = _rgb(rng.uniform(0.02, 0.11), rng.uniform(0.25, 0.65), skin_v)
    hair = _rgb(rng.uniform(0.0, 0.12), rng.uniform(0.2, 0.8), rng.uniform(0.04, max(0.1, skin_v - 0.3)))
    shirt, pants = _cloth(rng), _cloth(rng)
    sleeve = shirt if rng.random() < 0.7 else _cloth(rng)
    return {"skin": skin, "hair": hair, "shirt": shirt, "pants": pants, "sleeve": sleeve,
            "forearm": skin if rng.random() < 0.3 else sleeve,  # short sleeves
            "shin": skin if rng.random() < 0.15 else pants,  # shorts
            "shoe": _rgb(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.05, 0.4)),
            "buckle": _rgb(rng.uniform(0.1, 0.16), rng.uniform(0, 0.5), rng.uniform(0.75, 1.0))}


def _mixture(rng, p_rest, rest, wide):
    """Joint angle (degrees): a clipped normal `rest` = (mean, std, lo, hi) or a uniform `wide` range."""
    if rng.random() < p_rest:
        mean, std, lo, hi = rest
        return float(np.clip(rng.normal(mean, std), lo, hi))
    return float(rng.uniform(*wide))


def _foreshorten(rng, p):
    return 1.0 if rng.random() >= p else float(rng.uniform(0.55, 1.0))


def sample_figure(rng, height):
    """Description of one humanoid of nominal standing `height`: sizes, palette, facing, pose of each side.

    Angles are in image degrees; limb angles point outwards from the body midline, so the description is
    the same for either side and `mirror_figure` only swaps the sides and negates the turns.
    """
    L = float(height)
    size = lambda base: float(base * L * rng.uniform(0.92, 1.08))  # noqa: E731
    front = bool(rng.random() >= BACK_VIEW_P)
    fig = {"L": L, "front": front, "r_head": size(0.075), "neck": size(0.03), "torso": size(0.29),
           "sh_hw": size(0.105), "hip_hw": size(0.068), "upper_arm": size(0.165), "forearm": size(0.15),
           "thigh": size(0.24), "shin": size(0.235), "arm_w": max(2.0, 0.065 * L * rng.uniform(0.85, 1.15)),
           "leg_w": max(3.0, 0.095 * L * rng.uniform(0.85, 1.15)), "palette": _palette(rng),
           "tilt": float(np.clip(rng.normal(0, 8), -25, 25)) if rng.random() < 0.9 else float(rng.uniform(-60, 60)),
           "head_tilt": float(np.clip(rng.normal(0, 10), -30, 30)),
           # head turn towards the person's left; a back view never turns far enough to show the face
           "yaw": float(np.clip(rng.normal(0, 30), -75, 75) if front else np.clip(rng.normal(0, 22), -55, 55)),
           "hair": bool(not front or rng.random() < 0.85),
           "hair_span": float(rng.uniform(55, 85) if front else rng.uniform(120, 140))}
    left_leg_under, left_arm_under = bool(rng.random() < 0.5), bool(rng.random() < 0.5)  # overlap order
    fig["sides"] = [{
        "upper_arm": _mixture(rng, 0.5, (15, 12, -10, 45), (-40, 175)), "fs_upper_arm": _foreshorten(rng, 0.3),
        "elbow": _mixture(rng, 0.4, (0, 15, -30, 30), (-150, 150)), "fs_forearm": _foreshorten(rng, 0.3),
        "thigh": _mixture(rng, 0.75, (6, 8, -15, 30), (-20, 85)), "fs_thigh": _foreshorten(rng, 0.25),
        "knee": _mixture(rng, 0.7, (0, 8, -20, 20), (-90, 90)), "fs_shin": _foreshorten(rng, 0.25),
        "arm_behind": bool(rng.random() < 0.12), "arm_under": left_arm_under == (side == 0),
        "leg_under": left_leg_under == (side == 0),
    } for side in (0, 1)]
    return fig


def mirror_figure(fig):
    """The horizontally mirrored figure with left/right swapped (its render is the flipped render of `fig`)."""
    out = dict(fig, sides=[dict(fig["sides"][1]), dict(fig["sides"][0])])
    for key in ("tilt", "head_tilt", "yaw"):
        out[key] = -fig[key]
    return out


def _build(fig):
    """Geometry around the pelvis at (0, 0): keypoints [17,2], labelled and hidden flags, primitives, margin."""
    L, pal, tilt = fig["L"], fig["palette"], fig["tilt"]
    arm_w, leg_w, r_head = fig["arm_w"], fig["leg_w"], fig["r_head"]
    facing = 1 if fig["front"] else -1  # image side (+1 right) of the person's left

    def d(phi):  # body-frame direction: phi degrees from "down" towards the image right
        a = np.deg2rad(phi - tilt)
        return np.array([np.sin(a), np.cos(a)])

    kp = np.zeros((17, 2))
    labelled, hidden = np.ones(17, bool), np.zeros(17, bool)
    neck_base = d(180) * fig["torso"]
    prims = {g: [] for g in range(6)}  # group -> list of (kind, geometry, colour)

    def limb(group, pts, widths, colours, s):
        segments = list(zip(pts[:-1], pts[1:], widths, colours))
        prims[group] += [("capsule", (a, b, w / 2), colour) for a, b, w, colour in segments]
        for a, b, w, colour in segments:  # seam stripe on the lateral side (s = image side of the limb)
            t = (b - a) / max(np.linalg.norm(b - a), 1e-6)
            sw = max(1.0, 0.3 * w)
            off = np.array([t[1], -t[0]]) * s * (w / 2 - sw / 2)
            prims[group].append(("capsule", (a + off, b + off, sw / 2), _shade(colour, 0.35)))

    corners = {}
    for side in (0, 1):  # side 0 = person's left
        s, p = (facing, -facing)[side], fig["sides"][side]
        out = d(90 * s)
        sh = kp[5 + side] = neck_base + out * fig["sh_hw"] + d(0) * 0.025 * L
        hip = kp[11 + side] = out * fig["hip_hw"]
        corners[side] = (sh + out * arm_w * 0.5 + d(180) * arm_w * 0.4, hip + out * leg_w * 0.5 + d(0) * leg_w * 0.3)

        phi1 = s * p["upper_arm"]
        kp[7 + side] = sh + d(phi1) * fig["upper_arm"] * p["fs_upper_arm"]
        phi2 = phi1 + s * p["elbow"]
        kp[9 + side] = kp[7 + side] + d(phi2) * fig["forearm"] * p["fs_forearm"]
        limb(2 + side, [sh, kp[7 + side], kp[9 + side]], [arm_w, 0.85 * arm_w], [pal["sleeve"], pal["forearm"]], s)
        prims[2 + side].append(("disc", (kp[9 + side] + d(phi2) * 0.02 * L, 0.6 * arm_w), pal["skin"]))

        phi_t = s * p["thigh"]
        kp[13 + side] = hip + d(phi_t) * fig["thigh"] * p["fs_thigh"]
        phi_s = phi_t + s * p["knee"]
        kp[15 + side] = kp[13 + side] + d(phi_s) * fig["shin"] * p["fs_shin"]
        limb(4 + side, [hip, kp[13 + side], kp[15 + side]], [leg_w, 0.82 * leg_w], [pal["pants"], pal["shin"]], s)
        toe = kp[15 + side] + d(phi_s + s * 75) * (0.06 if fig["front"] else 0.035) * L
        prims[4 + side].append(("capsule", (kp[15 + side], toe, 0.4 * leg_w), pal["shoe"]))

    # neck, shirt, trousers' waist band; a neckline and a belt buckle in front, hip pockets at the back
    up, right = d(180 + fig["head_tilt"]), d(90 + fig["head_tilt"])
    centre = neck_base + up * (fig["neck"] + r_head)
    (sh_l, hip_l), (sh_r, hip_r) = corners[0], corners[1]
    waist_l, waist_r = sh_l + 0.8 * (hip_l - sh_l), sh_r + 0.8 * (hip_r - sh_r)
    prims[1] += [("capsule", (neck_base, centre, 0.45 * r_head), pal["skin"]),
                 ("polygon", np.array([sh_l, sh_r, hip_r, hip_l]), pal["shirt"]),
                 ("polygon", np.array([waist_l, waist_r, hip_r, hip_l]), pal["pants"])]
    if fig["front"]:
        top = neck_base + d(0) * 0.025 * L + d(180) * arm_w * 0.4  # middle of the shirt's top edge
        vee = [top + d(90) * 0.4 * fig["sh_hw"], top + d(-90) * 0.4 * fig["sh_hw"], neck_base + d(0) * 0.09 * L]
        prims[1] += [("polygon", np.array(vee), pal["skin"]),
                     ("disc", ((waist_l + waist_r + hip_l + hip_r) / 4, 0.25 * leg_w), pal["buckle"])]
    else:
        middle = (waist_l + waist_r + hip_l + hip_r) / 4
        for waist, hip in ((waist_l, hip_l), (waist_r, hip_r)):
            c, a = 0.6 * (waist + hip) / 2 + 0.4 * middle, 0.2 * leg_w
            pocket = [c + d(90) * a * i + d(0) * a * j for i, j in ((1, 1), (1, -1), (-1, -1), (-1, 1))]
            prims[1].append(("polygon", np.array(pocket), _shade(pal["pants"], 0.55)))

    # head: psi is the azimuth of the face (0 = towards the camera); hair caps the back and top of the head
    psi = (0.0 if fig["front"] else 180.0) + fig["yaw"]
    head = [("disc", (centre, r_head), pal["skin"])]
    if fig["hair"]:  # the part of the head disc beyond a chord, centred on `crown`
        crown = d(180 + fig["head_tilt"] + 30 * np.sin(np.deg2rad(psi)))
        head.append(("chord", (centre, r_head, crown, np.cos(np.deg2rad(fig["hair_span"]))), pal["hair"]))
    for k, az, rad, hgt in _FACE:
        a = np.deg2rad(psi + az)
        kp[k] = centre + right * (rad * r_head * np.sin(a)) + up * (hgt * r_head)
        if k < 3 and not fig["front"]:
            labelled[k] = False  # COCO leaves the face of a person seen from behind unlabelled
            continue
        hidden[k] = np.cos(a) < (-0.45 if k >= 3 else 0.15)
        if hidden[k]:
            continue
        if k >= 3:
            head.append(("disc", (kp[k], max(1.0, 0.25 * r_head)), _shade(pal["skin"], 0.8)))
        elif k == 0:
            head.append(("disc", (kp[k], max(0.8, 0.13 * r_head)), _shade(pal["skin"], 0.6)))
        else:  # white of the eye and pupil
            head += [("disc", (kp[k], max(0.8, 0.2 * r_head)), (235, 235, 230)),
                     ("disc", (kp[k], max(0.5, 0.1 * r_head)), (15, 15, 25))]
    if fig["front"] and np.cos(np.deg2rad(psi)) > 0.3:
        ends = [centre + right * (0.8 * r_head * np.sin(np.deg2rad(psi + az))) - up * (0.5 * r_head)
                for az in (-25, 25)]
        head.append(("capsule", (*ends, max(0.6, 0.07 * r_head)), (110, 25, 35)))
    prims[0] = head

    # back-to-front order: legs, (arms behind), torso, head, arms
    legs = sorted((4, 5), key=lambda g: not fig["sides"][g - 4]["leg_under"])
    arms = sorted((2, 3), key=lambda g: not fig["sides"][g - 2]["arm_under"])
    behind = [g for g in arms if fig["sides"][g - 2]["arm_behind"]]
    order = legs + behind + [1, 0] + [g for g in arms if g not in behind]
    return kp, labelled, hidden, [(g, p) for g in order for p in prims[g]], max(r_head, leg_w)


def _coverage(prim, offset, shape):
    """Pixels whose centres lie in a primitive: (rows, cols) slices of `shape` and a bool mask, or None.

    Testing pixel centres (integers) makes rendering exactly mirror-equivariant: x -> W-1-x maps the
    mirrored primitive's pixels onto the flipped ones.
    """
    kind, geo, _ = prim
    if kind == "polygon":
        pts = np.asarray(geo, float) + offset
        lo, hi = pts.min(0), pts.max(0)
    elif kind == "capsule":
        a, b, r = np.asarray(geo[0], float) + offset, np.asarray(geo[1], float) + offset, geo[2]
        lo, hi = np.minimum(a, b) - r, np.maximum(a, b) + r
    else:  # disc or chord
        c, r = np.asarray(geo[0], float) + offset, geo[1]
        lo, hi = c - r, c + r
    x0, y0 = max(int(np.ceil(lo[0])), 0), max(int(np.ceil(lo[1])), 0)
    x1, y1 = min(int(np.floor(hi[0])), shape[1] - 1), min(int(np.floor(hi[1])), shape[0] - 1)
    if x1 < x0 or y1 < y0:
        return None
    x = np.arange(x0, x1 + 1, dtype=float)[None, :]
    y = np.arange(y0, y1 + 1, dtype=float)[:, None]
    if kind == "polygon":  # convex: the pixel is on one side of every edge
        cross = [(q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0]) for p, q in zip(pts, np.roll(pts, -1, 0))]
        inside = np.all([e >= 0 for e in cross], 0) | np.all([e <= 0 for e in cross], 0)
    elif kind == "capsule":  # points within r of the segment a-b
        d = b - a
        t = np.clip(((x - a[0]) * d[0] + (y - a[1]) * d[1]) / max(float(d @ d), 1e-12), 0, 1)
        inside = (x - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 <= r * r
    else:
        inside = (x - c[0]) ** 2 + (y - c[1]) ** 2 <= r * r
        if kind == "chord":  # the cap of the disc beyond a chord: direction geo[2], cos of half its angle geo[3]
            inside &= (x - c[0]) * geo[2][0] + (y - c[1]) * geo[2][1] >= r * geo[3]
    return (slice(y0, y1 + 1), slice(x0, x1 + 1)), inside


def _paint(canvases, prim, values, offset=(0.0, 0.0)):
    """Fill `prim` into each array of `canvases` ([H,W,3] image, [H,W] owner/mask maps) with its value."""
    covered = _coverage(prim, np.asarray(offset, float), canvases[0].shape[:2])
    if covered is not None:
        window, inside = covered
        for canvas, value in zip(canvases, values):
            canvas[window][inside] = value


def _background(rng, w, h):
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * np.arange(w, dtype=np.float32)[None, :] / w
            + np.sin(ang) * np.arange(h, dtype=np.float32)[:, None] / h)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    small = np.clip(128 + rng.normal(0, rng.uniform(5, 40), (rng.integers(3, 9), rng.integers(3, 9), 3)), 0, 255)
    blobs = np.asarray(Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32) - 128
    img = Image.fromarray(np.clip(c0 + (c1 - c0) * ramp[..., None] + blobs, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(4, 15)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(5)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.03, 0.3) * w
        if kind == 0:
            draw.rectangle([cx - r, cy - r * rng.uniform(0.2, 1.5), cx + r, cy + r], fill=colour)
        elif kind == 1:
            draw.ellipse([cx - r, cy - r * rng.uniform(0.3, 1), cx + r, cy + r], fill=colour)
        elif kind == 2:
            a = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 7)))
            draw.polygon([(cx + r * np.cos(t), cy + r * np.sin(t)) for t in a], fill=colour)
        elif kind == 3:  # limb-like distractor strokes
            pts = [(cx, cy)] + [tuple(rng.uniform(0, 1, 2) * (w, h)) for _ in range(rng.integers(1, 3))]
            draw.line(pts, fill=colour, width=int(rng.integers(2, 12)))
        else:  # hatched texture
            step = rng.integers(3, 9)
            for x in np.arange(cx - r, cx + r, step):
                draw.line([(x, cy - r), (x + r * rng.uniform(-0.5, 0.5), cy + r)], fill=colour, width=1)
    return img


def _place(rng, kp, labelled, margin, w, h, boxes):
    """Offset putting the figure inside (or partly outside) the image, or None on too much overlap."""
    lo, hi = kp.min(0) - margin * 1.5, kp.max(0) + margin * 1.5
    offset = np.zeros(2)
    for axis, size in ((0, w), (1, h)):
        extent = hi[axis] - lo[axis]
        cut = 0.35 * extent if rng.random() < 0.2 else 0.0
        a, b = -lo[axis] - cut, size - hi[axis] + cut
        offset[axis] = rng.uniform(min(a, b), max(a, b))
    p = kp + offset
    inside = (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)
    box = np.concatenate([np.maximum(lo + offset, 0), np.minimum(hi + offset, (w, h))])
    for other in boxes:
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        inter = max(iw, 0) * max(ih, 0)
        areas = np.prod(box[2:] - box[:2]), np.prod(other[2:] - other[:2])
        if inter > 0.45 * (sum(areas) - inter) or inter > 0.65 * min(areas):  # IoU or containment
            return None, box
    return (offset if (inside & labelled).sum() >= 8 else None), box


def _annotate(kp, labelled, hidden, owner, index):
    """COCO keypoints [17,3] of figure `index` from the owner map (which group shows at each pixel)."""
    h, w = owner.shape
    kps = np.zeros((17, 3))
    for k, (x, y) in enumerate(kp):
        if not (labelled[k] and 0 <= x <= w - 1 and 0 <= y <= h - 1):
            continue
        seen = int(owner[int(round(y)), int(round(x))]) - 1 - 8 * index in _KP_GROUPS[k]
        kps[k] = (round(x, 2), round(y, 2), 2 if seen and not hidden[k] else 1)
    return kps


def render_figure(fig, size, offset, background=(128, 128, 128)):
    """`fig` alone with its pelvis at `offset` on a plain canvas `size` = (w, h): RGB array, keypoints [17,3]."""
    kp, labelled, hidden, prims, _ = _build(fig)
    img = np.empty((size[1], size[0], 3), np.uint8)
    img[:] = background
    owner = np.zeros(img.shape[:2], np.uint8)
    for group, prim in prims:
        _paint((img, owner), prim, (prim[2], 1 + group), offset)
    return img, _annotate(kp + np.asarray(offset, float), labelled, hidden, owner, 0)


def part_map(owner):
    """Per pixel of a scene's owner map: -1 background, the body-part group (0 head, 1 torso, 2/3 left/right
    arm, 4/5 left/right leg) of the figure on top, or `OCCLUDER_PART` under a random occluder."""
    owner = np.asarray(owner)
    parts = np.where(owner > 0, (owner.astype(np.int16) - 1) % 8, -1)
    parts[owner == _OCCLUDER] = OCCLUDER_PART
    return parts.astype(np.int8)


def render_image(rng, w, h):
    """One image and its persons: list of dicts with keypoints [17,3], bbox [x,y,w,h], area."""
    img, persons, _ = render_scene(rng, w, h)
    return img, persons


def render_scene(rng, w, h):
    """`render_image` plus the scene's owner map [h, w] (uint8: 0 background, 1 + 8 * figure + group under
    a figure, `_OCCLUDER` under an occluder; `part_map` reads it)."""
    img = np.array(_background(rng, w, h))
    owner = np.zeros((h, w), np.uint8)
    figures, boxes = [], []
    for _ in range(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2])):
        height = rng.uniform(0.4, 1.0) * h  # nominal standing height
        kp, labelled, hidden, prims, margin = _build(sample_figure(rng, height))
        for _attempt in range(12 if figures else 200):  # the first figure must find a place
            offset, box = _place(rng, kp, labelled, margin, w, h, boxes)
            if offset is not None:
                figures.append((height, kp + offset, labelled, hidden, prims, offset))
                boxes.append(box)
                break
    figures.sort(key=lambda f: f[0])  # larger (closer) figures are drawn on top
    persons = []
    for index, (height, kp, labelled, hidden, prims, offset) in enumerate(figures):
        mask = np.zeros((h, w), bool)
        for group, prim in prims:
            _paint((img, owner, mask), prim, (prim[2], 1 + 8 * index + group, True), offset)
        persons.append({"kp": kp, "labelled": labelled, "hidden": hidden, "mask": mask, "height": height})
    for _ in range(rng.integers(1, 3) if rng.random() < 0.6 else 0):  # occluders near a joint
        p = persons[rng.integers(len(persons))]
        centre = p["kp"][rng.integers(17)] + rng.normal(0, 0.05 * p["height"], 2)
        r = rng.uniform(0.06, 0.16) * p["height"]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            a = rng.uniform(0, np.pi) + np.array([0, 0.5, 1, 1.5]) * np.pi
            f = rng.uniform(0.4, 1.0)
            xy = [centre + r * np.array([np.cos(t), np.sin(t)]) * (1 if i % 2 == 0 else f) for i, t in enumerate(a)]
            _paint((img, owner), ("polygon", xy, colour), (colour, _OCCLUDER))
        else:
            _paint((img, owner), ("disc", (centre, r), colour), (colour, _OCCLUDER))
    img = Image.fromarray(img)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    noisy = np.asarray(img, np.float32) + rng.standard_normal((h, w, 3), np.float32) * rng.uniform(2, 9)
    img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))

    out = []
    for index, p in enumerate(persons):
        ys, xs = np.nonzero(p["mask"])
        x0, y0 = int(xs.min()), int(ys.min())
        out.append({"keypoints": _annotate(p["kp"], p["labelled"], p["hidden"], owner, index),
                    "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0], "area": int(xs.size)})
    return img, out, owner


def _dump(path, obj):
    Path(path).write_text(json.dumps(obj, sort_keys=True, separators=(",", ":")))


def _detections(rng, images, annotations):
    """COCO results: jittered GT boxes (high scores) plus a few low-score false positives."""
    size = {im["id"]: (im["width"], im["height"]) for im in images}
    dets = []

    def add(image_id, x, y, bw, bh, score):
        w, h = size[image_id]
        x0, y0 = np.clip([x, y], 0, [w - 1, h - 1])
        x1, y1 = np.clip([x + bw, y + bh], [x0 + 1, y0 + 1], [w, h])
        dets.append({"image_id": image_id, "category_id": 1, "score": round(float(score), 4),
                     "bbox": [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)]})

    for ann in annotations:
        x, y, bw, bh = ann["bbox"]
        nw, nh = bw * np.exp(rng.normal(0, 0.06)), bh * np.exp(rng.normal(0, 0.06))
        cx, cy = x + bw / 2 + rng.normal(0, 0.04 * bw), y + bh / 2 + rng.normal(0, 0.04 * bh)
        add(ann["image_id"], cx - nw / 2, cy - nh / 2, nw, nh, rng.uniform(0.75, 0.999))
    for im in images:
        if rng.random() < 0.4:
            w, h = size[im["id"]]
            bw, bh = rng.uniform(0.1, 0.4) * w, rng.uniform(0.2, 0.8) * h
            add(im["id"], rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh, rng.uniform(0.02, 0.3))
    dets.sort(key=lambda d: (d["image_id"], -d["score"], d["bbox"]))
    return dets


def split_scene(seed, split, i, width=None, height=None):
    """Image `i` of a split ("train" or "val") of the set of `seed`: `render_scene` of (seed, split, i), at a
    random size from 256x192 to 320x240 unless `width` / `height` fix it."""
    rng = np.random.default_rng([seed, _SPLITS[split][0], i])
    w = width or int(rng.integers(256, 321))
    h = height or int(rng.integers(192, 241))
    return render_scene(rng, w, h)


def _write_split(out, split, n, seed, width, height):
    first_id = _SPLITS[split][1]
    folder = out / "images" / split
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        img, persons, _ = split_scene(seed, split, i, width, height)
        w, h = img.size
        image_id = first_id + i
        name = f"{image_id:012d}.jpg"
        img.save(folder / name, quality=90)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for j, p in enumerate(persons):
            kps = p["keypoints"]
            annotations.append({
                "id": image_id * 10 + j, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "bbox": [float(v) for v in p["bbox"]], "area": float(p["area"]), "segmentation": [],
                "keypoints": [int(v) if v == int(v) else float(v) for v in kps.reshape(-1)],
                "num_keypoints": int((kps[:, 2] > 0).sum()),
            })
    coco = {"info": {"description": f"FabricNAS synthetic humanoids ({split}, seed {seed})", "version": "1.0"},
            "licenses": [], "images": images, "annotations": annotations, "categories": [PERSON_CATEGORY]}
    _dump(out / "annotations" / f"person_keypoints_{split}.json", coco)
    return images, annotations


def generate_synthetic_coco(out_dir, n_train, n_val, seed=0, width=None, height=None):
    """Write the synthetic set into `out_dir` (must be new or empty); returns image/person counts."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"synthetic data: output directory {out} exists and is not empty")
    for name, value in (("n_train", n_train), ("n_val", n_val)):
        if int(value) != value or value < 0:
            raise ValueError(f"synthetic data: {name} must be a non-negative integer, got {value!r}")
    for name, value in (("width", width), ("height", height)):
        if value is not None and not 32 <= value <= 4096:
            raise ValueError(f"synthetic data: {name} must be in [32, 4096], got {value!r}")
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    written = {split: _write_split(out, split, int(n), seed, width, height)
               for split, n in (("train", n_train), ("val", n_val))}
    dets = _detections(np.random.default_rng([seed, 2]), *written["val"])
    _dump(out / "annotations" / "person_detections_val.json", dets)
    return {split: {"images": len(images), "persons": len(anns)} for split, (images, anns) in written.items()}


def synthetic_coco_info(n_train, n_val, seed=0, width=None, height=None) -> dict:
    """The settings a generated set records (src/data/generated.py); fixed image sizes only when given."""
    info = {"format": "fabricnas.synthetic_coco/1", "train": n_train, "val": n_val, "seed": seed}
    info.update({k: v for k, v in (("width", width), ("height", height)) if v is not None})
    return info


def ensure_synthetic_coco(root, n_train, n_val, seed=0):
    """Generate the set into `root` unless it holds the set of these settings already; a `root` generated with
    other settings (or holding anything else) is refused, so a config always trains on the set it names."""
    info = synthetic_coco_info(n_train, n_val, seed)
    ensure_generated(str(root), info, "synthetic COCO set",
                     lambda folder: generate_synthetic_coco(folder, n_train, n_val, seed))
    return root
