"""The cache of original images: an image of the unedited model depends only on its prompt and settings."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["OriginalCache"]


class OriginalCache:
    """A thread-safe LRU cache of the original model's images, keyed by `(model, prompt, seed, steps, guidance, height,
    width)`: an image of the unedited model depends on nothing else, so changing λ or the edit only regenerates the
    edited side.

    Args:
        max_items (`int`, *optional*, defaults to 4096): images kept; the least recently used go first.
    """

    def __init__(self, max_items: int = 4096) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: tuple) -> bool:
        """Whether `key` is cached (without counting a hit or a miss, or refreshing it)."""
        with self._lock:
            return key in self._items

    def get(self, key: tuple) -> Any | None:
        """The cached image for `key`, or `None` (counted as a hit or a miss)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key: tuple, image: Any) -> None:
        """Stores an image, evicting the least recently used ones beyond `max_items`."""
        with self._lock:
            self._items[key] = image
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0
