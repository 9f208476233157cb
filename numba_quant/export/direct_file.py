"""An output file written front to back past the page cache, where the system allows.

A quantized model is written once and not read again by the process that writes it.
Written through the page cache, each page of it is first allocated there and filled by a
copy; on the virtual machines this package is measured on, that costs more processor
time than the quantization itself (1.2 GB: 5-10 s of system time, against 0.7 s written
with ``O_DIRECT``).  :class:`DirectFile` collects the bytes in an aligned block
(``_host/tuning.py: EXPORT_WRITE_BLOCK_BYTES``) and writes whole blocks directly; the
last one is padded to the alignment and the file cut back to its length.  Where direct
writes are refused (no ``O_DIRECT``, or a file system that does not take it) it writes
through the page cache instead, from the same point; the bytes are the same either way.
"""
import errno
import mmap
import os

from numba_quant._host import tuning as _tuning

# Offsets, lengths and addresses of direct writes are multiples of this (Linux's
# logical block size is at most a page).
_ALIGNMENT = 4096

__all__ = ["DirectFile"]


class DirectFile:
    """A binary file created at ``path`` (truncated) for sequential ``write`` calls;
    ``direct`` is whether the page cache is bypassed.  Use it in a ``with`` block, or
    call :meth:`close` (which writes what is left)."""

    def __init__(self, path, direct=True):
        self.path = os.fspath(path)
        self.direct = False
        self._fd = None
        if direct and hasattr(os, "O_DIRECT"):
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                                   | os.O_DIRECT, 0o644)
                self.direct = True
            except OSError:
                pass
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        size = _tuning.EXPORT_WRITE_BLOCK_BYTES
        self._block = mmap.mmap(-1, size)          # page-aligned
        self._view = memoryview(self._block)
        self._used = 0              # bytes waiting in the block
        self._written = 0           # bytes in the file

    def write(self, data):
        data = memoryview(data).cast("B")
        pos, size = 0, len(self._view)
        while pos < len(data) and self.direct:
            take = min(len(data) - pos, size - self._used)
            self._view[self._used:self._used + take] = data[pos:pos + take]
            self._used += take
            pos += take
            if self._used == size:
                self._flush(size)
        if pos < len(data):         # through the page cache (nothing waits in the block)
            self._write_all(data[pos:])
        return len(data)

    def _write_all(self, data):
        while len(data):
            n = os.write(self._fd, data)
            self._written += n
            data = data[n:]

    def _flush(self, n):
        # n: a multiple of the alignment, n - self._used of it padding
        start = self._written
        try:
            self._write_all(self._view[:n])
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # Direct writes refused after the file was opened: the block again, and
            # what follows, through the page cache.
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY)
            os.lseek(self._fd, start, os.SEEK_SET)
            self._written = start
            self.direct = False
            self._write_all(self._view[:self._used])
        self._used = 0

    def close(self):
        """Write what waits in the block and close the file."""
        self._finish(write=True)

    def _finish(self, write):
        if self._fd is None:
            return
        try:
            if write and self.direct and self._used:
                length = self._written + self._used
                padded = -(-self._used // _ALIGNMENT) * _ALIGNMENT
                self._view[self._used:padded] = bytes(padded - self._used)
                self._flush(padded)
                os.ftruncate(self._fd, length)
        finally:
            os.close(self._fd)
            self._fd = None
            try:
                self._view.release()
                self._block.close()
            except BufferError:     # a slice held by a traceback: freed with it
                pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # After an error the file is abandoned: nothing more is written.
        self._finish(write=exc_type is None)
