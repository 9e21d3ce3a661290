"""The one interface of top-level models: what the engine, the reports, prune and the genotype ask of a model.

Every registered model derives from `ModelInterface` (src/network_factory/registry.py). The defaults are
those of a model without a search space; a searchable model overrides `genotype()` (the typed architecture
it owns, see genotype/genotype.py) and the classmethod `from_genotype(g, pretrained)` (the derived network of a parsed
genotype; the registry dispatches on `g.model`), and `arch_table()` when it has arch parameters. Searchable
backbones (the fabric backbone, the HR supernet) offer the same pair for their own section.
"""
from typing import TYPE_CHECKING, Dict

from torch import nn

from src.architecture.arch_params import ArchMixin

if TYPE_CHECKING:
    from src.architecture.genotype.genotype import Architecture, Genotype


class ModelInterface(ArchMixin):
    """Mixed into every top-level model (before nn.Module): arch/weight split (ArchMixin) plus the defaults below."""

    def arch_table(self) -> str:
        """Softmaxed arch values as text, printed while searching ("": nothing to show)."""
        return ""

    def complexity_groups(self) -> Dict[str, str]:
        """Label -> submodule name, counted on their own by --param_flop (src/utils/flops.model_complexity)."""
        return {}

    def genotype_sections(self) -> Dict[str, nn.Module]:
        """Genotype field -> the submodule built from it: a network above limits.MAX_PARAMS is refused naming
        its largest section."""
        return {"model": self}

    def genotype(self) -> "Architecture":
        """The typed architecture sections this model is described by (see genotype/genotype.py)."""
        raise ValueError(f"{type(self).__name__} is not a searchable model: it has no genotype")

    @classmethod
    def from_genotype(cls, g: "Genotype", pretrained: str = "") -> "ModelInterface":
        """The derived network of a parsed genotype (`pretrained`: a local state dict for a fixed backbone)."""
        raise ValueError(f"{cls.__name__} is not a searchable model: a genotype cannot describe it")
