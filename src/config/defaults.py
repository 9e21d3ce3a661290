"""The single yacs tree of FabricNAS. Every key is commented; configs in `configs/` override it.

Sections: run-level keys, DATASET, MODEL (with FABRIC, PARTS, HR, SCALE, HRT sub-nodes), LOSS, TRAIN, SEARCH,
ONESHOT, DERIVE (searched supernet -> genotype), SLIM (HR-NAS slimming during training), TICKET (SuperTickets
weight pruning), TEST, DIST. Add a key here (with a
comment) before any code reads it. To rename a key, add old -> new to `RENAMED` in src/config/loader.py (old YAML
files and overrides keep loading, with a note) and bump CONFIG_VERSION.
"""
from yacs.config import CfgNode as CN

CONFIG_VERSION = 2  # bumped when keys are renamed (see RENAMED in src/config/loader.py)

_C = CN()

# ---------------------------------------------------------------- run
_C.CONFIG_VERSION = CONFIG_VERSION  # layout of this tree; 1 (or absent) = PRUNE.* and DATASET.LABEL_SMOOTHING, renamed on load
_C.OUTPUT_DIR = "output/run"  # every file of a run is written below this directory
_C.SEED = 0  # seeds python, numpy and torch; also the bilevel split and `random` arch draw
_C.WORKERS = 0  # DataLoader worker processes (0 = load in the main process)
_C.PRINT_FREQ = 20  # iterations between console/CSV log lines
_C.DEVICE = "auto"  # "auto" (cuda when available, else cpu), "cpu" or "cuda"
_C.MEMORY_FORMAT = "auto"  # weights' (hence activations') layout: "channels_last", "contiguous", or "auto" = channels_last on CPU (oneDNN's convs are faster in it; README "Speed"), contiguous elsewhere
_C.TASK = "pose"  # "pose", "classification" or "segmentation"

# ---------------------------------------------------------------- data
_C.DATASET = CN()
_C.DATASET.NAME = "synthetic"  # pose: "coco", "mpii", "synthetic" (COCO format, generated on first use); classification: "imagefolder", "synthetic_imagefolder"; segmentation: "synthetic_seg" (generated on first use), "cityscapes", "ade20k", "coco_person"
_C.DATASET.ROOT = "data/synthetic"  # dataset root (cityscapes: holds leftImg8bit/ and gtFine/; ade20k: the ADEChallengeData2016 folder); relative paths are taken from the current directory
_C.DATASET.TRAIN_ANN = "annotations/person_keypoints_train.json"  # train annotation file (relative to ROOT unless absolute); pose and coco_person
_C.DATASET.VAL_ANN = "annotations/person_keypoints_val.json"  # val annotation file (relative to ROOT unless absolute)
_C.DATASET.TRAIN_IMAGES = "images/train"  # train image folder (relative to ROOT unless absolute)
_C.DATASET.VAL_IMAGES = "images/val"  # val image folder (relative to ROOT unless absolute)
_C.DATASET.DET_FILE = "annotations/person_detections_val.json"  # detections JSON (COCO results format) used with --use-dt
_C.DATASET.DET_SCORE_THRESHOLD = 0.0  # detections below this score are dropped
_C.DATASET.SYNTHETIC_TRAIN = 1000  # synthetic sets (synthetic, synthetic_imagefolder, synthetic_seg): number of training images (generated when ROOT is missing)
_C.DATASET.SYNTHETIC_VAL = 100  # synthetic set: number of val images
_C.DATASET.SYNTHETIC_SEED = 0  # synthetic set: generator seed (same seed, same bytes)
_C.DATASET.MARGIN = 1.25  # box enlargement around the person before cropping
_C.DATASET.MAX_SAMPLES = 0  # keep only the first N persons (segmentation: images) of each split (0 = all); for smoke runs
_C.DATASET.AUG_SCALE = 0.3  # training scale jitter: s ~ clip(N(1, AUG_SCALE), 1-AUG_SCALE, 1+AUG_SCALE)
_C.DATASET.AUG_ROTATION = 40.0  # training rotation: r ~ clip(N(0, AUG_ROTATION), +-2*AUG_ROTATION) degrees
_C.DATASET.AUG_ROTATION_PROB = 0.6  # probability that a training sample is rotated
_C.DATASET.AUG_FLIP = True  # random horizontal flip with the dataset's flip pairs (segmentation: image and label map mirrored)
_C.DATASET.AUG_HALF_BODY_PROB = 0.0  # probability of a half-body crop (0 disables it)
_C.DATASET.NUM_CLASSES = 1000  # classification: number of classes; segmentation: must equal the set's (synthetic_seg 6, cityscapes 19, ade20k 150, coco_person 2)
_C.DATASET.ZIP_FILE = ""  # classification: zip archive of images (with MAP_FILE) instead of folders; "{split}" -> train/val, relative to ROOT unless absolute
_C.DATASET.MAP_FILE = ""  # classification: text file "path/in/zip.jpg<TAB>label" for ZIP_FILE; "{split}" -> train/val, relative to ROOT unless absolute
_C.DATASET.CROP_SCALE = [0.08, 1.0]  # classification training: area range of the random resized crop
_C.DATASET.CROP_PCT = 0.875  # classification val: resize the short side to size / CROP_PCT, then centre crop
_C.DATASET.SYNTHETIC_IMAGE_SIZE = 64  # synthetic_imagefolder: side of the generated square images (pixels)
_C.DATASET.BASE_SIZE = 0  # segmentation: images are resized so that their long side is this before training scales and test inference (0 = their own size); predictions are scored at the label map's own size
_C.DATASET.SCALE_RANGE = [0.5, 2.0]  # segmentation training: random scale factor (uniform in [low, high], relative to BASE_SIZE) before the random crop of MODEL.INPUT_SIZE

# ---------------------------------------------------------------- model
_C.MODEL = CN()
_C.MODEL.NAME = "baseline"  # registered model builder (see src/network_factory/registry.py)
_C.MODEL.NUM_JOINTS = 17  # keypoints predicted (17 for COCO, 16 for MPII)
_C.MODEL.INPUT_SIZE = [96, 128]  # network input, [width, height] (segmentation: the training crop; tests take whole images)
_C.MODEL.HEATMAP_STRIDE = 4  # input size / heatmap size
_C.MODEL.SIGMA = 2.0  # Gaussian sigma of the target heatmaps, in heatmap pixels
_C.MODEL.BACKBONE = "resnet18"  # resnet18/34/50/101, mobilenet_v2, hrnet_w32, compact_resnet, fabric, hr_supernet, scale_supernet
_C.MODEL.PRETRAINED = ""  # local checkpoint path for the backbone ("" = random init; nothing is downloaded)
_C.MODEL.WIDTH = 32  # baseline: width of the feature pyramid neck
_C.MODEL.BACKBONE_WIDTH_MULT = 1.0  # width multiplier of the backbone (for tiny test/demo models)
_C.MODEL.SEG_HEAD_CHANNELS = 0  # models seg and cls: width of the 1x1 conv after the concatenated branches (0 = their summed width, as HRNet-seg)

_C.MODEL.FABRIC = CN()
_C.MODEL.FABRIC.OPERATIONS = ["zero", "skip_connect", "sep_conv_3x3", "atr_conv_3x3"]  # candidate ops on every edge
_C.MODEL.FABRIC.SIZE_TYPES = [4, 8, 16, 32]  # scales of the fabric rows (input stride of each row)
_C.MODEL.FABRIC.FACTOR = 16  # channels of a row = size_type * FACTOR
_C.MODEL.FABRIC.DEPTH = 6  # fabric layers (columns), counting the cut layers
_C.MODEL.FABRIC.CUT_LAYERS_NUM = 3  # first layers replaced by the backbone's four feature maps
_C.MODEL.FABRIC.HIDDEN_STATES_NUM = 1  # nodes built inside a cell
_C.MODEL.FABRIC.INPUT_NODES_NUM = 1  # input nodes of a cell
_C.MODEL.FABRIC.ONE_SHOT_SEARCH = True  # True: one alpha shared by all cells of a CNF; False: alpha per cell
_C.MODEL.FABRIC.BACKBONE_LAYERS = 4  # MODEL.BACKBONE "fabric": layers of the searchable backbone fabric (>= 3)
_C.MODEL.FABRIC.BACKBONE_FACTOR = 10  # MODEL.BACKBONE "fabric": channel factor (rows 4/8/16/32 x factor, x BACKBONE_WIDTH_MULT)
_C.MODEL.FABRIC.BACKBONE_OPERATIONS = ["zero", "skip_connect", "sep_conv_3x3", "atr_conv_3x3", "avg_pool_3x3", "max_pool_3x3"]  # MODEL.BACKBONE "fabric": candidate ops

_C.MODEL.PARTS = CN()
_C.MODEL.PARTS.NUM = 3  # body-part groups P (1, 3, 5 or 8), one CNF each
_C.MODEL.PARTS.VECTOR_IN_PIXEL = True  # vector-in-pixel heads (squash of a D-vector per joint and pixel)
_C.MODEL.PARTS.VECTOR_DIM = 8  # D of the vector-in-pixel head
_C.MODEL.PARTS.CONVOLUTION_MODE = "2D"  # vector-in-pixel head: "2D" or "3D"

_C.MODEL.HR = CN()  # HR-NAS supernet (model hr_dense, MODEL.BACKBONE hr_supernet); widths/stem x MODEL.BACKBONE_WIDTH_MULT
_C.MODEL.HR.STEM_CHANNELS = 24  # width of the two 3x3 stride-2 stem convs (image -> 1/4)
_C.MODEL.HR.WIDTHS = [18, 36, 72, 144]  # fixed width of branch b (stride 4 * 2^b); never searched
_C.MODEL.HR.STAGE_BLOCKS = [[1], [2, 2], [2, 2, 3], [2, 2, 3, 4], [2, 2, 3, 4]]  # per stage: parallel blocks per branch (a stage keeps or adds one branch)
_C.MODEL.HR.KERNEL_SIZES = [3, 5, 7]  # depthwise kernel of each path of every searchable block
_C.MODEL.HR.EXPAND_RATIO = 4.0  # hidden channels of each path = EXPAND_RATIO x block input width
_C.MODEL.HR.GATE_INIT = 1.0  # initial gates (depthwise-BN scales, token gates); Adam moves them ~LR per step, so a small value (0.1) lets slimming reach SLIM.THRESHOLD in short runs
_C.MODEL.HR.TRANSFORMER_BLOCKS = []  # fnmatch patterns of block names carrying a token transformer, e.g. ["stages.4.parallel.*"]
_C.MODEL.HR.TRANSFORMER_TOKENS = 16  # tokens of each transformer (pruned by their gates)
_C.MODEL.HR.TRANSFORMER_GRID = 8  # feature maps are resized to GRID x GRID; token dim = GRID^2
_C.MODEL.HR.HRT_BLOCKS = []  # fnmatch patterns of parallel block names ending with an HRFormer block (window MODEL.HRT.WINDOW_SIZE, FFN MODEL.HRT.MLP_RATIO x width, FFN channels slimmed), e.g. ["stages.3.parallel.3.*"]
_C.MODEL.HR.LAST_CHANNEL = 90  # hr_dense: output width of the searchable fusion block before the 1x1 to joints
_C.MODEL.HR.HEAD_EXPAND_RATIO = 4.0  # hr_dense: expand ratio of that block (its input is the sum of branch widths)

_C.MODEL.SCALE = CN()  # ScaleNAS one-shot supernet (model scalenet, MODEL.BACKBONE scale_supernet); src/architecture/scale/
_C.MODEL.SCALE.STEM_CHANNELS = 64  # width of the two 3x3 stride-2 stem convs (image -> 1/4)
_C.MODEL.SCALE.WIDTHS = [32, 64, 128, 256]  # branch b (stride 4 * 2^b) width; stage s has branches 0..s
_C.MODEL.SCALE.MODULES = [0, 1, 4, 3]  # searchable modules of stage s (s + 1 branches), one count per width (ScaleNAS W32: 1/4/3 in stages 2-4)
_C.MODEL.SCALE.MAX_DEPTH = 5  # blocks per branch and module in the supernet
_C.MODEL.SCALE.DEPTH_LIST = [2, 3, 4, 5]  # depths a subnet's branch may pick (sorted, <= MAX_DEPTH)
_C.MODEL.SCALE.BLOCK = "basic"  # "basic" (HRNet's BasicBlock, as ScaleNAS) or "inverted_residual" (HR-NAS's block, KERNEL_SIZES / EXPAND_RATIO)
_C.MODEL.SCALE.KERNEL_SIZES = [3]  # inverted_residual: depthwise kernel of each path
_C.MODEL.SCALE.EXPAND_RATIO = 2.0  # inverted_residual: hidden channels of each path = ratio x branch width
_C.MODEL.SCALE.HEAD_CHANNELS = 0  # model scalenet: width of the 1x1 conv after the concatenated branches (0 = their summed width, as HRNet-seg)

_C.MODEL.HRT = CN()  # HRFormer (models hrformer_cls, hrformer_pose); defaults = HRFormer-S, see configs/cls/
_C.MODEL.HRT.NUM_CHANNELS = [32, 64, 128, 256]  # branch widths at strides 4, 8, 16, 32
_C.MODEL.HRT.NUM_HEADS = [1, 2, 4, 8]  # attention heads per branch (width must divide by it)
_C.MODEL.HRT.NUM_MODULES = [1, 4, 2]  # HRT modules in stages 2, 3, 4 (2, 3, 4 branches)
_C.MODEL.HRT.NUM_BLOCKS = 2  # HRT blocks per branch per module
_C.MODEL.HRT.WINDOW_SIZE = 7  # side of the square local attention windows (maps are zero-padded to multiples)
_C.MODEL.HRT.MLP_RATIO = 4.0  # FFN expansion (hidden = ratio * width)
_C.MODEL.HRT.DROP_PATH_RATE = 0.0  # stochastic depth, ramped linearly from 0 over the block slots of stages 2-4
_C.MODEL.HRT.STEM_CHANNELS = 64  # stem width = stage-1 bottleneck planes (stage 1 outputs 4x this)
_C.MODEL.HRT.STAGE1_BLOCKS = 2  # bottlenecks in stage 1
_C.MODEL.HRT.HEAD_CHANNELS = [32, 64, 128, 256]  # classification head: bottleneck planes per branch (outputs 4x)
_C.MODEL.HRT.HEAD_FINAL_CHANNELS = 2048  # classification head: width of the last 1x1 conv before pooling

# ---------------------------------------------------------------- loss
_C.LOSS = CN()
_C.LOSS.USE_TARGET_WEIGHT = True  # weight each joint's heatmap MSE by its visibility weight
_C.LOSS.LABEL_SMOOTHING = 0.1  # classification and segmentation: label-smoothing factor of the cross entropy
_C.LOSS.OHEM = False  # segmentation: online hard example mining (only the hardest pixels of a batch count)
_C.LOSS.OHEM_THRESH = 0.9  # OHEM: pixels whose true-class probability is below this are kept ...
_C.LOSS.OHEM_MIN_KEPT = 100000  # ... and at least this many of the batch (the lowest probabilities), if it has them

# ---------------------------------------------------------------- train
_C.TRAIN = CN()
_C.TRAIN.BATCH_SIZE = 32  # persons per weight step (per process)
_C.TRAIN.EPOCHS = 10  # training epochs
_C.TRAIN.OPTIMIZER = "adam"  # weight optimizer: "adam", "adamw" or "sgd"
_C.TRAIN.LR = 1e-3  # weight learning rate
_C.TRAIN.MOMENTUM = 0.9  # SGD momentum
_C.TRAIN.WD = 0.0  # weight decay of the weight optimizer
_C.TRAIN.LR_SCHEDULE = "constant"  # "constant", "cosine", "multistep" (per epoch) or "poly" (per iteration, HRNet-seg)
_C.TRAIN.POLY_POWER = 0.9  # poly: lr x (1 - t / EPOCHS) ** POLY_POWER, t = epochs done as a fraction (per iteration)
_C.TRAIN.LR_STEPS = [170, 200]  # multistep: epochs where the lr is multiplied by LR_FACTOR
_C.TRAIN.LR_FACTOR = 0.1  # multistep: lr multiplier
_C.TRAIN.EVAL_INTERVAL = 1  # evaluate every N epochs (and after the last one)
_C.TRAIN.MAX_ITERS_PER_EPOCH = 0  # cap iterations per epoch (0 = full epoch); for smoke runs
_C.TRAIN.TIME_BUDGET_MIN = 0.0  # stop training after this many minutes (0 = no limit); the last epoch is finished
_C.TRAIN.GRAD_CLIP = 0.0  # clip the weight-gradient norm (0 = off)

# ---------------------------------------------------------------- search
_C.SEARCH = CN()
_C.SEARCH.STRATEGY = "none"  # none, random, sync, first_order_gradient, second_order_gradient, gdas (sampled single path, first order; GDAS, Dong & Yang 2019), oneshot (ScaleNAS supernet, ONESHOT.*)
_C.SEARCH.ARCH_LR = 3e-3  # Adam lr of the arch optimizer
_C.SEARCH.ARCH_BETAS = [0.5, 0.999]  # Adam betas of the arch optimizer
_C.SEARCH.ARCH_WD = 1e-3  # decoupled (AdamW) weight decay of the arch optimizer: alpha *= 1 - ARCH_LR * ARCH_WD per step
_C.SEARCH.SPLIT_RATIO = 0.5  # bilevel: fraction of the training set used for weights (the rest for arch)
_C.SEARCH.WARMUP_EPOCHS = 0  # bilevel: epochs of weight-only training before arch steps start
_C.SEARCH.HESSIAN = "finite_difference"  # second order: "finite_difference" (at a fixed activation pattern), "forward_mode", "exact"
_C.SEARCH.FD_EPS = 0.001  # second order, finite_difference: the perturbation R z has norm FD_EPS
_C.SEARCH.PARTIAL_CHANNELS = 1  # PC-DARTS (Xu et al. 2020) K: 1/K of every searchable edge's channels go through its ops, the rest bypass (then channel shuffle); 1 = off (full mixed ops); derived networks are always full-width
_C.SEARCH.EDGE_NORM = False  # PC-DARTS edge normalisation: a learnable weight (arch tensor `gamma`) per edge, softmaxed over the edges entering a hidden state; needs HIDDEN_STATES_NUM or INPUT_NODES_NUM > 1 to matter
_C.SEARCH.TAU_MAX = 10.0  # gdas: Gumbel-softmax temperature of the first epoch, annealed linearly ...
_C.SEARCH.TAU_MIN = 0.1  # ... to this one at the last epoch (TRAIN.EPOCHS)
_C.SEARCH.SHOW_ARCH_EVERY = 50  # --show_arch_value: print the arch table every N iterations
_C.SEARCH.EIGEN_EVERY = 0  # collapse monitor: dominant eigenvalue of the arch loss's Hessian (every arch parameter: alpha, beta, edge-norm gamma) every N arch steps (0 = off)
_C.SEARCH.EIGEN_ITERS = 10  # collapse monitor: power iterations (Hessian-vector products) per estimate
_C.SEARCH.EIGEN_STOP_FACTOR = 0.0  # collapse monitor: stop the search when |eigenvalue| > this x the first estimate (0 = never)

# ---------------------------------------------------------------- one-shot (ScaleNAS supernet training, SEARCH.STRATEGY oneshot)
_C.ONESHOT = CN()
_C.ONESHOT.GROUP_SAMPLING = True  # step t trains a subnet of group t mod G: every (FUSION_OPTIONS x DEPTH_OPTIONS) pair; False: every fusion option with the whole depth list
_C.ONESHOT.SANDWICH = True  # add the smallest and largest subnets as groups, and train the largest in every step as the in-place distillation teacher
_C.ONESHOT.FUSION_OPTIONS = [0.2, 0.5, 0.8]  # probabilities that a cross-branch fusion bit is on
_C.ONESHOT.DEPTH_OPTIONS = []  # depth ranges drawn from, e.g. [[2, 3], [3, 4], [4, 5]]; [] = consecutive pairs of MODEL.SCALE.DEPTH_LIST
_C.ONESHOT.KD_RATIO = 1.0  # with SANDWICH: loss = task + KD_RATIO * MSE(subnet output, largest subnet's output, detached)
_C.ONESHOT.CALIB_BATCHES = 8  # BN calibration of a subnet before its evaluation: training batches (TRAIN.BATCH_SIZE, fixed by SEED)

# ---------------------------------------------------------------- derive (searched supernet -> genotype)
_C.DERIVE = CN()
_C.DERIVE.OPS_TOPK = 1  # ops kept per edge (never `zero`)
_C.DERIVE.BETA_THRESHOLD = 0.2  # a cell input is kept when its softmaxed beta is above this ...
_C.DERIVE.BETA_TOPK = 1  # ... or among the top-k inputs of the cell
_C.DERIVE.EDGES_TOPK = 0  # edges kept per hidden state, ranked by edge weight (EDGE_NORM, else 1) x best kept op weight (DARTS / PC-DARTS keep 2); 0 = every edge
_C.DERIVE.SELECTION = "magnitude"  # rank ops / inputs by "magnitude" (softmaxed alpha/beta) or "perturbation" (loss increase on the arch split when each is masked; Wang et al. 2021)
_C.DERIVE.PERTURB_BATCHES = 4  # perturbation: arch-split batches (TRAIN.BATCH_SIZE persons each, fixed by SEED) the loss is measured on
_C.DERIVE.AVERAGE_ARCH_STEPS = 0  # 0 = derive from the arch values of the last arch step; N > 0 = the search ends by setting every arch logit to log of its softmaxed value averaged over the last N arch steps (saved in last.pth, then derived)

# ---------------------------------------------------------------- slim (HR-NAS network slimming)
_C.SLIM = CN()
_C.SLIM.METHOD = "none"  # "none" or "slimming" (HR-NAS: FLOPs-weighted L1 on gates + periodic physical shrinking)
_C.SLIM.RHO = 1e-6  # loss += rho(t) * sum_g (FLOPs of one unit of g / mean) * |gate_g|_1 (HR-NAS COCO: 1e-6)
_C.SLIM.WARMUP_EPOCHS = 2.0  # rho ramps linearly from 0 to RHO over these (fractional) epochs
_C.SLIM.THRESHOLD = 1e-3  # channels/tokens/heads whose |gate| is below this are removed at a shrink
_C.SLIM.INTERVAL = 2  # shrink after every INTERVAL epochs (and after the last epoch)
_C.SLIM.TARGET_FLOPS = 0.0  # 0 = off; else rho adapts until the projected FLOPs reach it (<= 1: fraction of the supernet's, > 1: FLOPs at MODEL.INPUT_SIZE) and a shrink stops there
_C.SLIM.RHO_GAIN = 0.05  # with TARGET_FLOPS: per update_rho, rho *= exp(RHO_GAIN * clip(projected/target - 1, -1, 1)), within [1e-3, 1e3] x RHO

# ---------------------------------------------------------------- ticket (SuperTickets: weight pruning, src/search/tickets/)
_C.TICKET = CN()
_C.TICKET.METHOD = "none"  # weight scores: "none" (no pruning), "magnitude" (global L1, SuperTickets), "lamp" (layer-adaptive magnitude: |w| ranked within its layer, Lee et al. 2021), "random", "snip" (|w * dL/dw|), "synflow" (|w * dR/dw|, data-free)
_C.TICKET.SCHEDULE = "cubic"  # "cubic" / "linear": a step after every INTERVAL epochs, density d_k = D + (1 - D)(1 - k/STEPS)^3 (cubic) or 1 - (1 - D) k/STEPS (linear) for the k-th step, D = TARGET_DENSITY reached at step STEPS (after STEPS x INTERVAL epochs), later steps re-rank at D; "oneshot": one step to D before the first training step
_C.TICKET.TARGET_DENSITY = 0.1  # fraction of the prunable weights kept in the end, in (0, 1] (SuperTickets' target_ratio 0.9 = density 0.1)
_C.TICKET.INTERVAL = 1  # epochs between gradual steps (SuperTickets: prune_interval)
_C.TICKET.STEPS = 3  # gradual steps to reach TARGET_DENSITY
_C.TICKET.REACTIVATE = False  # True: every step re-ranks all prunable weights (pruned ones may come back); False: only the unpruned ones compete (pruned weights stay pruned)
_C.TICKET.REACTIVATE_VALUES = "kept"  # with REACTIVATE: the values pruned weights carry when ranked and reactivated: "kept" (the value they had when pruned; frozen while pruned) or "rewind" (their value after REWIND_EPOCH epochs)
_C.TICKET.REWIND_EPOCH = 0  # REACTIVATE_VALUES rewind: epochs done when the weights are snapshotted (0 = the initial weights)
_C.TICKET.KEEP_MASKS_ON_SHRINK = True  # True: a structural shrink (SLIM) slices the masks with the weights; False: it resets them (every weight active again, SuperTickets without reuse_mask)
_C.TICKET.INCLUDE = ["*"]  # fnmatch patterns of module names whose weight is prunable (among Conv2d / Linear modules: blocks, stems, heads)
_C.TICKET.EXCLUDE = ["head", "final", "classifier", "head.classifier", "parts.*.head.*"]  # fnmatch patterns of module names never pruned; default: the prediction layers of the models (the 1x1 / linear to heatmaps or classes, as SuperTickets keeps its classifier dense: global magnitude emptied the small-init `final` of hr_dense at density 0.1)
_C.TICKET.SCORE_BATCHES = 1  # snip: training batches whose gradients score the weights

# ---------------------------------------------------------------- test
_C.TEST = CN()
_C.TEST.BATCH_SIZE = 64  # persons / images per inference batch (segmentation: one image at a time)
_C.TEST.FLIP_TEST = False  # average with the heatmaps (segmentation: class probabilities) of the flipped image
_C.TEST.SCALES = [1.0]  # segmentation: average the class probabilities over these scales of the image (relative to DATASET.BASE_SIZE)
_C.TEST.USE_GT_BBOX = True  # person boxes from ground truth (False: from DATASET.DET_FILE)
_C.TEST.OKS_NMS_THRESHOLD = 0.9  # OKS-NMS threshold over the detections of one image
_C.TEST.CONFIDENCE_THRESHOLD = 0.2  # joints above this maxval enter the instance score
_C.TEST.CKPT = ""  # checkpoint evaluated by test.py (overridden by --ckpt)

# ---------------------------------------------------------------- distributed
_C.DIST = CN()
_C.DIST.BACKEND = "auto"  # "auto" (nccl on GPU, gloo on CPU), "gloo" or "nccl"


def get_default_config() -> CN:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
