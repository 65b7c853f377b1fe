"""Machine-learned interatomic potentials behind one interface: a name in, an ASE calculator out.

Backends (``conf/mlip/<name>.yaml``):

- ``chgnet``   CHGNet (weights ship in the ``chgnet`` wheel). Predicts energies that already include the
  MP2020 corrections (its pretraining targets were MP2020-corrected; measured in docs/evaluation.md).
- ``sevennet`` SevenNet-0 (weights ship in the ``sevenn`` wheel). Energy scheme measured in docs/evaluation.md
  and recorded in ``conf/mlip/sevennet.yaml`` as ``apply_mp2020_correction``.
- ``fairchem`` eqV2 / eSEN / UMA through fairchem-core, imported lazily: only with the ``fairchem`` extra,
  from a local checkpoint path or a hub name (the hub needs internet once, outside this project's runs).

The paper relaxes with one MLIP for rewards (eqV2) and another for evaluation (eSEN); ``evaluate`` and the RL
loop each take their own ``mlip`` config group, so the two can differ.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pymatgen.core import Element

from plaidpp.errors import UserError
from plaidpp.settings.evaluation import MLIP_BACKENDS, MLIPSettings

BACKENDS = MLIP_BACKENDS


def load_calculator(spec: MLIPSettings):
    """An ASE calculator for ``spec``. Raises UserError when the backend cannot be loaded.

    One torch thread: relaxations run one per worker process (``workers``), so the workers already use every
    core and more threads per worker would oversubscribe them."""
    from plaidpp.runtime import set_torch_threads

    set_torch_threads(1)
    if spec.name == "chgnet":
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        model = CHGNet.load(model_name=spec.model, use_device=spec.device, verbose=False)
        # "error" would crash on a lone atom far from the rest; we want a number or a counted NaN.
        return CHGNetCalculator(model=model, use_device=spec.device, on_isolated_atoms="ignore")
    if spec.name == "sevennet":
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator(model=spec.checkpoint or spec.model, device=spec.device, modal=spec.modal)
    if spec.name == "fairchem":
        return _load_fairchem(spec)
    raise UserError(f"unknown mlip {spec.name!r}")


def _load_fairchem(spec: MLIPSettings):
    """fairchem-core >= 2: a UMA / eSEN 'predict unit' wrapped in FAIRChemCalculator (lazy import)."""
    try:
        from fairchem.core import FAIRChemCalculator, pretrained_mlip
    except ImportError as exc:
        raise UserError(
            "mlip=fairchem needs the optional extra: pip install -e '.[fairchem]' "
            f"(import failed: {exc.__class__.__name__})"
        ) from None
    source = spec.checkpoint or spec.model
    if not source:
        raise UserError("mlip=fairchem needs mlip.checkpoint=PATH or mlip.model=<hub name>")
    if spec.checkpoint and not os.path.isfile(spec.checkpoint):
        raise UserError(f"fairchem checkpoint not found: {spec.checkpoint} (set mlip.checkpoint=PATH)")
    try:
        if spec.checkpoint:
            unit = pretrained_mlip.load_predict_unit(
                spec.checkpoint, inference_settings=spec.inference_settings, device=spec.device
            )
        else:
            unit = pretrained_mlip.get_predict_unit(
                spec.model, inference_settings=spec.inference_settings, device=spec.device
            )
    except Exception as exc:  # noqa: BLE001 - fairchem raises many types; the user gets one line
        if spec.checkpoint and _is_fairchem_v1_checkpoint(spec.checkpoint):
            raise UserError(
                f"{spec.checkpoint} is a fairchem v1 checkpoint (eqV2 / eSEN-30M-OAM era), which fairchem-core 2 "
                "cannot load; use it with fairchem-core 1.x in its own environment, or a fairchem 2 model "
                "(UMA, task omat). See docs/paper-scale.md"
            ) from None
        raise UserError(f"could not load fairchem model {source!r}: {type(exc).__name__}: {exc}"[:400]) from None
    return FAIRChemCalculator(unit, task_name=spec.task_name or "omat")


def _is_fairchem_v1_checkpoint(path: str) -> bool:
    """v1 checkpoints are plain dicts with a trainer 'config' and a 'state_dict'; v2 saves a dataclass.

    Read with ``weights_only=True``: plain containers and tensors only, so telling the two apart never runs code
    from the file (a v2 file, which holds classes, simply does not load here)."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not loadable without pickle: not a v1 checkpoint we can name
        return False
    return isinstance(obj, dict) and "config" in obj and "state_dict" in obj


def supported_elements(spec: MLIPSettings) -> frozenset[str] | None:
    """Element symbols the potential was built for, or None when the backend does not say.

    Checked before relaxing so an unsupported element is a counted reason ("element_not_in_mlip"), not an
    index error deep inside a graph network.
    """
    return _supported_elements(spec.name, spec.checkpoint or spec.model)


@lru_cache(maxsize=8)
def _supported_elements(name: str, model: str) -> frozenset[str] | None:
    if name == "chgnet":
        # CHGNet embeds atomic numbers 1..94 (AtomEmbedding with 94 rows).
        return frozenset(Element.from_Z(z).symbol for z in range(1, 95))
    if name == "sevennet":
        try:
            from sevenn.util import load_checkpoint

            ckpt = load_checkpoint(model)
            chem = ckpt.config.get("chemical_species")
            if chem:
                return frozenset(str(s) for s in chem)
        except Exception:  # noqa: BLE001 - an unknown layout only disables the pre-check
            return None
    return None
