"""The classification task: ImageFolder / zip / synthetic datasets, label-smoothing CE, top-1/top-5 evaluation."""
import os

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from src.data.imagefolder import ImageFolderDataset, ZipImageDataset, build_transform, list_classes
from src.data.synthetic_imagefolder import ensure_synthetic_imagefolder
from src.utils.atomic import write_json_atomic


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list:
    """Number of samples whose label is among the top-k logits, for each k (k capped at the class count)."""
    kmax = min(max(ks), logits.shape[1])
    hits = logits.topk(kmax, dim=1).indices == labels[:, None]
    return [int(hits[:, :min(k, kmax)].any(dim=1).sum()) for k in ks]


class ClassificationTask:
    """Image classification (TASK: classification); metrics in percent, score = top-1."""

    score_name = "top1"

    def __init__(self, cfg):
        self.cfg = cfg

    def _path(self, rel: str, split: str) -> str:
        rel = rel.replace("{split}", split)
        return rel if os.path.isabs(rel) else os.path.join(self.cfg.DATASET.ROOT, rel)

    def build_dataset(self, split: str):
        if split not in ("train", "val"):
            raise ValueError(f"unknown split '{split}' (train, val)")
        cfg, d = self.cfg, self.cfg.DATASET
        w, h = cfg.MODEL.INPUT_SIZE
        transform = build_transform(split == "train", (h, w), d.CROP_SCALE, d.CROP_PCT)
        if d.ZIP_FILE or d.MAP_FILE:
            if not (d.ZIP_FILE and d.MAP_FILE):
                raise ValueError("zip mode needs both DATASET.ZIP_FILE and DATASET.MAP_FILE")
            dataset = ZipImageDataset(self._path(d.ZIP_FILE, split), self._path(d.MAP_FILE, split), transform)
        elif d.NAME in ("imagefolder", "synthetic_imagefolder"):
            if d.NAME == "synthetic_imagefolder":
                ensure_synthetic_imagefolder(d.ROOT, d.SYNTHETIC_TRAIN, d.SYNTHETIC_VAL, d.NUM_CLASSES,
                                             d.SYNTHETIC_SEED, d.SYNTHETIC_IMAGE_SIZE)
            train_dir = os.path.join(d.ROOT, "train")  # val labels follow the training classes when present
            classes = list_classes(train_dir) if os.path.isdir(train_dir) else None
            dataset = ImageFolderDataset(os.path.join(d.ROOT, split), transform, classes)
        else:
            raise ValueError(f"unknown DATASET.NAME '{d.NAME}' for TASK classification "
                             "(imagefolder, synthetic_imagefolder, or DATASET.ZIP_FILE + MAP_FILE)")
        if dataset.num_classes > d.NUM_CLASSES:
            raise ValueError(f"DATASET.NUM_CLASSES is {d.NUM_CLASSES} but the {split} data has "
                             f"{dataset.num_classes} classes")
        return dataset

    def criterion(self, output, batch):
        return F.cross_entropy(output, batch["label"], label_smoothing=self.cfg.LOSS.LABEL_SMOOTHING)

    def test_options(self, args) -> dict:
        """test.py's options: none (top-1/top-5 of the centre crops)."""
        return {}

    @torch.no_grad()
    def evaluate(self, model, dataset, out_dir, batch_size, device) -> dict:
        """Top-1/top-5 accuracy (percent) over `dataset`; also written to out_dir/classification_metrics.json."""
        if len(dataset) == 0:
            raise ValueError("classification evaluation: the dataset is empty")
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=self.cfg.WORKERS)
        was_training = model.training
        model.eval()
        c1 = c5 = n = 0
        try:
            for batch in loader:
                logits = model(batch["image"].to(device))
                a, b = topk_correct(logits.float(), batch["label"].to(device))
                c1, c5, n = c1 + a, c5 + b, n + len(batch["label"])
        finally:
            model.train(was_training)
        metrics = {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "score": 100.0 * c1 / n, "num_images": n}
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "classification_metrics.json")
        write_json_atomic(path, metrics, indent=1)
        return metrics
