"""
The garments the page offers: the catalogue folder plus the shopper's uploads (in memory).

Ids the page sends back are looked up here, never passed on as they came: a try-on can only
name a garment this module listed. An upload belongs to the page that sent it (its owner,
the page's secret id): no other page lists it, shows its thumbnail or tries it on.
"""

from collections import OrderedDict
from dataclasses import dataclass
import itertools
import logging
import threading
from urllib.parse import quote

import numpy as np

from vton_ros.goals.strings import check_id
from vton_ros.media.garments import GarmentCatalog
from vton_ros.settings.choices import CLOTH_TYPES
from vton_ros.ui import images

MAX_ITEMS = 500  # catalogue images listed at most
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Garment:
    """One garment of the page: catalogue ids go to the server by id, uploads as images."""

    gid: str
    name: str
    cloth_type: str  # '' = the server's default
    thumbnail: bytes
    image: np.ndarray | None = None  # uploads only

    def item(self) -> dict:
        """Return the JSON the page lists."""
        return {'id': self.gid, 'name': self.name, 'cloth_type': self.cloth_type or 'upper',
                'thumb': f'/api/garments/{quote(self.gid, safe="")}.jpg',
                'upload': self.image is not None}


class Garments:
    """
    Catalogue items (read once) and shoppers' photos, the newest kept.

    ``max_uploads`` a page and ``max_kept`` in all (the oldest of any page goes first: each
    is up to 2.4 MB in memory).
    """

    def __init__(self, folder: str = '', max_pixels: int = 4096 * 4096, thumb_side: int = 256,
                 max_uploads: int = 8, max_kept: int = 4) -> None:
        self._lock = threading.Lock()
        self._max_pixels = max_pixels
        self._thumb_side = thumb_side
        self._max_uploads = max_uploads
        self._max_kept = max(1, max_kept)
        self._uploads: OrderedDict[str, tuple[str, Garment]] = OrderedDict()  # id: owner, it
        self._serial = itertools.count(1)
        self._catalog: dict[str, Garment] = {}
        if folder:
            self._read(GarmentCatalog(folder))

    def _read(self, catalog: GarmentCatalog) -> None:
        for gid in catalog.ids():
            if len(self._catalog) >= MAX_ITEMS:
                _LOG.warning('catalogue has more than %d garments: the rest are not shown',
                             MAX_ITEMS)
                break
            try:
                check_id('garment id', gid)  # a file name the server would refuse
            except ValueError as err:
                _LOG.warning('left out of the page: %s', err)
                continue
            rgb, kind = catalog.load(gid)
            self._catalog[gid] = Garment(gid, gid.replace('_', ' ').replace('-', ' '),
                                         kind or '', images.jpeg(rgb, 85, self._thumb_side))

    def items(self, owner: str = '') -> list[dict]:
        """Return a page's list: catalogue first, then its uploads (newest last)."""
        with self._lock:
            return [g.item() for g in itertools.chain(self._catalog.values(),
                                                      self._own(owner))]

    def _own(self, owner: str) -> list[Garment]:
        return [g for o, g in self._uploads.values() if owner and o == owner]

    def get(self, gid: str, owner: str = '') -> Garment | None:
        """Return the garment of an id a page (``owner``) sent, or None."""
        with self._lock:
            found = self._catalog.get(gid)
            upload = self._uploads.get(gid)
            if found is None and upload is not None and owner and upload[0] == owner:
                found = upload[1]
            return found

    def thumbnail(self, gid: str, owner: str = '') -> bytes | None:
        """Return a garment's JPEG thumbnail, or None."""
        garment = self.get(gid, owner)
        return garment.thumbnail if garment is not None else None

    def add_upload(self, data: bytes, cloth_type: str, owner: str) -> dict:
        """Decode and keep a page's photo; return its item. ValueError says what is wrong."""
        if not owner:
            raise ValueError('the upload names no open page; reload the page')
        if cloth_type not in CLOTH_TYPES:
            raise ValueError(f'cloth type must be one of {", ".join(CLOTH_TYPES)}')
        rgb = images.decode_upload(data, self._max_pixels)
        with self._lock:
            gid = f'upload-{next(self._serial)}'
            self._uploads[gid] = (owner, Garment(gid, 'Your garment', cloth_type,
                                                 images.jpeg(rgb, 85, self._thumb_side), rgb))
            mine = [g.gid for g in self._own(owner)]
            for old in mine[:-self._max_uploads]:
                del self._uploads[old]
            while len(self._uploads) > self._max_kept:
                self._uploads.popitem(last=False)
            return self._uploads[gid][1].item()

    def has_uploads(self, owner: str) -> bool:
        """Tell whether a page has uploaded photos."""
        with self._lock:
            return bool(self._own(owner))

    def drop_uploads(self, owner: str) -> None:
        """Forget a page's uploads (the page went, or nobody is in front of the mirror)."""
        with self._lock:
            for gid in [g.gid for g in self._own(owner)]:
                del self._uploads[gid]
