"""
Garment catalogue: a folder of garment photos addressed by id (the file stem).

An optional ``catalog.yaml`` in the folder maps ids to cloth types::

    red_tshirt: upper
    blue_skirt: {cloth_type: lower}

:class:`GarmentCatalog` reads one (the server, the mirror page); :func:`write_catalog`
writes one (make_garments, the mirror's demo shop).
"""

from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
from vton_ros.media.image_files import IMAGE_SUFFIXES, read_image
from vton_ros.settings.choices import CLOTH_TYPES
from vton_ros.settings.package_paths import resolve
import yaml

CATALOG_FILE = 'catalog.yaml'


class GarmentCatalog:
    """Garment images of one folder; ids are file stems."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(resolve(folder)).expanduser()  # package://vton_ros/garments
        if not self.folder.is_dir():
            raise ValueError(f'garments.catalog_dir {folder!r} is not a folder')
        self._files = {p.stem: p for p in sorted(self.folder.iterdir())
                       if p.suffix.lower() in IMAGE_SUFFIXES}
        self._types = self._read_types()

    def _read_types(self) -> dict[str, str]:
        path = self.folder / CATALOG_FILE
        if not path.exists():
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f'{path}: not valid YAML: {err}') from None
        if not isinstance(data, dict):
            raise ValueError(f'{path}: expected a mapping of garment id -> cloth type')
        types = {}
        for gid, entry in data.items():
            kind = entry.get('cloth_type') if isinstance(entry, dict) else entry
            if kind not in CLOTH_TYPES:
                raise ValueError(f'{path}: {gid}: cloth type {kind!r} is not one of '
                                 f'{", ".join(CLOTH_TYPES)}')
            if str(gid) not in self._files:
                raise ValueError(f'{path}: {gid} has no image in {self.folder}')
            types[str(gid)] = kind
        return types

    def ids(self) -> list[str]:
        """Return the garment ids, sorted."""
        return sorted(self._files)

    def load(self, garment_id: str) -> tuple[np.ndarray, str | None]:
        """Return (HxWx3 uint8 RGB, cloth type or None) of a garment; KeyError if unknown."""
        if garment_id not in self._files:
            shown = ', '.join(self.ids()[:20]) or '(none)'
            raise KeyError(f'unknown garment id {garment_id!r} in {self.folder}; known: {shown}')
        return read_image(self._files[garment_id]), self._types.get(garment_id)


def write_catalog(folder: Path, garments: Mapping[str, tuple[np.ndarray, str]],
                  note: str = '') -> list[Path]:
    """
    Write a catalogue into ``folder`` (created): ``<id>.png`` and catalog.yaml.

    garments: id -> (HxWx3 uint8 RGB image, cloth type), in catalog.yaml's order; note: a
    comment line for its top. Return the files written; OSError if an image is not.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for gid, (rgb, _) in garments.items():
        path = folder / f'{gid}.png'
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f'cannot write {path}')
        files.append(path)
    lines = [f'# {note}'] if note else []
    lines += [f'{gid}: {kind}' for gid, (_, kind) in garments.items()]
    (folder / CATALOG_FILE).write_text('\n'.join(lines) + '\n')
    return files + [folder / CATALOG_FILE]
