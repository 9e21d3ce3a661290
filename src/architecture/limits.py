"""Upper bounds of every size a genotype may ask for: the one place they live.

A genotype JSON is input: it must not be able to ask for a network that cannot be allocated. Each bound is
far above what the configs here use (shown in brackets) and far below what would exhaust a machine; the
parser (src/architecture/genotype/genotype.py and the section parsers it calls) refuses a value outside its bound
with a one-line error naming the field. Individually bounded sizes can still multiply into a large network,
so the built network is also measured on the meta device (no memory) against MAX_PARAMS before it is
allocated (src/network_factory/from_genotype.py); the module counts are bounded too (MAX_FABRIC_OPS, and the
HR bounds below), so that this measurement itself stays fast.
"""

MAX_GENOTYPE_BYTES = 64 * 2**20  # size of a genotype JSON file [demo: ~60 KB with its search record]
MAX_NAME_LEN = 64  # model, task, dataset, backbone, part, strategy and cell names
MAX_PARAMS = 250_000_000  # parameters of the network a genotype describes, 1 GB in float32 [ResNet-50 CNFx3: 33M]

# run level
MAX_JOINTS = 256  # keypoints [COCO 17, MPII 16, COCO-WholeBody 133]
MAX_INPUT_SIDE = 4096  # network input width or height, pixels [384x288]
MAX_HEATMAP_STRIDE = 64  # input size / heatmap size [4]
MAX_CLASSES = 1024  # segmentation classes [synthetic 6, Cityscapes 19, ADE20K 150]

# widths
MAX_CHANNELS = 4096  # any map width: backbone outputs, fabric rows, HR stem / branches, block in/out [ResNet-50: 2048]
MAX_HIDDEN_CHANNELS = 8192  # hidden channels of one kernel path or HRT FFN [4 x 144 = 576]
MAX_WIDTH_MULT = 4.0  # backbone width multiplier [1.0]

# cell-based fabrics (parts and the fabric backbone)
MAX_PARTS = 16  # body-part groups, one fabric each [1, 3, 5, 8]
MAX_FACTOR = 256  # channel factor of a fabric: row channels = size_type x factor [16]
MAX_SIZE_TYPE = 1024  # stride (and channel multiplier) of a fabric row [4, 8, 16, 32]
MAX_FABRIC_ROWS = 6  # scales of a fabric [4]
MAX_FABRIC_LAYERS = 64  # layer index of a cell [depth 6-8]
MAX_FABRIC_CELLS = 64  # cells of one fabric [<= 20]
MAX_HIDDEN_STATES = 4  # hidden states (nodes) of a cell [1-2; DARTS: 4]
MAX_INPUT_NODES = 3  # input nodes of a cell [1-2]
MAX_VECTOR_DIM = 64  # D of the vector-in-pixel head [8]
MAX_FABRIC_OPS = 1024  # kept ops over all fabrics of a genotype, one module each [configs' supernets: <= 120]
MAX_TOPK = 64  # prune settings ops_topk / beta_topk recorded in the search record [1-8]

# HR-NAS supernet
MAX_HR_BRANCHES = 4  # parallel branches, strides 4 to 32 [4]
MAX_HR_STAGES = 6  # stages [4-5]
MAX_HR_BLOCKS = 6  # blocks per branch in one stage [1-4]
MAX_KERNEL = 15  # depthwise kernel side [3, 5, 7]
MAX_KERNEL_PATHS = 4  # kernel paths of one block [3]
MAX_TOKENS = 256  # transformer tokens of one block [16]
MAX_TOKEN_GRID = 32  # side G of the token map (token dim G^2, attention cost ~G^4) [8]
MAX_HRT_WINDOW = 32  # side of an HRT attention window [7]

# ScaleNAS supernet (its branches are bounded by MAX_HR_BRANCHES, its widths by MAX_CHANNELS)
MAX_SCALE_MODULES = 16  # searchable modules over all stages [W32: 1 + 4 + 3 = 8]
MAX_SCALE_DEPTH = 8  # blocks of one branch in one module [5]

MAX_COUNT = 2**53  # params / FLOPs counts recorded in the search record (exact in a JSON double)

# evolutionary search state (src/search/evolution_state.py): a file read back on resume, bounded like a genotype
MAX_EVOLUTION_STATE_BYTES = 256 * 2**20  # size of the state JSON [population 20 x 5 generations: ~100 KB]
MAX_EVALUATED = 100_000  # subnets evaluated in one search [original ScaleNAS: <= 10,000]
MAX_POPULATION = 10_000  # population size [original: 100]
MAX_GENERATIONS = 10_000  # generations [original: 20]
MAX_KEY_LEN = 65536  # characters of a subnet key (its canonical string) [synthetic ScaleNAS config: <= 217]
MAX_SEED = 2**63 - 1  # seed of the search [0]
MAX_TRIES = 1_000_000  # draws per new subnet before the space counts as exhausted [100]
