"""Where MP-20 comes from and how it is written as text (``conf/data/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from plaidpp.settings.base import READS, SettingError, setting

SPLITS = ("train", "val", "test")
REPRESENTATIONS = ("wyckoff", "coords")


def repr_setting(help: str = "crystal text the model reads and writes (paper: wyckoff; coords = ablation)",  # noqa: A002
                 default: str = MISSING):
    return setting(default, help=help, choices=REPRESENTATIONS)


@dataclass
class DataSettings:
    source: str = setting(help="vendored (18,106 rows shipped here) | full (cdvae MP-20; `plaidpp fetch data=full`)",
                          choices=("vendored", "full"))
    file: str = setting("${paths.raw}/mp20/mp20_partial_merged.csv.gz", help="the vendored MP-20 rows (cdvae CSV)",
                        path=READS)
    dir: str = setting("${paths.root}/data/external/mp20", help="folder of the full MP-20 train/val/test.csv")
    splits: list[str] = setting(help="MP-20 splits to read", choices=SPLITS, factory=lambda: list(SPLITS))
    max_rows_per_split: int | None = setting(help="first N rows of each split (quick runs); null = every row", ge=1)
    git_blob_sha1: dict[str, str] = setting(help="`git hash-object` of each full MP-20 split; another file is refused",
                                            factory=dict)
    url: str = setting("https://raw.githubusercontent.com/txie-93/cdvae/main/data/mp_20/{split}.csv",
                       help="download address of a full split ({split} is filled in)")
    timeout_s: float = setting(60.0, help="network time-out of one download", unit="s", gt=0)

    def check(self) -> None:
        if self.source == "full":
            missing = [s for s in self.splits if s not in self.git_blob_sha1]
            if missing:
                raise SettingError("git_blob_sha1", f"no expected hash for splits {missing}")
