"""Loading the next training batch while the current step runs, without changing what is loaded.

With `WORKERS 0` the training loop used to wait for every batch: decoding, augmenting and collating in the
main process, between steps. `Prefetcher` moves exactly that work to one background thread that stays one
batch ahead. It calls the same iterator, in the same order, from a single thread, so every batch and every
draw of the global NumPy RNG (the augmentation draws) are those of the plain loop: the run is bit-for-bit
the same. The main thread must not draw from the global NumPy RNG while a `Prefetcher` runs (training
steps do not; the trainer reseeds it at each epoch start, before the next `Prefetcher` starts).
"""
import queue
import threading


class Prefetcher:
    """Iterates over the first `count` items of `iterator`, each fetched by a background thread while the
    previous one is in use. An exception raised by the iterator is re-raised here, in order. `close()` (or
    leaving a `with` block) stops the thread after the item it is fetching: at most two items past the last
    one taken (one queued, one being fetched) are ever fetched."""

    def __init__(self, iterator, count: int):
        self._iterator, self._count = iterator, int(count)
        self._queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._taken = 0
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for _ in range(self._count):
            if self._stop.is_set():
                return
            try:
                item = (True, next(self._iterator))
            except BaseException as exc:  # handed to the consumer, which re-raises it
                item = (False, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not item[0]:
                return

    def __iter__(self):
        return self

    def __next__(self):
        if self._taken >= self._count:
            raise StopIteration
        ok, item = self._queue.get()
        self._taken += 1
        if not ok:
            self._taken = self._count
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
