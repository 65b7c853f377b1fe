"""Training on several processes: ``accelerate launch --config_file conf/accelerate/ddp.yaml -m plaidpp.cli sft``.

The Hugging Face ``Trainer`` (and TRL's ``DPOTrainer`` on it) already splits batches, averages gradients and
saves from one process. What plaidpp adds around it must not run N times: training a tokenizer, clearing a
checkpoint folder, an MLflow run, the summary and the output folder's rename. These helpers say which process
does them; with one process (``plaidpp sft``) every one of them is that process and the barriers are free.

The state is accelerate's ``PartialState`` (a singleton the ``Trainer`` shares), built the way
``TrainingArguments`` builds it, so the device agrees: CPU where there is no CUDA (`accelerate launch --cpu`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def state():
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main() -> bool:
    return bool(state().is_main_process)


def world_size() -> int:
    return int(state().num_processes)


def barrier() -> None:
    state().wait_for_everyone()


@contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first (it writes), the others after it (they find what it wrote)."""
    with state().main_process_first():
        yield
