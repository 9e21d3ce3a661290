"""Embedded synthetic pose data set: articulated humanoids written in exact COCO keypoint format.

Figures face the camera (the person's left is on the image right, as for a front view); left limbs
are drawn in cool hues and right limbs in warm hues, and every limb carries a dark seam stripe on a
side fixed by chirality (left of the proximal->distal direction for left limbs, right of it for
right limbs), so a horizontal flip with swapped labels is again a valid sample.
Visibility follows COCO: v=2 visible, v=1 labelled but occluded (by another figure, a random
occluder, the figure's own parts, or the head for a turned face), v=0 outside the image (x=y=0).
"""
import colorsys
import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KEYPOINT_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
    [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]
PERSON_CATEGORY = {"id": 1, "name": "person", "supercategory": "person",
                   "keypoints": KEYPOINT_NAMES, "skeleton": SKELETON}

LEFT_HUES = (0.50, 0.68)  # cyan .. blue
RIGHT_HUES = (-0.03, 0.09)  # red .. orange
_SPLITS = {"train": (0, 1), "val": (1, 1_000_001)}  # split -> (seed stream, first image id)
_OCCLUDER = 250  # owner-map value of random occluders (figures use 1 + 8 * index + group)
# body-part groups: 0 head, 1 torso, 2/3 left/right arm, 4/5 left/right leg
_KP_GROUPS = [{0}] * 5 + [{1, 2}, {1, 3}, {2}, {3}, {2}, {3}, {1, 4}, {1, 5}, {4}, {5}, {4}, {5}]


def _rgb(h, s, v):
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _side_colour(rng, hues):
    return _rgb(rng.uniform(*hues), rng.uniform(0.6, 1.0), rng.uniform(0.5, 1.0))


def _shade(colour, factor):
    return tuple(int(min(255, c * factor)) for c in colour)


def _mixture(rng, p_rest, rest, wide):
    """Joint angle (degrees): a clipped normal `rest` = (mean, std, lo, hi) or a uniform `wide` range."""
    if rng.random() < p_rest:
        mean, std, lo, hi = rest
        return float(np.clip(rng.normal(mean, std), lo, hi))
    return float(rng.uniform(*wide))


def _foreshorten(rng, p):
    return 1.0 if rng.random() >= p else float(rng.uniform(0.55, 1.0))


def _sample_figure(rng, height):
    """One humanoid around the pelvis at (0, 0): keypoints [17,2], hidden-face flags, primitives."""
    L = height
    size = lambda base: base * L * rng.uniform(0.92, 1.08)  # noqa: E731
    r_head, neck, torso = size(0.065), size(0.035), size(0.29)
    sh_hw, hip_hw = size(0.105), size(0.068)
    upper_arm, forearm, thigh, shin = size(0.165), size(0.15), size(0.24), size(0.235)
    arm_w = max(2.0, 0.065 * L * rng.uniform(0.85, 1.15))
    leg_w = max(3.0, 0.095 * L * rng.uniform(0.85, 1.15))
    tilt = float(np.clip(rng.normal(0, 8), -25, 25)) if rng.random() < 0.9 else float(rng.uniform(-60, 60))

    def d(phi):  # body-frame direction: phi degrees from "down" towards the person's left (image right)
        a = np.deg2rad(phi - tilt)
        return np.array([np.sin(a), np.cos(a)])

    kp = np.zeros((17, 2))
    hidden = np.zeros(17, bool)
    pelvis = np.zeros(2)
    neck_base = pelvis + d(180) * torso
    kp[5] = neck_base + d(90) * sh_hw + d(0) * 0.025 * L
    kp[6] = neck_base + d(-90) * sh_hw + d(0) * 0.025 * L
    kp[11], kp[12] = pelvis + d(90) * hip_hw, pelvis + d(-90) * hip_hw

    skin = _rgb(rng.uniform(0.02, 0.11), rng.uniform(0.25, 0.65), rng.uniform(0.35, 0.98))
    if rng.random() < 0.4:
        shirt = _rgb(0, 0, rng.uniform(0.1, 0.95))
    else:
        hue = rng.uniform(0.12, 0.45) if rng.random() < 0.5 else rng.uniform(0.72, 0.95)
        shirt = _rgb(hue, rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))
    shoe = _rgb(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.05, 0.4))
    prims = {g: [] for g in range(6)}  # group -> list of (kind, xy, colour, width)

    def limb(group, pts, widths, colour, side):
        for (a, b), w in zip(zip(pts[:-1], pts[1:]), widths):
            prims[group].append(("line", [tuple(a), tuple(b)], colour, int(round(w))))
            for p in (a, b):
                prims[group].append(("disc", (p, w / 2), colour, 0))
        for (a, b), w in zip(zip(pts[:-1], pts[1:]), widths):  # chiral seam stripe
            t = (b - a) / max(np.linalg.norm(b - a), 1e-6)
            normal = np.array([-t[1], t[0]]) * side
            sw = max(1.0, 0.3 * w)
            off = normal * (w / 2 - sw / 2)
            prims[group].append(("line", [tuple(a + off), tuple(b + off)], _shade(colour, 0.35), int(round(sw))))

    for side, s in ((0, 1), (1, -1)):  # side 0 = person's left
        hues = LEFT_HUES if side == 0 else RIGHT_HUES
        sh, hip = kp[5 + side], kp[11 + side]
        phi1 = s * _mixture(rng, 0.5, (15, 12, -10, 45), (-40, 175))
        kp[7 + side] = sh + d(phi1) * upper_arm * _foreshorten(rng, 0.3)
        phi2 = phi1 + s * _mixture(rng, 0.4, (0, 15, -30, 30), (-150, 150))
        kp[9 + side] = kp[7 + side] + d(phi2) * forearm * _foreshorten(rng, 0.3)
        sleeve = _side_colour(rng, hues)
        limb(2 + side, [sh, kp[7 + side], kp[9 + side]], [arm_w, 0.85 * arm_w], sleeve, s)
        prims[2 + side].append(("disc", (kp[9 + side] + d(phi2) * 0.02 * L, 0.6 * arm_w), skin, 0))

        phi_t = s * _mixture(rng, 0.75, (6, 8, -15, 30), (-20, 85))
        kp[13 + side] = hip + d(phi_t) * thigh * _foreshorten(rng, 0.25)
        phi_s = phi_t + _mixture(rng, 0.7, (0, 8, -20, 20), (-90, 90))
        kp[15 + side] = kp[13 + side] + d(phi_s) * shin * _foreshorten(rng, 0.25)
        limb(4 + side, [hip, kp[13 + side], kp[15 + side]], [leg_w, 0.82 * leg_w], _side_colour(rng, hues), s)
        toe = kp[15 + side] + d(phi_s + s * 75) * 0.06 * L
        prims[4 + side].append(("line", [tuple(kp[15 + side]), tuple(toe)], shoe, int(round(0.8 * leg_w))))
        prims[4 + side].append(("disc", (toe, 0.4 * leg_w), shoe, 0))

    # torso and neck
    top = d(180) * arm_w * 0.4
    bottom = d(0) * leg_w * 0.3
    quad = [kp[6] + d(-90) * arm_w * 0.5 + top, kp[5] + d(90) * arm_w * 0.5 + top,
            kp[11] + d(90) * leg_w * 0.5 + bottom, kp[12] + d(-90) * leg_w * 0.5 + bottom]
    head_tilt = float(np.clip(rng.normal(0, 10), -30, 30))
    up, right = d(180 + head_tilt), d(90 + head_tilt)
    centre = neck_base + up * (neck + r_head)
    prims[1] += [("line", [tuple(neck_base), tuple(centre)], skin, int(round(0.9 * r_head))),
                 ("polygon", [tuple(p) for p in quad], shirt, 0)]

    # head, hair, face (yaw > 0 turns the face towards the person's left = image right)
    yaw = float(np.clip(rng.normal(0, 30), -75, 75))
    head = [("disc", (centre, r_head), skin, 0)]
    if rng.random() < 0.85:
        hair = _rgb(rng.uniform(0.02, 0.12), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.75))
        up_angle = np.degrees(np.arctan2(up[1], up[0])) - 0.5 * yaw
        span = rng.uniform(55, 85)
        head.append(("chord", (centre, r_head, up_angle - span, up_angle + span), hair, 0))
    features = [(0, 0.0, 0.85, -0.12), (1, 30.0, 0.8, 0.18), (2, -30.0, 0.8, 0.18),
                (3, 90.0, 0.98, 0.0), (4, -90.0, 0.98, 0.0)]  # (keypoint, azimuth, radius, height)
    for k, az, rad, hgt in features:
        a = np.deg2rad(yaw + az)
        kp[k] = centre + right * (rad * r_head * np.sin(a)) + up * (hgt * r_head)
        hidden[k] = np.cos(a) < (-0.45 if k >= 3 else 0.15)
        if hidden[k]:
            continue
        if k >= 3:
            head.append(("disc", (kp[k], max(1.0, 0.25 * r_head)), _shade(skin, 0.8), 0))
        else:
            colour = _shade(skin, 0.6) if k == 0 else (20, 20, 30)
            head.append(("disc", (kp[k], max(0.8, 0.14 * r_head)), colour, 0))
    prims[0] = head

    # back-to-front order: legs, (arm behind), torso, head, arms
    order = [4, 5] if rng.random() < 0.5 else [5, 4]
    arms_behind = [g for g in (2, 3) if rng.random() < 0.12]
    order += arms_behind + [1, 0] + [g for g in (2, 3) if g not in arms_behind]
    return kp, hidden, [(g, p) for g in order for p in prims[g]], max(r_head, leg_w)


def _paint(draws, prim, values, offset):
    kind, xy, colour, width = prim
    for draw, value in zip(draws, (colour,) + values):
        if kind == "line":
            draw.line([(x + offset[0], y + offset[1]) for x, y in xy], fill=value, width=width)
        elif kind == "polygon":
            draw.polygon([(x + offset[0], y + offset[1]) for x, y in xy], fill=value)
        else:
            (cx, cy), r = xy[0] + offset, xy[1]
            box = [cx - r, cy - r, cx + r, cy + r]
            if kind == "disc":
                draw.ellipse(box, fill=value)
            else:
                draw.chord(box, xy[2], xy[3], fill=value)


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


def _place(rng, kp, margin, w, h, boxes):
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
    return (offset if inside.sum() >= 8 else None), box


def render_image(rng, w, h):
    """One image and its persons: list of dicts with keypoints [17,3], bbox [x,y,w,h], area."""
    img = _background(rng, w, h)
    owner = Image.new("L", (w, h), 0)
    draws = (ImageDraw.Draw(img), ImageDraw.Draw(owner))
    figures, boxes = [], []
    for _ in range(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2])):
        height = rng.uniform(0.4, 1.0) * h  # nominal standing height
        kp, hidden, prims, margin = _sample_figure(rng, height)
        for _attempt in range(12 if figures else 200):  # the first figure must find a place
            offset, box = _place(rng, kp, margin, w, h, boxes)
            if offset is not None:
                figures.append((height, kp + offset, hidden, prims, offset))
                boxes.append(box)
                break
    figures.sort(key=lambda f: f[0])  # larger (closer) figures are drawn on top
    persons = []
    for index, (height, kp, hidden, prims, offset) in enumerate(figures):
        mask = Image.new("L", (w, h), 0)
        mask_draw = ImageDraw.Draw(mask)
        for group, prim in prims:
            _paint(draws + (mask_draw,), prim, (1 + 8 * index + group, 255), offset)
        persons.append({"kp": kp, "hidden": hidden, "mask": np.asarray(mask), "height": height})
    for _ in range(rng.integers(1, 3) if rng.random() < 0.6 else 0):  # occluders near a joint
        p = persons[rng.integers(len(persons))]
        centre = p["kp"][rng.integers(17)] + rng.normal(0, 0.05 * p["height"], 2)
        r = rng.uniform(0.06, 0.16) * p["height"]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            a = rng.uniform(0, np.pi) + np.array([0, 0.5, 1, 1.5]) * np.pi
            f = rng.uniform(0.4, 1.0)
            xy = [tuple(centre + r * np.array([np.cos(t), np.sin(t)]) * (1 if i % 2 == 0 else f))
                  for i, t in enumerate(a)]
            _paint(draws, ("polygon", xy, colour, 0), (_OCCLUDER,), (0, 0))
        else:
            _paint(draws, ("disc", (centre, r), colour, 0), (_OCCLUDER,), (0, 0))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    noisy = np.asarray(img, np.float32) + rng.standard_normal((h, w, 3), np.float32) * rng.uniform(2, 9)
    img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))

    owner = np.asarray(owner)
    out = []
    for index, p in enumerate(persons):
        ys, xs = np.nonzero(p["mask"])
        kps = np.zeros((17, 3))
        for k, (x, y) in enumerate(p["kp"]):
            if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
                continue
            col, row = int(round(x)), int(round(y))
            seen = int(owner[row, col]) - 1 - 8 * index in _KP_GROUPS[k]
            kps[k] = (round(x, 2), round(y, 2), 2 if seen and not p["hidden"][k] else 1)
        x0, y0 = int(xs.min()), int(ys.min())
        out.append({"keypoints": kps, "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
                    "area": int(xs.size)})
    return img, out


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


def _write_split(out, split, n, seed, width, height):
    stream, first_id = _SPLITS[split]
    folder = out / "images" / split
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, stream, i])
        w = width or int(rng.integers(256, 321))
        h = height or int(rng.integers(192, 241))
        img, persons = render_image(rng, w, h)
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


def ensure_synthetic_coco(root, n_train, n_val, seed=0):
    """Generate the set into `root` unless `root/annotations/person_keypoints_val.json` exists."""
    root = Path(root)
    marker = root / "annotations" / "person_keypoints_val.json"
    if marker.exists():
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"synthetic data: {root} exists but has no {marker.relative_to(root)}; "
                              "remove it or point DATASET.ROOT elsewhere")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        generate_synthetic_coco(tmp, n_train, n_val, seed)
        if root.exists():
            root.rmdir()  # empty directory (checked above)
        os.rename(tmp, root)
    except OSError:
        if not marker.exists():  # another process finishing first is fine; anything else is an error
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
