"""VAE latents kept between try-ons: garments (a catalogue is encoded once) and the person."""

from collections import OrderedDict
import hashlib

import numpy as np
import torch


class LatentCache:
    """
    Bounded LRU cache of image latents keyed by content hash, size and dtype.

    ``hits``/``misses`` count lookups; entries are never modified after insertion.
    """

    def __init__(self, maxsize: int = 8) -> None:
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        """Return the number of cached garments."""
        return len(self._entries)

    @staticmethod
    def key(garment: np.ndarray, height: int, width: int, dtype: torch.dtype,
            device: torch.device, encoder: str = 'full') -> tuple:
        """Cache key of an image (HxWxC uint8) for one output size/dtype/device/encoder."""
        digest = hashlib.blake2b(np.ascontiguousarray(garment).data, digest_size=16)
        return (digest.hexdigest(), garment.shape, height, width, str(dtype), str(device),
                encoder)

    def get(self, key: tuple) -> torch.Tensor | None:
        """Return the cached latent (and mark it recent) or None; counts a hit or miss."""
        latent = self._entries.get(key)
        if latent is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return latent

    def put(self, key: tuple, latent: torch.Tensor) -> None:
        """Store a latent, evicting the least recently used entries beyond maxsize."""
        if self.maxsize == 0:
            return
        self._entries[key] = latent
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Drop all entries and reset the counters."""
        self._entries.clear()
        self.hits = 0
        self.misses = 0
